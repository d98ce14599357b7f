//! The app's validated configuration.

use std::net::SocketAddr;
use std::time::Duration;

pub use rescope_report::secret::Secret;

/// HTTP Basic credentials required on every route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuth {
    pub user: String,
    pub password: Secret,
}

/// Everything the app needs to know, validated.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// Where to listen. The default, 127.0.0.1:4040, is reachable only from this host.
    pub listen: SocketAddr,
    /// How long a probe's reports count after they arrive (Scope: `app.window`, 15 s).
    pub window: Duration,
    pub basic_auth: Option<BasicAuth>,
    /// Token API clients may present instead of Basic credentials
    /// (`Authorization: Bearer …`).
    pub api_token: Option<Secret>,
    /// Serve HTTPS with this configuration instead of plain HTTP.
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// Token probes must present (`Authorization: Scope-Probe token=…`); none means
    /// any probe may publish.
    pub probe_token: Option<Secret>,
    /// Largest accepted request body, compressed.
    pub max_body_bytes: usize,
    /// Largest accepted report once decompressed.
    pub max_report_bytes: usize,
    /// Allow controls that run commands (shells, exec, attach) even though the app is
    /// reachable from other machines without authentication.
    pub allow_remote_exec: bool,
    /// Refuse every control (container actions, shells, plugin controls) and leave
    /// them out of node details, whoever asks.
    pub read_only: bool,
    /// This app's random ID (probes deduplicate apps by it).
    pub app_id: String,
    pub hostname: String,
    pub version: String,
}

impl AppConfig {
    pub fn new(listen: SocketAddr) -> Self {
        AppConfig {
            listen,
            window: Duration::from_secs(15),
            basic_auth: None,
            api_token: None,
            tls: None,
            probe_token: None,
            max_body_bytes: 64 << 20,
            max_report_bytes: 512 << 20,
            allow_remote_exec: false,
            read_only: false,
            app_id: format!("{:x}", rand::random::<u64>() >> 1),
            hostname: String::new(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    /// Whether people on other machines can reach the app without credentials.
    pub fn exposed_without_auth(&self) -> bool {
        !self.listen.ip().is_loopback() && !self.requires_credentials()
    }

    /// Whether every route but the probes' needs Basic credentials or the API token.
    pub fn requires_credentials(&self) -> bool {
        self.basic_auth.is_some() || self.api_token.is_some()
    }
}
