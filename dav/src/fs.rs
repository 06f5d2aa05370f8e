//! dav-server's file system traits over a `Drive`: path resolution and translation only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use dav_server::davpath::DavPath;
use dav_server::fs::{
    DavDirEntry, DavFile, DavMetaData, DavProp, FsError as DavError, FsFuture, FsResult, FsStream,
    GuardedFileSystem, OpenOptions as DavOpenOptions, ReadDirMeta,
};
use futures_util::FutureExt;
use http::StatusCode;
use tokio::sync::OnceCell;
use torrentdrive_fs::{
    name_from_bytes, Attr, CreateOptions, Drive, FsError, NodeId, OpenOptions, RenameOptions,
    SetAttr, Usage,
};

use crate::file::DriveFile;
use crate::props;

/// The credentials dav-server hands to every call: the signed-in user's drive, and what
/// this request already learnt about it. A new `DavUser` is made for every request.
#[derive(Clone)]
pub struct DavUser {
    pub name: String,
    pub drive: Arc<dyn Drive>,
    /// The drive's usage, read at most once per request (see `meta_of`).
    usage: Arc<OnceCell<Usage>>,
    /// Attributes of paths listed or looked up by this request. dav-server asks for the dead
    /// properties of every entry of a PROPFIND; with these it needs no lookup per entry.
    /// Cleared by every change.
    seen: Arc<Mutex<HashMap<Vec<u8>, Attr>>>,
}

impl DavUser {
    pub fn new(name: String, drive: Arc<dyn Drive>) -> DavUser {
        DavUser {
            name,
            drive,
            usage: Arc::new(OnceCell::new()),
            seen: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Attr>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remember(&self, path: &DavPath, attr: &Attr) {
        self.seen().insert(cache_key(path.as_bytes()), attr.clone());
    }

    fn recall(&self, path: &DavPath) -> Option<Attr> {
        self.seen().get(&cache_key(path.as_bytes())).cloned()
    }

    /// Forgets what this request saw, before it changes anything.
    fn changing(&self) {
        self.seen().clear();
    }

    async fn usage(&self) -> Result<Usage, FsError> {
        self.usage
            .get_or_try_init(|| self.drive.usage())
            .await
            .copied()
    }
}

fn cache_key(path: &[u8]) -> Vec<u8> {
    let trimmed = path.strip_suffix(b"/").unwrap_or(path);
    trimmed.to_vec()
}

/// The one translation of drive errors into dav-server's vocabulary, which is coarser than
/// HTTP: the status is decided by `FsError::http_status`, this only picks the nearest variant.
pub(crate) fn dav_error(e: FsError) -> DavError {
    match e.http_status() {
        404 => DavError::NotFound,
        // dav-server answers a PUT or MKCOL that fails with NotFound with 409 Conflict.
        409 => DavError::NotFound,
        405 => DavError::Exists,
        400 | 403 => DavError::Forbidden,
        507 => DavError::InsufficientStorage,
        _ => {
            tracing::warn!(error = %e, "WebDAV request failed");
            DavError::GeneralFailure
        }
    }
}

/// The names of a request path, checked.
fn names(path: &DavPath) -> FsResult<Vec<&str>> {
    path.as_bytes()
        .split(|&b| b == b'/')
        .filter(|s| !s.is_empty())
        .map(|s| name_from_bytes(s).map_err(dav_error))
        .collect()
}

async fn resolve(user: &DavUser, path: &DavPath) -> FsResult<Attr> {
    let attr = user.drive.resolve(&names(path)?).await.map_err(dav_error)?;
    user.remember(path, &attr);
    Ok(attr)
}

/// Like `resolve`, but content with what this request saw (for read-only questions).
async fn resolve_seen(user: &DavUser, path: &DavPath) -> FsResult<Attr> {
    match user.recall(path) {
        Some(attr) => Ok(attr),
        None => resolve(user, path).await,
    }
}

/// The parent folder of `path` and the last name.
/// Also marks the request as changing the drive: every caller is about to.
async fn resolve_parent<'p>(user: &DavUser, path: &'p DavPath) -> FsResult<(NodeId, &'p str)> {
    user.changing();
    let mut names = names(path)?;
    let name = names.pop().ok_or(DavError::Forbidden)?;
    let parent = user.drive.resolve(&names).await.map_err(dav_error)?;
    if !parent.is_dir() {
        return Err(DavError::NotFound);
    }
    Ok((parent.id, name))
}

/// Metadata as dav-server wants it.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    attr: Attr,
    /// dav-server 0.11 reports a collection's length as its RFC 4331 quota-used-bytes, so a
    /// folder's "length" is the user's usage.
    dir_len: u64,
}

impl Meta {
    pub(crate) fn file(attr: Attr) -> Meta {
        Meta { attr, dir_len: 0 }
    }
}

async fn meta_of(user: &DavUser, attr: Attr) -> FsResult<Meta> {
    let dir_len = if attr.is_dir() {
        user.usage().await.map_err(dav_error)?.used
    } else {
        0
    };
    Ok(Meta { attr, dir_len })
}

impl DavMetaData for Meta {
    fn len(&self) -> u64 {
        if self.attr.is_dir() {
            self.dir_len
        } else {
            self.attr.size
        }
    }
    fn modified(&self) -> FsResult<SystemTime> {
        Ok(self.attr.mtime)
    }
    fn status_changed(&self) -> FsResult<SystemTime> {
        Ok(self.attr.ctime)
    }
    fn is_dir(&self) -> bool {
        self.attr.is_dir()
    }
    fn etag(&self) -> Option<String> {
        Some(self.attr.etag())
    }
}

struct Entry {
    name: String,
    meta: Meta,
}

impl DavDirEntry for Entry {
    fn name(&self) -> Vec<u8> {
        self.name.as_bytes().to_vec()
    }
    fn metadata(&self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        let meta: Box<dyn DavMetaData> = Box::new(self.meta.clone());
        async move { Ok(meta) }.boxed()
    }
}

/// dav-server's view of the signed-in user's drive. Stateless: the drive comes with the
/// credentials of each call.
#[derive(Clone, Copy)]
pub struct DriveFs;

impl GuardedFileSystem<DavUser> for DriveFs {
    fn open<'a>(
        &'a self,
        path: &'a DavPath,
        options: DavOpenOptions,
        user: &'a DavUser,
    ) -> FsFuture<'a, Box<dyn DavFile>> {
        async move {
            let drive = &user.drive;
            let (parent, name) = resolve_parent(user, path).await?;
            let existing = match drive.lookup(parent, name).await {
                Ok(attr) => Some(attr),
                Err(FsError::NotFound) => None,
                Err(e) => return Err(dav_error(e)),
            };
            let fh = match existing {
                Some(_) if options.create_new => return Err(DavError::Exists),
                Some(attr) => {
                    let opts = OpenOptions {
                        write: options.write || options.append,
                        truncate: options.truncate,
                        expected_size: options.size.filter(|_| options.write),
                    };
                    drive.open(attr.id, opts).await
                }
                None if options.create || options.create_new => {
                    let opts = CreateOptions {
                        exclusive: options.create_new,
                        deferred: true,
                        expected_size: options.size,
                    };
                    drive.create(parent, name, opts).await.map(|(_, fh)| fh)
                }
                None => return Err(DavError::NotFound),
            }
            .map_err(dav_error)?;
            Ok(Box::new(DriveFile::new(drive.clone(), fh)) as Box<dyn DavFile>)
        }
        .boxed()
    }

    fn read_dir<'a>(
        &'a self,
        path: &'a DavPath,
        _meta: ReadDirMeta,
        user: &'a DavUser,
    ) -> FsFuture<'a, FsStream<Box<dyn DavDirEntry>>> {
        async move {
            let dir = resolve(user, path).await?;
            let list = user.drive.list(dir.id).await.map_err(dav_error)?;
            let mut entries = Vec::with_capacity(list.len());
            for e in list {
                let mut key = cache_key(path.as_bytes());
                key.push(b'/');
                key.extend_from_slice(e.name.as_bytes());
                user.seen().insert(key, e.attr.clone());
                let entry: Box<dyn DavDirEntry> = Box::new(Entry {
                    name: e.name,
                    meta: meta_of(user, e.attr).await?,
                });
                entries.push(Ok(entry));
            }
            Ok(Box::pin(futures_util::stream::iter(entries)) as FsStream<_>)
        }
        .boxed()
    }

    fn metadata<'a>(
        &'a self,
        path: &'a DavPath,
        user: &'a DavUser,
    ) -> FsFuture<'a, Box<dyn DavMetaData>> {
        async move {
            let attr = resolve(user, path).await?;
            Ok(Box::new(meta_of(user, attr).await?) as Box<dyn DavMetaData>)
        }
        .boxed()
    }

    fn create_dir<'a>(&'a self, path: &'a DavPath, user: &'a DavUser) -> FsFuture<'a, ()> {
        async move {
            let (parent, name) = resolve_parent(user, path).await?;
            user.drive.mkdir(parent, name).await.map_err(dav_error)?;
            Ok(())
        }
        .boxed()
    }

    fn remove_dir<'a>(&'a self, path: &'a DavPath, user: &'a DavUser) -> FsFuture<'a, ()> {
        async move {
            let (parent, name) = resolve_parent(user, path).await?;
            user.drive.rmdir(parent, name).await.map_err(dav_error)
        }
        .boxed()
    }

    fn remove_file<'a>(&'a self, path: &'a DavPath, user: &'a DavUser) -> FsFuture<'a, ()> {
        async move {
            let (parent, name) = resolve_parent(user, path).await?;
            user.drive.unlink(parent, name).await.map_err(dav_error)
        }
        .boxed()
    }

    fn rename<'a>(
        &'a self,
        from: &'a DavPath,
        to: &'a DavPath,
        user: &'a DavUser,
    ) -> FsFuture<'a, ()> {
        async move {
            let (parent, name) = resolve_parent(user, from).await?;
            let (new_parent, new_name) = resolve_parent(user, to).await?;
            user.drive
                .rename(parent, name, new_parent, new_name, RenameOptions::default())
                .await
                .map_err(dav_error)
        }
        .boxed()
    }

    fn copy<'a>(
        &'a self,
        from: &'a DavPath,
        to: &'a DavPath,
        user: &'a DavUser,
    ) -> FsFuture<'a, ()> {
        async move {
            let src = resolve(user, from).await?;
            let (new_parent, new_name) = resolve_parent(user, to).await?;
            user.drive
                .copy(src.id, new_parent, new_name)
                .await
                .map(|_| ())
                .map_err(dav_error)
        }
        .boxed()
    }

    fn set_modified<'a>(
        &'a self,
        path: &'a DavPath,
        tm: SystemTime,
        user: &'a DavUser,
    ) -> FsFuture<'a, ()> {
        async move {
            user.changing();
            let attr = resolve(user, path).await?;
            let changes = SetAttr {
                size: None,
                mtime: Some(tm),
            };
            user.drive
                .setattr(attr.id, changes)
                .await
                .map(|_| ())
                .map_err(dav_error)
        }
        .boxed()
    }

    fn have_props<'a>(
        &'a self,
        path: &'a DavPath,
        user: &'a DavUser,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>> {
        // Every node can have dead properties; a node this request saw without any can
        // skip the question.
        async move { user.recall(path).is_none_or(|a| a.has_xattrs) }.boxed()
    }

    fn patch_props<'a>(
        &'a self,
        path: &'a DavPath,
        patch: Vec<(bool, DavProp)>,
        user: &'a DavUser,
    ) -> FsFuture<'a, Vec<(StatusCode, DavProp)>> {
        async move {
            user.changing();
            let attr = resolve(user, path).await?;
            let (changes, result) = props::patch(patch);
            user.drive
                .set_xattrs(attr.id, changes)
                .await
                .map_err(dav_error)?;
            Ok(result)
        }
        .boxed()
    }

    fn get_props<'a>(
        &'a self,
        path: &'a DavPath,
        do_content: bool,
        user: &'a DavUser,
    ) -> FsFuture<'a, Vec<DavProp>> {
        async move {
            let attr = resolve_seen(user, path).await?;
            if !attr.has_xattrs {
                return Ok(Vec::new());
            }
            let xattrs = user.drive.xattrs(attr.id).await.map_err(dav_error)?;
            Ok(props::decode_all(&xattrs, do_content))
        }
        .boxed()
    }

    fn get_prop<'a>(
        &'a self,
        path: &'a DavPath,
        prop: DavProp,
        user: &'a DavUser,
    ) -> FsFuture<'a, Vec<u8>> {
        async move {
            let attr = resolve_seen(user, path).await?;
            if !attr.has_xattrs {
                return Err(DavError::NotFound);
            }
            let xattrs = user.drive.xattrs(attr.id).await.map_err(dav_error)?;
            props::find(&xattrs, &prop).ok_or(DavError::NotFound)
        }
        .boxed()
    }

    fn get_quota<'a>(&'a self, user: &'a DavUser) -> FsFuture<'a, (u64, Option<u64>)> {
        async move {
            let u = user.usage().await.map_err(dav_error)?;
            Ok((u.used, Some(u.used.saturating_add(u.available))))
        }
        .boxed()
    }
}
