//! The probe's validated configuration.
//!
//! The `rescope` binary turns command-line flags (including Weave Scope's spellings)
//! and `RESCOPE_*` environment variables into a [`ProbeConfig`]; everything in this
//! crate reads only this struct.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use rescope_report::secret::Secret;

/// Scope's default app port.
pub const DEFAULT_APP_PORT: u16 = 4040;
/// Scope's default plugin directory.
pub const DEFAULT_PLUGINS_ROOT: &str = "/var/run/scope/plugins";

/// An app to publish to, as given on the command line (protocol.md §5.4).
#[derive(Clone, PartialEq, Eq)]
pub struct AppTarget {
    /// `http` or `https`.
    pub scheme: String,
    /// Host name or IP literal, as given.
    pub host: String,
    pub port: u16,
    /// From `user:pass@host`: the user name replaces the probe token for this app.
    pub token_override: Option<Secret>,
}

impl AppTarget {
    /// Parses a target the way Scope's probe does: `foo` → `http://foo:4040`,
    /// `foo:443` → `https://foo:443`, `http://foo` → port 80, `https://foo` → 443,
    /// `user:pass@foo` → token `user`.
    pub fn parse(arg: &str) -> Result<Self, TargetError> {
        let bad = |why: &str| TargetError {
            target: arg.to_string(),
            reason: why.to_string(),
        };
        let (explicit_scheme, rest) = match arg.split_once("://") {
            Some((s, rest)) if s == "http" || s == "https" => (Some(s.to_string()), rest),
            Some((s, _)) => {
                return Err(bad(&format!(
                    "unsupported scheme {s:?} (use http or https)"
                )));
            }
            None => (None, arg),
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') {
            return Err(bad(
                "a path is not allowed; give scheme, host and port only",
            ));
        }
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (host, port) = split_host_port(hostport).map_err(|e| bad(&e))?;
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let (scheme, port) = match (explicit_scheme, port) {
            (Some(s), Some(p)) => (s, p),
            (Some(s), None) => {
                let p = if s == "https" { 443 } else { 80 };
                (s, p)
            }
            (None, Some(443)) => ("https".to_string(), 443),
            (None, Some(p)) => ("http".to_string(), p),
            (None, None) => ("http".to_string(), DEFAULT_APP_PORT),
        };
        let token_override = userinfo
            .map(|u| u.split_once(':').map_or(u, |(user, _)| user))
            .filter(|u| !u.is_empty())
            .map(|u| Secret(u.to_string()));
        Ok(AppTarget {
            scheme,
            host,
            port,
            token_override,
        })
    }

    /// `scheme://host:port`, with IPv6 literals bracketed.
    pub fn base_url(&self) -> String {
        if self.host.contains(':') {
            format!("{}://[{}]:{}", self.scheme, self.host, self.port)
        } else {
            format!("{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

fn split_host_port(s: &str) -> Result<(String, Option<u16>), String> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("unclosed '[' in IPv6 address")?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse::<u16>().map_err(|_| format!("bad port {p:?}"))?),
            None if after.is_empty() => None,
            None => return Err(format!("unexpected {after:?} after IPv6 address")),
        };
        return Ok((host.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => {
            let port = p.parse::<u16>().map_err(|_| format!("bad port {p:?}"))?;
            Ok((h.to_string(), Some(port)))
        }
        _ => Ok((s.to_string(), None)),
    }
}

impl fmt::Debug for AppTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.base_url())?;
        if self.token_override.is_some() {
            f.write_str(" (with its own token)")?;
        }
        Ok(())
    }
}

impl fmt::Display for AppTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base_url())
    }
}

/// A target that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid app address {target:?}: {reason}")]
pub struct TargetError {
    pub target: String,
    pub reason: String,
}

/// Everything the probe needs to know, validated.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// Apps to publish to. Empty with `publish_stdout` off means "nothing to do" and is
    /// rejected by the binary.
    pub targets: Vec<AppTarget>,
    /// Collect every this often (Scope: `probe.spy.interval`, 1 s).
    pub spy_interval: Duration,
    /// Publish every this often (`probe.publish.interval`, 3 s).
    pub publish_interval: Duration,
    /// Every N-th publish is a full report, deltas between (`probe.full-report-every`, 3).
    pub full_report_every: u32,
    /// Plugin socket directory; `None` disables plugins.
    pub plugins_root: Option<PathBuf>,
    /// Accept plugin sockets of any owner and in world-writable directories.
    pub plugins_allow_any_owner: bool,
    /// Offer no controls and open no control connection.
    pub no_controls: bool,
    /// Keep only argv[0] of command lines.
    pub omit_cmd_args: bool,
    /// Do not report container environment variables (default on).
    pub omit_env_vars: bool,
    /// Where procfs is mounted (`/proc`; tests point it at a fixture tree).
    pub proc_root: PathBuf,
    /// Report the process topology and attribute connections to processes.
    pub processes: bool,
    /// Use netfilter conntrack for short-lived and NAT'd connections.
    pub conntrack: bool,
    /// Follow TCP state changes with eBPF, so that a network namespace whose sockets
    /// changed is updated from the changes rather than dumped again (falls back to
    /// dumps when the kernel or permissions do not allow it).
    pub track_tcp_changes: bool,
    /// Docker integration.
    pub docker: bool,
    /// The Docker engine's Unix socket.
    pub docker_socket: String,
    /// Token sent as `Authorization: Scope-Probe token=…`.
    pub token: Secret,
    /// Also trust these PEM certificate authorities for `https://` apps.
    pub tls_ca_file: Option<PathBuf>,
    /// Accept any certificate from `https://` apps (Scope: `probe.insecure`).
    pub tls_insecure: bool,
    /// Print reports as JSON on stdout instead of publishing.
    pub publish_stdout: bool,
    /// Serve `/metrics` and `/debug/report` here.
    pub http_listen: Option<SocketAddr>,
    /// Host ID and name (`$SCOPE_HOSTNAME` or the OS host name).
    pub hostname: String,
    /// This probe's random ID, lowercase hex.
    pub probe_id: String,
    /// Version reported to apps.
    pub version: String,
}

impl ProbeConfig {
    /// Defaults as Scope's probe has them, for `hostname`, publishing to nothing.
    pub fn new(hostname: impl Into<String>) -> Self {
        ProbeConfig {
            targets: Vec::new(),
            spy_interval: Duration::from_secs(1),
            publish_interval: Duration::from_secs(3),
            full_report_every: 3,
            plugins_root: Some(PathBuf::from(DEFAULT_PLUGINS_ROOT)),
            plugins_allow_any_owner: false,
            no_controls: false,
            omit_cmd_args: false,
            omit_env_vars: true,
            proc_root: PathBuf::from("/proc"),
            processes: true,
            conntrack: true,
            track_tcp_changes: true,
            docker: true,
            docker_socket: "/var/run/docker.sock".to_string(),
            token: Secret::default(),
            tls_ca_file: None,
            tls_insecure: false,
            publish_stdout: false,
            http_listen: None,
            hostname: hostname.into(),
            probe_id: new_probe_id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    /// The TLS settings for `https://` apps: fails on an unusable CA file.
    pub fn client_tls(&self) -> Result<crate::tls::ClientTls, String> {
        crate::tls::ClientTls::new(self.tls_ca_file.as_deref(), self.tls_insecure)
    }

    /// The host's node ID, `<hostname>;<host>`.
    pub fn host_node_id(&self) -> String {
        rescope_report::id::host_id(&self.hostname)
    }
}

/// A random 63-bit ID in lowercase hex without padding, as Scope's probes use.
pub fn new_probe_id() -> String {
    format!("{:x}", rand::random::<u64>() >> 1)
}

/// `$SCOPE_HOSTNAME`, else the OS host name, else `(unknown)`.
pub fn default_hostname() -> String {
    std::env::var("SCOPE_HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
        })
        .unwrap_or_else(|| "(unknown)".to_string())
}

/// Parses a Go duration string (`1s`, `500ms`, `1m30s`, `1.5h`), as Scope's flags
/// take them. A bare number is read as seconds.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .map_err(|e| format!("invalid duration {s:?}: {e}"));
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!(
                "invalid duration {s:?}: expected a number at {rest:?}"
            ));
        }
        let value: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => {
                return Err(format!(
                    "invalid duration {s:?}: missing unit (ns, us, ms, s, m, h)"
                ));
            }
            u => return Err(format!("invalid duration {s:?}: unknown unit {u:?}")),
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_go_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_go_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_go_duration("3 parsecs").is_err());
        assert!(parse_go_duration("s").is_err());
        assert!(parse_go_duration("10").is_ok());
        assert!(
            parse_go_duration("5x")
                .unwrap_err()
                .contains("unknown unit")
        );
    }

    fn url(arg: &str) -> String {
        AppTarget::parse(arg)
            .map(|t| t.base_url())
            .unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn targets_parse_as_scope_parses_them() {
        assert_eq!(url("foo"), "http://foo:4040");
        assert_eq!(url("foo:80"), "http://foo:80");
        assert_eq!(url("foo:443"), "https://foo:443");
        assert_eq!(url("foo:1234"), "http://foo:1234");
        assert_eq!(url("http://foo"), "http://foo:80");
        assert_eq!(url("http://foo:443"), "http://foo:443");
        assert_eq!(url("https://foo"), "https://foo:443");
        assert_eq!(url("https://foo:80"), "https://foo:80");
        assert_eq!(url("127.0.0.1:4040"), "http://127.0.0.1:4040");
        assert_eq!(url("[::1]:4040"), "http://[::1]:4040");
        assert_eq!(url("http://127.0.0.1:4040/"), "http://127.0.0.1:4040");
        let t = AppTarget::parse("user:pass@foo").expect("valid");
        assert_eq!(t.base_url(), "http://foo:4040");
        assert_eq!(t.token_override.as_ref().map(Secret::expose), Some("user"));
    }

    #[test]
    fn bad_targets_say_why() {
        assert!(url("ftp://foo").contains("unsupported scheme"));
        assert!(url("foo:notaport").contains("bad port"));
        assert!(url("http://foo/api").contains("path is not allowed"));
        assert!(url(":4040").contains("no host"));
    }

    #[test]
    fn secrets_never_print() {
        let t = AppTarget::parse("sekrit@foo").expect("valid");
        assert!(!format!("{t:?}").contains("sekrit"));
        let mut c = ProbeConfig::new("h");
        c.token = Secret("sekrit".into());
        assert!(!format!("{c:?}").contains("sekrit"));
    }

    #[test]
    fn probe_ids_are_unpadded_lowercase_hex_below_2_63() {
        for _ in 0..100 {
            let id = new_probe_id();
            let v = u64::from_str_radix(&id, 16).expect("hex");
            assert!(v < 1 << 63);
            assert_eq!(id, id.to_lowercase());
        }
    }
}
