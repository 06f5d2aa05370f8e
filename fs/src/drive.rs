//! The VFS contract: one user's tree, as every front end (WebDAV, FUSE, the web API) sees it.
//! All policy — names, quotas, what is read-only — lives in implementations of this trait;
//! front ends only translate.

use async_trait::async_trait;
use bytes::Bytes;

use crate::{
    Attr, ChangeReceiver, CreateOptions, DirEntry, FileHandle, FsError, FsResult, NodeId,
    OpenOptions, RenameOptions, SetAttr, Usage, XattrChange,
};

/// One user's drive.
///
/// Content changes are staged per handle and become visible atomically at `flush`: readers
/// never see a half-written file, and a writer that goes away without flushing leaves the
/// previous content (or, for a deferred create, nothing).
#[async_trait]
pub trait Drive: Send + Sync + 'static {
    /// The drive's root folder.
    fn root(&self) -> NodeId;

    /// The child `name` of folder `parent`.
    async fn lookup(&self, parent: NodeId, name: &str) -> FsResult<Attr>;

    async fn getattr(&self, node: NodeId) -> FsResult<Attr>;

    /// A folder's entries, sorted by name.
    async fn list(&self, dir: NodeId) -> FsResult<Vec<DirEntry>>;

    /// The node at `names` below the root (an empty slice is the root). Implementations may
    /// do this in one step; the default walks `lookup`.
    async fn resolve(&self, names: &[&str]) -> FsResult<Attr> {
        let mut attr = self.getattr(self.root()).await?;
        for name in names {
            if !attr.is_dir() {
                return Err(FsError::NotADirectory);
            }
            attr = self.lookup(attr.id, name).await?;
        }
        Ok(attr)
    }

    /// Opens an existing file. Folders can't be opened (`IsADirectory`).
    async fn open(&self, node: NodeId, opts: OpenOptions) -> FsResult<FileHandle>;

    /// Creates (or, unless exclusive, truncates) file `name` in `parent` and opens it for
    /// reading and writing. Returns the attributes the file will have once committed.
    async fn create(
        &self,
        parent: NodeId,
        name: &str,
        opts: CreateOptions,
    ) -> FsResult<(Attr, FileHandle)>;

    /// Up to `len` bytes at `offset`; fewer only at the end of the file. Never returns
    /// bytes that are not the file's content: it waits for them or fails.
    async fn read(&self, fh: FileHandle, offset: u64, len: u32) -> FsResult<Bytes>;

    /// Writes into the handle's staged content. Returns the number of bytes written.
    async fn write(&self, fh: FileHandle, offset: u64, data: &[u8]) -> FsResult<u32>;

    /// Cuts or extends (with zeros) the handle's staged content to `size` bytes: ftruncate(2)
    /// on an open file. Committed by `flush` like a write.
    async fn truncate(&self, fh: FileHandle, size: u64) -> FsResult<()>;

    /// Commits the handle's staged content, durably, and returns the file's attributes.
    /// Does nothing if nothing changed since the last commit.
    async fn flush(&self, fh: FileHandle) -> FsResult<Attr>;

    /// Closes the handle. Content not committed by `flush` is discarded.
    async fn release(&self, fh: FileHandle) -> FsResult<()>;

    /// Attributes of an open handle, including its staged, not yet committed, length.
    async fn handle_attr(&self, fh: FileHandle) -> FsResult<Attr>;

    async fn mkdir(&self, parent: NodeId, name: &str) -> FsResult<Attr>;

    /// Removes a file.
    async fn unlink(&self, parent: NodeId, name: &str) -> FsResult<()>;

    /// Removes an empty folder.
    async fn rmdir(&self, parent: NodeId, name: &str) -> FsResult<()>;

    /// Moves `name` in `parent` to `new_name` in `new_parent`, replacing a file or an empty
    /// folder there unless `opts.no_replace`.
    async fn rename(
        &self,
        parent: NodeId,
        name: &str,
        new_parent: NodeId,
        new_name: &str,
        opts: RenameOptions,
    ) -> FsResult<()>;

    /// Copies a file (not a folder) to a new name. Cheap: the copy shares the content.
    async fn copy(&self, node: NodeId, new_parent: NodeId, new_name: &str) -> FsResult<Attr>;

    async fn setattr(&self, node: NodeId, changes: SetAttr) -> FsResult<Attr>;

    /// Space used and available.
    async fn usage(&self) -> FsResult<Usage>;

    /// A node's extended attributes (WebDAV dead properties), sorted by name.
    async fn xattrs(&self, node: NodeId) -> FsResult<Vec<(String, Vec<u8>)>>;

    /// Applies all changes or none.
    async fn set_xattrs(&self, node: NodeId, changes: Vec<XattrChange>) -> FsResult<()>;

    /// The committed content of an open, read-only handle as a local file, when the drive
    /// keeps it as one whole file: a front end may then let the kernel read it directly
    /// (FUSE passthrough). `None` when the content is elsewhere or not complete.
    async fn local_file(&self, _fh: FileHandle) -> FsResult<Option<std::fs::File>> {
        Ok(None)
    }

    /// Committed changes to this drive from now on, from every front end, so that caching
    /// front ends can drop stale entries. `None` if the drive can't report them. Must be
    /// called within a tokio runtime.
    fn watch(&self) -> Option<ChangeReceiver> {
        None
    }
}
