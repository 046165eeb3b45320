//! The web console: a few static files, embedded in the binary at compile time (no Node.js
//! to build it), served at `/` and `/console/...` with a strict Content-Security-Policy (no
//! inline script or style, nothing loaded from elsewhere). The page itself is public; every
//! call it makes to `/v1` carries the bearer token the user gave, and the server checks it
//! as any other request's.

use axum::extract::Path;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use crate::ApiError;

/// One file of the console, embedded: its path below `/console/` and its bytes.
macro_rules! assets {
    ($($path:literal),* $(,)?) => {
        [$(($path, include_bytes!(concat!("../console/", $path)) as &[u8])),*]
    };
}

/// The console's files. A file added to `console/` is added here too (a test checks).
const ASSETS: [(&str, &[u8]); 18] = assets![
    "index.html",
    "style.css",
    "favicon.svg",
    "js/app.js",
    "js/lib.js",
    "js/charts.js",
    "js/prom.js",
    "js/streams.js",
    "js/stream.js",
    "js/tail.js",
    "js/consumers.js",
    "js/jobs.js",
    "js/server.js",
    "vendor/uplot/uPlot.iife.min.js",
    "vendor/uplot/uPlot.min.css",
    "vendor/uplot/LICENSE",
    "vendor/uplot/VERSION",
    "vendor/uplot/SHA256SUMS",
];

/// The content type of a console file, by its extension.
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "text/plain; charset=utf-8",
    }
}

/// Scripts, styles, images and API calls from this server only; no inline code, no frames,
/// no forms posted elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The console's routes: `/` (the page), `/console` (to `/console/`) and its files.
pub(crate) fn router<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    axum::Router::new()
        .route("/", get(|headers: HeaderMap| async move { serve("index.html", &headers) }))
        .route("/console", get(|| async { Redirect::permanent("/console/") }))
        .route(
            "/console/",
            get(|headers: HeaderMap| async move { serve("index.html", &headers) }),
        )
        .route(
            "/console/{*path}",
            get(|Path(path): Path<String>, headers: HeaderMap| async move {
                serve(&path, &headers)
            }),
        )
}

/// The ETag of the file at `index` of [`ASSETS`]: the start of its SHA-256, computed once.
fn etag(index: usize) -> &'static str {
    static TAGS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|(_, bytes)| {
                let digest = Sha256::digest(bytes);
                let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
                format!("\"{hex}\"")
            })
            .collect()
    });
    &tags[index]
}

/// One file, or a 304 when the browser holds it already, or the JSON 404 of any unknown
/// route.
fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(index) = ASSETS.iter().position(|(name, _)| *name == path) else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "no_route",
            "no such file in the console",
        )
        .into_response();
    };
    let (bytes, tag) = (ASSETS[index].1, etag(index));
    let fresh = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(CONTENT_TYPE, content_type(path))], bytes).into_response()
    };
    let h = response.headers_mut();
    for (name, value) in [
        (CONTENT_SECURITY_POLICY, CSP),
        (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (REFERRER_POLICY, "no-referrer"),
        // Names are not hashed (there is no build step): the browser asks again each time.
        (CACHE_CONTROL, "no-cache"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    if let Ok(value) = HeaderValue::from_str(tag) {
        h.insert(ETAG, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file in `console/` is served, and nothing else.
    #[test]
    fn every_file_is_served() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
        let mut on_disk = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("console directory") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    let relative = path.strip_prefix(&root).expect("below the root");
                    on_disk.push(relative.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        on_disk.sort();
        let mut served: Vec<String> = ASSETS.iter().map(|(p, _)| (*p).to_owned()).collect();
        served.sort();
        assert_eq!(on_disk, served);
    }

    /// The whole console stays small: it loads at once on loopback.
    #[test]
    fn the_console_is_small() {
        let total: usize = ASSETS.iter().map(|(_, b)| b.len()).sum();
        assert!(total < 150 * 1024, "{total} bytes");
    }

    /// The vendored charting library is the one `scripts/vendor-uplot.sh` fetched: a hand
    /// edit of it fails here.
    #[test]
    fn vendored_files_match_their_sums() {
        let file = |name: &str| {
            ASSETS
                .iter()
                .find(|(p, _)| *p == format!("vendor/uplot/{name}"))
                .map(|(_, b)| *b)
                .expect("a vendored file")
        };
        let sums = String::from_utf8_lossy(file("SHA256SUMS")).into_owned();
        let mut checked = 0;
        for line in sums.lines() {
            let (sum, name) = line.split_once("  ").expect("SUM  NAME");
            let actual: String = Sha256::digest(file(name))
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(actual, sum, "{name}");
            checked += 1;
        }
        assert_eq!(checked, 4);
    }

    #[test]
    fn files_carry_their_headers_and_answer_304_when_unchanged() {
        let response = serve("js/app.js", &HeaderMap::new());
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        assert_eq!(headers[CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert!(headers[CONTENT_SECURITY_POLICY]
            .to_str()
            .is_ok_and(|csp| csp.contains("script-src 'self'")));
        let tag = headers[ETAG].clone();
        let mut again = HeaderMap::new();
        again.insert(IF_NONE_MATCH, tag);
        assert_eq!(
            serve("js/app.js", &again).status(),
            StatusCode::NOT_MODIFIED
        );
        assert_eq!(
            serve("../Cargo.toml", &HeaderMap::new()).status(),
            StatusCode::NOT_FOUND
        );
    }
}
