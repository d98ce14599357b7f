//! The plugin under bad conditions: more serving processes than it may track, and
//! no privileges to load BPF at all.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rescope_plugin::TopologyKind;
use rescope_plugin::client::{ClientError, PluginClient};
use support::{PluginProcess, seen};

/// A process that answers exactly one HTTP request on a port it prints, then
/// waits to be killed.
struct OneShotServer {
    child: Child,
    port: u16,
}

impl Drop for OneShotServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const ONE_SHOT: &str = r#"
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
c.recv(4096)
c.sendall(b"HTTP/1.0 204 No Content\r\n\r\n")
c.close()
time.sleep(120)
"#;

impl OneShotServer {
    fn start() -> Self {
        let mut child = Command::new("python3")
            .args(["-c", ONE_SHOT])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("port");
        let port = line.trim().parse().expect("a port number");
        OneShotServer { child, port }
    }

    fn ask(&self) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("send");
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).expect("answer");
        assert_eq!(support::status_of(&answer), 204);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_serving_processes_than_tracked_keeps_the_report_bounded() {
    require_bpf!();
    // Small, but not so small that other processes serving HTTP on a busy machine
    // (other tests, say) evict all twelve servers between two readings.
    let max = 8usize;
    let plugin = PluginProcess::start(&["--max-processes", &max.to_string()]);
    let client = PluginClient::new(&plugin.socket);
    let servers: Vec<OneShotServer> = tokio::task::spawn_blocking(|| {
        (0..12)
            .map(|_| {
                let s = OneShotServer::start();
                s.ask();
                s
            })
            .collect()
    })
    .await
    .expect("servers");

    // Several reports while the kernel evicts: each is valid and bounded.
    let mut tracked_any = false;
    for _ in 0..10 {
        let answer = client.report().await.expect("the plugin answers");
        assert!(answer.errors().is_empty(), "{:?}", answer.problems);
        let nodes = answer.report[TopologyKind::Process].nodes.len();
        assert!(
            nodes <= max,
            "{nodes} process nodes with --max-processes {max}"
        );
        tracked_any |= servers
            .iter()
            .any(|s| seen(&answer.report, s.child.id()).is_some());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(tracked_any, "none of the 12 servers was ever reported");
    drop(servers);
    let status = plugin_is_running(&plugin);
    assert!(status, "the plugin died:\n{}", plugin.log_text());
}

fn plugin_is_running(plugin: &PluginProcess) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(plugin.child.id() as i32), None).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_privileges_it_serves_an_error_status_that_says_why() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: dropping privileges to test the failure needs root to start with");
        return;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("SKIPPED: setpriv (util-linux) is not installed");
        return;
    }
    let plugin = PluginProcess::start_with(&[], |cmd| {
        // nobody, with no capabilities; the plugins root must be writable for it.
        let program = cmd.get_program().to_owned();
        let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
        let plugins = args
            .iter()
            .skip_while(|a| *a != "--plugins-root")
            .nth(1)
            .expect("plugins root")
            .clone();
        let parent = std::path::Path::new(&plugins)
            .parent()
            .expect("temp root")
            .to_owned();
        for dir in [parent.as_path(), std::path::Path::new(&plugins)] {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        }
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(parent.join("plugin.log"))
            .expect("log");
        let mut wrapped = Command::new("setpriv");
        wrapped
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
                "--",
            ])
            .arg(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(log);
        wrapped
    });
    let client = PluginClient::new(&plugin.socket);
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        match client.report().await {
            Err(ClientError::Status { status: 500, body }) => break body,
            other => assert!(
                Instant::now() < deadline,
                "expected a 500 with the reason, got {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(body.contains("BPF program is not running"), "{body}");
    assert!(
        body.contains("CAP_BPF"),
        "the reason names the privileges: {body}"
    );
    let log = plugin.log_text();
    assert!(log.contains("cannot load the BPF program"), "{log}");
    assert!(plugin_is_running(&plugin), "it keeps serving");
}
