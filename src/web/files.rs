//! The drive's tree over the API: a folder's entries or a file's description, new
//! folders, moves and deletes. All of it through the user's `Drive`.

use hyper::{header, Response, StatusCode};
use serde_json::{json, Value};
use torrentdrive_fs::{split_path, Attr, Drive, FsError, RenameOptions};

use super::{auth, full, json_response, ApiError, ApiResult};
use crate::drive::UserDrive;
use crate::store::UserRec;

/// An entry as the API shows it. Typed rather than a `Value`: a folder of 10,000 entries is
/// serialized straight into the body, without a map per entry.
#[derive(serde::Serialize)]
pub(super) struct EntryJson<'a> {
    name: &'a str,
    path: String,
    #[serde(rename = "type")]
    kind: &'static str,
    size: u64,
    modified: u64,
    read_only: bool,
}

impl<'a> EntryJson<'a> {
    pub(super) fn new(path: String, name: &'a str, a: &Attr) -> EntryJson<'a> {
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

pub(super) fn attr_json(path: &str, name: &str, a: &Attr) -> Value {
    serde_json::to_value(EntryJson::new(path.to_owned(), name, a)).unwrap_or(Value::Null)
}

/// `/a/b` joined with `name`.
fn child_path(dir: &str, name: &str) -> String {
    format!("{}/{name}", dir.trim_end_matches('/'))
}

/// The checked names of an absolute drive path.
pub(super) fn names(path: &str) -> Result<Vec<&str>, ApiError> {
    Ok(split_path(path)?)
}

/// `GET /files`: a folder's entries, or a file with the URLs to read it by.
pub(super) async fn get(drive: &UserDrive, user: &UserRec, path: &str) -> ApiResult {
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

pub(super) async fn parent_of<'a>(
    drive: &UserDrive,
    names: &'a [&'a str],
) -> Result<(Attr, &'a str), ApiError> {
    let (name, dir) = names
        .split_last()
        .ok_or_else(|| ApiError::new(StatusCode::FORBIDDEN, "root", "not the root folder"))?;
    Ok((drive.resolve(dir).await?, name))
}

pub(super) async fn mkdir(drive: &UserDrive, path: &str) -> ApiResult {
    let names = names(path)?;
    let (parent, name) = parent_of(drive, &names).await?;
    let attr = drive.mkdir(parent.id, name).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &attr_json(&format!("/{}", names.join("/")), name, &attr),
    ))
}

pub(super) async fn move_to(drive: &UserDrive, from: &str, to: &str) -> ApiResult {
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
pub(super) async fn delete(drive: &UserDrive, path: &str) -> ApiResult {
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
