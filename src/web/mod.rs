//! The web page at `/` and the JSON API under `/api/v1/` that it and scripts use. Handlers
//! work on the signed-in user's `Drive`, `/Add` and the token store: the same paths WebDAV
//! and the CLI take, so neither has policy of its own. `openapi.json` describes the API.
//!
//! Errors are `{"error": {"code", "message"}}`, with codes from `FsError::code`.

mod auth;
mod content;
mod page;

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use torrentdrive_fs::{split_path, Attr, Drive, FsError, RenameOptions};

use self::auth::{Caller, Via};
use crate::drive::UserDrive;
use crate::signin::{Refused, SignInLimiter};
use crate::store::UserRec;
use crate::torrents::status::transfers_of;
use crate::users::Users;

/// Largest JSON body accepted.
const MAX_JSON: usize = 64 << 10;
/// Largest `.torrent` accepted as a body.
const MAX_TORRENT: usize = 16 << 20;
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

/// An entry as the API shows it. Typed rather than a `Value`: a folder of 10,000 entries is
/// serialized straight into the body, without a map per entry.
#[derive(serde::Serialize)]
pub(crate) struct EntryJson<'a> {
    name: &'a str,
    path: String,
    #[serde(rename = "type")]
    kind: &'static str,
    size: u64,
    modified: u64,
    read_only: bool,
}

impl<'a> EntryJson<'a> {
    pub(crate) fn new(path: String, name: &'a str, a: &Attr) -> EntryJson<'a> {
        EntryJson {
            name,
            path,
            kind: if a.is_dir() { "folder" } else { "file" },
            size: a.size,
            modified: a
                .mtime
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            read_only: a.read_only,
        }
    }
}

pub(crate) fn attr_json(path: &str, name: &str, a: &Attr) -> Value {
    serde_json::to_value(EntryJson::new(path.to_owned(), name, a)).unwrap_or(Value::Null)
}

/// Whether header `name` (If-None-Match, If-Range) names entity tag `tag`.
pub(crate) fn tag_matches(headers: &hyper::HeaderMap, name: header::HeaderName, tag: &str) -> bool {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"))
}

/// `/a/b` joined with `name`.
fn child_path(dir: &str, name: &str) -> String {
    format!("{}/{name}", dir.trim_end_matches('/'))
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
struct LinkBody {
    link: String,
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
            (&Method::GET, "/transfers") => self.transfers(&user),
            (&Method::POST, "/transfers") => self.add_transfer(req, &drive).await,
            (&Method::DELETE, id) if id.starts_with("/transfers/") => {
                remove_transfer(&drive, &id["/transfers/".len()..]).await
            }
            (&Method::GET, "/files") => {
                let path = query_param(&req, "path").unwrap_or_else(|| "/".into());
                files(&drive, &user, &path).await
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
                delete(&drive, &path).await
            }
            (&Method::POST, "/files/mkdir") => {
                let body: PathBody = read_json(req).await?;
                mkdir(&drive, &body.path).await
            }
            (&Method::POST, "/files/move") => {
                let body: MoveBody = read_json(req).await?;
                move_to(&drive, &body.from, &body.to).await
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

    fn transfers(&self, user: &UserRec) -> ApiResult {
        let list = transfers_of(self.users.storage(), user.id, &user.name)?;
        let list: Vec<Value> = list
            .into_iter()
            .map(|t| {
                json!({
                    "id": t.info_hash, "name": t.name, "state": t.state, "progress": t.progress,
                    "size": t.size, "downloaded": t.downloaded, "down_bps": t.down_bps,
                    "up_bps": t.up_bps, "eta_secs": t.eta_secs, "peers": t.peers, "error": t.error,
                })
            })
            .collect();
        Ok(json_response(StatusCode::OK, &json!({ "transfers": list })))
    }

    /// A magnet or http(s) link as JSON `{"link"}`, or a `.torrent` as the body
    /// (`application/x-bittorrent`): dropped into `/Add` like any other drop.
    async fn add_transfer(&self, req: Request<Incoming>, drive: &UserDrive) -> ApiResult {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let (name, data) = if content_type.starts_with("application/json") {
            let body: LinkBody = read_json(req).await?;
            let link = body.link.trim().to_owned();
            if !crate::torrents::pickup::is_link(&link) {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_link",
                    "a magnet: link or an http(s) URL of a .torrent",
                ));
            }
            (
                format!("{}.magnet", drop_name(&link)),
                format!("{link}\n").into_bytes(),
            )
        } else if content_type.starts_with("application/x-bittorrent") {
            let name = query_param(&req, "name").unwrap_or_else(|| "added.torrent".into());
            let name = if name.ends_with(".torrent") {
                name
            } else {
                format!("{name}.torrent")
            };
            (name, read_body(req, MAX_TORRENT).await?.to_vec())
        } else {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send application/json {\"link\": ...} or application/x-bittorrent",
            ));
        };
        let dropped = drive.drop_file(&name, &data).await?;
        Ok(json_response(
            StatusCode::ACCEPTED,
            &json!({"added": format!("/Add/{dropped}"), "status": "/Add/status.txt"}),
        ))
    }
}

/// What to call the file a link is dropped as, so `/Add` and a failure name what was
/// added: a magnet's `dn=`, else a URL's last segment.
fn drop_name(link: &str) -> String {
    let named = url::Url::parse(link).ok().and_then(|u| {
        if u.scheme() == "magnet" {
            u.query_pairs()
                .find(|(k, _)| k == "dn")
                .map(|(_, v)| v.into_owned())
        } else {
            u.path_segments()
                .and_then(|mut s| s.next_back().map(str::to_owned))
                .map(|s| s.trim_end_matches(".torrent").to_owned())
        }
    });
    let clean: String = named
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_control() || c == '/' || c == '\\' {
                '_'
            } else {
                c
            }
        })
        .take(100)
        .collect();
    match clean.trim() {
        "" | "." | ".." => "added".to_owned(),
        name => name.to_owned(),
    }
}

async fn remove_transfer(drive: &UserDrive, id: &str) -> ApiResult {
    let hash = crate::torrents::metainfo::unhex(id).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_id",
            "a transfer id is its 40-hex info hash",
        )
    })?;
    let files = drive.remove_transfer(hash).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"removed": id, "files": files}),
    ))
}

/// The checked names of an absolute drive path.
pub(crate) fn names(path: &str) -> Result<Vec<&str>, ApiError> {
    Ok(split_path(path)?)
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

async fn files(drive: &UserDrive, user: &UserRec, path: &str) -> ApiResult {
    let names = names(path)?;
    let attr = drive.resolve(&names).await?;
    let here = format!("/{}", names.join("/"));
    let name = names.last().copied().unwrap_or("");
    if !attr.is_dir() {
        let mut file = attr_json(&here, name, &attr);
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("path", &here)
            .finish();
        let ticket: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("path", &here)
            .append_pair("ticket", &auth::ticket(user, &here))
            .finish();
        file["url"] = json!(format!("/dav{}", torrentdrive_dav::encode_path(&here)));
        file["content_url"] = json!(format!("/api/v1/files/content?{query}"));
        file["stream_url"] = json!(format!("/api/v1/files/content?{ticket}"));
        return Ok(json_response(StatusCode::OK, &file));
    }
    let list = drive.list(attr.id).await?;
    let entries: Vec<EntryJson> = list
        .iter()
        .map(|e| EntryJson::new(child_path(&here, &e.name), &e.name, &e.attr))
        .collect();
    #[derive(serde::Serialize)]
    struct Folder<'a> {
        path: &'a str,
        #[serde(rename = "type")]
        kind: &'static str,
        entries: Vec<EntryJson<'a>>,
    }
    let folder = Folder {
        path: &here,
        kind: "folder",
        entries,
    };
    let mut body = serde_json::to_vec(&folder).map_err(|e| FsError::Io(e.to_string()))?;
    body.push(b'\n');
    let mut res = Response::new(full(body));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Ok(res)
}

pub(crate) async fn parent_of<'a>(
    drive: &UserDrive,
    names: &'a [&'a str],
) -> Result<(Attr, &'a str), ApiError> {
    let (name, dir) = names
        .split_last()
        .ok_or_else(|| ApiError::new(StatusCode::FORBIDDEN, "root", "not the root folder"))?;
    Ok((drive.resolve(dir).await?, name))
}

async fn mkdir(drive: &UserDrive, path: &str) -> ApiResult {
    let names = names(path)?;
    let (parent, name) = parent_of(drive, &names).await?;
    let attr = drive.mkdir(parent.id, name).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &attr_json(&format!("/{}", names.join("/")), name, &attr),
    ))
}

async fn move_to(drive: &UserDrive, from: &str, to: &str) -> ApiResult {
    let (from_names, to_names) = (names(from)?, names(to)?);
    let (from_parent, from_name) = parent_of(drive, &from_names).await?;
    let (to_parent, to_name) = parent_of(drive, &to_names).await?;
    // Never over something: a script that wants to replace deletes first.
    let opts = RenameOptions { no_replace: true };
    drive
        .rename(from_parent.id, from_name, to_parent.id, to_name, opts)
        .await?;
    let attr = drive.lookup(to_parent.id, to_name).await?;
    Ok(json_response(
        StatusCode::OK,
        &attr_json(&format!("/{}", to_names.join("/")), to_name, &attr),
    ))
}

/// Deletes a file, or a folder and everything in it.
async fn delete(drive: &UserDrive, path: &str) -> ApiResult {
    let names = names(path)?;
    let (parent, name) = parent_of(drive, &names).await?;
    let attr = drive.lookup(parent.id, name).await?;
    if attr.is_dir() {
        delete_tree(drive, attr.id).await?;
        drive.rmdir(parent.id, name).await?;
    } else {
        drive.unlink(parent.id, name).await?;
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"deleted": format!("/{}", names.join("/"))}),
    ))
}

/// Empties folder `dir`, depth first, through the drive (which refuses what may not go).
async fn delete_tree(drive: &UserDrive, dir: torrentdrive_fs::NodeId) -> Result<(), FsError> {
    for e in drive.list(dir).await? {
        if e.attr.is_dir() {
            Box::pin(delete_tree(drive, e.attr.id)).await?;
            drive.rmdir(dir, &e.name).await?;
        } else {
            drive.unlink(dir, &e.name).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::drop_name;

    #[test]
    fn links_are_dropped_under_their_names() {
        assert_eq!(
            drop_name("magnet:?xt=urn:btih:00&dn=Big+Buck%20Bunny"),
            "Big Buck Bunny"
        );
        assert_eq!(drop_name("magnet:?xt=urn:btih:00&dn=a/b"), "a_b");
        assert_eq!(drop_name("magnet:?xt=urn:btih:00&dn=.."), "added");
        assert_eq!(drop_name("magnet:?xt=urn:btih:00"), "added");
        assert_eq!(drop_name("https://example.org/t/film.torrent?x=1"), "film");
        assert_eq!(drop_name("https://example.org/"), "added");
    }
}
