//! HTTPS end to end with the real binaries: `rescope app` serving a certificate made
//! by `openssl` for this test, with an API token, and `rescope probe` publishing to
//! `https://127.0.0.1:PORT` while trusting that certificate. The probe's reports, its
//! control websocket and a terminal pipe all go over TLS; a probe that does not trust
//! the certificate is refused and says why; plain HTTP to the HTTPS port fails
//! without hurting the app.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use rescope_probe::tls::ClientTls;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

mod common;
use common::{Running, free_port, read_pipe_until};

const API_TOKEN: &str = "api-secret-7f3";
const PROBE_TOKEN: &str = "probe-secret-91c";

fn rescope(args: &[&str], log: &Path) -> Running {
    let log = std::fs::File::create(log).expect("log file");
    Running(
        Command::new(env!("CARGO_BIN_EXE_rescope"))
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("rescope starts"),
    )
}

/// A self-signed certificate for 127.0.0.1 and localhost, made the way most people
/// make one (`openssl req -x509`, which marks it as a CA): (certificate, key).
fn make_certificate(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .arg("ec_paramgen_curve:P-256")
        .args(["-nodes", "-days", "2", "-subj", "/CN=rescope-test"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match made {
        Ok(s) if s.success() => Some((cert, key)),
        other => {
            eprintln!("SKIPPED: openssl could not make a test certificate ({other:?})");
            None
        }
    }
}

async fn wait_for<T>(
    http: &reqwest::Client,
    url: &str,
    what: &str,
    pick: impl Fn(&serde_json::Value) -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = http.get(url).bearer_auth(API_TOKEN).send().await
            && r.status().is_success()
            && let Ok(v) = r.json::<serde_json::Value>().await
            && let Some(found) = pick(&v)
        {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("timed out waiting for {what} at {url}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_app_with_a_token_serves_a_probe_that_trusts_its_certificate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let Some((cert, key)) = make_certificate(dir.path()) else {
        return;
    };
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let base = format!("https://{listen}");
    let _app = rescope(
        &[
            "app",
            "--listen",
            &listen,
            "--tls-cert-file",
            cert.to_str().expect("utf-8 path"),
            "--tls-key-file",
            key.to_str().expect("utf-8 path"),
            "--api-token",
            API_TOKEN,
            "--probe-token",
            PROBE_TOKEN,
        ],
        &dir.path().join("app.log"),
    );
    let plugins = dir.path().join("plugins");
    let plugins = plugins.to_str().expect("utf-8 path");
    let _probe = rescope(
        &[
            "probe",
            &base,
            "--hostname",
            "tlstest",
            "--docker=false",
            "--plugins-root",
            plugins,
            "--token",
            PROBE_TOKEN,
            "--tls-ca-file",
            cert.to_str().expect("utf-8 path"),
        ],
        &dir.path().join("probe.log"),
    );
    // A second probe that does not trust the app's certificate.
    let untrusting_log = dir.path().join("untrusting.log");
    let _untrusting = rescope(
        &[
            "probe",
            &base,
            "--hostname",
            "untrusting",
            "--docker=false",
            "--plugins-root",
            plugins,
            "--token",
            PROBE_TOKEN,
        ],
        &untrusting_log,
    );

    let http = ClientTls::new(Some(&cert), false)
        .expect("the test CA")
        .http_builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");

    // The trusting probe's reports arrive over HTTPS.
    let probe_id = wait_for(&http, &format!("{base}/api/probes"), "the probe", |v| {
        v.as_array()?.iter().find(|p| p["hostname"] == "tlstest")?["id"]
            .as_str()
            .map(str::to_string)
    })
    .await;
    wait_for(
        &http,
        &format!("{base}/api/topology/hosts"),
        "the host node",
        |v| v["nodes"].get("tlstest;<host>").map(|_| ()),
    )
    .await;

    // Without the token, or with a wrong one, the API refuses; the probes' routes do
    // not take the API token's place for the UI's routes either way round.
    let status = |r: reqwest::RequestBuilder| async move {
        r.send().await.expect("request").status().as_u16()
    };
    assert_eq!(status(http.get(format!("{base}/api/topology"))).await, 401);
    assert_eq!(
        status(
            http.get(format!("{base}/api/topology"))
                .bearer_auth("wrong")
        )
        .await,
        401
    );
    assert_eq!(
        status(
            http.get(format!("{base}/api/topology"))
                .header("Authorization", format!("Scope-Probe token={PROBE_TOKEN}"))
        )
        .await,
        401
    );

    // Plain HTTP to the HTTPS port gets no answer, and the app carries on.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    assert!(
        plain
            .get(format!("http://{listen}/api"))
            .send()
            .await
            .map(|r| !r.status().is_success())
            .unwrap_or(true),
        "plain HTTP must not be served on the HTTPS port"
    );

    // A host terminal: the control goes to the probe over its wss control channel,
    // and the pipe's probe end connects back over wss.
    let node = "tlstest%3B%3Chost%3E";
    let control_url = format!("{base}/api/control/{probe_id}/{node}/host_exec");
    let deadline = Instant::now() + Duration::from_secs(20);
    let pipe = loop {
        let response = http
            .post(&control_url)
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .expect("POST");
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        if let Some(pipe) = body["pipe"].as_str() {
            break pipe.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "host_exec never worked over TLS: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let mut request = format!("wss://{listen}/api/pipe/{pipe}")
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "Authorization",
        format!("Bearer {API_TOKEN}").parse().expect("header"),
    );
    let connector = ClientTls::new(Some(&cert), false)
        .expect("the test CA")
        .ws_connector();
    let (mut ws, _) =
        tokio_tungstenite::connect_async_tls_with_config(request, None, false, Some(connector))
            .await
            .expect("the browser end connects over wss");
    ws.send(Message::Binary("echo over-tls-$((6*7))\n".into()))
        .await
        .expect("send");
    read_pipe_until(&mut ws, &mut String::new(), "over-tls-42").await;
    let _ = http
        .delete(format!("{base}/api/pipe/{pipe}"))
        .bearer_auth(API_TOKEN)
        .send()
        .await;

    // The probe that does not trust the certificate never gets in, and its log says
    // that the certificate is the problem.
    let probes: serde_json::Value = http
        .get(format!("{base}/api/probes"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("probes")
        .json()
        .await
        .expect("json");
    assert!(
        !probes.to_string().contains("untrusting"),
        "a probe that cannot verify the app must not publish: {probes}"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let log = std::fs::read_to_string(&untrusting_log).unwrap_or_default();
        if log.to_lowercase().contains("certificate") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the untrusting probe's log does not mention the certificate:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn a_key_that_does_not_fit_or_a_missing_file_stops_the_app_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let Some((cert, _key)) = make_certificate(dir.path()) else {
        return;
    };
    let other = dir.path().join("other");
    std::fs::create_dir(&other).expect("dir");
    let Some((_, other_key)) = make_certificate(&other) else {
        return;
    };
    let run = |key: &Path| {
        Command::new(env!("CARGO_BIN_EXE_rescope"))
            .args(["app", "--listen", "127.0.0.1:0", "--tls-cert-file"])
            .arg(&cert)
            .arg("--tls-key-file")
            .arg(key)
            .output()
            .expect("runs")
    };
    let out = run(&other_key);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not fit"), "{err}");
    let out = run(&dir.path().join("absent.pem"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("absent.pem"), "{err}");
}
