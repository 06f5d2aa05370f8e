//! The page's own files, built into the binary: nothing is loaded from another host, so
//! it works offline. Its Content-Security-Policy allows only this origin, and no inline
//! script.

use bytes::Bytes;
use hyper::{header, Method, Request, Response, StatusCode};

use super::{full, ResponseBody};

/// A file of the page.
pub struct Asset {
    body: &'static str,
    mime: &'static str,
}

const INDEX: Asset = Asset {
    body: include_str!("page/index.html"),
    mime: "text/html; charset=utf-8",
};
const SCRIPT: Asset = Asset {
    body: include_str!("page/app.js"),
    mime: "text/javascript; charset=utf-8",
};
const STYLE: Asset = Asset {
    body: include_str!("page/app.css"),
    mime: "text/css; charset=utf-8",
};
const ICON: Asset = Asset {
    body: include_str!("page/favicon.svg"),
    mime: "image/svg+xml",
};

const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; media-src 'self'; connect-src 'self'; form-action 'self'; \
    base-uri 'none'; frame-ancestors 'none'";

/// The asset at `path`, if it is one of the page's.
pub fn asset(path: &str) -> Option<&'static Asset> {
    match path {
        "/" | "/index.html" => Some(&INDEX),
        "/app.js" => Some(&SCRIPT),
        "/app.css" => Some(&STYLE),
        "/favicon.svg" | "/favicon.ico" => Some(&ICON),
        _ => None,
    }
}

/// Serves an asset, revalidated by ETag so a new binary's page is picked up at once.
pub fn serve<B>(asset: &Asset, req: &Request<B>) -> Response<ResponseBody> {
    let tag = format!(
        "\"{}\"",
        &blake3::hash(asset.body.as_bytes()).to_hex()[..16]
    );
    let mut res = Response::new(full(Bytes::new()));
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        *res.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        res.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return res;
    }
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(asset.mime),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("same-origin"),
    );
    if let Ok(v) = header::HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    if super::tag_matches(req.headers(), header::IF_NONE_MATCH, &tag) {
        *res.status_mut() = StatusCode::NOT_MODIFIED;
    } else if req.method() == Method::GET {
        *res.body_mut() = full(asset.body);
    }
    res
}
