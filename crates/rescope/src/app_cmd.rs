//! `rescope app`: flags → [`AppConfig`].

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{ArgAction, Args};
use rescope_app::AppConfig;
use rescope_app::config::{BasicAuth, Secret};
use rescope_probe::config::{default_hostname, parse_go_duration};

fn duration(s: &str) -> Result<Duration, String> {
    parse_go_duration(s)
}

#[derive(Debug, Clone, Args)]
pub struct AppArgs {
    /// Address to serve the UI and API on. The default is reachable only from this
    /// machine; `:4040` or `0.0.0.0:4040` listens on every interface.
    #[arg(
        long = "listen",
        visible_alias = "app.http.address",
        env = "RESCOPE_LISTEN",
        default_value = "127.0.0.1:4040"
    )]
    pub listen: String,

    /// How long reports count after they arrive (Go duration).
    #[arg(long = "window", visible_alias = "app.window", env = "RESCOPE_WINDOW", default_value = "15s", value_parser = duration)]
    pub window: Duration,

    /// Require HTTP Basic authentication on every route.
    #[arg(long = "basic-auth", visible_alias = "app.basicAuth", env = "RESCOPE_BASIC_AUTH", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true")]
    pub basic_auth: bool,

    /// Basic auth user name.
    #[arg(
        long = "basic-auth-user",
        visible_alias = "app.basicAuth.username",
        env = "RESCOPE_BASIC_AUTH_USER",
        default_value = "admin"
    )]
    pub basic_auth_user: String,

    /// Basic auth password (prefer --basic-auth-password-file or the environment).
    #[arg(
        long = "basic-auth-password",
        visible_alias = "app.basicAuth.password",
        env = "RESCOPE_BASIC_AUTH_PASSWORD",
        hide_env_values = true
    )]
    pub basic_auth_password: Option<String>,

    /// File holding the basic auth password.
    #[arg(
        long = "basic-auth-password-file",
        visible_alias = "app.basicAuth.password.filename",
        env = "RESCOPE_BASIC_AUTH_PASSWORD_FILE"
    )]
    pub basic_auth_password_file: Option<std::path::PathBuf>,

    /// Token API clients and scripts may present instead of Basic credentials
    /// (`Authorization: Bearer TOKEN`). Setting it makes every route need one of them.
    #[arg(long = "api-token", env = "RESCOPE_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,

    /// File holding the API token.
    #[arg(long = "api-token-file", env = "RESCOPE_API_TOKEN_FILE")]
    pub api_token_file: Option<std::path::PathBuf>,

    /// Serve HTTPS with this PEM certificate chain (needs --tls-key-file). Probes then
    /// publish to `https://HOST:PORT`.
    #[arg(
        long = "tls-cert-file",
        env = "RESCOPE_TLS_CERT_FILE",
        requires = "tls_key_file"
    )]
    pub tls_cert_file: Option<std::path::PathBuf>,

    /// The PEM private key of --tls-cert-file.
    #[arg(
        long = "tls-key-file",
        env = "RESCOPE_TLS_KEY_FILE",
        requires = "tls_cert_file"
    )]
    pub tls_key_file: Option<std::path::PathBuf>,

    /// Token probes must present to publish (`Authorization: Scope-Probe token=…`).
    #[arg(
        long = "probe-token",
        env = "RESCOPE_PROBE_TOKEN",
        hide_env_values = true
    )]
    pub probe_token: Option<String>,

    /// Allow shells and exec from the UI even when the app is reachable from other
    /// machines without authentication. Dangerous; prefer --basic-auth.
    #[arg(long = "allow-remote-exec", env = "RESCOPE_ALLOW_REMOTE_EXEC")]
    pub allow_remote_exec: bool,

    /// Turn every control off (container actions, shells, plugin controls): the app
    /// refuses them and node details show none. With `launch`, the built-in probe
    /// offers none either.
    #[arg(long = "read-only", env = "RESCOPE_READ_ONLY", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true")]
    pub read_only: bool,

    /// Accepted for compatibility with Scope's flag; Rescope does not drop large
    /// topologies.
    #[arg(
        long = "max-topology-nodes",
        visible_alias = "app.max-topology-nodes",
        hide = true
    )]
    pub max_topology_nodes: Option<u64>,
}

fn parse_listen(s: &str) -> Result<SocketAddr> {
    let s = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    s.to_socket_addrs()
        .with_context(|| format!("invalid listen address {s:?}"))?
        .next()
        .with_context(|| format!("listen address {s:?} resolves to nothing"))
}

impl AppArgs {
    pub fn into_config(self) -> Result<AppConfig> {
        let mut config = AppConfig::new(parse_listen(&self.listen)?);
        config.window = self.window;
        config.hostname = default_hostname();
        if self.basic_auth {
            let password = match (self.basic_auth_password, self.basic_auth_password_file) {
                (Some(p), _) => p,
                (None, Some(file)) => std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
                    .trim_end()
                    .to_string(),
                (None, None) => bail!(
                    "--basic-auth needs a password: --basic-auth-password-file FILE or RESCOPE_BASIC_AUTH_PASSWORD"
                ),
            };
            config.basic_auth = Some(BasicAuth {
                user: self.basic_auth_user,
                password: Secret(password),
            });
        }
        let api_token = match (self.api_token, self.api_token_file) {
            (Some(t), _) => Some(t),
            (None, Some(file)) => Some(
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
                    .trim()
                    .to_string(),
            ),
            (None, None) => None,
        };
        if api_token.as_ref().is_some_and(|t| t.is_empty()) {
            bail!("the API token is empty: give a non-empty --api-token or --api-token-file");
        }
        config.api_token = api_token.map(Secret);
        if let (Some(cert), Some(key)) = (self.tls_cert_file, self.tls_key_file) {
            let files = rescope_app::tls::TlsFiles { cert, key };
            config.tls = Some(files.server_config()?);
        }
        config.probe_token = self.probe_token.filter(|t| !t.is_empty()).map(Secret);
        config.allow_remote_exec = self.allow_remote_exec;
        config.read_only = self.read_only;
        Ok(config)
    }
}
