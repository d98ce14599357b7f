//! HTTP/1.1 over a Unix socket, as plugins speak it: one request per connection, a
//! deadline for the whole exchange, and a cap on the body enforced while reading.

use std::path::Path;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

/// Why a plugin request failed. The messages are the status texts plugin authors see.
#[derive(Debug, thiserror::Error)]
pub enum UnixHttpError {
    #[error("dial unix {path}: {source}")]
    Dial {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Http(String),
    #[error("plugin returned non-200 status code: {0}")]
    Status(String),
    /// Scope's fixed wording, whatever the configured limit.
    #[error("response must be shorter than 50MB")]
    TooLarge,
}

/// A request to a plugin: method, path with query, and an optional JSON body.
#[derive(Debug, Clone)]
pub struct PluginRequest<'a> {
    pub method: hyper::Method,
    pub path_and_query: &'a str,
    pub json_body: Option<Vec<u8>>,
}

/// Sends one request to the socket at `path` and returns the body of a 200 answer.
pub async fn request(
    path: &Path,
    req: PluginRequest<'_>,
    timeout: Duration,
    max_body: usize,
) -> Result<Bytes, UnixHttpError> {
    tokio::time::timeout(timeout, exchange(path, req, max_body))
        .await
        .map_err(|_| UnixHttpError::Timeout(timeout))?
}

async fn exchange(
    path: &Path,
    req: PluginRequest<'_>,
    max_body: usize,
) -> Result<Bytes, UnixHttpError> {
    let stream = UnixStream::connect(path)
        .await
        .map_err(|source| UnixHttpError::Dial {
            path: path.display().to_string(),
            source,
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| UnixHttpError::Http(e.to_string()))?;
    let connection = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut builder = hyper::Request::builder()
        .method(req.method)
        // Origin form ("GET /report?…") with "Host: plugin", as Scope sends it; small
        // plugin servers (Python's http.server) do not understand the absolute form.
        .uri(req.path_and_query)
        .header(hyper::header::HOST, "plugin");
    let body = match req.json_body {
        Some(b) => {
            builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
            Full::new(Bytes::from(b))
        }
        None => Full::new(Bytes::new()),
    };
    let request = builder
        .body(body)
        .map_err(|e| UnixHttpError::Http(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| UnixHttpError::Http(e.to_string()))?;
    let status = response.status();
    if status != hyper::StatusCode::OK {
        connection.abort();
        return Err(UnixHttpError::Status(format!(
            "{} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )));
    }
    let collected = Limited::new(response.into_body(), max_body).collect().await;
    connection.abort();
    match collected {
        Ok(body) => Ok(body.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(UnixHttpError::TooLarge),
        Err(e) => Err(UnixHttpError::Http(e.to_string())),
    }
}
