//! Shared by the integration tests: the plugin program on a temporary socket, a
//! real HTTP server (Python's http.server on loopback) and a bounded raw client.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rescope_plugin::TopologyKind;
use rescope_plugin::client::wait_until_serving;
use rescope_plugin::model::Report;

pub const HOST: &str = "http-stats-test";

/// Why the BPF tests cannot run here, if they cannot.
pub fn bpf_unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root: loading BPF programs needs root (or CAP_BPF+CAP_PERFMON)".into());
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Some("the kernel has no BTF (/sys/kernel/btf/vmlinux)".into());
    }
    None
}

/// Skips the calling test with a printed reason when BPF is not available.
#[macro_export]
macro_rules! require_bpf {
    () => {
        if let Some(why) = support::bpf_unavailable() {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
}

/// The plugin program, killed on drop.
pub struct PluginProcess {
    pub child: Child,
    pub socket: PathBuf,
    pub log: PathBuf,
    _root: tempfile::TempDir,
}

impl Drop for PluginProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PluginProcess {
    /// Starts the plugin under a new temporary plugins root and waits for its socket.
    pub fn start(extra_args: &[&str]) -> Self {
        Self::start_with(extra_args, |c| c)
    }

    /// Like [`PluginProcess::start`], letting the caller change the command (to drop
    /// privileges, say).
    pub fn start_with(extra_args: &[&str], wrap: impl FnOnce(Command) -> Command) -> Self {
        let root = tempfile::tempdir().expect("tempdir");
        let log = root.path().join("plugin.log");
        let plugins = root.path().join("plugins");
        std::fs::create_dir(&plugins).expect("plugins dir");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rescope-http-statistics"));
        cmd.arg("--plugins-root")
            .arg(&plugins)
            .args(["--hostname", HOST, "--interval-ms", "200"])
            .args(extra_args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        let mut child = wrap(cmd).spawn().expect("the plugin starts");
        let socket = plugins.join("http-statistics/http-statistics.sock");
        if let Err(e) = wait_until_serving(&socket, Some(&mut child), Duration::from_secs(20)) {
            panic!(
                "{e}; its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        PluginProcess {
            child,
            socket,
            log,
            _root: root,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// `python3 -m http.server` on 127.0.0.1 serving a temporary directory with
/// `index.html`; killed on drop.
pub struct HttpServer {
    pub child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl HttpServer {
    pub fn start(protocol: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("index.html"), "<p>hello</p>\n").expect("index");
        // A free port: bind, read it, release it (loopback only). Another test can take
        // the port before python binds it; python then exits and we try another.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("a free port");
            let mut child = Command::new("python3")
                .args([
                    "-m",
                    "http.server",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                ])
                .args(["--protocol", protocol, "--directory"])
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("python3 runs");
            // Generous: python starts slowly on a loaded 2-core CI machine.
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    // The readiness probe was a connection with no request: harmless.
                    return HttpServer {
                        child,
                        port,
                        _dir: dir,
                    };
                }
                if let Ok(Some(status)) = child.try_wait() {
                    eprintln!("http.server on port {port} exited ({status}); trying another port");
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "http.server never listened on {port}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("http.server could not bind a port in five tries");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Sends one request on a new connection and reads the whole answer; returns the
/// status code.
pub fn request(port: u16, raw: &str) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    s.write_all(raw.as_bytes()).expect("send");
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).expect("read answer");
    status_of(&answer)
}

pub fn status_of(answer: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(answer);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"))
}

/// What the report says about one process.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Seen {
    pub requests_total: u64,
    pub responses_total: std::collections::BTreeMap<u16, u64>,
    pub metrics: std::collections::BTreeMap<String, f64>,
}

pub fn seen(report: &Report, pid: u32) -> Option<Seen> {
    let node = report[TopologyKind::Process]
        .nodes
        .get(format!("{HOST};{pid}").as_str())?;
    let mut out = Seen::default();
    for (key, entry) in node.latest.iter() {
        let value: u64 = entry.value.parse().unwrap_or(0);
        if key.as_str() == "http_requests_total" {
            out.requests_total = value;
        } else if let Some(code) = key.strip_prefix("http_responses_total_") {
            out.responses_total
                .insert(code.parse().expect("a status code"), value);
        }
    }
    for (id, metric) in node.metrics.iter() {
        if let Some(sample) = metric.last() {
            out.metrics.insert(id.to_string(), sample.value);
        }
    }
    Some(out)
}
