//! Authentication. Without credentials configured every route is open (the default
//! listen address is loopback-only). With Basic credentials or an API token every
//! route needs one of them (`Authorization: Basic …` or `Authorization: Bearer …`);
//! with a probe token, the routes probes use accept it instead.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

use crate::api::{ApiError, AppState};

/// Compares without an early exit, so timing does not reveal how much matched.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Routes a probe calls: the handshake, publishing, its control and pipe sockets.
fn probe_route(method: &Method, path: &str) -> bool {
    path == "/api"
        || (method == Method::POST && path == "/api/report")
        || path == "/api/control/ws"
        || (path.starts_with("/api/pipe/") && path.ends_with("/probe"))
        || (method == Method::DELETE && path.starts_with("/api/pipe/"))
}

pub async fn require(State(s): State<AppState>, request: Request, next: Next) -> Response {
    let config = &s.config;
    if !config.requires_credentials() && config.probe_token.is_none() {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let basic_ok = config.basic_auth.as_ref().is_some_and(|b| {
        given
            .strip_prefix("Basic ")
            .and_then(|enc| {
                base64::engine::general_purpose::STANDARD
                    .decode(enc.trim())
                    .ok()
            })
            .is_some_and(|creds| {
                same(
                    &creds,
                    format!("{}:{}", b.user, b.password.expose()).as_bytes(),
                )
            })
    });
    let bearer_ok = config.api_token.as_ref().is_some_and(|t| {
        given
            .strip_prefix("Bearer ")
            .is_some_and(|g| same(g.trim().as_bytes(), t.expose().as_bytes()))
    });
    let user_ok = basic_ok || bearer_ok;
    let token_ok = config.probe_token.as_ref().is_some_and(|t| {
        given
            .strip_prefix("Scope-Probe token=")
            .is_some_and(|g| same(g.as_bytes(), t.expose().as_bytes()))
    });
    let allowed = if probe_route(request.method(), request.uri().path()) {
        user_ok || token_ok || (!config.requires_credentials() && config.probe_token.is_none())
    } else {
        !config.requires_credentials() || user_ok
    };
    if allowed {
        return next.run(request).await;
    }
    let mut response =
        ApiError(StatusCode::UNAUTHORIZED, "authentication required".into()).into_response();
    if config.basic_auth.is_some() {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"rescope\""),
        );
    }
    response
}
