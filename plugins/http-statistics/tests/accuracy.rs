//! The plugin program with its BPF program attached, counting a real HTTP server's
//! traffic: a bounded client sends a known mix of requests to Python's http.server
//! on loopback, and the plugin's `/report` must attribute the right counts to the
//! server's pid (and nothing to the client), in a report the probe accepts.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use rescope_plugin::client::PluginClient;
use support::{HttpServer, PluginProcess, Seen, request, seen};

/// Asks the plugin until `done` holds for the server's entry (or fails after a
/// deadline with what was last seen). Returns the last answer's report.
async fn wait_for(
    client: &PluginClient,
    pid: u32,
    what: &str,
    done: impl Fn(&Seen) -> bool,
) -> (rescope_plugin::model::Report, Seen) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = client.report().await.expect("the plugin answers");
        assert!(
            answer.errors().is_empty(),
            "the probe would reject the report: {:?}",
            answer.problems
        );
        let s = seen(&answer.report, pid).unwrap_or_default();
        if done(&s) {
            return (answer.report, s);
        }
        assert!(
            Instant::now() < deadline,
            "{what}: never happened; last seen for pid {pid}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn within_one_percent(counted: u64, truth: u64) -> bool {
    (counted as f64 - truth as f64).abs() <= truth as f64 * 0.01
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_responses_per_status_are_counted_for_the_servers_pid() {
    require_bpf!();
    let plugin = PluginProcess::start(&[]);
    let client = PluginClient::new(&plugin.socket);
    let server = HttpServer::start("HTTP/1.0");
    let port = server.port;

    // The known mix, each request on its own connection (HTTP/1.0).
    let mix: [(&str, usize, u16); 4] = [
        ("GET /index.html HTTP/1.0\r\nHost: t\r\n\r\n", 150, 200),
        ("GET /missing.html HTTP/1.0\r\nHost: t\r\n\r\n", 40, 404),
        ("HEAD / HTTP/1.0\r\nHost: t\r\n\r\n", 10, 200),
        (
            "POST / HTTP/1.0\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
            10,
            501,
        ),
    ];
    let mut truth_requests = 0u64;
    let mut truth_status = std::collections::BTreeMap::<u16, u64>::new();
    // Three clients at once, each sending the whole mix: the server's threads
    // answer concurrently on both CPUs.
    const CLIENTS: usize = 3;
    let sent = tokio::task::spawn_blocking(move || {
        std::thread::scope(|scope| {
            let clients: Vec<_> = (0..CLIENTS)
                .map(|_| {
                    scope.spawn(|| {
                        let mut statuses = Vec::new();
                        for (raw, times, _) in mix {
                            for _ in 0..times {
                                statuses.push(request(port, raw));
                            }
                        }
                        statuses
                    })
                })
                .collect();
            clients
                .into_iter()
                .flat_map(|c| c.join().expect("client thread"))
                .collect::<Vec<u16>>()
        })
    })
    .await
    .expect("client");
    for (_, times, want) in mix {
        truth_requests += (times * CLIENTS) as u64;
        *truth_status.entry(want).or_default() += (times * CLIENTS) as u64;
    }
    let mut got_status = std::collections::BTreeMap::<u16, u64>::new();
    for s in sent {
        *got_status.entry(s).or_default() += 1;
    }
    assert_eq!(got_status, truth_status, "the server answered as expected");

    let (report, s) = wait_for(&client, server.pid(), "all requests counted", |s| {
        s.requests_total >= truth_requests
            && s.responses_total.values().sum::<u64>() >= truth_requests
    })
    .await;
    eprintln!(
        "server pid {}: requests counted {} of {truth_requests}; responses counted {:?} of {truth_status:?}",
        server.pid(),
        s.requests_total,
        s.responses_total
    );
    assert!(
        within_one_percent(s.requests_total, truth_requests),
        "requests: counted {} of {truth_requests}",
        s.requests_total
    );
    for (code, truth) in &truth_status {
        let counted = s.responses_total.get(code).copied().unwrap_or(0);
        assert!(
            within_one_percent(counted, *truth),
            "{code} responses: counted {counted} of {truth} ({:?})",
            s.responses_total
        );
    }
    assert_eq!(
        s.responses_total.keys().collect::<Vec<_>>(),
        truth_status.keys().collect::<Vec<_>>(),
        "no other status codes"
    );
    // Rates and latency are there (their values depend on timing, so only their
    // presence and consistency are checked).
    for id in [
        "http_requests_per_second",
        "http_responses_200_per_second",
        "http_responses_404_per_second",
        "http_responses_501_per_second",
    ] {
        assert!(s.metrics.contains_key(id), "{id} missing: {:?}", s.metrics);
    }
    let p50 = s.metrics.get("http_latency_p50_ms").copied();
    let p99 = s.metrics.get("http_latency_p99_ms").copied();
    let (Some(p50), Some(p99)) = (p50, p99) else {
        panic!("no latency: {:?}", s.metrics)
    };
    assert!(p50 > 0.0 && p50 <= p99, "p50 {p50} ms, p99 {p99} ms");

    // What `rescope report validate --plugin-id http-statistics --deny-warnings`
    // checks: the probe's rules for plugin answers, warnings included.
    let answer = client.report().await.expect("the plugin answers");
    assert!(answer.problems.is_empty(), "{:?}", answer.problems);
    assert_eq!(answer.specs.len(), 1);
    assert_eq!(answer.specs[0].id, "http-statistics");

    // The client (this test) sent requests and read responses: not counted.
    assert_eq!(seen(&report, std::process::id()), None, "client counted");
    let templates = &report[rescope_plugin::TopologyKind::Process].metric_templates;
    assert!(templates.contains_key("http_responses_501_per_second"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_requests_on_one_connection_are_each_counted() {
    require_bpf!();
    let plugin = PluginProcess::start(&[]);
    let client = PluginClient::new(&plugin.socket);
    let server = HttpServer::start("HTTP/1.1");
    let port = server.port;
    let rounds = 25u64;
    tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        // Only successes: http.server closes the connection after an error.
        for _ in 0..rounds {
            write!(s, "GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n").expect("send");
            read_one_response(&mut s);
        }
    })
    .await
    .expect("client");
    let (_, s) = wait_for(&client, server.pid(), "keep-alive requests", |s| {
        s.requests_total >= rounds
    })
    .await;
    assert_eq!(s.requests_total, rounds);
    assert_eq!(s.responses_total.get(&200), Some(&rounds));
    assert!(s.metrics.contains_key("http_latency_p99_ms"), "{s:?}");
}

/// Reads one HTTP/1.1 response with a Content-Length body.
fn read_one_response(s: &mut TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("response head");
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    s.read_exact(&mut body).expect("response body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_http_traffic_files_and_split_requests_do_not_confuse_it() {
    require_bpf!();
    let plugin = PluginProcess::start(&[]);
    let client = PluginClient::new(&plugin.socket);
    let server = HttpServer::start("HTTP/1.0");
    let port = server.port;

    tokio::task::spawn_blocking(move || {
        // HTTP-looking bytes through a file and a pipe: not sockets, not counted.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fake");
        std::fs::write(&path, "GET / HTTP/1.1\r\n\r\nHTTP/1.1 200 OK\r\n").expect("write");
        let mut text = String::new();
        std::fs::File::open(&path)
            .and_then(|mut f| f.read_to_string(&mut text))
            .expect("read");
        let mut cat = std::process::Command::new("cat")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("cat");
        cat.stdin
            .take()
            .expect("stdin")
            .write_all(b"HTTP/1.1 500 Oops\r\nGET /x HTTP/1.1\r\n")
            .expect("pipe");
        cat.wait_with_output().expect("cat output");

        // Binary and text junk on a socket to the server: it answers 400 to what
        // it can parse as a request line and nothing otherwise.
        for junk in [
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
            b"HELLO THERE\r\n\r\n",
        ] {
            let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(10))).ok();
            s.write_all(junk).expect("junk");
            s.shutdown(std::net::Shutdown::Write).expect("end of junk");
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        }

        // A request line split across two writes: the server reads "GE" first. The
        // plugin sees the response but not the request (a documented limitation).
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_nodelay(true).ok();
        s.write_all(b"GE").expect("first half");
        std::thread::sleep(Duration::from_millis(200));
        s.write_all(b"T /index.html HTTP/1.0\r\n\r\n")
            .expect("second half");
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).expect("answer");
        assert_eq!(support::status_of(&answer), 200);

        // One ordinary request last, so the test knows when everything was seen.
        assert_eq!(request(port, "GET / HTTP/1.0\r\n\r\n"), 200);
    })
    .await
    .expect("client");

    let (report, s) = wait_for(&client, server.pid(), "the last request", |s| {
        s.responses_total.get(&200).copied().unwrap_or(0) >= 2
    })
    .await;
    assert_eq!(
        s.requests_total, 1,
        "only the whole request line is a request"
    );
    // 400 for the text junk (Python's answer to a bad request line), 200 twice.
    assert_eq!(s.responses_total.get(&200), Some(&2), "{s:?}");
    assert!(
        s.responses_total.keys().all(|c| [200, 400].contains(c)),
        "{s:?}"
    );
    assert_eq!(
        seen(&report, std::process::id()),
        None,
        "file and pipe traffic is not HTTP"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_exits_disappears_from_the_report() {
    require_bpf!();
    let plugin = PluginProcess::start(&[]);
    let client = PluginClient::new(&plugin.socket);
    let mut server = HttpServer::start("HTTP/1.0");
    let (port, pid) = (server.port, server.pid());
    tokio::task::spawn_blocking(move || request(port, "GET / HTTP/1.0\r\n\r\n"))
        .await
        .expect("client");
    wait_for(&client, pid, "the request", |s| s.requests_total == 1).await;

    server.child.kill().expect("kill the server");
    server.child.wait().expect("reaped");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = client.report().await.expect("still answers");
        assert!(answer.errors().is_empty(), "{:?}", answer.problems);
        if seen(&answer.report, pid).is_none() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the exited server stayed in the report"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A Python server answering `count` requests with vectored I/O: `msg` reads with
/// recvmsg(2) and writes with sendmsg(2), `vec` uses readv(2) and writev(2). The
/// status line is the first of two buffers. It prints its port, then serves.
const VECTORED_SERVER: &str = r#"
import os, socket, sys, time
mode, count = sys.argv[1], int(sys.argv[2])
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(16)
print(s.getsockname()[1], flush=True)
for _ in range(count):
    c, _ = s.accept()
    if mode == "msg":
        data = c.recvmsg(4096)[0]
    else:
        buf = bytearray(4096)
        data = bytes(buf[:os.readv(c.fileno(), [buf])])
    code = b"404" if b"missing" in data else b"200"
    parts = [b"HTTP/1.1 " + code + b" X\r\n", b"Content-Length: 0\r\nConnection: close\r\n\r\n"]
    if mode == "msg":
        c.sendmsg(parts)
    else:
        os.writev(c.fileno(), parts)
    c.close()
time.sleep(120)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_using_vectored_io_are_counted() {
    require_bpf!();
    let plugin = PluginProcess::start(&[]);
    let client = PluginClient::new(&plugin.socket);
    for mode in ["msg", "vec"] {
        let mut server = std::process::Command::new("python3")
            .args(["-c", VECTORED_SERVER, mode, "6"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(server.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("port");
        let port: u16 = line.trim().parse().expect("a port");
        let statuses = tokio::task::spawn_blocking(move || {
            (0..6)
                .map(|i| {
                    let path = if i < 2 { "/missing" } else { "/" };
                    request(port, &format!("GET {path} HTTP/1.0\r\n\r\n"))
                })
                .collect::<Vec<_>>()
        })
        .await
        .expect("client");
        assert_eq!(statuses, [404, 404, 200, 200, 200, 200]);
        let (_, s) = wait_for(&client, server.id(), mode, |s| {
            s.responses_total.values().sum::<u64>() >= 6
        })
        .await;
        let _ = server.kill();
        let _ = server.wait();
        assert_eq!(s.requests_total, 6, "{mode}: {s:?}");
        assert_eq!(s.responses_total.get(&200), Some(&4), "{mode}: {s:?}");
        assert_eq!(s.responses_total.get(&404), Some(&2), "{mode}: {s:?}");
        assert!(
            s.metrics.contains_key("http_latency_p50_ms"),
            "{mode}: {s:?}"
        );
    }
}
