//! Transfers over the API: listed live from the engine, added by dropping a link or a
//! `.torrent` into `/Add` (the same path as any drop), removed with their files.

use hyper::body::Incoming;
use hyper::{header, Request, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{json_response, query_param, read_body, read_json, ApiError, ApiResult};
use crate::drive::{Storage, UserDrive};
use crate::store::UserRec;
use crate::torrents::status::transfers_of;

/// Largest `.torrent` accepted as a body.
const MAX_TORRENT: usize = 16 << 20;

#[derive(Deserialize)]
struct LinkBody {
    link: String,
}

/// `GET /transfers`: live from the engine.
pub(super) fn list(storage: &Storage, user: &UserRec) -> ApiResult {
    let list = transfers_of(storage, user.id, &user.name)?;
    let list: Vec<Value> = list
        .into_iter()
        .map(|t| {
            json!({
                "id": t.info_hash, "name": t.name, "state": t.state, "progress": t.progress,
                "size": t.size, "downloaded": t.downloaded, "down_bps": t.down_bps,
                "up_bps": t.up_bps, "eta_secs": t.eta_secs, "peers": t.peers, "error": t.error,
                    "drop": t.drop,
            })
        })
        .collect();
    Ok(json_response(StatusCode::OK, &json!({ "transfers": list })))
}

/// A magnet or http(s) link as JSON `{"link"}`, or a `.torrent` as the body
/// (`application/x-bittorrent`): dropped into `/Add` like any other drop.
pub(super) async fn add(req: Request<Incoming>, drive: &UserDrive) -> ApiResult {
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
            crate::torrents::pickup::link_drop_name(&link),
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

/// `DELETE /transfers/{id}`: the user's files of that torrent go, and with the last user
/// the download.
pub(super) async fn remove(drive: &UserDrive, id: &str) -> ApiResult {
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
