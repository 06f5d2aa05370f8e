//! dav-server's file system traits over a `Drive`: path resolution and translation only.

use std::sync::Arc;
use std::time::SystemTime;

use dav_server::davpath::DavPath;
use dav_server::fs::{
    DavDirEntry, DavFile, DavMetaData, DavProp, FsError as DavError, FsFuture, FsResult, FsStream,
    GuardedFileSystem, OpenOptions as DavOpenOptions, ReadDirMeta,
};
use futures_util::FutureExt;
use http::StatusCode;
use torrentdrive_fs::{
    name_from_bytes, Attr, CreateOptions, Drive, FsError, NodeId, OpenOptions, RenameOptions,
    SetAttr,
};

use crate::file::DriveFile;
use crate::props;

/// The credentials dav-server hands to every call: the signed-in user's drive.
#[derive(Clone)]
pub struct DavUser {
    pub name: String,
    pub drive: Arc<dyn Drive>,
}

impl DavUser {
    pub fn new(name: String, drive: Arc<dyn Drive>) -> DavUser {
        DavUser { name, drive }
    }
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
    user.drive.resolve(&names(path)?).await.map_err(dav_error)
}

/// The parent folder of `path` and the last name.
async fn resolve_parent<'p>(user: &DavUser, path: &'p DavPath) -> FsResult<(NodeId, &'p str)> {
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
pub(crate) struct Meta(pub(crate) Attr);

impl DavMetaData for Meta {
    fn len(&self) -> u64 {
        self.0.size
    }
    fn modified(&self) -> FsResult<SystemTime> {
        Ok(self.0.mtime)
    }
    fn status_changed(&self) -> FsResult<SystemTime> {
        Ok(self.0.ctime)
    }
    fn is_dir(&self) -> bool {
        self.0.is_dir()
    }
    fn etag(&self) -> Option<String> {
        Some(self.0.etag())
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
/// credentials of each call. PROPFIND never reaches it (see `propfind`), so it only stores
/// dead properties (PROPPATCH) and doesn't read them.
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
                let entry: Box<dyn DavDirEntry> = Box::new(Entry {
                    name: e.name,
                    meta: Meta(e.attr),
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
            Ok(Box::new(Meta(attr)) as Box<dyn DavMetaData>)
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
        _path: &'a DavPath,
        _user: &'a DavUser,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>> {
        async { true }.boxed()
    }

    fn patch_props<'a>(
        &'a self,
        path: &'a DavPath,
        patch: Vec<(bool, DavProp)>,
        user: &'a DavUser,
    ) -> FsFuture<'a, Vec<(StatusCode, DavProp)>> {
        async move {
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

    fn get_quota<'a>(&'a self, user: &'a DavUser) -> FsFuture<'a, (u64, Option<u64>)> {
        async move {
            let u = user.drive.usage().await.map_err(dav_error)?;
            Ok((u.used, Some(u.used.saturating_add(u.available))))
        }
        .boxed()
    }
}
