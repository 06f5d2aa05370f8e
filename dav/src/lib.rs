//! WebDAV over any [`Drive`], one drive per authenticated user.
//!
//! [`WebDav::handle`] answers one HTTP request: it checks HTTP Basic credentials with an
//! [`Authenticator`], then lets dav-server serve the user's drive through [`DriveFs`]. Each
//! user gets a lock system of their own, so locks never leak between users. Everything the
//! user may do is decided by the `Drive`; this crate only translates.

mod file;
mod fs;
mod moves;
mod propfind;
mod props;

use std::collections::HashMap;
use std::error::Error as StdError;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use bytes::Buf;
pub use dav_server::body::Body;
use dav_server::davpath::{DavPath, ParseError};
use dav_server::memls::MemLs;
use dav_server::DavHandler;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use torrentdrive_fs::Drive;

pub use crate::fs::{DavUser, DriveFs};
pub use crate::propfind::encode_path;

/// Why a sign-in was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// A wrong password and an unknown user alike.
    Credentials,
    /// Too many failed sign-ins from the client's address: try again later.
    TooManyAttempts { retry_after: Duration },
}

/// The client's address, put into the request's extensions by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// Checks a user name and password and hands out that user's drive.
#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// `client` is the address the request came from, when the server knows it.
    async fn authenticate(
        &self,
        user: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<Arc<dyn Drive>, Denied>;
}

/// The WebDAV front end.
pub struct WebDav {
    auth: Arc<dyn Authenticator>,
    prefix: String,
    handlers: Mutex<HashMap<String, UserHandler>>,
}

/// dav-server's handler for one user, and that user's lock system (PROPFIND reads it).
#[derive(Clone)]
struct UserHandler {
    dav: DavHandler<DavUser>,
    locks: Box<MemLs>,
}

/// Largest request body accepted for PROPFIND.
const MAX_PROPFIND_BODY: usize = 64 * 1024;

/// How many bytes a GET reads from the drive at a time.
const READ_BUF_SIZE: usize = 256 * 1024;

impl WebDav {
    /// Serves drives under `prefix` (e.g. `/dav`, without a trailing slash).
    pub fn new(auth: Arc<dyn Authenticator>, prefix: &str) -> WebDav {
        WebDav {
            auth,
            prefix: prefix.trim_end_matches('/').to_owned(),
            handlers: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets a user's locks, e.g. when the user is removed.
    pub fn forget_user(&self, user: &str) {
        self.handlers_lock().remove(user);
    }

    fn handlers_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, UserHandler>> {
        self.handlers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn handler_for(&self, user: &str) -> UserHandler {
        self.handlers_lock()
            .entry(user.to_owned())
            .or_insert_with(|| {
                // MemLs clones share their state: the handler and PROPFIND see the same locks.
                let locks = MemLs::new();
                let dav = DavHandler::builder()
                    .filesystem(Box::new(DriveFs))
                    .locksystem(locks.clone())
                    .strip_prefix(self.prefix.clone())
                    .autoindex(true)
                    .read_buf_size(READ_BUF_SIZE)
                    .build_handler();
                UserHandler { dav, locks }
            })
            .clone()
    }

    /// Answers one request.
    pub async fn handle<B, D, E>(&self, req: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = D, Error = E> + Send + 'static,
        D: Buf + Send + 'static,
        E: StdError + Send + Sync + 'static,
    {
        let rel_path = match self.relative_path(req.uri().path()) {
            Ok(p) => p,
            Err(status) => return status_response(status, "invalid path\n"),
        };
        let Some((user, password)) = basic_credentials(&req) else {
            return unauthorized();
        };
        let client = req.extensions().get::<ClientAddr>().map(|c| c.0);
        let drive = match self.auth.authenticate(&user, &password, client).await {
            Ok(drive) => drive,
            Err(Denied::Credentials) => {
                tracing::info!(user = %user, client = ?client, "WebDAV sign-in refused");
                return unauthorized();
            }
            Err(Denied::TooManyAttempts { retry_after }) => {
                tracing::info!(user = %user, client = ?client, "WebDAV sign-in refused: too many failures from this address");
                return too_many_attempts(retry_after);
            }
        };
        let handler = self.handler_for(&user);
        let creds = DavUser::new(user.clone(), drive);
        if req.method().as_str() == "PROPFIND" {
            return self.propfind(req, &rel_path, &creds, &handler).await;
        }
        if let Some(res) = moves::file_over_file(
            &req,
            &rel_path,
            &creds,
            handler.locks.as_ref(),
            &self.prefix,
        )
        .await
        {
            return res;
        }
        handler.dav.handle_guarded(req, user, creds).await
    }

    async fn propfind<B, D, E>(
        &self,
        req: Request<B>,
        path: &[u8],
        user: &DavUser,
        handler: &UserHandler,
    ) -> Response<Body>
    where
        B: hyper::body::Body<Data = D, Error = E> + Send + 'static,
        D: Buf + Send + 'static,
        E: StdError + Send + Sync + 'static,
    {
        let depth_one = match req
            .headers()
            .get("depth")
            .map(|v| v.to_str().map(str::trim))
        {
            Some(Ok("0")) => false,
            // A missing Depth means infinity (RFC 4918 9.1); like most servers, answer 1.
            Some(Ok("1")) | None => true,
            Some(Ok(d)) if d.eq_ignore_ascii_case("infinity") => return finite_depth_only(),
            _ => return status_response(StatusCode::BAD_REQUEST, "bad Depth header\n"),
        };
        let body = match Limited::new(req.into_body(), MAX_PROPFIND_BODY)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => return status_response(StatusCode::PAYLOAD_TOO_LARGE, "body too large\n"),
        };
        let Some(want) = propfind::parse_body(&body) else {
            return status_response(StatusCode::BAD_REQUEST, "malformed PROPFIND body\n");
        };
        let answer = propfind::Propfind {
            user,
            locks: handler.locks.as_ref(),
            prefix: &self.prefix,
        };
        answer.answer(path, depth_one, want).await
    }
}

impl WebDav {
    /// The decoded path below the prefix. Refuses paths that don't stay below the prefix
    /// once `.`, `..` and escapes are resolved (dav-server would answer 502 for some).
    fn relative_path(&self, path: &str) -> Result<Vec<u8>, StatusCode> {
        let full = match DavPath::new(path) {
            Err(ParseError::ForbiddenPath) => return Err(StatusCode::FORBIDDEN),
            Err(_) => return Err(StatusCode::BAD_REQUEST),
            Ok(p) => p,
        };
        match full.as_bytes().strip_prefix(self.prefix.as_bytes()) {
            Some([]) => Ok(b"/".to_vec()),
            Some(rest) if rest.starts_with(b"/") => Ok(rest.to_vec()),
            _ => Err(StatusCode::FORBIDDEN),
        }
    }
}

fn status_response(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut res = Response::new(Body::from(text));
    *res.status_mut() = status;
    res
}

/// The user name and password of an HTTP Basic `Authorization` header.
pub fn basic_credentials<B>(req: &Request<B>) -> Option<(String, String)> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn too_many_attempts(retry_after: Duration) -> Response<Body> {
    let mut res = Response::new(Body::from(
        "too many failed sign-ins from this address; try again later\n",
    ));
    *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    if let Ok(v) = http::HeaderValue::from_str(&retry_after.as_secs().max(1).to_string()) {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    res
}

fn unauthorized() -> Response<Body> {
    let mut res = Response::new(Body::from("authentication required\n"));
    *res.status_mut() = StatusCode::UNAUTHORIZED;
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Basic realm=\"torrentdrive\", charset=\"UTF-8\""),
    );
    res
}

/// RFC 4918 9.1: a server may refuse `Depth: infinity` with 403 and this precondition.
/// (dav-server answers 501, which clients take as "PROPFIND unsupported".)
fn finite_depth_only() -> Response<Body> {
    let mut res = Response::new(Body::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <D:error xmlns:D=\"DAV:\"><D:propfind-finite-depth/></D:error>\n",
    ));
    *res.status_mut() = StatusCode::FORBIDDEN;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml; charset=utf-8"),
    );
    res
}
