//! The dashboard: every file of `web/` the page needs, embedded in the binary
//! at build time, served at the evaluator's `/` (Cube let unknown paths fall
//! through to static files). Nothing is read from disk or the network at run
//! time.

use warp::Filter;
use warp::Reply;
use warp::http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};

/// `(path, content type, body)` of each served file.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../../web/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../web/app.css"),
    ),
    (
        "vendor/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/vendor/uPlot.iife.min.js"),
    ),
    (
        "vendor/uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../../web/vendor/uPlot.min.css"),
    ),
    (
        "vendor/uPlot.LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("../../web/vendor/uPlot.LICENSE"),
    ),
];

/// The embedded file at `path` (`/` is `index.html`).
pub fn lookup(path: &str) -> Option<(&'static str, &'static [u8])> {
    let path = path.trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    FILES
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, ct, body)| (*ct, *body))
}

/// GET and HEAD of the dashboard's files; anything else is not found here.
pub fn routes() -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone
{
    warp::get()
        .or(warp::head())
        .unify()
        .and(warp::path::full())
        .and_then(|full: warp::path::FullPath| async move {
            match lookup(full.as_str()) {
                Some((content_type, body)) => {
                    let mut r = body.into_response();
                    let h = r.headers_mut();
                    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
                    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                    Ok(r)
                }
                None => Err(warp::reject::not_found()),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_the_page_and_every_asset_it_names_is_served() {
        let (ct, page) = lookup("/").expect("index");
        assert!(ct.starts_with("text/html"));
        let page = std::str::from_utf8(page).expect("utf-8");
        for asset in [
            "vendor/uPlot.min.css",
            "app.css",
            "vendor/uPlot.iife.min.js",
            "app.js",
        ] {
            assert!(page.contains(asset), "{asset} not named by the page");
            assert!(lookup(asset).is_some(), "{asset} not served");
        }
        assert!(lookup("/nope.js").is_none());
        assert!(lookup("/../Cargo.toml").is_none());
    }
}
