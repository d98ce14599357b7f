//! The Docker collector against a real Docker engine (started by CI's set-up; skipped
//! with a message when no engine answers).

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rescope_probe::config::ProbeConfig;
use rescope_probe::docker::{DockerReporter, DockerWatcher};
use rescope_probe::reporter::{Reporter, Tick};
use rescope_probe::walker::ProcessWalker;
use rescope_report::{GoTime, Str, TopologyKind};

const IMAGE: &str = "rescope-test/busybox:latest";

fn docker(args: &[&str]) -> Option<String> {
    let out = Command::new("docker").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The engine the `docker` command talks to: `DOCKER_HOST` (a `unix://` address)
/// when set, as the CLI and `rescope probe` read it.
fn engine_socket() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_string))
        .unwrap_or_else(|| "/var/run/docker.sock".to_string())
}

/// Makes the test image from the host's static busybox if it is missing.
fn ensure_image() -> bool {
    if docker(&["image", "inspect", IMAGE]).is_some() {
        return true;
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(busybox) = busybox else { return false };
    let script = format!(
        "set -e; d=$(mktemp -d); mkdir -p $d/bin; cp {busybox} $d/bin/busybox; \
         for a in sh sleep httpd nc echo cat; do ln -s busybox $d/bin/$a; done; \
         tar -C $d -c . | docker import - {IMAGE} >/dev/null; rm -rf $d"
    );
    Command::new("sh")
        .args(["-c", &script])
        .status()
        .is_ok_and(|s| s.success())
}

struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_containers_are_reported_with_metrics_image_and_processes() {
    if docker(&["info", "--format", "{{.ServerVersion}}"]).is_none() {
        println!("skipped: no Docker engine answers on this machine (CI starts dockerd)");
        return;
    }
    assert!(ensure_image(), "cannot build the busybox test image");
    let name = format!("rescope-test-{}", std::process::id());
    let cid = docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        "team=probe",
        "-p",
        "127.0.0.1:18080:80",
        IMAGE,
        "sleep",
        "300",
    ])
    .expect("docker run");
    let _cleanup = Container(name.clone());
    let started = Instant::now();

    let mut config = ProbeConfig::new("dockertest");
    config.probe_id = "p1".into();
    let watcher = DockerWatcher::new(engine_socket());
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(watcher.clone().run(shutdown));
    let mut reporter = DockerReporter::new(&config, watcher.clone());
    let mut walker = ProcessWalker::new("/proc", false);
    let node_id = format!("{cid};<container>");
    let mut report = None;
    while started.elapsed() < Duration::from_secs(10) {
        let tick = Tick {
            now: GoTime::now(),
            procs: Arc::new(walker.walk(GoTime::now()).expect("walk")),
        };
        let r = tokio::task::block_in_place(|| reporter.report(&tick)).expect("report");
        if r[TopologyKind::Container]
            .nodes
            .get(node_id.as_str())
            .is_some_and(|n| n.metrics.contains_key("docker_cpu_total_usage"))
        {
            report = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "container reported with metrics {:?} after docker run",
        started.elapsed()
    );
    let report = report.expect("the container is reported with CPU metrics");
    let node = &report[TopologyKind::Container].nodes[node_id.as_str()];
    let latest = |k: &str| node.latest_value(k).map(Str::to_string);
    assert_eq!(latest("docker_container_name"), Some(name.clone()));
    assert_eq!(latest("docker_container_state"), Some("running".into()));
    assert_eq!(latest("docker_label_team"), Some("probe".into()));
    assert!(latest("docker_container_state_human").is_some_and(|s| s.starts_with("Up ")));
    assert!(latest("active_controls").is_some_and(|c| c.contains("docker_stop_container")));
    assert!(
        node.sets
            .get("docker_container_ports")
            .is_some_and(|p| p.contains("127.0.0.1:18080->80/tcp"))
    );
    assert!(
        node.sets
            .get("docker_container_ips")
            .is_some_and(|ips| !ips.is_empty())
    );
    let mem = node.metrics.get("docker_memory_usage").expect("memory");
    assert!(mem.samples[0].value > 0.0 && mem.max >= mem.samples[0].value);
    let image_id = latest("docker_image_id").expect("image id");
    let image = &report[TopologyKind::ContainerImage].nodes
        [format!("{image_id};<container_image>").as_str()];
    assert_eq!(
        image.latest_value("docker_image_name").map(Str::as_str),
        Some("rescope-test/busybox")
    );
    // The container's `sleep` process is attributed to it.
    let init = docker(&["inspect", "--format", "{{.State.Pid}}", &cid]).expect("pid");
    let process = &report[TopologyKind::Process].nodes[format!("dockertest;{init}").as_str()];
    assert_eq!(
        process.latest_value("docker_container_id").map(Str::as_str),
        Some(cid.as_str())
    );
    assert!(
        process
            .parents
            .get("container")
            .is_some_and(|p| p.contains(node_id.as_str()))
    );

    // Stopped through the probe's control: the state changes and so do the offered
    // controls.
    let request = rescope_report::xfer::ControlRequest {
        node_id: node_id.clone(),
        control: "docker_stop_container".into(),
        ..Default::default()
    };
    let answer = watcher.control(&request).await;
    assert!(answer.error.is_empty(), "{}", answer.error);
    assert_eq!(
        docker(&["inspect", "--format", "{{.State.Status}}", &cid]).as_deref(),
        Some("exited")
    );
    let stopped_at = Instant::now();
    let mut state = None;
    while stopped_at.elapsed() < Duration::from_secs(10) {
        let tick = Tick {
            now: GoTime::now(),
            procs: Arc::new(walker.walk(GoTime::now()).expect("walk")),
        };
        let r = tokio::task::block_in_place(|| reporter.report(&tick)).expect("report");
        let n = &r[TopologyKind::Container].nodes[node_id.as_str()];
        if n.latest_value("docker_container_state")
            .is_some_and(|s| s == "exited")
        {
            state = n.latest_value("active_controls").map(Str::to_string);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("stop seen after {:?}", stopped_at.elapsed());
    assert_eq!(
        state.as_deref(),
        Some("docker_start_container;docker_remove_container;docker_get_logs")
    );
    let _ = stop.send(true);
}

#[tokio::test]
async fn an_absent_engine_reports_no_containers_and_does_not_fail() {
    let config = ProbeConfig::new("nodocker");
    let watcher = DockerWatcher::new("/nonexistent/docker.sock");
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(watcher.clone().run(shutdown));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!watcher.connected());
    let mut reporter = DockerReporter::new(&config, watcher);
    let tick = Tick {
        now: GoTime::now(),
        procs: Arc::default(),
    };
    let report = reporter.report(&tick).expect("no error");
    assert!(report[TopologyKind::Container].nodes.is_empty());
    let _ = stop.send(true);
}

/// Hands the app's end of every pipe to the test.
#[derive(Default)]
struct TestTransport(std::sync::Mutex<Vec<PipeAppSide>>);

type PipeAppSide = (
    tokio::sync::mpsc::Receiver<Vec<u8>>,
    tokio::sync::mpsc::Sender<Vec<u8>>,
);

impl rescope_probe::pipe::PipeTransport for TestTransport {
    fn connect(&self, _: &str, _: &str) -> Result<rescope_probe::pipe::PipeEnds, String> {
        let (to_app, from_probe) = tokio::sync::mpsc::channel(64);
        let (to_probe, from_app) = tokio::sync::mpsc::channel(64);
        self.0
            .lock()
            .map_err(|_| "poisoned")?
            .push((from_probe, to_probe));
        Ok(rescope_probe::pipe::PipeEnds { to_app, from_app })
    }
}

/// Reads the pipe until `want` shows up; returns everything read.
async fn read_until(rx: &mut tokio::sync::mpsc::Receiver<Vec<u8>>, seen: &mut String, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !seen.contains(want) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(bytes)) => seen.push_str(&String::from_utf8_lossy(&bytes)),
            other => panic!("pipe ended before {want:?} ({other:?}); saw {seen:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_attach_and_logs_open_working_pipes() {
    if docker(&["info", "--format", "{{.ServerVersion}}"]).is_none() {
        println!("skipped: no Docker engine answers on this machine (CI starts dockerd)");
        return;
    }
    assert!(ensure_image(), "cannot build the busybox test image");
    let name = format!("rescope-term-{}", std::process::id());
    // A TTY shell (for attach) that printed a log line first.
    let cid = docker(&[
        "run",
        "-dit",
        "--name",
        &name,
        IMAGE,
        "sh",
        "-c",
        "echo hello-from-logs; exec sh",
    ])
    .expect("container starts");
    let _container = Container(cid.clone());
    let node_id = format!("{cid};<container>");

    let transport = Arc::new(TestTransport::default());
    let pipes = rescope_probe::pipe::Pipes::new(transport.clone());
    let controls = rescope_probe::control::ControlRegistry::new(true);
    let watcher = DockerWatcher::new(engine_socket());
    watcher.register_controls(&controls);
    rescope_probe::docker_exec::register(&controls, &pipes, &watcher);
    let call = |control: &str, args: Option<Vec<(&str, &str)>>| {
        let controls = controls.clone();
        let request = rescope_report::xfer::ControlRequest {
            node_id: node_id.clone(),
            control: control.into(),
            control_args: args.map(|a| {
                a.into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            }),
            ..Default::default()
        };
        async move { controls.handle(request).await }
    };
    let take_app_end = || transport.0.lock().expect("lock").pop().expect("a pipe");

    // Exec: a shell in the container that runs what we type, and resizes.
    let answer = call("docker_exec_container", None).await;
    assert!(answer.error.is_empty(), "{}", answer.error);
    assert!(answer.raw_tty);
    assert_eq!(answer.resize_tty_control, "docker_resize_exec_tty");
    let (mut rx, tx) = take_app_end();
    let mut seen = String::new();
    tx.send(b"echo in-$((1+2))\n".to_vec()).await.expect("send");
    read_until(&mut rx, &mut seen, "in-3").await;
    let resized = call(
        "docker_resize_exec_tty",
        Some(vec![
            ("pipeID", &answer.pipe),
            ("height", "33"),
            ("width", "99"),
        ]),
    )
    .await;
    assert!(resized.error.is_empty(), "{}", resized.error);
    // The engine applies the size asynchronously; ask until the shell sees it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        tx.send(b"stty size\n".to_vec()).await.expect("send");
        let before = seen.len();
        tokio::time::sleep(Duration::from_millis(300)).await;
        while let Ok(b) = rx.try_recv() {
            seen.push_str(&String::from_utf8_lossy(&b));
        }
        if seen[before..].contains("33 99") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the exec terminal was never resized: {seen:?}"
        );
    }
    tx.send(b"exit\n".to_vec()).await.expect("send");
    let deadline = Instant::now() + Duration::from_secs(10);
    while rx.recv().await.is_some() {
        assert!(
            Instant::now() < deadline,
            "the exec pipe stayed open after exit"
        );
    }

    // Attach: the container's own shell, a TTY.
    let answer = call("docker_attach_container", None).await;
    assert!(answer.error.is_empty(), "{}", answer.error);
    assert!(answer.raw_tty, "the container has a TTY");
    let (mut rx, tx) = take_app_end();
    let mut seen = String::new();
    tx.send(b"echo att-$((2+3))\n".to_vec())
        .await
        .expect("send");
    read_until(&mut rx, &mut seen, "att-5").await;
    drop(tx);
    drop(rx);

    // Logs: what the container printed, not a TTY.
    let answer = call("docker_get_logs", None).await;
    assert!(answer.error.is_empty(), "{}", answer.error);
    assert!(!answer.raw_tty);
    let (mut rx, _tx) = take_app_end();
    let mut seen = String::new();
    read_until(&mut rx, &mut seen, "hello-from-logs").await;

    // A control for a container that does not exist says so.
    let gone = rescope_report::xfer::ControlRequest {
        node_id: "0000000000000000;<container>".into(),
        control: "docker_exec_container".into(),
        ..Default::default()
    };
    assert!(!controls.handle(gone).await.error.is_empty());
}

/// A Docker daemon of the test's own, on a private socket and data directory, so it
/// can be stopped and started without disturbing the machine's engine.
struct PrivateDaemon {
    dir: std::path::PathBuf,
    /// Its own bridge: a daemon without one (`--bridge none`) deletes the machine's
    /// `docker0`.
    bridge: String,
    child: Option<std::process::Child>,
}

impl PrivateDaemon {
    fn socket(&self) -> String {
        self.dir.join("docker.sock").to_string_lossy().to_string()
    }

    fn cli(&self, args: &[&str]) -> Option<String> {
        let host = format!("unix://{}", self.socket());
        let mut all = vec!["-H", host.as_str()];
        all.extend_from_slice(args);
        docker(&all)
    }

    fn start(&mut self) -> bool {
        let d = &self.dir;
        let child = Command::new("dockerd")
            .arg("--host")
            .arg(format!("unix://{}", self.socket()))
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("pid"))
            .args([
                "--bridge",
                &self.bridge,
                "--iptables=false",
                "--ip-masq=false",
            ])
            .args(["--storage-driver", "vfs"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        let Ok(child) = child else { return false };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self
                .cli(&["info", "--format", "{{.ServerVersion}}"])
                .is_some()
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateDaemon {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}

fn containers_seen(reporter: &mut DockerReporter) -> usize {
    let tick = Tick {
        now: GoTime::now(),
        procs: Arc::default(),
    };
    reporter
        .report(&tick)
        .map(|r| r[TopologyKind::Container].nodes.len())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_follows_a_docker_daemon_that_restarts() {
    let is_root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    if !is_root || Command::new("dockerd").arg("--version").output().is_err() {
        println!("skipped: needs root and dockerd to run a private Docker daemon");
        return;
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("busybox-static is installed (scripts/setup-deps.sh)");
    let dir = std::env::temp_dir().join(format!("rescope-dockerd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("daemon dir");
    let bridge = format!("rsc{}", std::process::id() % 100_000);
    let made = Command::new("ip")
        .args(["link", "add", &bridge, "type", "bridge"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(made, "cannot create the bridge {bridge} (iproute2)");
    let mut daemon = PrivateDaemon {
        dir,
        bridge,
        child: None,
    };
    assert!(daemon.start(), "the private dockerd did not start");
    let host = format!("unix://{}", daemon.socket());
    let import = format!(
        "set -e; d=$(mktemp -d); mkdir -p $d/bin; cp {busybox} $d/bin/busybox; ln -s busybox $d/bin/sleep; \
         tar -C $d -c . | docker -H {host} import - rescope-restart/busybox >/dev/null; rm -rf $d"
    );
    assert!(
        Command::new("sh")
            .args(["-c", &import])
            .status()
            .is_ok_and(|s| s.success()),
        "importing the test image"
    );
    daemon
        .cli(&[
            "create",
            "--name",
            "survivor",
            "rescope-restart/busybox",
            "sleep",
            "1",
        ])
        .expect("a container");

    let config = ProbeConfig::new("restarttest");
    let watcher = DockerWatcher::new(daemon.socket());
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(watcher.clone().run(shutdown));
    let mut reporter = DockerReporter::new(&config, watcher.clone());
    let wait = async |reporter: &mut DockerReporter, want: usize, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(45);
        while containers_seen(reporter) != want {
            assert!(Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    wait(&mut reporter, 1, "the container was never reported").await;

    tokio::task::block_in_place(|| daemon.stop());
    wait(
        &mut reporter,
        0,
        "containers were still reported with the daemon down",
    )
    .await;
    assert!(!watcher.connected());

    assert!(
        tokio::task::block_in_place(|| daemon.start()),
        "the private dockerd did not restart"
    );
    let back = Instant::now();
    wait(
        &mut reporter,
        1,
        "the probe did not pick the daemon up again",
    )
    .await;
    println!(
        "containers reported again {:?} after the daemon came back",
        back.elapsed()
    );
    let _ = stop.send(true);
}

fn tick() -> Tick {
    Tick {
        now: GoTime::now(),
        procs: Arc::default(),
    }
}

/// Reports until `check` accepts the container's node (`None` while it is absent);
/// panics after a while, naming `what`.
async fn report_until<T>(
    reporter: &mut DockerReporter,
    node_id: &str,
    what: &str,
    check: impl Fn(Option<&rescope_report::Node>) -> Option<T>,
) -> T {
    let started = Instant::now();
    loop {
        let report = tokio::task::block_in_place(|| reporter.report(&tick())).expect("report");
        if let Some(out) = check(report[TopologyKind::Container].nodes.get(node_id)) {
            println!("{what}: seen after {:?}", started.elapsed());
            return out;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what}: never seen; last {:?}",
            report[TopologyKind::Container].nodes.get(node_id)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn latest_of(node: &rescope_report::Node, key: &str) -> Option<String> {
    node.latest_value(key).map(Str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_control_changes_the_container_state_and_the_offered_controls() {
    if docker(&["info", "--format", "{{.ServerVersion}}"]).is_none() {
        println!("skipped: no Docker engine answers on this machine (CI starts dockerd)");
        return;
    }
    assert!(ensure_image(), "cannot build the busybox test image");
    // A shell that exits on SIGTERM (as PID 1 it would otherwise ignore it and the
    // stop would wait out its timeout).
    let cid = docker(&[
        "create",
        "--name",
        &format!("rescope-controls-{}", std::process::id()),
        "--label",
        "rescope-test=controls",
        IMAGE,
        "sh",
        "-c",
        "trap 'exit 0' TERM; while true; do busybox sleep 1; done",
    ])
    .expect("docker create");
    let _cleanup = Container(cid.clone());
    let node_id = format!("{cid};<container>");

    let config = ProbeConfig::new("controlstest");
    let controls = rescope_probe::control::ControlRegistry::new(true);
    let watcher = DockerWatcher::new(engine_socket());
    watcher.register_controls(&controls);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(watcher.clone().run(shutdown));
    let mut reporter = DockerReporter::new(&config, watcher.clone());
    let run = async |control: &str| {
        let request = rescope_report::xfer::ControlRequest {
            node_id: node_id.clone(),
            control: control.into(),
            ..Default::default()
        };
        let answer = controls.handle(request).await;
        assert!(answer.error.is_empty(), "{control}: {}", answer.error);
        answer
    };
    const STOPPED: &str = "docker_start_container;docker_remove_container;docker_get_logs";
    const RUNNING: &str = "docker_restart_container;docker_stop_container;docker_pause_container;docker_attach_container;docker_exec_container;docker_get_logs";
    const PAUSED: &str = "docker_unpause_container;docker_get_logs";
    // Waits for a state, and returns the controls offered in it.
    let state = async |reporter: &mut DockerReporter, want: &str| {
        report_until(reporter, &node_id, want, |n| {
            let n = n?;
            (latest_of(n, "docker_container_state").as_deref() == Some(want))
                .then(|| latest_of(n, "active_controls").unwrap_or_default())
        })
        .await
    };

    assert_eq!(state(&mut reporter, "created").await, STOPPED);
    run("docker_start_container").await;
    assert_eq!(state(&mut reporter, "running").await, RUNNING);
    run("docker_pause_container").await;
    assert_eq!(state(&mut reporter, "paused").await, PAUSED);
    run("docker_unpause_container").await;
    assert_eq!(state(&mut reporter, "running").await, RUNNING);

    // A restart starts the container again: it is running, up for less time than
    // before.
    let uptime = |n: Option<&rescope_report::Node>| -> Option<i64> {
        let n = n?;
        (latest_of(n, "docker_container_state").as_deref() == Some("running"))
            .then(|| latest_of(n, "docker_container_uptime")?.parse().ok())
            .flatten()
    };
    let before = report_until(&mut reporter, &node_id, "up for 2 s", |n| {
        uptime(n).filter(|u| *u >= 2)
    })
    .await;
    let pid_before = docker(&["inspect", "--format", "{{.State.Pid}}", &cid]);
    run("docker_restart_container").await;
    report_until(&mut reporter, &node_id, "restarted", |n| {
        uptime(n).filter(|u| *u < before)
    })
    .await;
    assert_ne!(
        docker(&["inspect", "--format", "{{.State.Pid}}", &cid]),
        pid_before,
        "a new init process"
    );

    run("docker_stop_container").await;
    assert_eq!(state(&mut reporter, "exited").await, STOPPED);
    let answer = run("docker_remove_container").await;
    assert_eq!(answer.removed_node, node_id);
    report_until(&mut reporter, &node_id, "removed", |n| {
        n.is_none().then_some(())
    })
    .await;
    assert!(
        docker(&["inspect", &cid]).is_none(),
        "the engine has it no more"
    );
    let _ = stop.send(true);
}

/// A network removed when dropped.
struct NetworkGuard(String);

impl Drop for NetworkGuard {
    fn drop(&mut self) {
        let _ = docker(&["network", "rm", &self.0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_subnets_are_local_networks_and_scope_container_addresses() {
    if docker(&["info", "--format", "{{.ServerVersion}}"]).is_none() {
        println!("skipped: no Docker engine answers on this machine (CI starts dockerd)");
        return;
    }
    assert!(ensure_image(), "cannot build the busybox test image");
    let config = ProbeConfig::new("netstest");
    let watcher = DockerWatcher::new(engine_socket());
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(watcher.clone().run(shutdown));
    let mut reporter = DockerReporter::new(&config, watcher.clone());
    let shared = rescope_probe::endpoint::LocalNetworks::default();
    reporter.share_local_networks(shared.clone());
    let peer = "#docker_peer_netstest";
    let local_networks = |r: &rescope_report::Report| -> Vec<String> {
        r[TopologyKind::Overlay]
            .nodes
            .get(peer)
            .and_then(|n| n.sets.get("local_networks"))
            .map(|s| s.iter().map(|v| v.to_string()).collect())
            .unwrap_or_default()
    };
    let started = Instant::now();
    while !watcher.connected() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never connected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A network made while the probe runs (its event updates the probe), and a
    // container on it.
    let name = format!("rescope-net-{}", std::process::id());
    docker(&[
        "network",
        "create",
        "--label",
        "rescope-test=networks",
        &name,
    ])
    .expect("docker network create");
    let _network = NetworkGuard(name.clone());
    let subnet = docker(&[
        "network",
        "inspect",
        &name,
        "--format",
        "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
    ])
    .expect("its subnet");
    let cid = docker(&[
        "run",
        "-d",
        "--label",
        "rescope-test=networks",
        "--network",
        &name,
        IMAGE,
        "sleep",
        "300",
    ])
    .expect("docker run");
    let _container = Container(cid.clone());
    let ip = docker(&[
        "inspect",
        "--format",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &cid,
    ])
    .expect("address");
    let default_bridge = docker(&[
        "network",
        "inspect",
        "bridge",
        "--format",
        "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
    ])
    .expect("the default bridge");

    let node_id = format!("{cid};<container>");
    let deadline = Instant::now() + Duration::from_secs(10);
    let report = loop {
        let r = tokio::task::block_in_place(|| reporter.report(&tick())).expect("report");
        let nets = local_networks(&r);
        if nets.contains(&subnet)
            && r[TopologyKind::Container]
                .nodes
                .contains_key(node_id.as_str())
        {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "the new network is not reported: {nets:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(local_networks(&report).contains(&default_bridge));
    // Addresses on a bridge are only unique on this host: scoped by its ID, as the end
    // point reporter, which gets the bridge subnets, scopes them.
    let node = &report[TopologyKind::Container].nodes[node_id.as_str()];
    assert_eq!(
        node.sets
            .get("docker_container_ips_with_scopes")
            .map(|s| s.iter().map(|v| v.to_string()).collect::<Vec<_>>()),
        Some(vec![format!("netstest;{ip}")])
    );
    let shared_now: Vec<String> = shared.get().iter().map(|c| c.to_string()).collect();
    assert!(shared_now.contains(&subnet), "{shared_now:?}");
    assert!(shared_now.contains(&default_bridge), "{shared_now:?}");
    let _ = stop.send(true);
}

/// A standalone probe (`rescope_probe::run`, as `rescope probe` runs it) publishing to
/// a small app once an hour: a container started after the first publish must reach
/// the app without waiting for the next interval, through the wake-up the container's
/// start gives the spy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_started_container_is_published_at_once_not_at_the_next_interval() {
    if docker(&["info", "--format", "{{.ServerVersion}}"]).is_none() {
        println!("skipped: no Docker engine answers on this machine (CI starts dockerd)");
        return;
    }
    assert!(ensure_image(), "cannot build the busybox test image");
    let (reports_tx, mut reports) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new()
        .route(
            "/api",
            axum::routing::get(|| async {
                axum::Json(serde_json::json!({"id": "sink", "version": "test", "hostname": "sink"}))
            }),
        )
        .route(
            "/api/report",
            axum::routing::post(move |body: axum::body::Bytes| {
                let tx = reports_tx.clone();
                async move {
                    if let Ok(report) = rescope_report::codec::decode(&body) {
                        let _ = tx.send(report);
                    }
                    "ok"
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut config = ProbeConfig::new("wakeuptest");
    config.targets =
        vec![rescope_probe::config::AppTarget::parse(&format!("http://{addr}")).expect("target")];
    config.publish_interval = Duration::from_secs(3600);
    config.conntrack = false;
    config.track_tcp_changes = false;
    config.no_controls = true;
    config.docker_socket = engine_socket();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let probe = tokio::spawn(rescope_probe::run(config, shutdown));
    tokio::time::timeout(Duration::from_secs(60), reports.recv())
        .await
        .expect("the first publish follows the first spy tick")
        .expect("a report");

    let name = format!("rescope-test-wakeup-{}", std::process::id());
    let cid = docker(&["run", "-d", "--name", &name, IMAGE, "sleep", "300"]).expect("docker run");
    let _cleanup = Container(name);
    let started = Instant::now();
    let node_id = format!("{cid};<container>");
    loop {
        let left = Duration::from_secs(120).saturating_sub(started.elapsed());
        let report = tokio::time::timeout(left, reports.recv())
            .await
            .expect("a publish with the new container long before the hourly one")
            .expect("a report");
        if report[TopologyKind::Container]
            .nodes
            .contains_key(node_id.as_str())
        {
            break;
        }
    }
    println!(
        "container published {:?} after docker run (publish interval: 1 h)",
        started.elapsed()
    );
    let _ = stop.send(true);
    let _ = probe.await;
}
