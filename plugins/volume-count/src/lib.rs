//! The `volume-count` plugin: how many volumes each Docker container has mounted,
//! as a metadata row (`# Volumes`) in the container's details.
//!
//! The shape (plugin ID, the `volume_count` key and its template) is that of Weave
//! Scope's volume-count plugin. The counts come from the Docker engine's container
//! list, refreshed in the background so `GET /report` answers at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::ListContainersOptions;
use rescope_plugin::{
    DataType, MetadataTemplate, Plugin, PluginError, PluginServer, ReportBuilder, ServeError, Spec,
    TopologyKind,
};
use tracing::{info, warn};

pub const PLUGIN_ID: &str = "volume-count";
/// The `latest` key holding the count, as Scope's plugin named it.
pub const VOLUME_COUNT: &str = "volume_count";

/// Where and how the plugin runs.
#[derive(Debug, Clone)]
pub struct Config {
    pub plugins_root: PathBuf,
    /// An exact socket path instead of `<root>/volume-count/volume-count.sock`.
    pub socket: Option<PathBuf>,
    /// The Docker engine's Unix socket.
    pub docker_socket: PathBuf,
    /// How often the container list is read.
    pub interval: Duration,
}

/// The Docker engine's socket from a `DOCKER_HOST`-style value: `unix:///path` or a
/// plain path. Other schemes are not supported.
pub fn docker_socket(host: &str) -> Result<PathBuf, String> {
    if let Some(path) = host.strip_prefix("unix://") {
        Ok(PathBuf::from(path))
    } else if host.contains("://") {
        Err(format!(
            "unsupported Docker host {host:?}: only unix:// sockets are supported"
        ))
    } else {
        Ok(PathBuf::from(host))
    }
}

/// The latest counts, by full container ID, and why there are none if Docker failed.
#[derive(Debug, Default)]
pub struct Counts {
    state: Mutex<CountsState>,
}

#[derive(Debug, Default)]
struct CountsState {
    containers: BTreeMap<String, usize>,
    error: Option<String>,
}

impl Counts {
    /// Asks Docker for every container (running or not) and its mounts. On failure
    /// the counts are cleared (the plugin then reports no containers) and the reason
    /// is logged once, until Docker answers again.
    pub async fn refresh(&self, docker: &Docker, docker_socket: &Path) {
        let listed = docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await;
        let outcome = listed.map(|list| {
            list.into_iter()
                .filter_map(|c| Some((c.id?, c.mounts.map_or(0, |m| m.len()))))
                .collect::<BTreeMap<_, _>>()
        });
        self.record(outcome.map_err(|e| {
            format!(
                "cannot list containers from Docker at {}: {e}",
                docker_socket.display()
            )
        }));
    }

    /// Records the outcome of one refresh.
    pub fn record(&self, outcome: Result<BTreeMap<String, usize>, String>) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        match outcome {
            Ok(containers) => {
                if state.error.take().is_some() {
                    info!(containers = containers.len(), "Docker answers again");
                }
                state.containers = containers;
            }
            Err(e) => {
                if state.error.as_ref() != Some(&e) {
                    warn!(error = %e, "serving an empty report until Docker answers");
                }
                state.containers.clear();
                state.error = Some(e);
            }
        }
    }

    /// The counts by container ID.
    pub fn snapshot(&self) -> BTreeMap<String, usize> {
        self.state
            .lock()
            .map(|s| s.containers.clone())
            .unwrap_or_default()
    }

    /// Why the last refresh failed, if it did.
    pub fn error(&self) -> Option<String> {
        self.state.lock().ok().and_then(|s| s.error.clone())
    }
}

/// The plugin: one metadata value per container.
#[derive(Debug)]
pub struct VolumeCount {
    counts: Arc<Counts>,
}

impl VolumeCount {
    pub fn new(counts: Arc<Counts>) -> Self {
        VolumeCount { counts }
    }

    pub fn spec() -> Spec {
        Spec::new(PLUGIN_ID, "Volume count")
            .description("Shows how many volumes each container has mounted")
    }
}

impl Plugin for VolumeCount {
    fn report(&self, r: &mut ReportBuilder) -> Result<(), PluginError> {
        r.topology(TopologyKind::Container).metadata_template(
            MetadataTemplate::new(VOLUME_COUNT, "# Volumes")
                .data_type(DataType::Number)
                .priority(0.1),
        );
        for (id, count) in self.counts.snapshot() {
            r.container(&id).latest(VOLUME_COUNT, count.to_string());
        }
        Ok(())
    }
}

/// Serves the plugin until `shutdown` completes, refreshing the counts every
/// [`Config::interval`].
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let counts = Arc::new(Counts::default());
    let mut server = PluginServer::new(VolumeCount::spec(), VolumeCount::new(counts.clone()))
        .plugins_root(&config.plugins_root);
    if let Some(path) = &config.socket {
        server = server.socket_path(path);
    }
    let bound = server.bind()?;
    let refresher = tokio::spawn(refresh_loop(counts, config.docker_socket, config.interval));
    let served = bound.serve_until(shutdown).await;
    refresher.abort();
    served
}

async fn refresh_loop(counts: Arc<Counts>, socket: PathBuf, interval: Duration) {
    let path = socket.to_string_lossy().into_owned();
    let mut docker = None;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        // bollard checks that the socket exists when the client is made, so keep
        // trying until Docker is there.
        if docker.is_none() {
            match Docker::connect_with_unix(&path, 10, bollard::API_DEFAULT_VERSION) {
                Ok(d) => docker = Some(d),
                Err(e) => {
                    counts.record(Err(format!(
                        "cannot list containers from Docker at {}: {e}",
                        socket.display()
                    )));
                    continue;
                }
            }
        }
        if let Some(d) = &docker {
            counts.refresh(d, &socket).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn each_container_gets_its_count_under_scopes_key_and_template() {
        let counts = Arc::new(Counts::default());
        counts.record(Ok([(CID.to_string(), 2)].into()));
        let mut r = ReportBuilder::new();
        VolumeCount::new(counts).report(&mut r).expect("report");
        let report = r.into_report();
        let containers = &report[TopologyKind::Container];
        let node = &containers.nodes[format!("{CID};<container>").as_str()];
        assert_eq!(
            node.latest_value(VOLUME_COUNT).map(|v| v.as_str()),
            Some("2")
        );
        let template = containers
            .metadata_templates
            .get(VOLUME_COUNT)
            .expect("template");
        assert_eq!(
            (template.label.as_str(), template.from.as_str()),
            ("# Volumes", "latest")
        );
    }

    #[test]
    fn a_docker_failure_empties_the_report_and_a_recovery_fills_it() {
        let counts = Counts::default();
        counts.record(Ok([(CID.to_string(), 1)].into()));
        counts.record(Err("cannot list containers: connection refused".into()));
        assert!(counts.snapshot().is_empty());
        assert_eq!(
            counts.error().as_deref(),
            Some("cannot list containers: connection refused")
        );
        counts.record(Ok([(CID.to_string(), 3)].into()));
        assert_eq!(counts.snapshot().get(CID), Some(&3));
        assert_eq!(counts.error(), None);
    }

    #[test]
    fn docker_hosts_are_unix_sockets() {
        assert_eq!(
            docker_socket("unix:///var/run/docker.sock"),
            Ok(PathBuf::from("/var/run/docker.sock"))
        );
        assert_eq!(
            docker_socket("/tmp/d.sock"),
            Ok(PathBuf::from("/tmp/d.sock"))
        );
        assert!(docker_socket("tcp://10.0.0.1:2375").is_err());
    }
}
