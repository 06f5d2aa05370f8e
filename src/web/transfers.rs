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
