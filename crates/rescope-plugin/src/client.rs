//! Talks to a plugin the way the probe does, to test a plugin: `GET /report` with the
//! handshake query and `POST /control`, over the Unix socket, and checks the answer
//! with the probe's rules.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rescope_report::codec::{self, DecodeLimits};
use rescope_report::validate::{PluginCheck, Problem, Severity, ValidateOptions, validate};
use rescope_report::xfer::{ControlRequest, ControlResponse};
use rescope_report::{PluginSpec, Report};
use tokio::net::UnixStream;

/// Why a request to a plugin failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connecting to {path}: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP: {0}")]
    Http(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("plugin returned non-200 status code: {status}: {body}")]
    Status { status: u16, body: String },
    #[error("decoding error: {0}")]
    Decode(String),
}

/// Why [`wait_until_serving`] gave up.
#[derive(Debug, thiserror::Error)]
pub enum NotServing {
    #[error("the plugin exited ({0}) before accepting connections")]
    Exited(std::process::ExitStatus),
    #[error("nothing accepted connections on {path} within {waited:?}: {last}")]
    TimedOut {
        path: PathBuf,
        waited: Duration,
        #[source]
        last: std::io::Error,
    },
}

/// Waits until something accepts connections on `socket`, for a test that has just
/// started a plugin's binary. Give the plugin's process as `child` to stop waiting as
/// soon as it exits (a bad flag, a socket it may not create) instead of at the
/// deadline. Blocks the calling thread, trying every 20 ms.
pub fn wait_until_serving(
    socket: &Path,
    mut child: Option<&mut std::process::Child>,
    timeout: Duration,
) -> Result<(), NotServing> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let last = match std::os::unix::net::UnixStream::connect(socket) {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        if let Some(Ok(Some(status))) = child.as_deref_mut().map(std::process::Child::try_wait) {
            return Err(NotServing::Exited(status));
        }
        if std::time::Instant::now() >= deadline {
            return Err(NotServing::TimedOut {
                path: socket.to_path_buf(),
                waited: timeout,
                last,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A plugin's answer to `GET /report`, decoded and checked.
#[derive(Debug, Clone)]
pub struct ReportAnswer {
    pub report: Report,
    /// `Plugins` exactly as sent.
    pub specs: Vec<PluginSpec>,
    /// What `rescope report validate --plugin-id <id>` would say, errors first.
    pub problems: Vec<Problem>,
    pub body: Vec<u8>,
}

impl ReportAnswer {
    /// The problems the probe would reject the answer for.
    pub fn errors(&self) -> Vec<&Problem> {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .collect()
    }
}

/// A plugin's answer to `POST /control`.
#[derive(Debug, Clone)]
pub struct ControlAnswer {
    pub response: ControlResponse,
    /// The `shortcutReport`, decoded.
    pub shortcut: Option<Report>,
}

/// A client for one plugin socket.
#[derive(Debug, Clone)]
pub struct PluginClient {
    socket: PathBuf,
    timeout: Duration,
    probe_id: String,
}

impl PluginClient {
    /// A client with the probe's 500 ms deadline.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        PluginClient {
            socket: socket.into(),
            timeout: Duration::from_millis(500),
            probe_id: "test-probe".to_string(),
        }
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The plugin ID the probe derives from the socket's file name.
    pub fn plugin_id(&self) -> Option<String> {
        plugin_id_of(&self.socket)
    }

    /// `GET /report?api_version=1&probe_id=…`, decoded and validated.
    pub async fn report(&self) -> Result<ReportAnswer, ClientError> {
        let query = format!("/report?api_version=1&probe_id={}", self.probe_id);
        let body = self.send(hyper::Method::GET, &query, None).await?;
        let limits = DecodeLimits::default();
        let (report, _) =
            codec::decode_with(&body, limits).map_err(|e| ClientError::Decode(e.to_string()))?;
        let specs = codec::plugin_specs_as_sent(&body, limits)
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        let problems = validate(
            &report,
            &ValidateOptions {
                plugin: Some(PluginCheck {
                    specs: specs.clone(),
                    expected_id: self.plugin_id(),
                }),
            },
        );
        Ok(ReportAnswer {
            report,
            specs,
            problems,
            body,
        })
    }

    /// `POST /control` with `request` as the probe forwards it.
    pub async fn control(&self, request: &ControlRequest) -> Result<ControlAnswer, ClientError> {
        let query = format!("/control?api_version=1&probe_id={}", self.probe_id);
        let payload = serde_json::to_vec(request).map_err(|e| ClientError::Http(e.to_string()))?;
        let body = self
            .send(hyper::Method::POST, &query, Some(payload))
            .await?;
        let mut value: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| ClientError::Decode(e.to_string()))?;
        let shortcut = value
            .as_object_mut()
            .and_then(|o| o.remove("shortcutReport"))
            .filter(|v| !v.is_null());
        let response: ControlResponse =
            serde_json::from_value(value).map_err(|e| ClientError::Decode(e.to_string()))?;
        let shortcut = match shortcut {
            Some(v) => {
                let raw = serde_json::to_vec(&v).map_err(|e| ClientError::Decode(e.to_string()))?;
                Some(
                    codec::decode_plain(&raw, codec::Format::Json)
                        .map_err(|e| ClientError::Decode(e.to_string()))?,
                )
            }
            None => None,
        };
        Ok(ControlAnswer { response, shortcut })
    }

    /// One request; the body of a 200 answer.
    pub async fn send(
        &self,
        method: hyper::Method,
        path_and_query: &str,
        json_body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, ClientError> {
        tokio::time::timeout(
            self.timeout,
            exchange(&self.socket, method, path_and_query, json_body),
        )
        .await
        .map_err(|_| ClientError::Timeout(self.timeout))?
    }
}

fn plugin_id_of(socket: &Path) -> Option<String> {
    let name = socket.file_name()?.to_str()?;
    let id = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
    Some(id.to_string())
}

async fn exchange(
    socket: &Path,
    method: hyper::Method,
    path_and_query: &str,
    json_body: Option<Vec<u8>>,
) -> Result<Vec<u8>, ClientError> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|source| ClientError::Connect {
            path: socket.to_path_buf(),
            source,
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let connection = tokio::spawn(conn);
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(path_and_query)
        .header(hyper::header::HOST, "plugin");
    if json_body.is_some() {
        builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let request = builder
        .body(Full::new(Bytes::from(json_body.unwrap_or_default())))
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?
        .to_bytes()
        .to_vec();
    connection.abort();
    if status != hyper::StatusCode::OK {
        return Err(ClientError::Status {
            status: status.as_u16(),
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_for_a_socket_ends_when_it_listens_the_child_exits_or_time_runs_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("p.sock");

        let err = wait_until_serving(&socket, None, Duration::from_millis(50))
            .expect_err("nothing listens yet");
        assert!(matches!(err, NotServing::TimedOut { .. }), "{err}");
        assert!(err.to_string().contains("p.sock"), "{err}");

        let mut child = std::process::Command::new("false")
            .spawn()
            .expect("runs false");
        let err = wait_until_serving(&socket, Some(&mut child), Duration::from_secs(30))
            .expect_err("the child exits without listening");
        assert!(
            matches!(err, NotServing::Exited(s) if !s.success()),
            "{err}"
        );

        let _listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
        wait_until_serving(&socket, None, Duration::from_secs(30)).expect("listening");
    }
}
