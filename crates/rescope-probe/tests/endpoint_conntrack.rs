//! Conntrack on and off. When conntrack cannot be read, the endpoint reporter must
//! still report connections from sock_diag and log the problem once, not every tick.
//!
//! "Cannot be read" is made real, not simulated: the check runs in a child process
//! started through `setpriv` without CAP_NET_ADMIN, which the kernel requires for
//! ctnetlink dumps. The child is this test binary, running only the helper test.

mod support;
use support::tick;

use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rescope_probe::config::ProbeConfig;
use rescope_probe::endpoint::EndpointReporter;
use rescope_probe::walker::ProcessWalker;
use rescope_report::TopologyKind;

const HELPER_ENV: &str = "RESCOPE_TEST_CONNTRACK_HELPER";
const HELPER_DONE: &str = "conntrack helper: all checks passed";

fn probe(conntrack: bool) -> (Arc<Mutex<ProcessWalker>>, EndpointReporter) {
    let mut config = ProbeConfig::new("testhost");
    config.conntrack = conntrack;
    let walker = Arc::new(Mutex::new(ProcessWalker::new("/proc", false)));
    let reporter = EndpointReporter::new(&config, Some(walker.clone()));
    (walker, reporter)
}

/// Counts warning events that mention conntrack.
struct WarningCounter(Arc<AtomicUsize>);

struct MessageOf(String);

impl tracing::field::Visit for MessageOf {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for WarningCounter {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == tracing::Level::WARN {
            let mut message = MessageOf(String::new());
            event.record(&mut message);
            println!("warning logged: {}", message.0);
            if message.0.contains("conntrack") {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Runs inside the child without CAP_NET_ADMIN; does nothing when run directly.
#[test]
fn helper_reporter_without_net_admin() {
    if std::env::var_os(HELPER_ENV).is_none() {
        println!(
            "helper for without_conntrack_permission_endpoints_are_still_reported_and_the_warning_is_logged_once; \
             it only does something when that test starts it"
        );
        return;
    }
    let warnings = Arc::new(AtomicUsize::new(0));
    let _guard = tracing::subscriber::set_default(WarningCounter(warnings.clone()));
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let _accepted = listener.accept().expect("accept");
    let server_id = format!(
        "testhost;127.0.0.1;{}",
        listener.local_addr().expect("addr").port()
    );
    let client_id = format!(
        "testhost;127.0.0.1;{}",
        client.local_addr().expect("addr").port()
    );

    let (walker, mut reporter) = probe(true);
    for round in 0..3 {
        let report = tick(&walker, &mut reporter);
        let endpoints = &report[TopologyKind::Endpoint].nodes;
        let c = endpoints
            .get(client_id.as_str())
            .unwrap_or_else(|| panic!("round {round}: no client endpoint"));
        assert!(c.adjacency.contains(&server_id), "round {round}");
        assert!(endpoints.contains_key(server_id.as_str()), "round {round}");
        assert!(
            reporter.conntrack_unavailable(),
            "round {round}: conntrack must be found unreadable without CAP_NET_ADMIN"
        );
    }
    assert_eq!(reporter.conntrack_warnings(), 1);
    assert_eq!(
        warnings.load(Ordering::SeqCst),
        1,
        "one warning in three ticks"
    );
    println!("{HELPER_DONE}");
}

#[test]
fn without_conntrack_permission_endpoints_are_still_reported_and_the_warning_is_logged_once() {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIPPED: needs root (to drop CAP_NET_ADMIN from a child with setpriv)");
        return;
    }
    let has_setpriv = Command::new("setpriv")
        .arg("--help")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_setpriv {
        println!("SKIPPED: needs `setpriv` (util-linux) to start a child without CAP_NET_ADMIN");
        return;
    }
    let me = std::env::current_exe().expect("test binary");
    let out = Command::new("setpriv")
        .args(["--bounding-set=-net_admin", "--inh-caps=-net_admin", "--"])
        .arg(me)
        .args([
            "--exact",
            "helper_reporter_without_net_admin",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, "1")
        .output()
        .expect("run the helper");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "helper failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains(HELPER_DONE),
        "the helper did not run its checks:\n{stdout}\n{stderr}"
    );
    print!("{stdout}");
}

#[test]
fn with_conntrack_readable_there_is_no_warning() {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIPPED: needs root (CAP_NET_ADMIN) to read conntrack");
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let _client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (walker, mut reporter) = probe(true);
    let report = tick(&walker, &mut reporter);
    if reporter.conntrack_unavailable() {
        println!("SKIPPED: conntrack is not readable on this machine even as root");
        return;
    }
    assert_eq!(reporter.conntrack_warnings(), 0);
    let server_id = format!(
        "testhost;127.0.0.1;{}",
        listener.local_addr().expect("addr").port()
    );
    assert!(
        report[TopologyKind::Endpoint]
            .nodes
            .contains_key(server_id.as_str())
    );
}
