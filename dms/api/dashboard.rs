//! `GET /` and `GET /assets/{file}`: the dashboard, one page compiled into the binary.
//!
//! The page (`dashboard/index.html`, `app.js`, `app.css`) and the vendored TradingView
//! Lightweight Charts build (`dashboard/vendor/`, Apache-2.0, with its LICENSE and NOTICE;
//! version and origin in `dashboard/vendor/README.md`) are `include_bytes!`d, so running DMS
//! needs no build step and the page makes no request outside this server. It holds no data:
//! it reads the API from the browser, with the token the user gives it when the API answers
//! 401 or 403, so `/` and `/assets/*` are open like `/health` (see [`is_public`]).
//!
//! Asset URLs in the page carry a hash of the asset's bytes (`/assets/app.js?v=…`), so assets
//! are served with a year-long immutable cache lifetime and a new binary is still picked up at
//! once; the page itself is `no-cache`. The page is served with a Content-Security-Policy that
//! allows only this origin (inline styles are allowed because the chart library's attribution
//! logo injects one; inline scripts are not).

use std::sync::LazyLock;

use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// A file the page loads.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("dashboard/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("dashboard/app.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("dashboard/favicon.svg"),
    },
    Asset {
        name: "lightweight-charts.standalone.production.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("dashboard/vendor/lightweight-charts.standalone.production.js"),
    },
    Asset {
        name: "lightweight-charts-LICENSE.txt",
        content_type: "text/plain; charset=utf-8",
        body: include_bytes!("dashboard/vendor/LICENSE"),
    },
    Asset {
        name: "lightweight-charts-NOTICE.txt",
        content_type: "text/plain; charset=utf-8",
        body: include_bytes!("dashboard/vendor/NOTICE"),
    },
];

const INDEX: &str = include_str!("dashboard/index.html");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// Whether a request is for the page or its assets, which need no token: they hold no data.
pub fn is_public(method: &Method, path: &str) -> bool {
    matches!(*method, Method::GET | Method::HEAD) && (path == "/" || path.starts_with("/assets/"))
}

/// A short hash of an asset's bytes: its version in URLs and its ETag.
fn version(body: &[u8]) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(body))
}

/// The page with every asset URL versioned by its hash.
static PAGE: LazyLock<String> = LazyLock::new(|| {
    ASSETS.iter().fold(INDEX.to_string(), |page, a| {
        page.replace(
            &format!("\"/assets/{}\"", a.name),
            &format!("\"/assets/{}?v={}\"", a.name, version(a.body)),
        )
    })
});

/// The dashboard page.
#[utoipa::path(
    get,
    path = "/",
    tag = "dashboard",
    responses(
        (status = 200, description = "The dashboard page (it reads the API from the browser)", content_type = "text/html", body = String),
    ),
)]
pub async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        PAGE.as_str(),
    )
        .into_response()
}

/// A file of the dashboard: its script, style sheet, icon, the chart library and its licence.
#[utoipa::path(
    get,
    path = "/assets/{file}",
    tag = "dashboard",
    params(("file" = String, Path, description = "app.js, app.css, favicon.svg, \
        lightweight-charts.standalone.production.js, lightweight-charts-LICENSE.txt or \
        lightweight-charts-NOTICE.txt")),
    responses(
        (status = 200, description = "The file, cacheable for a year (its URL in the page carries its hash)",
            content((String = "text/javascript"), (String = "text/css"), (String = "image/svg+xml"), (String = "text/plain"))),
        (status = 304, description = "Not modified (`If-None-Match` named its ETag)"),
        (status = 400, description = "Bad file name", body = super::error::ErrorBody),
        (status = 404, description = "No such file", body = super::error::ErrorBody),
    ),
)]
pub async fn asset(
    file: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path(file) = file?;
    let asset = ASSETS
        .iter()
        .find(|a| a.name == file)
        .ok_or_else(|| ApiError::NotFound(format!("no dashboard asset named {file:?}")))?;
    let etag = format!("\"{}\"", version(asset.body));
    let cache = [
        (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    let matches = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == etag || t.trim() == "*");
    let etag = HeaderValue::from_str(&etag).expect("a hex ETag is a valid header value");
    if matches {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)], cache).into_response());
    }
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            (header::ETAG, etag),
        ],
        cache,
        asset.body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_the_page_names_is_served_and_versioned() {
        for a in ASSETS.iter().filter(|a| !a.name.ends_with(".txt")) {
            let url = format!("\"/assets/{}?v={}\"", a.name, version(a.body));
            assert!(PAGE.contains(&url), "the page does not load {url}");
        }
        assert!(
            !PAGE.contains("\"/assets/app.js\""),
            "an asset URL was left without its version"
        );
    }

    #[test]
    fn the_page_script_never_parses_text_as_html() {
        // API text (symbols, messages) must reach the page as text nodes only.
        let js = std::str::from_utf8(ASSETS[0].body).unwrap();
        assert_eq!(ASSETS[0].name, "app.js");
        for sink in [
            ".innerHTML",
            ".outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!js.contains(sink), "app.js uses {sink}");
        }
    }

    #[test]
    fn only_reads_of_the_page_and_its_assets_are_public() {
        assert!(is_public(&Method::GET, "/"));
        assert!(is_public(&Method::HEAD, "/assets/app.js"));
        assert!(!is_public(&Method::POST, "/"));
        assert!(!is_public(&Method::GET, "/api/v1/series"));
        assert!(!is_public(&Method::GET, "/openapi.json"));
    }
}
