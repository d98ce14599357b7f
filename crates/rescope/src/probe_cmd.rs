//! `rescope probe`: flags → [`ProbeConfig`].
//!
//! Every flag has an idiomatic spelling (`--spy-interval`), Scope's spelling as an
//! alias (`--probe.spy.interval`, also with Go's single dash, see [`crate::cli`]), and
//! a `RESCOPE_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{ArgAction, Args};
use rescope_probe::config::{
    AppTarget, DEFAULT_PLUGINS_ROOT, ProbeConfig, Secret, default_hostname, parse_go_duration,
};

fn duration(s: &str) -> Result<Duration, String> {
    parse_go_duration(s)
}

#[derive(Debug, Clone, Args)]
pub struct ProbeArgs {
    /// Apps to publish to: `host`, `host:port`, `http(s)://host[:port]`, `token@host`
    /// (default 127.0.0.1:4040).
    #[arg(value_name = "APP_URL", env = "RESCOPE_APPS", value_delimiter = ',')]
    pub apps: Vec<String>,

    #[command(flatten)]
    pub options: ProbeOptions,
}

/// The probe's flags, shared by `rescope probe` and `rescope launch`.
#[derive(Debug, Clone, Args)]
pub struct ProbeOptions {
    /// How often to collect (Go duration, e.g. `1s`).
    #[arg(long = "spy-interval", visible_alias = "probe.spy.interval", env = "RESCOPE_SPY_INTERVAL", default_value = "1s", value_parser = duration)]
    pub spy_interval: Duration,

    /// How often to publish to the apps.
    #[arg(long = "publish-interval", visible_alias = "probe.publish.interval", env = "RESCOPE_PUBLISH_INTERVAL", default_value = "3s", value_parser = duration)]
    pub publish_interval: Duration,

    /// Every N-th publish is a full report, deltas in between.
    #[arg(
        long = "full-report-every",
        visible_alias = "probe.full-report-every",
        env = "RESCOPE_FULL_REPORT_EVERY",
        default_value_t = 3
    )]
    pub full_report_every: u32,

    /// Plugin socket directory; empty disables plugins.
    #[arg(long = "plugins-root", visible_alias = "probe.plugins.root", env = "RESCOPE_PLUGINS_ROOT", default_value = DEFAULT_PLUGINS_ROOT)]
    pub plugins_root: String,

    /// Accept plugin sockets owned by any user or inside world-writable directories.
    #[arg(
        long = "plugins-allow-any-owner",
        env = "RESCOPE_PLUGINS_ALLOW_ANY_OWNER"
    )]
    pub plugins_allow_any_owner: bool,

    /// Offer no controls (no shells, no container actions) and open no control channel.
    #[arg(long = "no-controls", visible_alias = "probe.no-controls", env = "RESCOPE_NO_CONTROLS", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true")]
    pub no_controls: bool,

    /// Report only the program name of command lines, not their arguments.
    #[arg(long = "omit-cmd-args", visible_alias = "probe.omit.cmd-args", env = "RESCOPE_OMIT_CMD_ARGS", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true")]
    pub omit_cmd_args: bool,

    /// Do not report container environment variables.
    #[arg(long = "omit-env-vars", visible_alias = "probe.omit.env-vars", env = "RESCOPE_OMIT_ENV_VARS", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value_t = true, default_missing_value = "true")]
    pub omit_env_vars: bool,

    /// Where procfs is mounted.
    #[arg(
        long = "proc-root",
        visible_alias = "probe.proc.root",
        env = "RESCOPE_PROC_ROOT",
        default_value = "/proc"
    )]
    pub proc_root: PathBuf,

    /// Report processes and attribute connections to them.
    #[arg(long = "processes", visible_alias = "probe.processes", env = "RESCOPE_PROCESSES", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value_t = true, default_missing_value = "true")]
    pub processes: bool,

    /// Use netfilter conntrack for short-lived and NAT'd connections.
    #[arg(long = "conntrack", visible_alias = "probe.conntrack", env = "RESCOPE_CONNTRACK", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value_t = true, default_missing_value = "true")]
    pub conntrack: bool,

    /// Follow TCP state changes with eBPF (tracepoint sock:inet_sock_set_state), so
    /// connections are updated from the changes instead of dumping every socket each
    /// tick; without BTF, root or a recent kernel, the probe dumps as before.
    #[arg(long = "track-tcp-changes", visible_alias = "probe.ebpf.connections", env = "RESCOPE_TRACK_TCP_CHANGES", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value_t = true, default_missing_value = "true")]
    pub track_tcp_changes: bool,

    /// Report Docker containers and images.
    #[arg(long = "docker", visible_alias = "probe.docker", env = "RESCOPE_DOCKER", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value_t = true, default_missing_value = "true")]
    pub docker: bool,

    /// The Docker engine's socket (`unix:///path` or a path).
    #[arg(
        long = "docker-host",
        visible_alias = "probe.docker.host",
        env = "DOCKER_HOST",
        default_value = "unix:///var/run/docker.sock"
    )]
    pub docker_host: String,

    /// Token to authenticate to the apps (`Authorization: Scope-Probe token=…`).
    #[arg(
        long = "token",
        visible_alias = "probe.token",
        visible_alias = "service-token",
        env = "RESCOPE_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,

    /// Also trust the certificate authorities in this PEM file for `https://` apps (an
    /// app serving a self-signed or private-CA certificate).
    #[arg(long = "tls-ca-file", env = "RESCOPE_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,

    /// Accept any certificate from `https://` apps. Reports and controls can then be
    /// read and changed by anyone on the network path; prefer --tls-ca-file.
    #[arg(long = "insecure", visible_alias = "probe.insecure", env = "RESCOPE_INSECURE", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true")]
    pub insecure: bool,

    /// Print reports as JSON on standard output instead of publishing.
    #[arg(long = "publish-stdout", visible_alias = "probe.publish.stdout", env = "RESCOPE_PUBLISH_STDOUT", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true")]
    pub publish_stdout: bool,

    /// Serve the probe's /metrics and /debug/report on this address (e.g. 127.0.0.1:4041).
    #[arg(
        long = "http-listen",
        visible_alias = "probe.http.listen",
        env = "RESCOPE_PROBE_HTTP_LISTEN"
    )]
    pub http_listen: Option<SocketAddr>,

    /// Host name to report instead of the OS's (Scope: $SCOPE_HOSTNAME).
    #[arg(long = "hostname", env = "SCOPE_HOSTNAME")]
    pub hostname: Option<String>,
}

impl ProbeArgs {
    /// Validates the flags into a configuration.
    pub fn into_config(self) -> Result<ProbeConfig> {
        self.options.into_config(self.apps)
    }
}

impl ProbeOptions {
    /// Validates the flags into a configuration publishing to `apps`.
    pub fn into_config(self, apps: Vec<String>) -> Result<ProbeConfig> {
        let hostname = self
            .hostname
            .filter(|h| !h.is_empty())
            .unwrap_or_else(default_hostname);
        if hostname.contains(';') {
            bail!("host name {hostname:?} contains ';', which node IDs use as a delimiter");
        }
        let mut config = ProbeConfig::new(hostname);
        let apps: Vec<String> = apps.into_iter().filter(|a| !a.trim().is_empty()).collect();
        config.targets = if apps.is_empty() && !self.publish_stdout {
            vec![AppTarget::parse("127.0.0.1:4040")?]
        } else {
            apps.iter()
                .map(|a| AppTarget::parse(a))
                .collect::<Result<_, _>>()?
        };
        if self.spy_interval.is_zero() || self.publish_interval.is_zero() {
            bail!("spy and publish intervals must be positive");
        }
        if self.full_report_every == 0 {
            bail!("--full-report-every must be at least 1");
        }
        config.spy_interval = self.spy_interval;
        config.publish_interval = self.publish_interval;
        config.full_report_every = self.full_report_every;
        config.plugins_root =
            (!self.plugins_root.is_empty()).then(|| PathBuf::from(self.plugins_root));
        config.plugins_allow_any_owner = self.plugins_allow_any_owner;
        config.no_controls = self.no_controls;
        config.omit_cmd_args = self.omit_cmd_args;
        config.omit_env_vars = self.omit_env_vars;
        config.proc_root = self.proc_root;
        config.processes = self.processes;
        config.conntrack = self.conntrack;
        config.track_tcp_changes = self.track_tcp_changes;
        config.docker = self.docker;
        config.docker_socket = self.docker_host.trim_start_matches("unix://").to_string();
        config.token = Secret(self.token.unwrap_or_default());
        config.tls_ca_file = self.tls_ca_file;
        config.tls_insecure = self.insecure;
        config.publish_stdout = self.publish_stdout;
        config.http_listen = self.http_listen;
        Ok(config)
    }
}
