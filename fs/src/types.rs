//! The values that cross the `Drive` trait.

use std::time::SystemTime;

/// Identifies a file or folder for as long as it exists. Never reused within a drive's store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u64);

/// An open file, from `open`/`create` until `release`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileHandle(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    File,
    Dir,
}

/// The attributes of a file or folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub id: NodeId,
    pub kind: NodeKind,
    /// Content length in bytes (0 for folders).
    pub size: u64,
    /// Last change of the content, or what a client set it to.
    pub mtime: SystemTime,
    /// Last change of the node itself (content, name, attributes).
    pub ctime: SystemTime,
    /// Bumped on every committed content change; with `id` it makes a strong ETag that changes
    /// even when a client restores an old mtime.
    pub version: u64,
    /// The content can't be written (rename, move and delete may still be allowed).
    pub read_only: bool,
    /// The node has extended attributes: front ends can skip asking for them otherwise.
    pub has_xattrs: bool,
    /// The content is made anew for every reader and its length can change at any moment
    /// (a status file): front ends must not cache it.
    pub volatile: bool,
}

impl Attr {
    /// The attributes of a file that is not committed yet (a deferred create).
    pub fn uncommitted_file(now: SystemTime) -> Attr {
        Attr {
            id: NodeId(0),
            kind: NodeKind::File,
            size: 0,
            mtime: now,
            ctime: now,
            version: 0,
            read_only: false,
            has_xattrs: false,
            volatile: false,
        }
    }

    pub fn is_dir(&self) -> bool {
        self.kind == NodeKind::Dir
    }

    /// A strong entity tag for HTTP: changes whenever a file's content or a folder's
    /// entries do.
    pub fn etag(&self) -> String {
        match self.kind {
            NodeKind::File => format!("{:x}-{:x}-{:x}", self.id.0, self.version, self.size),
            NodeKind::Dir => {
                let nanos = self
                    .mtime
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                format!("{:x}-d{:x}", self.id.0, nanos)
            }
        }
    }
}

/// One entry of a folder listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub attr: Attr,
}

/// How to open an existing file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenOptions {
    pub write: bool,
    /// Start from empty content instead of the current one (only with `write`).
    pub truncate: bool,
    /// The number of bytes the writer announced (an HTTP Content-Length): the quota is checked
    /// up front, and `flush` refuses to commit unless exactly that many bytes were written.
    pub expected_size: Option<u64>,
}

/// How to create a file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CreateOptions {
    /// Fail with `Exists` if the name is taken; otherwise an existing file is opened truncated.
    pub exclusive: bool,
    /// The new name appears only when the handle commits (`flush`): an upload that fails
    /// leaves nothing behind. Without it the empty file exists at once, as POSIX wants.
    pub deferred: bool,
    pub expected_size: Option<u64>,
}

/// Attribute changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// Truncate or extend (with zeros) to this length.
    pub size: Option<u64>,
    pub mtime: Option<SystemTime>,
}

/// Rename behaviour beyond plain POSIX rename.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RenameOptions {
    /// Fail with `Exists` instead of replacing an existing target.
    pub no_replace: bool,
}

/// Space of one drive, as statfs and the WebDAV quota properties report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Bytes the user's files take (each file's length; copies count again).
    pub used: u64,
    /// The user's quota, if any.
    pub limit: Option<u64>,
    /// Bytes the user can still store: the quota left, capped by the free space of the store.
    pub available: u64,
    /// Number of files and folders in the drive.
    pub nodes: u64,
}

/// A committed change to a drive's tree, as [`crate::Drive::watch`] reports it: front ends
/// that cache (the kernel, for a FUSE mount) drop what they hold for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The entry `name` of folder `parent` appeared, disappeared or now names another node.
    Entry { parent: NodeId, name: String },
    /// The node's attributes or content changed, or it was removed.
    Node(NodeId),
    /// Changes were missed (the watcher fell behind): assume anything changed.
    Lost,
}

/// The changes of one drive, in commit order. Dropping it ends the watch.
pub type ChangeReceiver = tokio::sync::mpsc::Receiver<Change>;

/// A change to one extended attribute (WebDAV dead property, FUSE xattr).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XattrChange {
    pub name: String,
    /// `None` removes it.
    pub value: Option<Vec<u8>>,
}
