//! A probe publishing to several apps where most are broken: one never answers, one
//! answers every report with a 500, one is not running yet. The healthy app must keep
//! getting reports, the broken ones must be retried, the failure must be logged with
//! the app's own message, and an app that starts late must get reports once it is up.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod common;
use common::{Running, free_port};

fn app(port: u16) -> Running {
    Running(
        Command::new(env!("CARGO_BIN_EXE_rescope"))
            .args(["app", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("app starts"),
    )
}

fn probes_of(port: u16) -> Vec<serde_json::Value> {
    let out = Command::new("curl")
        .args([
            "-sf",
            "--max-time",
            "3",
            &format!("http://127.0.0.1:{port}/api/probes"),
        ])
        .output()
        .expect("curl runs");
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap_or_default()
}

/// Accepts connections and never answers.
fn silent_app() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    port
}

/// Answers the handshake, then refuses every report with a 500 and a message.
fn failing_app(posts: Arc<AtomicUsize>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let posts = posts.clone();
            std::thread::spawn(move || serve_failing(stream, &posts));
        }
    });
    port
}

fn serve_failing(stream: TcpStream, posts: &AtomicUsize) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (status, text) = if request_line.starts_with("GET /api ") {
            (
                "200 OK",
                r#"{"id":"failing-app","version":"test"}"#.to_string(),
            )
        } else {
            posts.fetch_add(1, Ordering::SeqCst);
            ("500 Internal Server Error", "broken on purpose".to_string())
        };
        let answer = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{text}",
            text.len()
        );
        if reader.get_mut().write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

#[test]
fn broken_apps_never_stop_a_probe_from_publishing_to_healthy_ones() {
    let healthy_port = free_port();
    let _healthy = app(healthy_port);
    let late_port = free_port();
    let silent_port = silent_app();
    let posts = Arc::new(AtomicUsize::new(0));
    let failing_port = failing_app(posts.clone());

    let log = std::env::temp_dir().join(format!("rescope-probe-faults-{}.log", std::process::id()));
    let log_file = std::fs::File::create(&log).expect("log file");
    let plugins =
        std::env::temp_dir().join(format!("rescope-faults-plugins-{}", std::process::id()));
    let targets = [silent_port, failing_port, late_port, healthy_port]
        .map(|p| format!("127.0.0.1:{p}"))
        .join(",");
    let _probe = Running(
        Command::new(env!("CARGO_BIN_EXE_rescope"))
            .args([
                "probe",
                &targets,
                "--hostname",
                "faultprobe",
                "--docker=false",
                "--publish-interval",
                "1s",
                "--plugins-root",
                &plugins.to_string_lossy(),
            ])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("probe starts"),
    );

    // The healthy app hears from the probe, and keeps hearing from it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let first_seen = loop {
        if let Some(p) = probes_of(healthy_port).first() {
            break p["lastSeen"].as_str().unwrap_or_default().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the healthy app never heard from the probe"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = probes_of(healthy_port)
            .first()
            .and_then(|p| p["lastSeen"].as_str().map(str::to_string))
            .unwrap_or_default();
        if seen > first_seen {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "publishing to the healthy app stalled"
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // An app that starts late is published to once it is up.
    let _late = app(late_port);
    let deadline = Instant::now() + Duration::from_secs(40);
    while probes_of(late_port).is_empty() {
        assert!(Instant::now() < deadline, "the late app never got a report");
        std::thread::sleep(Duration::from_millis(250));
    }

    // The failing app was retried, and its refusal is in the log with its message.
    assert!(
        posts.load(Ordering::SeqCst) >= 2,
        "the failing app was not retried ({} reports)",
        posts.load(Ordering::SeqCst)
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("broken on purpose"),
        "the app's error is not in the probe's log:\n{text}"
    );
    let _ = std::fs::remove_file(&log);
}
