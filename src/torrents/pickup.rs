//! `/Add`: a `.torrent` dropped into a drive's `/Add` folder (or a folder below it) becomes
//! files in the drive and a download in the engine.
//!
//! The pick-up runs once the upload is committed (never on half a file). On success the
//! dropped file disappears and the torrent's files appear at once with their final sizes:
//! in `/Downloads/`, or in `/<sub folder>/` for a file dropped into `/Add/<sub folder>/`. On
//! failure the dropped file stays and `<name>.error.txt` beside it says why in one line.

use bytes::Bytes;
use torrentdrive_fs::{check_name, FsError, FsResult};

use crate::drive::{check_quota, new_node, remove_node, Dead, UserDrive};
use crate::staging::{blocking, read_at};
use crate::store::{
    now_nanos, Content, Kind, NodeRec, StoreError, TorrentRec, TransferRec, TreeRead, WriteTx,
};
use crate::torrents::metainfo::{self, hex, TorrentMeta};

/// `.torrent` files larger than this are refused (real ones are kilobytes to a few MiB).
const MAX_TORRENT_FILE: u64 = 16 << 20;
pub(crate) const ADD: &str = "Add";
const DOWNLOADS: &str = "Downloads";
const ERROR_SUFFIX: &str = ".error.txt";

/// What a dropped file asks for.
#[derive(Debug, PartialEq, Eq)]
enum Drop {
    Torrent,
    Magnet,
}

fn drop_kind(name: &str) -> Option<Drop> {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".torrent") {
        Some(Drop::Torrent)
    } else if lower.ends_with(".magnet") {
        Some(Drop::Magnet)
    } else {
        None
    }
}

/// The names of the folders between `/Add` and `parent` if `parent` is `/Add` or below it.
pub(crate) fn below_add(
    tx: &impl TreeRead,
    user: u64,
    root: u64,
    parent: u64,
) -> Result<Option<Vec<String>>, StoreError> {
    let Some(add) = tx.child(root, ADD)? else {
        return Ok(None);
    };
    let mut names = Vec::new();
    let mut at = parent;
    loop {
        if at == add {
            names.reverse();
            return Ok(Some(names));
        }
        match tx.node(at)? {
            Some(rec) if rec.owner == user && at != root => {
                names.push(rec.name);
                at = rec.parent;
            }
            _ => return Ok(None),
        }
    }
}

/// The error file beside dropped file `name`: removed with it (called when it is unlinked).
pub(crate) fn remove_error_file(
    tx: &WriteTx,
    user: u64,
    root: u64,
    parent: u64,
    name: &str,
) -> Result<Vec<Dead>, StoreError> {
    if drop_kind(name).is_none() || below_add(tx, user, root, parent)?.is_none() {
        return Ok(Vec::new());
    }
    let error_name = format!("{name}{ERROR_SUFFIX}");
    let Some(id) = tx.child(parent, &error_name)? else {
        return Ok(Vec::new());
    };
    match tx.node(id)? {
        Some(rec) if rec.kind == Kind::File => {
            Ok(remove_node(tx, user, id, &rec)?.into_iter().collect())
        }
        _ => Ok(Vec::new()),
    }
}

/// `name`, or `name (2)`, `name (3)`... whichever is free in `parent`; for files the number
/// goes before the extension.
fn free_name(
    tx: &impl TreeRead,
    parent: u64,
    name: &str,
    is_file: bool,
) -> Result<String, StoreError> {
    if tx.child(parent, name)?.is_none() {
        return Ok(name.to_owned());
    }
    let (stem, ext) = match name.rfind('.') {
        Some(dot) if is_file && dot > 0 => name.split_at(dot),
        _ => (name, ""),
    };
    for n in 2.. {
        let candidate = format!("{stem} ({n}){ext}");
        if tx.child(parent, &candidate)?.is_none() {
            return Ok(candidate);
        }
    }
    unreachable!("some name is free")
}

/// The folder at `names` below `from`, created where missing.
fn ensure_folder(tx: &WriteTx, user: u64, from: u64, names: &[String]) -> FsResult<u64> {
    let mut at = from;
    for name in names {
        at = match tx.child(at, name)? {
            Some(id) => match tx.node(id)? {
                Some(rec) if rec.kind == Kind::Dir => id,
                _ => return Err(FsError::NotADirectory),
            },
            None => new_node(tx, user, at, name, Kind::Dir)?.0,
        };
    }
    Ok(at)
}

/// A read-only file showing file `index` of a torrent.
fn torrent_file(
    tx: &WriteTx,
    user: u64,
    parent: u64,
    name: &str,
    hash: [u8; 20],
    index: u32,
    len: u64,
) -> Result<(), StoreError> {
    let (id, mut rec) = new_node(tx, user, parent, name, Kind::File)?;
    rec.content = Content::Torrent { hash, file: index };
    rec.size = len;
    tx.put_node(id, &rec)?;
    let (used, nodes) = tx.usage(user)?;
    tx.set_usage(user, used + len, nodes)?;
    Ok(())
}

impl UserDrive {
    /// Picks up what lies in `/Add` without an error file: drops made while no daemon ran
    /// (`torrentdrive add` without a daemon) or interrupted by a stop.
    pub fn scan_add(&self) -> FsResult<()> {
        let user = self.user;
        let Some(add) = self.add else {
            return Ok(());
        };
        let found = self
            .storage
            .store()
            .read(|tx| -> FsResult<Vec<(u64, NodeRec)>> {
                let mut found = Vec::new();
                let mut stack = vec![add];
                while let Some(dir) = stack.pop() {
                    let children = tx.children(dir)?;
                    let names: std::collections::HashSet<&str> =
                        children.iter().map(|(n, _)| n.as_str()).collect();
                    for (name, id) in &children {
                        let Some(rec) = tx.node(*id)? else { continue };
                        if rec.owner != user {
                            continue;
                        }
                        let has_error = names.contains(format!("{name}{ERROR_SUFFIX}").as_str());
                        match rec.kind {
                            Kind::Dir => stack.push(*id),
                            Kind::File if drop_kind(name).is_some() && !has_error => {
                                found.push((*id, rec))
                            }
                            Kind::File => {}
                        }
                    }
                }
                Ok(found)
            })?;
        for (id, rec) in found {
            self.after_commit(id, &rec);
        }
        Ok(())
    }

    /// Puts `data` into `/Add` as `name` (made unique), as a WebDAV upload would: the
    /// pick-up follows the commit. Used by `torrentdrive add`.
    pub async fn drop_file(&self, name: &str, data: &[u8]) -> FsResult<String> {
        use torrentdrive_fs::{CreateOptions, Drive};
        check_name(name)?;
        let add = self.add.ok_or(FsError::NotFound)?;
        let unique = self
            .storage
            .store()
            .read(|tx| -> FsResult<String> { Ok(free_name(tx, add, name, true)?) })?;
        let opts = CreateOptions {
            exclusive: true,
            deferred: true,
            expected_size: Some(data.len() as u64),
        };
        let (_, fh) = self
            .create(torrentdrive_fs::NodeId(add), &unique, opts)
            .await?;
        let result = async {
            self.write(fh, 0, data).await?;
            self.flush(fh).await
        }
        .await;
        self.release(fh).await?;
        result.map(|_| unique)
    }

    /// Called after a commit of file `id`: starts the pick-up if it is a drop into `/Add`.
    pub(crate) fn after_commit(&self, id: u64, rec: &NodeRec) {
        if self.storage.torrents().is_none() || drop_kind(&rec.name).is_none() {
            return;
        }
        let drive = self.clone();
        tokio::spawn(async move {
            if let Err(e) = drive.pick_up(id).await {
                tracing::warn!(user = %drive.name, node = id, error = %e, "picking up a dropped file");
            }
        });
    }

    async fn pick_up(&self, id: u64) -> FsResult<()> {
        let (user, root) = (self.user, self.root);
        let found = self.storage.store().read(|tx| -> FsResult<_> {
            let Some(rec) = tx.node(id)? else {
                return Ok(None);
            };
            if rec.owner != user {
                return Ok(None);
            }
            let Some(names) = below_add(tx, user, root, rec.parent)? else {
                return Ok(None);
            };
            let inline = match rec.content {
                Content::Inline => Some(tx.inline(id)?),
                _ => None,
            };
            Ok(Some((rec, names, inline)))
        })?;
        let Some((rec, sub, inline)) = found else {
            return Ok(());
        };
        let result = match (drop_kind(&rec.name), self.content_of(&rec, inline).await) {
            (None, _) => return Ok(()),
            (_, Err(reason)) => Err(reason),
            (Some(Drop::Torrent), Ok(bytes)) => {
                self.take_torrent(id, &sub, bytes, Vec::new(), true).await
            }
            (Some(Drop::Magnet), Ok(bytes)) => {
                let path: String = std::iter::once(ADD)
                    .chain(sub.iter().map(String::as_str))
                    .chain([rec.name.as_str()])
                    .map(|n| format!("/{n}"))
                    .collect();
                self.take_links(id, &path, &sub, &bytes).await
            }
        };
        match result {
            Ok(()) => Ok(()),
            Err(reason) => self.write_error(rec.parent, &rec.name, &reason).await,
        }
    }

    /// The bytes of a dropped file.
    async fn content_of(
        &self,
        dropped: &NodeRec,
        inline: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, String> {
        if dropped.size > MAX_TORRENT_FILE {
            return Err(format!(
                "not a torrent file: {} bytes is too large",
                dropped.size
            ));
        }
        match (inline, dropped.content) {
            (Some(data), _) => Ok(data),
            (None, Content::Blob(blob)) => {
                let blobs = self.storage.blobs().clone();
                let read = async {
                    let reader = blocking(move || Ok(blobs.open(blob)?)).await?;
                    read_at(reader, 0, dropped.size as usize).await
                };
                read.await
                    .map(|b| b.to_vec())
                    .map_err(|e| format!("reading the dropped file: {e}"))
            }
            _ => Err("not a torrent file".into()),
        }
    }

    /// A dropped `.magnet`: one magnet link or http(s) URL of a `.torrent` a line. Each is
    /// resolved to its `.torrent` (metadata from peers for magnets) and taken like one; the
    /// dropped file goes once every line worked.
    /// Deleting the dropped file (`path`) while metadata is fetched cancels the rest.
    async fn take_links(
        &self,
        id: u64,
        path: &str,
        sub: &[String],
        bytes: &[u8],
    ) -> Result<(), String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not a text file of links".to_owned())?;
        let links: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        if links.is_empty() {
            return Err("no magnet link or URL in the file".into());
        }
        let torrents = self
            .storage
            .torrents()
            .cloned()
            .ok_or_else(|| "the torrent engine is not running".to_owned())?;
        let mut failures = Vec::new();
        for (i, link) in links.iter().enumerate() {
            let peers = peer_hints(link);
            let pending = torrents.pending(self.user, link, id, path);
            let resolved = tokio::select! {
                r = torrents
                    .engine()
                    .resolve(link, peers.clone(), torrents.metadata_timeout()) => r,
                () = pending.cancelled() => {
                    tracing::info!(user = %self.name, link = %link, "dropped file deleted: fetching its metadata stopped");
                    return Ok(());
                }
            };
            drop(pending);
            let last = i + 1 == links.len() && failures.is_empty();
            let result = match resolved {
                Ok(torrent) => {
                    self.take_torrent(id, sub, torrent.to_vec(), peers, last)
                        .await
                }
                Err(e) => Err(format!("{e:#}")),
            };
            if let Err(reason) = result {
                failures.push(if links.len() > 1 {
                    format!("line {}: {reason}", i + 1)
                } else {
                    reason
                });
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("; "))
        }
    }

    /// Turns a `.torrent` into drive files and a download; with `consume`, the dropped file
    /// goes in the same commit. `Err` is the one-line reason for the error file.
    async fn take_torrent(
        &self,
        id: u64,
        sub: &[String],
        bytes: Vec<u8>,
        peers: Vec<std::net::SocketAddr>,
        consume: bool,
    ) -> Result<(), String> {
        let meta = metainfo::parse(&bytes).map_err(|e| e.to_string())?;
        let dest: Vec<String> = if sub.is_empty() {
            vec![DOWNLOADS.to_owned()]
        } else {
            sub.to_vec()
        };
        let (user, uname, root) = (self.user, self.name.clone(), self.root);
        let torrent = bytes.clone();
        let meta_for_tx = meta.clone();
        let dead = self
            .storage
            .store()
            .write_async(move |tx| {
                let dropped = consume.then_some(id);
                create_files(
                    tx,
                    user,
                    &uname,
                    root,
                    &dest,
                    &meta_for_tx,
                    &torrent,
                    dropped,
                )
            })
            .await
            .map_err(|e| match e {
                FsError::QuotaExceeded => format!(
                    "over quota: the torrent needs {}",
                    crate::size::format_size(meta.total)
                ),
                other => other.to_string(),
            })?;
        self.storage.dispose_async(dead).await;
        tracing::info!(user = %self.name, torrent = %meta.hash_hex(), name = %meta.name, files = meta.files.len(), "torrent added");
        if let Some(torrents) = self.storage.torrents() {
            if let Err(e) = torrents
                .engine()
                .add(&meta.info_hash, Bytes::from(bytes), peers)
                .await
            {
                tracing::error!(torrent = %hex(&meta.info_hash), error = %format!("{e:#}"), "starting the download");
            }
        }
        Ok(())
    }

    /// Writes `<name>.error.txt` beside a dropped file that could not be taken.
    async fn write_error(&self, parent: u64, name: &str, reason: &str) -> FsResult<()> {
        let error_name = format!("{name}{ERROR_SUFFIX}");
        if check_name(&error_name).is_err() {
            return Ok(());
        }
        let line = format!("{}\n", reason.replace('\n', " "));
        let (user, dropped) = (self.user, name.to_owned());
        tracing::info!(user = %self.name, file = %name, reason = %reason, "dropped file refused");
        self.storage
            .store()
            .write_async(move |tx| {
                // Deleted meanwhile: nothing to explain.
                if tx.child(parent, &dropped)?.is_none() {
                    return Ok(());
                }
                let id = match tx.child(parent, &error_name)? {
                    Some(id) => id,
                    None => new_node(tx, user, parent, &error_name, Kind::File)?.0,
                };
                let Some(mut rec) = tx.node(id)? else {
                    return Err(FsError::NotFound);
                };
                if rec.kind != Kind::File || rec.content != Content::Inline {
                    return Ok(());
                }
                let (used, nodes) = tx.usage(user)?;
                tx.set_usage(
                    user,
                    used.saturating_sub(rec.size) + line.len() as u64,
                    nodes,
                )?;
                tx.set_inline(id, Some(line.as_bytes()))?;
                rec.size = line.len() as u64;
                rec.version += 1;
                rec.mtime = now_nanos();
                rec.ctime = rec.mtime;
                tx.put_node(id, &rec)?;
                Ok(())
            })
            .await
    }
}

/// The transaction of a pick-up: the torrent's files in the drive, its record, and the
/// dropped file (and any error file of it) gone.
#[allow(clippy::too_many_arguments)]
fn create_files(
    tx: &WriteTx,
    user: u64,
    user_name: &str,
    root: u64,
    dest: &[String],
    meta: &TorrentMeta,
    torrent: &[u8],
    dropped: Option<u64>,
) -> FsResult<Vec<Dead>> {
    let dropped = match dropped {
        Some(id) => Some((id, tx.node(id)?.ok_or(FsError::NotFound)?)),
        None => None,
    };
    let freed = dropped.as_ref().map_or(0, |(_, rec)| rec.size);
    let (used, _) = tx.usage(user)?;
    check_quota(tx, user_name, used, freed, meta.total)?;
    let dest = ensure_folder(tx, user, root, dest)?;
    let hash = meta.info_hash;
    if meta.multi_file {
        let top_name = free_name(tx, dest, &meta.name, false)?;
        let top = new_node(tx, user, dest, &top_name, Kind::Dir)?.0;
        for f in &meta.files {
            let Some((file_name, dirs)) = f.path.split_last() else {
                continue;
            };
            let parent = ensure_folder(tx, user, top, dirs)?;
            torrent_file(tx, user, parent, file_name, hash, f.index, f.len)?;
        }
    } else if let Some(f) = meta.files.first() {
        let name = free_name(tx, dest, &meta.name, true)?;
        torrent_file(tx, user, dest, &name, hash, f.index, f.len)?;
    }
    let mut rec = tx.torrent(&hash)?.unwrap_or_else(|| TorrentRec {
        name: meta.name.clone(),
        torrent: torrent.to_vec(),
        refs: 0,
        added: now_nanos(),
        completed: None,
    });
    rec.refs += meta.files.len() as u64;
    tx.put_torrent(&hash, &rec)?;
    let mut transfer = tx.transfer(user, &hash)?.unwrap_or_else(|| TransferRec {
        name: meta.name.clone(),
        added: now_nanos(),
        refs: 0,
    });
    transfer.refs += meta.files.len() as u64;
    tx.put_transfer(user, &hash, &transfer)?;
    let mut dead = Vec::new();
    if let Some((id, rec)) = dropped {
        dead.extend(remove_node(tx, user, id, &rec)?);
        dead.extend(remove_error_file(tx, user, root, rec.parent, &rec.name)?);
    }
    Ok(dead)
}

/// Whether `text` is something a `.magnet` drop takes: a magnet link or an http(s) URL of
/// a `.torrent`, on one line.
pub fn is_link(text: &str) -> bool {
    ["magnet:", "http://", "https://"]
        .iter()
        .any(|p| text.starts_with(p))
        && !text.contains(['\n', '\r'])
}

/// What a link calls its torrent before its metadata is known: a magnet's `dn=`, else
/// the last segment of a URL, without `.torrent`.
pub(crate) fn link_title(link: &str) -> Option<String> {
    let url = url::Url::parse(link).ok()?;
    let title = if url.scheme() == "magnet" {
        url.query_pairs()
            .find(|(k, _)| k == "dn")
            .map(|(_, v)| v.into_owned())
    } else {
        url.path_segments()
            .and_then(|mut s| s.next_back().map(str::to_owned))
            .map(|s| s.trim_end_matches(".torrent").to_owned())
    };
    title.filter(|t| !t.trim().is_empty())
}

/// The name a link is dropped into `/Add` under, so `/Add` and a failure say what was
/// added: `<title>.magnet`, made a valid file name.
pub fn link_drop_name(link: &str) -> String {
    let clean: String = link_title(link)
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
        "" | "." | ".." => "added.magnet".to_owned(),
        name => format!("{name}.magnet"),
    }
}

/// Peer addresses a magnet link suggests (`x.pe=host:port`, BEP 9), numeric only.
fn peer_hints(link: &str) -> Vec<std::net::SocketAddr> {
    let Some((_, query)) = link.split_once('?') else {
        return Vec::new();
    };
    query
        .split('&')
        .filter_map(|pair| pair.strip_prefix("x.pe="))
        .filter_map(|v| percent_decode(v).parse().ok())
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_kinds() {
        assert_eq!(drop_kind("a.torrent"), Some(Drop::Torrent));
        assert_eq!(drop_kind("A.TORRENT"), Some(Drop::Torrent));
        assert_eq!(drop_kind("x.magnet"), Some(Drop::Magnet));
        assert_eq!(drop_kind("x.torrent.error.txt"), None);
        assert_eq!(drop_kind("status.txt"), None);
    }

    #[test]
    fn peer_hints_from_magnets() {
        let link = "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567&x.pe=127.0.0.1:6881&dn=x&x.pe=%5B%3A%3A1%5D%3A51413&x.pe=host.example:1";
        let peers = peer_hints(link);
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[0].to_string(), "127.0.0.1:6881");
        assert_eq!(peers[1].to_string(), "[::1]:51413");
        assert!(peer_hints("magnet:?xt=urn:btih:abc").is_empty());
    }

    #[test]
    fn links_are_dropped_under_their_names() {
        assert_eq!(
            link_drop_name("magnet:?xt=urn:btih:00&dn=Big+Buck%20Bunny"),
            "Big Buck Bunny.magnet"
        );
        assert_eq!(
            link_drop_name("magnet:?xt=urn:btih:00&dn=a/b"),
            "a_b.magnet"
        );
        assert_eq!(
            link_drop_name("magnet:?xt=urn:btih:00&dn=.."),
            "added.magnet"
        );
        assert_eq!(link_drop_name("magnet:?xt=urn:btih:00"), "added.magnet");
        assert_eq!(
            link_drop_name("https://example.org/t/film.torrent?x=1"),
            "film.magnet"
        );
        assert_eq!(link_drop_name("https://example.org/"), "added.magnet");
    }
}
