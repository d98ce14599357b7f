//! Measures one endpoint tick on a busy host: opens N established loopback
//! connections (default 2,000) in this process, then times the process walk and the
//! endpoint reporter tick by tick.
//!
//! ```text
//! cargo run --release -p rescope-probe --example endpoint_tick -- [connections] [ticks]
//! ```

use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rescope_probe::config::ProbeConfig;
use rescope_probe::endpoint::EndpointReporter;
use rescope_probe::reporter::{Reporter, Tick};
use rescope_probe::walker::ProcessWalker;
use rescope_report::{GoTime, TopologyKind};

fn main() {
    let mut args = std::env::args().skip(1);
    let connections: usize = args
        .next()
        .map_or(2000, |a| a.parse().expect("connections"));
    let ticks: usize = args.next().map_or(20, |a| a.parse().expect("ticks"));

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut held = Vec::with_capacity(connections * 2);
    for i in 0..connections {
        let client = TcpStream::connect(addr).unwrap_or_else(|e| {
            panic!("connection {i}: {e} (raise the open-files limit: ulimit -n)")
        });
        let (server, _) = listener.accept().expect("accept");
        held.push(client);
        held.push(server);
    }
    println!("{connections} established loopback connections open");

    for conntrack in [false, true] {
        let mut config = ProbeConfig::new("bench");
        config.conntrack = conntrack;
        let walker = Arc::new(Mutex::new(ProcessWalker::new("/proc", false)));
        let mut reporter = EndpointReporter::new(&config, Some(walker.clone()));
        let mut walks = Vec::new();
        let mut reports = Vec::new();
        let mut nodes = 0;
        for _ in 0..ticks {
            let now = GoTime::now();
            let started = Instant::now();
            let procs = walker.lock().expect("walker").walk(now).expect("walk");
            walks.push(started.elapsed());
            let tick = Tick {
                now,
                procs: Arc::new(procs),
            };
            let started = Instant::now();
            let report = reporter.report(&tick).expect("report");
            reports.push(started.elapsed());
            nodes = report[TopologyKind::Endpoint].nodes.len();
        }
        println!(
            "conntrack {}: {nodes} endpoint nodes; endpoint tick: first {:?}, then {}; process walk: first {:?}, then {}",
            if conntrack { "on" } else { "off" },
            reports[0],
            summary(&reports[1..]),
            walks[0],
            summary(&walks[1..]),
        );
        // Ticks run back to back here, so most find the sockets unchanged: the
        // figures after the first are the quiet-host case.
        println!(
            "  dumps skipped (counters unchanged): {}; graphs reused: {}; stat reads skipped: {}",
            reporter.dumps_skipped(),
            reporter.graphs_reused(),
            walker.lock().expect("walker").stats_skipped(),
        );
    }
    drop(held);
}

fn summary(samples: &[Duration]) -> String {
    if samples.is_empty() {
        return "-".into();
    }
    let mut s = samples.to_vec();
    s.sort();
    format!(
        "min {:?} / median {:?} / max {:?} over {} ticks",
        s[0],
        s[s.len() / 2],
        s[s.len() - 1],
        s.len()
    )
}
