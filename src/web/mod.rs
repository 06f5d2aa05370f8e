//! The web page at `/` and the JSON API under `/api/v1/` that it and scripts use. Handlers
//! work on the signed-in user's `Drive`, `/Add` and the token store: the same paths WebDAV
//! and the CLI take, so neither has policy of its own. `openapi.json` describes the API.
//!
//! Errors are `{"error": {"code", "message"}}`, with codes from `FsError::code`.
//!
//! Here: the router, errors and JSON, the page's sign-in. `auth`: who is asking; `files`
//! and `transfers`: their endpoints; `content`: file bodies with ranges; `page`: the page's
//! own files.

mod auth;
mod content;
mod files;
mod page;
mod transfers;

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use torrentdrive_fs::{split_path, Drive, FsError};

use self::auth::{Caller, Via};
use crate::drive::UserDrive;
use crate::signin::{Refused, SignInLimiter};
use crate::store::UserRec;
use crate::users::Users;

/// Largest JSON body accepted.
const MAX_JSON: usize = 64 << 10;
const OPENAPI: &str = include_str!("openapi.json");

/// Every response body of the web front end (and the server's, which carries WebDAV's).
pub type ResponseBody = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

/// A body of bytes already in hand.
pub fn full(data: impl Into<Bytes>) -> ResponseBody {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A failed API request: its status, stable code and message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl From<FsError> for ApiError {
    fn from(e: FsError) -> Self {
        // WebDAV's 405 for "exists" reads as "method not allowed" in an API: a conflict.
        let status = match e.http_status() {
            405 => StatusCode::CONFLICT,
            s => StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::from(FsError::from(e))
    }
}

type ApiResult = Result<Response<ResponseBody>, ApiError>;

fn json_response(status: StatusCode, value: &Value) -> Response<ResponseBody> {
    let mut res = Response::new(full(format!("{value}\n")));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    res
}

fn error_response(e: &ApiError) -> Response<ResponseBody> {
    let mut res = json_response(
        e.status,
        &json!({"error": {"code": e.code, "message": e.message}}),
    );
    // Not for a session that ended: the browser would pop up its own password prompt.
    if e.status == StatusCode::UNAUTHORIZED && e.code == "unauthorized" {
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"torrentdrive\""),
        );
    }
    res
}

/// Whether header `name` (If-None-Match, If-Range) names entity tag `tag`.
pub(crate) fn tag_matches(headers: &hyper::HeaderMap, name: header::HeaderName, tag: &str) -> bool {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"))
}

/// The query parameter `key`, percent-decoded.
pub(crate) fn query_param<B>(req: &Request<B>, key: &str) -> Option<String> {
    let query = req.uri().query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

async fn read_body(req: Request<Incoming>, limit: usize) -> Result<bytes::Bytes, ApiError> {
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(_) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is over {limit} bytes"),
        )),
    }
}

async fn read_json<T: for<'de> Deserialize<'de>>(req: Request<Incoming>) -> Result<T, ApiError> {
    let body = read_body(req, MAX_JSON).await?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_json", e.to_string()))
}

#[derive(Deserialize)]
struct PathBody {
    path: String,
}

#[derive(Deserialize)]
struct MoveBody {
    from: String,
    to: String,
}

#[derive(Deserialize)]
struct TokenBody {
    name: String,
}

#[derive(Deserialize)]
struct SignInBody {
    user: String,
    password: String,
}

/// The web page and the JSON API.
pub struct WebApi {
    users: Arc<Users>,
    limiter: Arc<SignInLimiter>,
    /// Served over TLS: session cookies are `Secure`.
    tls: bool,
}

impl WebApi {
    pub fn new(users: Arc<Users>, limiter: Arc<SignInLimiter>, tls: bool) -> WebApi {
        WebApi {
            users,
            limiter,
            tls,
        }
    }

    /// Whether `path` is the page's or the API's.
    pub fn serves(path: &str) -> bool {
        path == "/api/v1" || path.starts_with("/api/v1/") || page::asset(path).is_some()
    }

    /// Answers one request for the page or under `/api/v1/`.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        client: IpAddr,
    ) -> Result<Response<ResponseBody>, Infallible> {
        if let Some(asset) = page::asset(req.uri().path()) {
            return Ok(page::serve(asset, &req));
        }
        let result = self.route(req, client).await;
        Ok(result.unwrap_or_else(|e| error_response(&e)))
    }

    async fn route(&self, req: Request<Incoming>, client: IpAddr) -> ApiResult {
        let path = req.uri().path().to_owned();
        let rest = path.strip_prefix("/api/v1").unwrap_or_default().to_owned();
        let method = req.method().clone();
        if rest == "/openapi.json" && method == Method::GET {
            let mut res = Response::new(full(OPENAPI));
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            return Ok(res);
        }
        let known = [
            "/account",
            "/transfers",
            "/files",
            "/files/mkdir",
            "/files/move",
            "/files/content",
            "/tokens",
            "/session",
        ];
        let with_id = ["/transfers/", "/tokens/"];
        if !known.contains(&rest.as_str()) && !with_id.iter().any(|p| rest.starts_with(p)) {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "no_such_endpoint",
                format!("no endpoint {path}"),
            ));
        }
        if rest == "/session" && method == Method::POST {
            return self.sign_in(req, client).await;
        }
        // A stream ticket reads one file's content, nothing else.
        let content_path = match (rest.as_str(), &method) {
            ("/files/content", &Method::GET | &Method::HEAD) => query_param(&req, "path")
                .and_then(|p| split_path(&p).ok().map(|n| format!("/{}", n.join("/")))),
            _ => None,
        };
        let caller = self.caller(&req, client, content_path.as_deref()).await?;
        auth::check_csrf(&req, &caller)?;
        let user = caller.user.clone();
        let drive = self.users.storage().drive(&user);
        match (&method, rest.as_str()) {
            (&Method::GET, "/session") => session_info(&caller),
            (&Method::DELETE, "/session") => self.sign_out(&caller),
            (&Method::GET, "/account") => self.account(&user, &drive).await,
            (&Method::GET, "/transfers") => transfers::list(self.users.storage(), &user),
            (&Method::POST, "/transfers") => transfers::add(req, &drive).await,
            (&Method::DELETE, id) if id.starts_with("/transfers/") => {
                transfers::remove(&drive, &id["/transfers/".len()..]).await
            }
            (&Method::GET, "/files") => {
                let path = query_param(&req, "path").unwrap_or_else(|| "/".into());
                files::get(&drive, &user, &path).await
            }
            (&Method::GET | &Method::HEAD, "/files/content") => {
                let path = required_path(&req)?;
                content::get(&drive, &path, &req).await
            }
            (&Method::PUT, "/files/content") => {
                let path = required_path(&req)?;
                content::put(&drive, &path, req).await
            }
            (_, "/files/content") => Err(content::not_allowed(&method)),
            (&Method::DELETE, "/files") => {
                let path = required_path(&req)?;
                files::delete(&drive, &path).await
            }
            (&Method::POST, "/files/mkdir") => {
                let body: PathBody = read_json(req).await?;
                files::mkdir(&drive, &body.path).await
            }
            (&Method::POST, "/files/move") => {
                let body: MoveBody = read_json(req).await?;
                files::move_to(&drive, &body.from, &body.to).await
            }
            (&Method::GET, "/tokens") => {
                let list = crate::tokens::list(self.users.storage().store(), user.id)?;
                Ok(json_response(StatusCode::OK, &json!({ "tokens": list })))
            }
            (&Method::POST, "/tokens") => {
                let body: TokenBody = read_json(req).await?;
                let (token, info) =
                    crate::tokens::create(self.users.storage().store(), &user, &body.name)?;
                Ok(json_response(
                    StatusCode::CREATED,
                    &json!({"token": token, "id": info.id, "name": info.name, "created": info.created}),
                ))
            }
            (&Method::DELETE, id) if id.starts_with("/tokens/") => {
                let id = &id["/tokens/".len()..];
                if crate::tokens::revoke(self.users.storage().store(), user.id, id)? {
                    Ok(json_response(StatusCode::OK, &json!({"revoked": id})))
                } else {
                    Err(FsError::NotFound.into())
                }
            }
            _ => Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{method} is not allowed on {path}"),
            )),
        }
    }

    /// `POST /session`: a password for a session cookie, held back like any sign-in.
    async fn sign_in(&self, req: Request<Incoming>, client: IpAddr) -> ApiResult {
        let secure = auth::is_https(&req, self.tls);
        // Only JSON: a form on another site can post text/plain that parses as JSON, and
        // would sign the browser in as someone else.
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/json"));
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send application/json {\"user\", \"password\"}",
            ));
        }
        let body: SignInBody = read_json(req).await?;
        let users = self.users.clone();
        let verify = async move { users.verify_async(&body.user, &body.password).await };
        let user = match self.limiter.attempt(Some(client), verify).await {
            Ok(user) => user,
            Err(Refused::Credentials) => {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "bad_credentials",
                    "wrong user name or password",
                ))
            }
            Err(Refused::TooManyAttempts(retry)) => return Err(auth::too_many(retry)),
        };
        let secret = crate::sessions::create(self.users.storage().store(), user.id)?;
        tracing::info!(user = %user.name, %client, "signed in to the web page");
        let mut res = json_response(
            StatusCode::CREATED,
            &json!({"user": user.name, "csrf": crate::sessions::csrf_token(&secret)}),
        );
        if let Ok(v) = auth::set_cookie(&secret, secure).parse() {
            res.headers_mut().insert(header::SET_COOKIE, v);
        }
        Ok(res)
    }

    /// `DELETE /session`: sign out.
    fn sign_out(&self, caller: &Caller) -> ApiResult {
        let Via::Session(secret) = &caller.via else {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "no_session",
                "only the page's session can sign out; revoke a token instead",
            ));
        };
        crate::sessions::end(self.users.storage().store(), secret)?;
        let mut res = json_response(StatusCode::OK, &json!({"signed_out": caller.user.name}));
        if let Ok(v) = auth::clear_cookie().parse() {
            res.headers_mut().insert(header::SET_COOKIE, v);
        }
        Ok(res)
    }

    async fn account(&self, user: &UserRec, drive: &UserDrive) -> ApiResult {
        let usage = drive.usage().await?;
        let month = crate::traffic::month_of(std::time::SystemTime::now());
        let (served, downloaded) = self
            .users
            .storage()
            .store()
            .read(|tx| tx.traffic(user.id, &month))?;
        Ok(json_response(
            StatusCode::OK,
            &json!({
                "user": user.name,
                "used": usage.used,
                "quota": usage.limit,
                "available": usage.available,
                "files": usage.nodes,
                "month": month,
                "served_this_month": served,
                "downloaded_this_month": downloaded,
            }),
        ))
    }
}

/// `GET /session`: who the page is signed in as, and its CSRF token.
fn session_info(caller: &Caller) -> ApiResult {
    let Via::Session(secret) = &caller.via else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "no_session",
            "this request was not made with a session cookie",
        ));
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({"user": caller.user.name, "csrf": crate::sessions::csrf_token(secret)}),
    ))
}

fn required_path(req: &Request<Incoming>) -> Result<String, ApiError> {
    query_param(req, "path")
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "missing_path", "give ?path="))
}
