//! What one simulated fleet host costs per publish, on one thread: the simulator's
//! next report, the delta, encoding; and the app's decoding and applying.
//!
//! Times are the thread's CPU time.
//!
//! `cargo run --release -p rescope-report --example fleet_costs -- 20`

/// CPU time of this thread so far (Linux schedstat), so a busy machine does not
/// inflate the figures the way wall-clock time would.
#[derive(Clone, Copy)]
struct Instant(u64);

impl Instant {
    fn now() -> Self {
        let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
        Instant(
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        )
    }
    fn elapsed(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(Instant::now().0.saturating_sub(self.0))
    }
}

use rescope_report::codec::{self, Encoding, Format};
use rescope_report::synthetic::{HostShape, HostSimulator, fleet_seed};
use rescope_report::{GoTime, Report};

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let mut sim = HostSimulator::new(HostShape::fleet_member(5), fleet_seed(7, 5), GoTime::now());
    let enc = Encoding {
        format: Format::Msgpack,
        gzip: true,
    };
    let (mut t_gen, mut t_delta, mut t_enc, mut t_dec, mut t_apply) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let mut bytes = 0usize;
    let mut last_full: Option<Report> = None;
    let mut state = Report::empty();
    for i in 0..rounds {
        let t = Instant::now();
        let report = sim.next_report();
        t_gen += t.elapsed().as_secs_f64();
        let full = i % 3 == 0 || last_full.is_none();
        let t = Instant::now();
        let wire = match (&last_full, full) {
            (Some(base), false) => report.delta_from(base),
            _ => report.clone(),
        };
        t_delta += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let body = codec::encode(&wire, enc);
        t_enc += t.elapsed().as_secs_f64();
        bytes += body.len();
        let t = Instant::now();
        let decoded = codec::decode(&body).expect("decodes");
        t_dec += t.elapsed().as_secs_f64();
        let t = Instant::now();
        state.apply_keeping_history(&decoded, full);
        t_apply += t.elapsed().as_secs_f64();
        if full {
            last_full = Some(report);
        }
    }
    let n = rounds as f64;
    println!(
        "per report: generate {:.1} ms, delta/clone {:.1} ms, encode {:.1} ms ({} kB) | app: decode {:.1} ms, apply {:.1} ms",
        t_gen / n * 1e3,
        t_delta / n * 1e3,
        t_enc / n * 1e3,
        bytes / rounds / 1024,
        t_dec / n * 1e3,
        t_apply / n * 1e3
    );
}
