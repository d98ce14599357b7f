//! Docker: the Container and ContainerImage topologies (protocol.md §2.12), container
//! CPU and memory from cgroups, and processes attributed to their containers.
//!
//! A watcher task keeps a copy of every container's inspection, the image list and
//! the network list: a full refresh on connect and every [`REFRESH`], and an update
//! on every engine event. When a container appears, goes or changes state, it wakes
//! the spy loop ([`DockerWatcher::lifecycle_notify`]), so a `docker run` shows at the
//! next tick, not the next spy interval. When the daemon is absent or
//! restarts, the watcher says so once, keeps retrying, and says when it is back; the
//! reporter meanwhile reports no containers. Reporting itself never waits on Docker.
//!
//! The watcher also knows the engine's networks. The subnets of its bridge networks
//! are only unique on this host, so their addresses are scoped by the host ID, in end
//! point IDs (through [`DockerReporter::share_local_networks`]) and in the containers'
//! `docker_container_ips_with_scopes` alike, which is what lets the app join a
//! connection seen only by conntrack to the containers at its ends (Scope does the
//! same for `docker0`). Every network's subnets go into the `local_networks` of the
//! `#docker_peer_<host>` overlay node, so the app does not take container addresses
//! for the Internet (protocol.md §2.12, §8.3).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{ContainerInspectResponse, EventMessageTypeEnum, ImageSummary, Network};
use bollard::query_parameters::{
    EventsOptions, InspectContainerOptions, ListContainersOptions, ListImagesOptions,
    ListNetworksOptions,
};
use futures_util::StreamExt;
use rescope_report::{
    Control, GoTime, MetadataTemplate, Metric, MetricTemplate, Node, Report, Str, TableTemplate,
    TopologyKind, id,
};
use tracing::{info, warn};

use crate::Shutdown;
use crate::endpoint::{Cidr, LocalNetworks};
use crate::reporter::{Reporter, ReporterError, Tick};
use crate::sys::cgroup;

/// How often the watcher lists containers, images and networks again, besides
/// reacting to events. Containers whose state did not change are not inspected again,
/// except every [`FULL_REFRESH_EVERY`]th time.
pub const REFRESH: Duration = Duration::from_secs(10);

/// Every this many refreshes, every container is inspected again.
pub const FULL_REFRESH_EVERY: u32 = 6;

type Inspection = Arc<ContainerInspectResponse>;

#[derive(Debug, Default)]
struct State {
    /// Shared with the reporter's copy of each tick (a deep copy of fifty inspections
    /// a second showed in profiles).
    containers: BTreeMap<String, Inspection>,
    /// Shared with the reporter too: they change only on engine events.
    images: Arc<Vec<ImageSummary>>,
    networks: Arc<Vec<Network>>,
    connected: bool,
}

/// Follows the Docker engine. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DockerWatcher {
    socket: String,
    state: Arc<Mutex<State>>,
    /// Bumped on every change, so the reporter knows when to look again.
    changes: Arc<tokio::sync::Notify>,
    /// Signalled (one stored permit) when a container appears, goes, or changes
    /// state: the spy ticks at once, so a `docker run` shows without waiting for the
    /// next spy interval.
    lifecycle: Arc<tokio::sync::Notify>,
}

impl DockerWatcher {
    /// Watches the engine at `socket` (`/var/run/docker.sock` by default).
    pub fn new(socket: impl Into<String>) -> Self {
        DockerWatcher {
            socket: socket.into(),
            state: Arc::default(),
            changes: Arc::default(),
            lifecycle: Arc::default(),
        }
    }

    /// Signalled when a container appears, goes or changes state (see
    /// [`crate::spy::Spy::wake_on`]).
    pub fn lifecycle_notify(&self) -> Arc<tokio::sync::Notify> {
        self.lifecycle.clone()
    }

    /// A client for the engine (connecting is lazy; errors come with the first call).
    pub fn client(&self) -> Result<Docker, bollard::errors::Error> {
        Docker::connect_with_unix(&self.socket, 30, bollard::API_DEFAULT_VERSION)
    }

    /// Whether the engine answered the last time the watcher asked.
    pub fn connected(&self) -> bool {
        self.state.lock().map(|s| s.connected).unwrap_or(false)
    }

    /// Resolves when a container changes (for callers that publish on changes).
    pub async fn changed(&self) {
        self.changes.notified().await;
    }

    /// Lists everything again. With `full`, every container is inspected; otherwise
    /// only those new or in another state than the copy has (events keep the others
    /// up to date).
    async fn refresh(&self, docker: &Docker, full: bool) -> Result<(), bollard::errors::Error> {
        let list = docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await?;
        let known: BTreeMap<String, Inspection> = if full {
            BTreeMap::new()
        } else {
            self.state
                .lock()
                .map(|s| s.containers.clone())
                .unwrap_or_default()
        };
        let mut containers = BTreeMap::new();
        for summary in list {
            let Some(cid) = summary.id else { continue };
            let listed = summary.state.map(|s| s.to_string());
            if let Some(c) = known.get(&cid)
                && c.state
                    .as_ref()
                    .and_then(|s| s.status)
                    .map(|s| s.to_string())
                    == listed
            {
                containers.insert(cid, c.clone());
                continue;
            }
            match docker
                .inspect_container(&cid, None::<InspectContainerOptions>)
                .await
            {
                Ok(inspect) => {
                    containers.insert(cid, Arc::new(inspect));
                }
                Err(_) => continue, // removed between the list and the inspection
            }
        }
        let images = docker.list_images(None::<ListImagesOptions>).await?;
        let networks = docker.list_networks(None::<ListNetworksOptions>).await?;
        let mut changed = false;
        if let Ok(mut s) = self.state.lock() {
            changed = s.containers.len() != containers.len()
                || containers.iter().any(|(cid, c)| {
                    s.containers
                        .get(cid)
                        .is_none_or(|old| lifecycle_of(old) != lifecycle_of(c))
                });
            s.containers = containers;
            s.images = Arc::new(images);
            s.networks = Arc::new(networks);
            s.connected = true;
        }
        self.changes.notify_waiters();
        if changed {
            self.lifecycle.notify_one();
        }
        Ok(())
    }

    async fn refresh_images(&self, docker: &Docker) -> Result<(), bollard::errors::Error> {
        let images = docker.list_images(None::<ListImagesOptions>).await?;
        if let Ok(mut s) = self.state.lock() {
            s.images = Arc::new(images);
        }
        self.changes.notify_waiters();
        Ok(())
    }

    async fn refresh_networks(&self, docker: &Docker) -> Result<(), bollard::errors::Error> {
        let networks = docker.list_networks(None::<ListNetworksOptions>).await?;
        if let Ok(mut s) = self.state.lock() {
            s.networks = Arc::new(networks);
        }
        self.changes.notify_waiters();
        Ok(())
    }

    /// Brings the copy up to date after one engine event: a container event
    /// re-inspects that container; an image or network event re-lists images or
    /// networks (a network (dis)connection also re-inspects its container). Other
    /// events (volumes, plugins…) change nothing reported.
    async fn on_event(
        &self,
        docker: &Docker,
        event: bollard::models::EventMessage,
    ) -> Result<(), bollard::errors::Error> {
        let actor = event.actor.unwrap_or_default();
        match event.typ {
            Some(EventMessageTypeEnum::CONTAINER) => {
                if let Some(cid) = actor.id {
                    self.refresh_one(docker, &cid).await;
                }
                Ok(())
            }
            Some(EventMessageTypeEnum::IMAGE) => self.refresh_images(docker).await,
            Some(EventMessageTypeEnum::NETWORK) => {
                self.refresh_networks(docker).await?;
                if let Some(cid) = actor.attributes.as_ref().and_then(|a| a.get("container")) {
                    self.refresh_one(docker, cid).await;
                }
                Ok(())
            }
            Some(EventMessageTypeEnum::DAEMON) => self.refresh(docker, true).await,
            _ => Ok(()),
        }
    }

    async fn refresh_one(&self, docker: &Docker, cid: &str) {
        let inspected = docker
            .inspect_container(cid, None::<InspectContainerOptions>)
            .await;
        let mut changed = false;
        if let Ok(mut s) = self.state.lock() {
            match inspected {
                Ok(i) => {
                    let now = lifecycle_of(&i);
                    let before = s.containers.insert(cid.to_string(), Arc::new(i));
                    changed = before.is_none_or(|b| lifecycle_of(&b) != now);
                }
                Err(_) => {
                    changed = s.containers.remove(cid).is_some();
                }
            }
        }
        self.changes.notify_waiters();
        if changed {
            self.lifecycle.notify_one();
        }
    }

    /// Follows the engine until shutdown.
    pub async fn run(self, mut shutdown: Shutdown) {
        let mut was_down: Option<String> = None;
        let mut backoff = Duration::from_secs(1);
        loop {
            if *shutdown.borrow() {
                return;
            }
            let session = async {
                let docker =
                    Docker::connect_with_unix(&self.socket, 30, bollard::API_DEFAULT_VERSION)?;
                self.refresh(&docker, true).await?;
                Ok::<Docker, bollard::errors::Error>(docker)
            };
            let docker = match session.await {
                Ok(d) => d,
                Err(e) => {
                    let message = e.to_string();
                    if was_down.as_deref() != Some(message.as_str()) {
                        warn!(socket = %self.socket, error = %message, "Docker is not reachable; containers are not reported until it is (retrying)");
                        crate::health::problem(
                            "Docker",
                            format!(
                                "not reachable at {} ({message}); containers are not shown until it is",
                                self.socket
                            ),
                        );
                        was_down = Some(message);
                    }
                    if let Ok(mut s) = self.state.lock()
                        && s.connected
                    {
                        s.connected = false;
                        s.containers.clear();
                        s.images = Arc::default();
                        s.networks = Arc::default();
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
            };
            if was_down.take().is_some() {
                info!(socket = %self.socket, "Docker is reachable again; reporting containers");
            }
            crate::health::resolved("Docker");
            backoff = Duration::from_secs(1);
            let mut events = docker.events(None::<EventsOptions>);
            let mut refresh = tokio::time::interval(REFRESH);
            refresh.tick().await;
            let mut refreshes = 0u32;
            loop {
                tokio::select! {
                    event = events.next() => match event {
                        Some(Ok(ev)) => {
                            if self.on_event(&docker, ev).await.is_err() {
                                break;
                            }
                        }
                        _ => break, // the daemon went away: reconnect
                    },
                    _ = refresh.tick() => {
                        refreshes += 1;
                        let full = refreshes.is_multiple_of(FULL_REFRESH_EVERY);
                        if self.refresh(&docker, full).await.is_err() {
                            break;
                        }
                    }
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}

/// A container's status, whether it runs, whether it is paused, and its init pid.
type Lifecycle = (
    Option<bollard::models::ContainerStateStatusEnum>,
    Option<bool>,
    Option<bool>,
    Option<i64>,
);

/// What of a container's inspection, when it changes, makes the spy tick at once.
fn lifecycle_of(c: &ContainerInspectResponse) -> Option<Lifecycle> {
    c.state
        .as_ref()
        .map(|s| (s.status, s.running, s.paused, s.pid))
}

/// The container controls that act on the container's state.
pub const STATE_CONTROLS: [&str; 6] = [
    "docker_start_container",
    "docker_stop_container",
    "docker_restart_container",
    "docker_pause_container",
    "docker_unpause_container",
    "docker_remove_container",
];

impl DockerWatcher {
    /// Registers the container controls in the probe's control registry.
    pub fn register_controls(&self, controls: &crate::control::ControlRegistry) {
        for id in STATE_CONTROLS {
            let watcher = self.clone();
            controls.register(id, move |request: rescope_report::xfer::ControlRequest| {
                let watcher = watcher.clone();
                async move { crate::control::ControlOutcome::from(watcher.control(&request).await) }
            });
        }
    }

    /// Runs a container control (`docker_start_container`, `docker_stop_container`,
    /// `docker_restart_container`, `docker_pause_container`, `docker_unpause_container`,
    /// `docker_remove_container`) on the node's container. Terminal controls (exec,
    /// attach) need a pipe and are answered with an error until pipes land.
    pub async fn control(
        &self,
        request: &rescope_report::xfer::ControlRequest,
    ) -> rescope_report::xfer::ControlResponse {
        use bollard::query_parameters::{
            RemoveContainerOptions, RestartContainerOptions, StartContainerOptions,
            StopContainerOptions,
        };
        use rescope_report::xfer::ControlResponse;
        let Some(cid) = id::parse_single_id(TopologyKind::Container, &request.node_id) else {
            return ControlResponse::error(format!(
                "{:?} is not a container node",
                request.node_id
            ));
        };
        let docker = match Docker::connect_with_unix(&self.socket, 30, bollard::API_DEFAULT_VERSION)
        {
            Ok(d) => d,
            Err(e) => return ControlResponse::error(format!("cannot reach Docker: {e}")),
        };
        let result = match request.control.as_str() {
            "docker_start_container" => {
                docker
                    .start_container(cid, None::<StartContainerOptions>)
                    .await
            }
            "docker_stop_container" => {
                docker
                    .stop_container(
                        cid,
                        Some(StopContainerOptions {
                            t: Some(10),
                            ..Default::default()
                        }),
                    )
                    .await
            }
            "docker_restart_container" => {
                docker
                    .restart_container(
                        cid,
                        Some(RestartContainerOptions {
                            t: Some(10),
                            ..Default::default()
                        }),
                    )
                    .await
            }
            "docker_pause_container" => docker.pause_container(cid).await,
            "docker_unpause_container" => docker.unpause_container(cid).await,
            "docker_remove_container" => {
                let removed = docker
                    .remove_container(cid, None::<RemoveContainerOptions>)
                    .await;
                if removed.is_ok() {
                    self.refresh_one(&docker, cid).await;
                    return ControlResponse {
                        removed_node: request.node_id.clone(),
                        ..Default::default()
                    };
                }
                removed
            }
            other => return ControlResponse::error(format!("Control \"{other}\" not recognised")),
        };
        match result {
            Ok(()) => {
                self.refresh_one(&docker, cid).await;
                ControlResponse::default()
            }
            Err(e) => ControlResponse::error(e.to_string()),
        }
    }
}

fn strip_sha(s: &str) -> &str {
    s.strip_prefix("sha256:").unwrap_or(s)
}

/// Scope's human state, e.g. `Up 5 minutes`, `Exited (0) 2 hours ago`.
fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=1 => "Less than a second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => format!("{} hours", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

fn human_size(bytes: i64) -> String {
    let b = bytes.max(0) as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{b} B")
    }
}

fn parse_time(s: &str) -> Option<GoTime> {
    GoTime::parse_rfc3339(s).ok().filter(|t| t.unix_secs() > 0)
}

/// Control definitions of the Container topology (protocol.md §5.5).
fn container_controls() -> Vec<Control> {
    let c = |id: &str, human: &str, icon: &str, rank: i64| Control {
        id: Str::new(id),
        human: Str::new(human),
        icon: Str::new(icon),
        rank,
        ..Default::default()
    };
    vec![
        c("docker_attach_container", "Attach", "fa fa-desktop", 1),
        c("docker_exec_container", "Exec shell", "fa fa-terminal", 2),
        c("docker_start_container", "Start", "fa fa-play", 3),
        c("docker_restart_container", "Restart", "fa fa-redo", 4),
        c("docker_pause_container", "Pause", "fa fa-pause", 5),
        c("docker_unpause_container", "Unpause", "fa fa-play", 6),
        c("docker_stop_container", "Stop", "fa fa-stop", 7),
        c("docker_remove_container", "Remove", "far fa-trash-alt", 8),
        c("docker_get_logs", "Get logs", "fa fa-file-alt", 9),
    ]
}

/// The Container and ContainerImage topologies' templates and controls, as Scope's
/// probe defines them.
pub fn container_presentation(report: &mut Report, with_controls: bool) {
    let t = report.topology_mut(TopologyKind::Container);
    for (id, label, data_type, priority, from) in [
        ("docker_image_tag", "Image tag", "", 1.0, "latest"),
        ("docker_image_name", "Image name", "", 2.0, "latest"),
        ("docker_container_command", "Command", "", 3.0, "latest"),
        ("docker_container_state_human", "State", "", 4.0, "latest"),
        (
            "docker_container_uptime",
            "Uptime",
            "duration",
            5.0,
            "latest",
        ),
        (
            "docker_container_restart_count",
            "Restart #",
            "",
            6.0,
            "latest",
        ),
        ("docker_container_networks", "Networks", "", 7.0, "sets"),
        ("docker_container_ips", "IPs", "", 8.0, "sets"),
        ("docker_container_ports", "Ports", "", 9.0, "sets"),
        (
            "docker_container_created",
            "Created",
            "datetime",
            10.0,
            "latest",
        ),
        ("weave_mac_address", "Weave MAC", "", 17.0, "latest"),
        ("weave_dns_hostname", "Weave DNS Name", "", 18.0, "latest"),
    ] {
        t.metadata_templates.insert(
            Str::new(id),
            MetadataTemplate::new(id, label, data_type, priority, from),
        );
    }
    let mut cid = MetadataTemplate::new("docker_container_id", "ID", "", 11.0, "latest");
    cid.truncate = 12;
    t.metadata_templates
        .insert(Str::new("docker_container_id"), cid);
    t.metric_templates.insert(
        Str::new("docker_cpu_total_usage"),
        MetricTemplate::new("docker_cpu_total_usage", "CPU", "percent", "", 1.0),
    );
    t.metric_templates.insert(
        Str::new("docker_memory_usage"),
        MetricTemplate::new("docker_memory_usage", "Memory", "filesize", "", 2.0),
    );
    let prefixed = |id: &str, label: &str| TableTemplate {
        id: Str::new(id),
        label: Str::new(label),
        prefix: Str::new(id),
        table_type: Str::new(rescope_report::topology::PROPERTY_LIST),
        ..Default::default()
    };
    t.table_templates.insert(
        Str::new("docker_env_"),
        prefixed("docker_env_", "Environment variables"),
    );
    t.table_templates.insert(
        Str::new("docker_label_"),
        prefixed("docker_label_", "Docker labels"),
    );
    let mut image = TableTemplate {
        id: Str::new("image_table"),
        label: Str::new("Image"),
        table_type: Str::new(rescope_report::topology::PROPERTY_LIST),
        ..Default::default()
    };
    for (key, label) in [
        ("docker_image_id", " ID"),
        ("docker_image_name", " Name"),
        ("docker_image_tag", " Tag"),
        ("docker_image_size", "Size"),
        ("docker_image_virtual_size", "Virtual size"),
    ] {
        image.fixed_rows.insert(Str::new(key), Str::new(label));
    }
    t.table_templates.insert(Str::new("image_table"), image);
    if with_controls {
        for c in container_controls() {
            t.controls.insert(c.id.clone(), c);
        }
    }
    let i = report.topology_mut(TopologyKind::ContainerImage);
    i.metadata_templates.insert(
        Str::new("container"),
        MetadataTemplate::new("container", "# Containers", "number", 2.0, "counters"),
    );
    i.table_templates.insert(
        Str::new("docker_image_label_"),
        prefixed("docker_image_label_", "Docker labels"),
    );
}

/// Reports what the watcher knows, with fresh metrics.
#[derive(Debug)]
pub struct DockerReporter {
    watcher: DockerWatcher,
    host_id: String,
    probe_id: String,
    controls: bool,
    omit_env: bool,
    omit_args: bool,
    proc_root: PathBuf,
    cgroup_root: PathBuf,
    cpus: f64,
    mem_total: f64,
    /// Container ID → (CPU nanoseconds, when) at the previous tick.
    last_cpu: HashMap<String, (u64, Instant)>,
    /// Container ID → (init pid, its cgroup's accounting files, kept open).
    cgroups: HashMap<String, (u32, cgroup::UsageReader)>,
    buf: Vec<u8>,
    /// Where the bridge subnets go for the end point reporter's scopes.
    shared_networks: Option<LocalNetworks>,
    /// What was last put there.
    shared: Vec<Cidr>,
    /// Container ID → the inspection its node was last built from, and the node
    /// without what changes by itself (uptime, state text, CPU and memory): built
    /// again only when the watcher has a new inspection, or the bridges change.
    built: HashMap<String, (Inspection, Node)>,
    /// The bridge subnets the nodes of `built` were made with.
    built_bridges: Vec<Cidr>,
}

/// The subnets of the engine's bridge networks: addresses only unique on this host.
pub fn bridge_subnets(networks: &[Network]) -> Vec<Cidr> {
    let mut out: Vec<Cidr> = networks
        .iter()
        .filter(|n| n.driver.as_deref() == Some("bridge"))
        .flat_map(subnets)
        .filter_map(|s| s.parse().ok())
        .collect();
    out.sort_by_key(|c| (c.network(), c.prefix()));
    out.dedup();
    out
}

/// A network's IPAM subnets, as the engine spells them.
fn subnets(network: &Network) -> impl Iterator<Item = &str> {
    network
        .ipam
        .iter()
        .flat_map(|ipam| ipam.config.iter().flatten())
        .filter_map(|c| c.subnet.as_deref())
        .filter(|s| !s.is_empty())
}

impl DockerReporter {
    pub fn new(config: &crate::config::ProbeConfig, watcher: DockerWatcher) -> Self {
        let cpus = nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN)
            .ok()
            .flatten()
            .filter(|n| *n > 0)
            .unwrap_or(1) as f64;
        let mut buf = Vec::new();
        let mem_total = crate::sys::proc::ProcFs::new(&config.proc_root)
            .meminfo(&mut buf)
            .map(|m| m.total as f64)
            .unwrap_or(0.0);
        DockerReporter {
            watcher,
            host_id: config.hostname.clone(),
            probe_id: config.probe_id.clone(),
            controls: !config.no_controls,
            omit_env: config.omit_env_vars,
            omit_args: config.omit_cmd_args,
            proc_root: config.proc_root.clone(),
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            cpus,
            mem_total,
            last_cpu: HashMap::new(),
            cgroups: HashMap::new(),
            buf: Vec::with_capacity(256),
            shared_networks: None,
            shared: Vec::new(),
            built: HashMap::new(),
            built_bridges: Vec::new(),
        }
    }

    /// Keeps `networks` (the end point reporter's
    /// [`crate::endpoint::EndpointReporter::local_networks_handle`]) set to the bridge
    /// subnets, so end points and container addresses are scoped alike.
    pub fn share_local_networks(&mut self, networks: LocalNetworks) {
        self.shared_networks = Some(networks);
        self.shared.clear();
    }

    /// The CPU and memory of the cgroup of a container's init process. The cgroup is
    /// looked up when the container (or its init process) is new, and its files are
    /// kept open.
    fn usage_of(&mut self, cid: &str, pid: u32) -> Option<cgroup::Usage> {
        if !matches!(self.cgroups.get(cid), Some((p, _)) if *p == pid) {
            let acct = cgroup::accounting(&self.proc_root, &self.cgroup_root, pid)?;
            self.cgroups
                .insert(cid.to_string(), (pid, cgroup::UsageReader::open(&acct)));
        }
        let usage = self.cgroups.get(cid)?.1.read(&mut self.buf);
        if usage.is_none() {
            self.cgroups.remove(cid); // gone: looked up again next time
        }
        usage
    }

    fn share(&mut self, bridges: &[Cidr]) {
        if let Some(handle) = &self.shared_networks
            && self.shared != bridges
        {
            handle.set(bridges.to_vec());
            self.shared = bridges.to_vec();
        }
    }

    /// A container's node: the part its inspection alone decides as last built (if
    /// that inspection has not been replaced since), stamped `now`, with what
    /// changes by itself added.
    fn container_node(&mut self, cid: &str, c: &Inspection, now: GoTime) -> Node {
        let mut n = match self.built.get(cid) {
            Some((seen, node)) if Arc::ptr_eq(seen, c) => {
                let mut node = node.clone();
                for (_, entry) in node.latest.iter_mut() {
                    entry.timestamp = now;
                }
                node
            }
            _ => {
                let node = self.inspected_node(cid, c, now);
                self.built
                    .insert(cid.to_string(), (c.clone(), node.clone()));
                node
            }
        };
        self.add_running_figures(&mut n, cid, c, now);
        n
    }

    /// What a container's inspection (with the bridges) says about it.
    fn inspected_node(&self, cid: &str, c: &ContainerInspectResponse, now: GoTime) -> Node {
        let bridges = &self.built_bridges;
        let mut n = Node::new(id::container_id(cid)).with_topology(TopologyKind::Container.name());
        let set = |n: &mut Node, k: &str, v: &str| n.set_latest(k, now, v);
        set(&mut n, "docker_container_id", cid);
        set(&mut n, "control_probe_id", &self.probe_id);
        if let Some(name) = &c.name {
            set(
                &mut n,
                "docker_container_name",
                name.trim_start_matches('/'),
            );
        }
        if let Some(created) = c.created.as_deref().and_then(parse_time) {
            set(&mut n, "docker_container_created", &created.to_rfc3339());
        }
        let mut command = c.path.clone().unwrap_or_default();
        if !self.omit_args {
            for a in c.args.iter().flatten() {
                command.push(' ');
                command.push_str(a);
            }
        }
        set(&mut n, "docker_container_command", &command);
        if let Some(image) = &c.image {
            let image = strip_sha(image);
            set(&mut n, "docker_image_id", image);
            n.add_parent(
                TopologyKind::ContainerImage.name(),
                id::container_image_id(image),
            );
        }
        let config = c.config.as_ref();
        if let Some(cfg) = config {
            let hostname = match (cfg.hostname.as_deref(), cfg.domainname.as_deref()) {
                (Some(h), Some(d)) if !d.is_empty() => format!("{h}.{d}"),
                (Some(h), _) => h.to_string(),
                _ => String::new(),
            };
            if !hostname.is_empty() {
                set(&mut n, "docker_container_hostname", &hostname);
            }
            for (k, v) in cfg.labels.iter().flatten() {
                set(&mut n, &format!("docker_label_{k}"), v);
            }
            if !self.omit_env {
                for kv in cfg.env.iter().flatten() {
                    if let Some((k, v)) = kv.split_once('=') {
                        set(&mut n, &format!("docker_env_{k}"), v);
                    }
                }
            }
        }
        let state = c.state.as_ref();
        let (status, running, paused) = run_state(state);
        set(&mut n, "docker_container_state", &status);
        let host_config = c.host_config.as_ref();
        let network_mode = host_config
            .and_then(|h| h.network_mode.clone())
            .unwrap_or_default();
        if running {
            set(
                &mut n,
                "docker_container_restart_count",
                &c.restart_count.unwrap_or(0).to_string(),
            );
            set(&mut n, "docker_container_network_mode", &network_mode);
        }
        if network_mode == "host" {
            set(&mut n, "docker_is_in_host_network", "true");
        }
        if let Some(ns) = &c.network_settings {
            for (name, ep) in ns.networks.iter().flatten() {
                n.sets.add("docker_container_networks", name.as_str());
                if let Some(ip) = ep.ip_address.as_deref().filter(|ip| !ip.is_empty()) {
                    n.sets.add("docker_container_ips", ip);
                    // Scoped as the end point reporter scopes the address: by the
                    // host ID on a bridge (only unique on this host), else not.
                    let scope = match ip.parse::<std::net::IpAddr>() {
                        Ok(addr) => id::address_scope(
                            &self.host_id,
                            addr,
                            bridges.iter().any(|b| b.contains(addr)),
                            None,
                        ),
                        Err(_) => String::new(),
                    };
                    n.sets.add(
                        "docker_container_ips_with_scopes",
                        id::address_id(&scope, ip),
                    );
                }
            }
            for (port, bindings) in ns.ports.iter().flatten() {
                match bindings.as_ref().filter(|b| !b.is_empty()) {
                    Some(bindings) => {
                        for b in bindings {
                            let ip = b
                                .host_ip
                                .as_deref()
                                .filter(|ip| !ip.is_empty())
                                .unwrap_or("0.0.0.0");
                            let hp = b.host_port.as_deref().unwrap_or("");
                            n.sets
                                .add("docker_container_ports", format!("{ip}:{hp}->{port}"));
                        }
                    }
                    None => n.sets.add("docker_container_ports", port.as_str()),
                }
            }
        }
        if self.controls {
            let controls = if paused {
                "docker_unpause_container;docker_get_logs"
            } else if running {
                "docker_restart_container;docker_stop_container;docker_pause_container;docker_attach_container;docker_exec_container;docker_get_logs"
            } else {
                "docker_start_container;docker_remove_container;docker_get_logs"
            };
            set(&mut n, rescope_report::node::ACTIVE_CONTROLS, controls);
        }
        n
    }

    /// What changes with time alone: the uptime and the state's text, and the CPU
    /// and memory from the container's cgroup.
    fn add_running_figures(
        &mut self,
        n: &mut Node,
        cid: &str,
        c: &ContainerInspectResponse,
        now: GoTime,
    ) {
        let set = |n: &mut Node, k: &str, v: &str| n.set_latest(k, now, v);
        let state = c.state.as_ref();
        let (status, running, paused) = run_state(state);
        let started = state
            .and_then(|s| s.started_at.as_deref())
            .and_then(parse_time);
        let human = if paused {
            format!(
                "Up {} (Paused)",
                human_duration(started.map_or(0, |t| now.unix_secs() - t.unix_secs()))
            )
        } else if running {
            format!(
                "Up {}",
                human_duration(started.map_or(0, |t| now.unix_secs() - t.unix_secs()))
            )
        } else {
            let exit = state.and_then(|s| s.exit_code).unwrap_or(0);
            let finished = state
                .and_then(|s| s.finished_at.as_deref())
                .and_then(parse_time);
            match finished {
                Some(f) => format!(
                    "Exited ({exit}) {} ago",
                    human_duration(now.unix_secs() - f.unix_secs())
                ),
                None => status.clone(),
            }
        };
        set(n, "docker_container_state_human", &human);
        if running && let Some(t) = started {
            set(
                n,
                "docker_container_uptime",
                &(now.unix_secs() - t.unix_secs()).max(0).to_string(),
            );
        }
        // CPU and memory from the container's cgroup.
        let pid = state
            .and_then(|s| s.pid)
            .filter(|p| *p > 0)
            .and_then(|p| u32::try_from(p).ok());
        if let Some(usage) = pid.and_then(|p| self.usage_of(cid, p)) {
            if let Some(cpu) = usage.cpu_nanos {
                let at = Instant::now();
                if let Some((prev, when)) = self.last_cpu.insert(cid.to_string(), (cpu, at)) {
                    let wall = at.duration_since(when).as_nanos() as f64;
                    if wall > 0.0 {
                        let pct = cpu.saturating_sub(prev) as f64 / (wall * self.cpus) * 100.0;
                        n.metrics
                            .insert("docker_cpu_total_usage", Metric::single(now, pct, 100.0));
                    }
                }
            }
            if let Some(mem) = usage.memory_bytes {
                let cap = usage.memory_limit.map_or(self.mem_total, |l| l as f64);
                n.metrics
                    .insert("docker_memory_usage", Metric::single(now, mem as f64, cap));
            }
        }
    }
}

/// A container's state as Docker words it ("created" when it says nothing), and
/// whether it runs and whether it is paused.
fn run_state(state: Option<&bollard::models::ContainerState>) -> (String, bool, bool) {
    let status = state
        .and_then(|s| s.status)
        .map_or_else(|| "created".to_string(), |s| s.to_string());
    let running = state.and_then(|s| s.running).unwrap_or(false);
    let paused = state.and_then(|s| s.paused).unwrap_or(false);
    (status, running, paused)
}

impl Reporter for DockerReporter {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn report(&mut self, tick: &Tick) -> Result<Report, ReporterError> {
        let now = tick.now;
        let copied = match self.watcher.state.lock() {
            Ok(s) if s.connected => {
                Some((s.containers.clone(), s.images.clone(), s.networks.clone()))
            }
            _ => None,
        };
        let Some((containers, images, networks)) = copied else {
            self.share(&[]);
            return Ok(Report::empty());
        };
        let bridges = bridge_subnets(&networks);
        self.share(&bridges);
        if self.built_bridges != bridges {
            self.built.clear();
            self.built_bridges = bridges;
        }
        let mut report = Report::empty();
        container_presentation(&mut report, self.controls);
        // Every network's subnets are local: container addresses are not the Internet.
        let mut peer = Node::new(id::overlay_id(id::OverlayPeer::Docker(&self.host_id)))
            .with_topology(TopologyKind::Overlay.name());
        for subnet in networks.iter().flat_map(subnets) {
            peer.sets.add("local_networks", subnet);
        }
        report.topology_mut(TopologyKind::Overlay).add_node(peer);
        // Init pid → container, for attributing processes.
        let mut by_pid: HashMap<u32, (String, Option<String>)> = HashMap::new();
        for (cid, c) in &containers {
            let node = self.container_node(cid, c, now);
            let running = c.state.as_ref().and_then(|s| s.running).unwrap_or(false);
            let init = c.state.as_ref().and_then(|s| s.pid).filter(|p| *p > 1);
            if let Some(pid) = init.and_then(|p| u32::try_from(p).ok())
                && running
            {
                by_pid.insert(
                    pid,
                    (
                        cid.clone(),
                        c.image.as_deref().map(|i| strip_sha(i).to_string()),
                    ),
                );
            }
            report.topology_mut(TopologyKind::Container).add_node(node);
        }
        self.last_cpu.retain(|cid, _| containers.contains_key(cid));
        self.cgroups.retain(|cid, _| containers.contains_key(cid));
        self.built.retain(|cid, _| containers.contains_key(cid));
        for image in images.iter() {
            let iid = strip_sha(&image.id).to_string();
            let mut n = Node::new(id::container_image_id(&iid))
                .with_topology(TopologyKind::ContainerImage.name());
            n.set_latest("docker_image_id", now, iid.as_str());
            if let Some(tag) = image.repo_tags.iter().find(|t| *t != "<none>:<none>") {
                let (name, version) = tag
                    .rsplit_once(':')
                    .filter(|(_, v)| !v.contains('/'))
                    .unwrap_or((tag.as_str(), ""));
                n.set_latest("docker_image_name", now, name);
                n.set_latest("docker_image_tag", now, version);
            }
            n.set_latest("docker_image_size", now, human_size(image.size));
            n.set_latest("docker_image_virtual_size", now, human_size(image.size));
            for (k, v) in &image.labels {
                n.set_latest(&format!("docker_image_label_{k}"), now, v.as_str());
            }
            report
                .topology_mut(TopologyKind::ContainerImage)
                .add_node(n);
        }
        // A process belongs to the container whose init process is its nearest
        // ancestor (the init itself included).
        if !by_pid.is_empty() {
            let procs = &tick.procs.processes;
            for pid in procs.keys() {
                let mut cur = *pid;
                let mut hops = 0;
                let owner = loop {
                    if let Some(o) = by_pid.get(&cur) {
                        break Some(o);
                    }
                    match procs.get(&cur) {
                        Some(p) if p.ppid > 1 && hops < 64 => {
                            cur = p.ppid;
                            hops += 1;
                        }
                        _ => break None,
                    }
                };
                if let Some((cid, image)) = owner {
                    let mut n = Node::new(id::process_id(&self.host_id, *pid))
                        .with_topology(TopologyKind::Process.name());
                    n.set_latest("docker_container_id", now, cid.as_str());
                    n.add_parent(TopologyKind::Container.name(), id::container_id(cid));
                    if let Some(image) = image {
                        n.add_parent(
                            TopologyKind::ContainerImage.name(),
                            id::container_image_id(image),
                        );
                    }
                    report.topology_mut(TopologyKind::Process).add_node(n);
                }
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inspection(json: serde_json::Value) -> Inspection {
        Arc::new(serde_json::from_value(json).expect("an inspection"))
    }

    fn running(paused: bool, ip: &str) -> Inspection {
        inspection(serde_json::json!({
            "Id": "c1",
            "Name": "/web",
            "Created": "2026-11-26T10:00:00Z",
            "Path": "sleep",
            "Args": ["3600"],
            "Image": "sha256:abc",
            "RestartCount": 2,
            "State": {
                "Status": if paused { "paused" } else { "running" },
                "Running": true,
                "Paused": paused,
                "StartedAt": "2026-11-26T10:00:01Z",
            },
            "Config": {
                "Hostname": "web",
                "Labels": {"team": "probe"},
                "Env": ["A=1"],
            },
            "HostConfig": {"NetworkMode": "bridge"},
            "NetworkSettings": {
                "Networks": {"bridge": {"IPAddress": ip}},
                "Ports": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]},
            },
        }))
    }

    fn bridge(subnet: &str) -> Network {
        serde_json::from_value(serde_json::json!({
            "Name": "bridge",
            "Driver": "bridge",
            "IPAM": {"Config": [{"Subnet": subnet}]},
        }))
        .expect("a network")
    }

    fn set_state(watcher: &DockerWatcher, c: &Inspection, subnet: &str) {
        let mut s = watcher.state.lock().expect("state");
        s.containers = BTreeMap::from([("c1".to_string(), c.clone())]);
        s.networks = Arc::new(vec![bridge(subnet)]);
        s.connected = true;
    }

    fn container(reporter: &mut DockerReporter, secs: i64) -> Node {
        let tick = Tick {
            now: GoTime::from_unix(1_796_300_000 + secs, 0).expect("in range"),
            procs: Arc::default(),
        };
        let report = reporter.report(&tick).expect("report");
        report[TopologyKind::Container]
            .nodes
            .get(id::container_id("c1").as_str())
            .expect("the container's node")
            .clone()
    }

    /// Each tick's container node from a reporter that keeps what it built equals
    /// one a new reporter builds from the same inspection at that time.
    #[test]
    fn a_kept_container_node_is_what_building_it_again_gives() {
        let config = crate::config::ProbeConfig::new("h");
        let watcher = DockerWatcher::new("/nonexistent");
        let mut kept = DockerReporter::new(&config, watcher.clone());
        let fresh_at = |secs: i64| {
            let mut fresh = DockerReporter::new(&config, watcher.clone());
            container(&mut fresh, secs)
        };
        let first = running(false, "172.17.0.2");
        set_state(&watcher, &first, "172.17.0.0/16");
        let mut states = vec![];
        // Unchanged inspection, an hour apart: the uptime and its text move on.
        for secs in [0, 3600, 7200] {
            states.push((secs, container(&mut kept, secs), fresh_at(secs)));
        }
        // A new inspection (paused), then other bridge subnets (the scopes change).
        set_state(&watcher, &running(true, "172.17.0.2"), "172.17.0.0/16");
        states.push((7201, container(&mut kept, 7201), fresh_at(7201)));
        let paused = watcher.state.lock().expect("state").containers["c1"].clone();
        set_state(&watcher, &paused, "10.9.0.0/16");
        states.push((7202, container(&mut kept, 7202), fresh_at(7202)));
        for (secs, kept, fresh) in &states {
            assert_eq!(kept, fresh, "at {secs} s");
        }
        let text = |n: &Node, k: &str| n.latest_value(k).map(|v| v.to_string());
        assert_ne!(
            text(&states[0].1, "docker_container_uptime"),
            text(&states[1].1, "docker_container_uptime")
        );
        assert_ne!(
            text(&states[2].1, "docker_container_state_human"),
            text(&states[3].1, "docker_container_state_human")
        );
        assert_ne!(
            states[3].1.sets.get("docker_container_ips_with_scopes"),
            states[4].1.sets.get("docker_container_ips_with_scopes")
        );
    }

    #[test]
    fn human_texts() {
        assert_eq!(human_duration(301), "5 minutes");
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(7300), "2 hours");
        assert_eq!(human_size(2_000_000), "2.0 MB");
    }
}
