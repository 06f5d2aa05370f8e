//! Who is asking: an API token or Basic credentials (scripts), the session cookie (the
//! page), or a stream ticket (a player given a file's URL). Passwords and tokens go
//! through the sign-in limiter; session cookies and tickets are unguessable, so a wrong one
//! is simply refused.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::body::Incoming;
use hyper::{header, Method, Request, StatusCode};

use super::ApiError;
use crate::signin::Refused;
use crate::store::UserRec;

/// The session cookie's name.
pub const COOKIE: &str = "td_session";
/// The header the page proves a change is its own with.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a file's stream URL works.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// How a request was signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    Token,
    Basic,
    /// The page, with the session cookie's value.
    Session(String),
    /// A stream ticket: good for reading one file only.
    Ticket,
}

/// A signed-in request's user.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: UserRec,
    pub via: Via,
}

pub fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "sign in with a token (Authorization: Bearer), Basic credentials or the page",
    )
}

pub fn too_many(retry: Duration) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        format!(
            "too many failed sign-ins from this address; try again in {} s",
            retry.as_secs().max(1)
        ),
    )
}

/// The session cookie's value, if the request carries one.
pub fn session_cookie<B>(req: &Request<B>) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
}

/// `Set-Cookie` for a new session; `secure` when the page is reached over HTTPS.
pub fn set_cookie(secret: &str, secure: bool) -> String {
    let max_age = crate::sessions::SESSION_LIFETIME.as_secs();
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

/// `Set-Cookie` that ends the session in the browser.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// Whether the browser reached us over HTTPS (directly, or through a proxy that says so).
pub fn is_https<B>(req: &Request<B>, tls: bool) -> bool {
    tls || req
        .headers()
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// A session may change things only with its CSRF token: another site's page can send the
/// cookie along (where SameSite doesn't hold) but can't read the token.
pub fn check_csrf<B>(req: &Request<B>, caller: &Caller) -> Result<(), ApiError> {
    let Via::Session(secret) = &caller.via else {
        return Ok(());
    };
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return Ok(());
    }
    let sent = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    let want = crate::sessions::csrf_token(secret);
    match sent {
        Some(sent) if constant_time_eq(sent.as_bytes(), want.as_bytes()) => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf",
            "a change from the page needs its X-CSRF-Token (reload the page)",
        )),
    }
}

/// A lookup in the store, off the async threads; `None` if it found nothing or failed.
async fn off_thread<T: Send + 'static>(
    f: impl FnOnce() -> Option<T> + Send + 'static,
) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok().flatten()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn ticket_mac(user: &UserRec, expires: u64, path: &str) -> blake3::Hash {
    // Keyed by the password hash: a new password ends every ticket handed out.
    let key = blake3::derive_key(
        "torrentdrive 2026 stream ticket",
        user.password_hash.as_bytes(),
    );
    blake3::keyed_hash(&key, format!("{}\n{expires}\n{path}", user.id).as_bytes())
}

/// A ticket that lets whoever has it read the file at `path` (normalized: `/a/b`) until
/// [`TICKET_LIFETIME`] from now.
pub fn ticket(user: &UserRec, path: &str) -> String {
    let expires = (SystemTime::now() + TICKET_LIFETIME)
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "{}.{expires}.{}",
        user.id,
        ticket_mac(user, expires, path).to_hex()
    )
}

/// The user a ticket for `path` was made for, if it is genuine and not expired.
pub fn ticket_user(ticket: &str, path: &str, users: &[UserRec]) -> Option<UserRec> {
    let mut parts = ticket.splitn(3, '.');
    let id: u64 = parts.next()?.parse().ok()?;
    let expires: u64 = parts.next()?.parse().ok()?;
    let mac = blake3::Hash::from_hex(parts.next()?).ok()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    if expires <= now {
        return None;
    }
    let user = users.iter().find(|u| u.id == id)?;
    // blake3::Hash compares in constant time.
    (ticket_mac(user, expires, path) == mac).then(|| user.clone())
}

impl super::WebApi {
    /// The caller of an API request. `ticket_path` is the normalized path a stream ticket
    /// may read (only for reads of file content).
    pub(super) async fn caller(
        &self,
        req: &Request<Incoming>,
        client: IpAddr,
        ticket_path: Option<&str>,
    ) -> Result<Caller, ApiError> {
        if req.headers().contains_key(header::AUTHORIZATION) {
            return self.password_or_token(req, client).await;
        }
        let users = self.users.clone();
        // A ticket first: a browser opening a stream URL may carry an old session's cookie.
        if let (Some(path), Some(ticket)) = (ticket_path, super::query_param(req, "ticket")) {
            let path = path.to_owned();
            let users = users.clone();
            let user = off_thread(move || ticket_user(&ticket, &path, &users.all().ok()?)).await;
            return match user {
                Some(user) => Ok(Caller {
                    user,
                    via: Via::Ticket,
                }),
                None => Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "bad_ticket",
                    "this stream URL has expired or is not valid: copy it from the page again",
                )),
            };
        }
        if let Some(secret) = session_cookie(req) {
            let store_secret = secret.clone();
            let user = off_thread(move || {
                let id =
                    crate::sessions::user_of(users.storage().store(), &store_secret).ok()??;
                users.by_id(id)
            })
            .await;
            return match user {
                Some(user) => Ok(Caller {
                    user,
                    via: Via::Session(secret),
                }),
                None => Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "session_ended",
                    "the session has ended: sign in again",
                )),
            };
        }
        Err(unauthorized())
    }

    /// A Bearer token or Basic credentials. Failures from one address are held back as for
    /// WebDAV.
    async fn password_or_token(
        &self,
        req: &Request<Incoming>,
        client: IpAddr,
    ) -> Result<Caller, ApiError> {
        let bearer = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim().to_owned());
        let basic = torrentdrive_dav::basic_credentials(req);
        let users = self.users.clone();
        let verify = async move {
            match (bearer, basic) {
                (Some(token), _) => {
                    off_thread(move || {
                        let id = crate::tokens::user_of(users.storage().store(), &token).ok()??;
                        let user = users.by_id(id)?;
                        Some(Caller {
                            user,
                            via: Via::Token,
                        })
                    })
                    .await
                }
                (None, Some((name, password))) => {
                    users
                        .verify_async(&name, &password)
                        .await
                        .map(|user| Caller {
                            user,
                            via: Via::Basic,
                        })
                }
                (None, None) => None,
            }
        };
        match self.limiter.attempt(Some(client), verify).await {
            Ok(caller) => Ok(caller),
            Err(Refused::Credentials) => Err(unauthorized()),
            Err(Refused::TooManyAttempts(retry)) => Err(too_many(retry)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: u64, hash: &str) -> UserRec {
        UserRec {
            id,
            name: format!("u{id}"),
            password_hash: hash.to_owned(),
            root: 1,
            quota: None,
            created: 0,
        }
    }

    #[test]
    fn tickets_are_bound_to_user_path_and_password() {
        let (a, b) = (user(1, "hash-a"), user(2, "hash-b"));
        let users = vec![a.clone(), b.clone()];
        let t = ticket(&a, "/Films/x.mp4");
        assert_eq!(
            ticket_user(&t, "/Films/x.mp4", &users).map(|u| u.id),
            Some(1)
        );
        assert!(ticket_user(&t, "/Films/y.mp4", &users).is_none());
        // Claiming to be user 2 with user 1's MAC.
        let forged = t.replacen("1.", "2.", 1);
        assert!(ticket_user(&forged, "/Films/x.mp4", &users).is_none());
        // A new password (hash) ends it.
        let changed = vec![user(1, "hash-new")];
        assert!(ticket_user(&t, "/Films/x.mp4", &changed).is_none());
        assert!(ticket_user("1.1.00", "/Films/x.mp4", &users).is_none());
        assert!(ticket_user("garbage", "/Films/x.mp4", &users).is_none());
        let expired = format!("1.1.{}", ticket_mac(&a, 1, "/Films/x.mp4").to_hex());
        assert!(ticket_user(&expired, "/Films/x.mp4", &users).is_none());
    }

    #[test]
    fn cookies() {
        let req = Request::builder()
            .header(header::COOKIE, "a=b; td_session=abc ; c=d")
            .body(())
            .expect("request");
        assert_eq!(session_cookie(&req).as_deref(), Some("abc"));
        let c = set_cookie("s", true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("Secure"));
        assert!(!set_cookie("s", false).contains("Secure"));
    }
}
