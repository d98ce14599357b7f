//! The web UI, built by `npm run build` in `web/` into `web/dist` and embedded into the
//! binary. Debug builds read the files from disk, so a rebuilt UI shows on reload;
//! release builds carry them inside. When the UI was never built, `/` says how to build
//! it and the API works as usual.
//!
//! `RESCOPE_UI_DIR=path/to/dist` makes any build serve the UI from that directory
//! instead, read at each request: a UI developer (or a benchmark) can then use a
//! release binary with a freshly built UI without rebuilding Rust.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Mutex, OnceLock};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "../../web/dist"]
#[allow_missing = true]
struct Assets;

/// Shown at `/` when the binary was built without the web UI.
const PLACEHOLDER: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Rescope</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:44em;margin:3em auto;padding:0 1em;color:#222}
code,pre{background:#f3f3f3;padding:.1em .3em;border-radius:3px}</style></head>
<body><h1>Rescope is running</h1>
<p>The probe and app are up, but this binary was built without the web UI. Build it
with Node 20 or newer, then rebuild Rescope (or just run <code>scripts/run.sh</code>,
which does both):</p>
<pre>cd web &amp;&amp; npm ci &amp;&amp; npm run build</pre>
<p>Meanwhile the Weave Scope compatible API answers:</p>
<ul>
<li><a href="api/topology">api/topology</a> &mdash; the views and their node counts</li>
<li><a href="api/topology/hosts">api/topology/hosts</a>, <a href="api/topology/processes">processes</a>,
<a href="api/topology/containers">containers</a></li>
<li><a href="api/probes">api/probes</a> &mdash; connected probes</li>
<li><a href="api/report">api/report</a> &mdash; the merged report</li>
</ul>
</body></html>
"#;

/// The environment variable naming a directory to serve the UI from.
pub const UI_DIR_ENV: &str = "RESCOPE_UI_DIR";

/// The directory named by `RESCOPE_UI_DIR`, read once per process.
fn ui_dir() -> Option<&'static std::path::Path> {
    static DIR: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        std::env::var_os(UI_DIR_ENV)
            .filter(|d| !d.is_empty())
            .map(std::path::PathBuf::from)
    })
    .as_deref()
}

/// One UI file by its path relative to the UI's root (already checked for `..`).
fn asset(path: &str) -> Option<rust_embed::EmbeddedFile> {
    asset_from(ui_dir(), path)
}

fn asset_from(dir: Option<&std::path::Path>, path: &str) -> Option<rust_embed::EmbeddedFile> {
    match dir {
        Some(dir) => rust_embed::utils::read_file_from_fs(&dir.join(path)).ok(),
        None => Assets::get(path),
    }
}

/// Whether this binary can serve the web UI.
pub fn available() -> bool {
    asset("index.html").is_some()
}

/// Compresses the UI's files on a background thread, once per process, so the first
/// browser to load the UI does not wait for it (the bundle is close to a megabyte).
pub fn warm_in_background() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let _ = std::thread::Builder::new()
            .name("ui-gzip".into())
            .spawn(|| {
                // Files on disk may change under us: they are compressed on demand.
                if ui_dir().is_some() {
                    return;
                }
                for path in Assets::iter() {
                    if let Some(file) = Assets::get(&path)
                        && compressible(file.metadata.mimetype())
                    {
                        gzipped(&etag_of(&file), &file.data);
                    }
                }
            });
    });
}

fn etag_of(file: &rust_embed::EmbeddedFile) -> String {
    format!("\"{}\"", hex(&file.metadata.sha256_hash()[..16]))
}

/// Serves `/` and the UI's files; anything else is Scope's plain 404.
pub async fn serve(uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    if path.starts_with("api/") || path.contains("..") {
        return not_found();
    }
    let Some(file) = asset(path) else {
        if path == "index.html" {
            return (
                [
                    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                PLACEHOLDER,
            )
                .into_response();
        }
        return not_found();
    };
    let etag = etag_of(&file);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    // Vite names bundles by content hash, so they never change; the page itself must be
    // revalidated to pick up a new build.
    let cache = if path.starts_with("assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mime = file.metadata.mimetype();
    let gzip = compressible(mime) && accepts_gzip(&headers);
    let mut res = if gzip {
        Response::new(Body::from(gzipped(&etag, &file.data)))
    } else {
        Response::new(Body::from(file.data.into_owned()))
    };
    let h = res.headers_mut();
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if let Ok(v) = HeaderValue::from_str(mime) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

fn compressible(mime: &str) -> bool {
    mime.starts_with("text/")
        || mime.contains("javascript")
        || mime.contains("json")
        || mime.contains("svg")
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|e| {
            let mut parts = e.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| p.trim().replace(' ', "") == "q=0");
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

/// The gzip form of a file, made once per content version (keyed by its ETag).
fn gzipped(etag: &str, data: &[u8]) -> Bytes {
    static CACHE: OnceLock<Mutex<HashMap<String, Bytes>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(hit) = cache.lock().ok().and_then(|c| c.get(etag).cloned()) {
        return hit;
    }
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let out = enc
        .write_all(data)
        .and_then(|()| enc.finish())
        .map(Bytes::from)
        .unwrap_or_else(|_| Bytes::copy_from_slice(data));
    if let Ok(mut c) = cache.lock() {
        c.insert(etag.to_owned(), out.clone());
    }
    out
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(path: &str, headers: HeaderMap) -> Response {
        serve(path.parse().expect("uri"), headers).await
    }

    async fn body(res: Response) -> String {
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .expect("body");
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[tokio::test]
    async fn the_root_serves_the_ui_or_says_how_to_build_it() {
        let res = get("/", HeaderMap::new()).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(
            res.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let html = body(res).await;
        if available() {
            assert!(html.contains("<div id=\"root\">"), "{html}");
        } else {
            assert!(html.contains("npm run build"), "{html}");
        }
    }

    #[tokio::test]
    async fn api_paths_and_escapes_are_not_files() {
        for path in [
            "/api/nothing",
            "/assets/../../Cargo.toml",
            "/no-such-file.js",
        ] {
            let res = get(path, HeaderMap::new()).await;
            assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
            assert_eq!(body(res).await, "404 page not found\n");
        }
    }

    #[test]
    fn a_ui_directory_replaces_the_embedded_files() {
        let dir = std::env::temp_dir().join(format!("rescope-ui-dir-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("assets")).unwrap();
        std::fs::write(dir.join("index.html"), "<p>from disk</p>").unwrap();
        std::fs::write(dir.join("assets/app.js"), "let x = 1;").unwrap();
        let page = asset_from(Some(&dir), "index.html").expect("the page");
        assert_eq!(&page.data[..], b"<p>from disk</p>");
        assert!(page.metadata.mimetype().starts_with("text/html"));
        let script = asset_from(Some(&dir), "assets/app.js").expect("the script");
        assert!(script.metadata.mimetype().contains("javascript"));
        assert!(asset_from(Some(&dir), "assets/missing.js").is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn built_assets_are_cached_and_revalidated() {
        if !available() {
            eprintln!("skipped: the web UI is not built (scripts/build-web.sh)");
            return;
        }
        let asset = Assets::iter()
            .find(|p| p.starts_with("assets/") && p.ends_with(".js"))
            .expect("a bundled script");
        let res = get(&format!("/{asset}"), HeaderMap::new()).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(
            res.headers()[header::CACHE_CONTROL]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
        let etag = res.headers()[header::ETAG].clone();
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, etag);
        let again = get(&format!("/{asset}"), headers).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);

        // Browsers that take gzip get it, and it unpacks to the same file.
        let plain = body(get(&format!("/{asset}"), HeaderMap::new()).await).await;
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip, deflate, br"),
        );
        let res = get(&format!("/{asset}"), headers).await;
        assert_eq!(res.headers()[header::CONTENT_ENCODING], "gzip");
        let packed = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        assert!(
            packed.len() < plain.len() / 2,
            "{} vs {}",
            packed.len(),
            plain.len()
        );
        let mut unpacked = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(&packed[..]),
            &mut unpacked,
        )
        .unwrap();
        assert_eq!(unpacked, plain);
    }
}
