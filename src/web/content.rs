//! File content over the API: `GET` with byte ranges (the page's player and downloads, and
//! VLC/mpv through a stream ticket) and `PUT` (the page's uploads). Reads go through the
//! `Drive`, so a torrent's file streams while it downloads: a range not there yet is fetched
//! first.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::header::HeaderValue;
use hyper::{header, Method, Request, Response, StatusCode};
use tokio::sync::mpsc;
use torrentdrive_fs::{Attr, CreateOptions, Drive, FileHandle, FsError, OpenOptions};

use super::files::{attr_json, names, parent_of};
use super::{full, json_response, tag_matches, ApiError, ApiResult};
use crate::drive::UserDrive;

/// Bytes read from the drive at a time.
const CHUNK: u32 = 256 << 10;

/// A body fed by the task that reads the file.
struct ChannelBody(mpsc::Receiver<io::Result<Bytes>>, u64);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.0.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.1)
    }
}

/// What `Range` asks for, against a file of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Wanted {
    Whole,
    /// First and last byte, inclusive.
    Part(u64, u64),
    Unsatisfiable,
}

/// Parses a `Range` header. Several ranges get the whole file (RFC 9110 allows it); a
/// header that isn't a byte range is ignored, as the RFC says.
pub fn wanted(range: Option<&str>, size: u64) -> Wanted {
    let Some(spec) = range.and_then(|r| r.trim().strip_prefix("bytes=")) else {
        return Wanted::Whole;
    };
    if spec.contains(',') {
        return Wanted::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Wanted::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // The last `n` bytes.
        return match last.parse::<u64>() {
            Ok(0) => Wanted::Unsatisfiable,
            Ok(_) if size == 0 => Wanted::Unsatisfiable,
            Ok(n) => Wanted::Part(size.saturating_sub(n), size - 1),
            Err(_) => Wanted::Whole,
        };
    }
    let Ok(first) = first.parse::<u64>() else {
        return Wanted::Whole;
    };
    let last = match last {
        "" => u64::MAX,
        l => match l.parse::<u64>() {
            Ok(l) if l >= first => l,
            _ => return Wanted::Whole,
        },
    };
    if first >= size {
        return Wanted::Unsatisfiable;
    }
    Wanted::Part(first, last.min(size - 1))
}

fn etag(attr: &Attr) -> String {
    format!("\"{:x}-{:x}\"", attr.id.0, attr.version)
}

/// A header value made here (numbers, names already encoded): always valid.
fn value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Types a browser may show in the page's origin: media, pictures (not SVG, which can run
/// script) and plain text. Everything else is a download.
fn shown_inline(mime: &str) -> bool {
    (mime.starts_with("video/") || mime.starts_with("audio/") || mime.starts_with("image/"))
        && mime != "image/svg+xml"
        || mime == "text/plain"
}

/// `attachment; filename*=UTF-8''…`, safe for any name.
fn disposition(kind: &str, name: &str) -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(name.as_bytes())
        .collect::<String>()
        .replace('+', "%20");
    format!("{kind}; filename*=UTF-8''{encoded}")
}

/// `GET`/`HEAD` of a file's content.
pub async fn get(drive: &UserDrive, path: &str, req: &Request<Incoming>) -> ApiResult {
    let names = names(path)?;
    let attr = drive.resolve(&names).await?;
    if attr.is_dir() {
        return Err(FsError::IsADirectory.into());
    }
    let name = names.last().copied().unwrap_or("file");
    let mime = mime_guess::from_path(name)
        .first_raw()
        .unwrap_or("application/octet-stream");
    let download = super::query_param(req, "download").is_some() || !shown_inline(mime);
    let tag = etag(&attr);
    let headers = req.headers();
    let mut res = Response::new(full(Bytes::new()));
    let h = res.headers_mut();
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_TYPE, value(mime));
    if let Ok(v) = tag.parse() {
        h.insert(header::ETAG, v);
    }
    let mtime = httpdate::fmt_http_date(attr.mtime.max(UNIX_EPOCH));
    if let Ok(v) = mtime.parse() {
        h.insert(header::LAST_MODIFIED, v);
    }
    let kind = if download { "attachment" } else { "inline" };
    if let Ok(v) = disposition(kind, name).parse() {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    // A file from a torrent is nobody's page: never let it run script in ours.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    if tag_matches(headers, header::IF_NONE_MATCH, &tag) {
        *res.status_mut() = StatusCode::NOT_MODIFIED;
        return Ok(res);
    }
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    // If-Range with another version: the whole new file, not a piece of it.
    let range = match headers.get(header::IF_RANGE) {
        Some(_) if !tag_matches(headers, header::IF_RANGE, &tag) => None,
        _ => range,
    };
    let (first, last) = match wanted(range, attr.size) {
        Wanted::Whole => (0, attr.size.checked_sub(1)),
        Wanted::Part(first, last) => {
            *res.status_mut() = StatusCode::PARTIAL_CONTENT;
            let v = format!("bytes {first}-{last}/{}", attr.size);
            res.headers_mut().insert(header::CONTENT_RANGE, value(&v));
            (first, Some(last))
        }
        Wanted::Unsatisfiable => {
            *res.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            let v = format!("bytes */{}", attr.size);
            res.headers_mut().insert(header::CONTENT_RANGE, value(&v));
            return Ok(res);
        }
    };
    let len = last.map_or(0, |last| last + 1 - first);
    res.headers_mut()
        .insert(header::CONTENT_LENGTH, value(&len.to_string()));
    if req.method() == Method::HEAD || len == 0 {
        return Ok(res);
    }
    // Opened before answering, so a file that can't be read gets an error status.
    let fh = drive.open(attr.id, OpenOptions::default()).await?;
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(send_range(drive.clone(), fh, first, len, tx));
    *res.body_mut() = ChannelBody(rx, len).boxed_unsync();
    Ok(res)
}

/// Reads `len` bytes from `offset` into the body, until done or the client goes away; the
/// handle is released either way.
async fn send_range(
    drive: UserDrive,
    fh: FileHandle,
    mut offset: u64,
    mut left: u64,
    tx: mpsc::Sender<io::Result<Bytes>>,
) {
    while left > 0 {
        let want = left.min(u64::from(CHUNK)) as u32;
        let chunk = tokio::select! {
            r = drive.read(fh, offset, want) => r,
            // The client left while a piece was awaited: stop waiting.
            () = tx.closed() => break,
        };
        let chunk = match chunk {
            Ok(c) if c.is_empty() => {
                // The file got shorter since the headers went out.
                let _ = tx
                    .send(Err(io::Error::from(io::ErrorKind::UnexpectedEof)))
                    .await;
                break;
            }
            Ok(c) => c.slice(..c.len().min(left as usize)),
            Err(e) => {
                tracing::warn!(user = %drive.name, error = %e, "reading a file for the web page");
                let _ = tx.send(Err(io::Error::other(e.to_string()))).await;
                break;
            }
        };
        offset += chunk.len() as u64;
        left -= chunk.len() as u64;
        if tx.send(Ok(chunk)).await.is_err() {
            break;
        }
    }
    if let Err(e) = drive.release(fh).await {
        tracing::warn!(user = %drive.name, error = %e, "closing a file read for the web page");
    }
}

/// `PUT`: the body becomes the file at `path`, all or nothing. Over an existing file only
/// with `?overwrite=1`.
pub async fn put(drive: &UserDrive, path: &str, req: Request<Incoming>) -> ApiResult {
    let names = names(path)?;
    let (parent, name) = parent_of(drive, &names).await?;
    let overwrite = super::query_param(&req, "overwrite").is_some_and(|v| v == "1");
    let expected_size = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let opts = CreateOptions {
        exclusive: !overwrite,
        deferred: true,
        expected_size,
    };
    let (_, fh) = drive.create(parent.id, name, opts).await?;
    let written = write_body(drive, fh, req.into_body()).await;
    let committed = match written {
        Ok(()) => drive.flush(fh).await.map_err(ApiError::from),
        Err(e) => Err(e),
    };
    // Uncommitted content is discarded by the release.
    let released = drive.release(fh).await;
    let attr = committed?;
    released.map_err(ApiError::from)?;
    Ok(json_response(
        StatusCode::CREATED,
        &attr_json(&format!("/{}", names.join("/")), name, &attr),
    ))
}

async fn write_body(drive: &UserDrive, fh: FileHandle, mut body: Incoming) -> Result<(), ApiError> {
    let mut offset = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "upload_cut",
                format!("the upload broke off: {e}"),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            let mut rest = &data[..];
            while !rest.is_empty() {
                let n = drive.write(fh, offset, rest).await?;
                if n == 0 {
                    return Err(FsError::Io("the drive took no bytes".into()).into());
                }
                offset += u64::from(n);
                rest = &rest[n as usize..];
            }
        }
    }
    Ok(())
}

/// The answer for `DELETE` etc. on the content endpoint.
pub fn not_allowed(method: &Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on /files/content: use GET, HEAD or PUT"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(wanted(None, 100), Wanted::Whole);
        assert_eq!(wanted(Some("bytes=0-"), 100), Wanted::Part(0, 99));
        assert_eq!(wanted(Some("bytes=10-19"), 100), Wanted::Part(10, 19));
        assert_eq!(wanted(Some("bytes=90-200"), 100), Wanted::Part(90, 99));
        assert_eq!(wanted(Some("bytes=-10"), 100), Wanted::Part(90, 99));
        assert_eq!(wanted(Some("bytes=-1000"), 100), Wanted::Part(0, 99));
        assert_eq!(wanted(Some("bytes=100-"), 100), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=-0"), 100), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=0-"), 0), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=5-3"), 100), Wanted::Whole);
        assert_eq!(wanted(Some("bytes=0-1,5-6"), 100), Wanted::Whole);
        assert_eq!(wanted(Some("items=0-1"), 100), Wanted::Whole);
        assert_eq!(wanted(Some("bytes=x-1"), 100), Wanted::Whole);
    }

    #[test]
    fn only_safe_types_are_shown_inline() {
        assert!(shown_inline("video/mp4"));
        assert!(shown_inline("audio/mpeg"));
        assert!(shown_inline("text/plain"));
        assert!(!shown_inline("text/html"));
        assert!(!shown_inline("image/svg+xml"));
        assert!(!shown_inline("application/octet-stream"));
        assert_eq!(
            disposition("attachment", "a b\"c.mkv"),
            "attachment; filename*=UTF-8''a%20b%22c.mkv"
        );
    }
}
