//! MOVE of a file onto an existing file, done as one `Drive::rename`.
//!
//! dav-server does it as RFC 4918 describes: delete the destination, then move. A crash
//! between the two loses the destination while the source stays where it was. The drive
//! replaces a file atomically, so this case is answered here; everything else (folders,
//! new names, locked resources, `Overwrite: F`) still goes to dav-server.

use http::{Request, Response, StatusCode};
use torrentdrive_fs::{name_from_bytes, Attr, FsError, RenameOptions};

use dav_server::davpath::DavPath;
use dav_server::ls::DavLockSystem;

use crate::{Body, DavUser};

/// Names of a decoded path below the prefix (`/a/b` → `["a", "b"]`).
fn names(path: &[u8]) -> Result<Vec<&str>, FsError> {
    path.split(|&b| b == b'/')
        .filter(|s| !s.is_empty())
        .map(name_from_bytes)
        .collect()
}

/// The decoded path of the `Destination` header below `prefix`, if it is one.
fn destination<B>(req: &Request<B>, prefix: &str) -> Option<Vec<u8>> {
    let value = req.headers().get("destination")?.to_str().ok()?;
    // An absolute URI or an absolute path: only the path counts (proxies rewrite hosts).
    let path = match value.find("://") {
        Some(i) => {
            let rest = &value[i + 3..];
            &rest[rest.find('/')?..]
        }
        None => value,
    };
    let path = DavPath::new(path).ok()?;
    match path.as_bytes().strip_prefix(prefix.as_bytes()) {
        Some(rest) if rest.starts_with(b"/") => Some(rest.to_vec()),
        _ => None,
    }
}

async fn locked(locks: &dyn DavLockSystem, prefix: &str, path: &[u8]) -> bool {
    let mut full = prefix.as_bytes().to_vec();
    full.extend_from_slice(path);
    match std::str::from_utf8(&full)
        .ok()
        .and_then(|p| DavPath::new(&crate::propfind::encode_path(p)).ok())
    {
        Some(p) => !locks.discover(&p).await.is_empty(),
        None => true, // can't tell: leave it to dav-server
    }
}

/// Answers a MOVE of a file onto an existing file; `None` leaves the request to dav-server.
pub(crate) async fn file_over_file<B>(
    req: &Request<B>,
    source: &[u8],
    user: &DavUser,
    locks: &dyn DavLockSystem,
    prefix: &str,
) -> Option<Response<Body>> {
    if req.method().as_str() != "MOVE" {
        return None;
    }
    let overwrite = req
        .headers()
        .get("overwrite")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    if matches!(overwrite, Some(o) if !o.eq_ignore_ascii_case("T")) {
        return None;
    }
    let target = destination(req, prefix)?;
    let (from, to) = (names(source).ok()?, names(&target).ok()?);
    let (Some((from_name, from_dir)), Some((to_name, to_dir))) =
        (from.split_last(), to.split_last())
    else {
        return None;
    };
    let drive = &user.drive;
    let file = |a: &Attr| !a.is_dir();
    let src = drive.resolve(&from).await.ok().filter(file)?;
    let dst = drive.resolve(&to).await.ok().filter(file)?;
    if src.id == dst.id
        || locked(locks, prefix, source).await
        || locked(locks, prefix, &target).await
    {
        return None;
    }
    let from_parent = drive.resolve(from_dir).await.ok()?;
    let to_parent = drive.resolve(to_dir).await.ok()?;
    let result = drive
        .rename(
            from_parent.id,
            from_name,
            to_parent.id,
            to_name,
            RenameOptions::default(),
        )
        .await;
    let (status, text) = match result {
        // RFC 4918 9.9.4: an existing resource was overwritten.
        Ok(()) => (StatusCode::NO_CONTENT, String::new()),
        Err(e) => (
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            format!("{e}\n"),
        ),
    };
    let mut res = Response::new(Body::from(text));
    *res.status_mut() = status;
    Some(res)
}
