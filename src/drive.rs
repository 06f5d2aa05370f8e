//! `Drive` over the metadata store and the blob store: one user's tree.
//!
//! Writes are staged per handle (in memory, then in a temp file past `SPILL`) and committed
//! by `flush` in one transaction: small content in the database itself, larger content as
//! a new blob. Readers keep the version they opened; nobody sees a partial write.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::Mutex as AsyncMutex;
use torrentdrive_fs::{
    check_complete, check_name, Attr, Change, ChangeReceiver, CreateOptions, DirEntry, Drive,
    FileHandle, FsError, FsResult, NodeId, NodeKind, OpenOptions, RenameOptions, SetAttr, Usage,
    XattrChange,
};

use crate::blob::{BlobId, BlobReader, BlobStore};
use crate::staging::{blocking, read_at, NewContent, Staging, SPILL};
use crate::store::{
    from_nanos, now_nanos, to_nanos, Content, Kind, NodeRec, ReadTx, Store, StoreError, UserRec,
    WriteTx,
};
use crate::torrents::engine::FileStream;
use crate::torrents::metainfo::hex;
use crate::torrents::pickup::{remove_error_file, ADD};
use crate::torrents::status::STATUS_NAME;
use crate::torrents::Torrents;

/// Folders every drive has at its root, which can't be removed or renamed.
pub const FIXED_FOLDERS: [&str; 2] = ["Add", "Downloads"];

/// Open handles: id → (owning user, state).
type HandleTable = HashMap<u64, (u64, Arc<AsyncMutex<Handle>>)>;

/// What all drives share: the stores and the open handles.
pub struct Storage {
    store: Arc<Store>,
    blobs: Arc<dyn BlobStore>,
    handles: Mutex<HandleTable>,
    next_handle: AtomicU64,
    /// Free space of the blob store and when it was measured: every write checks it.
    free: Mutex<Option<(Instant, u64)>>,
    /// Bytes of the disk kept free: writes that would eat into them fail with NoSpace.
    reserve: AtomicU64,
    /// Bytes served and downloaded per user, not yet in the store.
    pub traffic: crate::traffic::Traffic,
    /// While backups run (the count), blobs nothing references any more are kept here
    /// instead of deleted: the backup's snapshot may still reference them.
    held: Mutex<(usize, Vec<BlobId>)>,
    torrents: OnceLock<Arc<Torrents>>,
}

/// How long a free-space reading is trusted.
const FREE_SPACE_TTL: Duration = Duration::from_millis(500);

/// The committed content a handle reads when it has no staged content.
enum Base {
    Inline(Bytes),
    Blob(Arc<dyn BlobReader>),
    /// A torrent file, read through the engine; the stream is opened by the first read and
    /// kept for the handle's life (one per handle: streams are a scarce engine resource).
    Torrent {
        hash: [u8; 20],
        file: u32,
        stream: Option<FileStream>,
    },
}

struct Handle {
    /// `None` until a deferred create commits.
    node: Option<u64>,
    deferred: Option<(u64, String)>,
    writable: bool,
    dirty: bool,
    expected: Option<u64>,
    written: u64,
    base: Base,
    base_size: u64,
    /// Content being written; created from `base` (or empty) by the first write.
    staging: Option<Staging>,
    /// The first write starts from empty content instead of `base`.
    truncated: bool,
    /// Staged length already known to fit in the quota.
    allowance: u64,
    /// Why a write or truncate failed: the handle then never commits, so a copy that ran out
    /// of quota or disk leaves the old content instead of a cut-off file.
    failed: Option<FsError>,
}

impl Handle {
    /// The length reads through this handle see.
    fn visible_len(&self) -> u64 {
        match &self.staging {
            Some(s) => s.len(),
            None if self.truncated => 0,
            None => self.base_size,
        }
    }
}

fn kind_of(k: Kind) -> NodeKind {
    match k {
        Kind::File => NodeKind::File,
        Kind::Dir => NodeKind::Dir,
    }
}

fn attr_of(id: u64, rec: &NodeRec) -> Attr {
    Attr {
        id: NodeId(id),
        kind: kind_of(rec.kind),
        size: rec.size,
        mtime: from_nanos(rec.mtime),
        ctime: from_nanos(rec.ctime),
        version: rec.version,
        read_only: matches!(rec.content, Content::Torrent { .. }),
        has_xattrs: rec.has_xattrs,
        volatile: false,
    }
}

impl Storage {
    pub fn new(store: Arc<Store>, blobs: Arc<dyn BlobStore>) -> Arc<Storage> {
        Arc::new(Storage {
            store,
            blobs,
            handles: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            free: Mutex::new(None),
            reserve: AtomicU64::new(0),
            traffic: Default::default(),
            held: Mutex::new((0, Vec::new())),
            torrents: OnceLock::new(),
        })
    }

    /// Bytes free for new content (the disk's free space less the reserve), re-measured at
    /// most every `FREE_SPACE_TTL`.
    pub fn free_space(&self) -> FsResult<u64> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = match *free {
            Some((at, bytes)) if at.elapsed() < FREE_SPACE_TTL => bytes,
            _ => {
                let bytes = self.blobs.free_space()?;
                *free = Some((Instant::now(), bytes));
                bytes
            }
        };
        Ok(bytes.saturating_sub(self.reserve.load(Ordering::Relaxed)))
    }

    /// Keeps `bytes` of the disk free: uploads that would go below get NoSpace (507).
    pub fn set_reserve(&self, bytes: u64) {
        self.reserve.store(bytes, Ordering::Relaxed);
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    /// The drive of `user`.
    pub fn drive(self: &Arc<Self>, user: &UserRec) -> UserDrive {
        // `/Add` can't be removed or renamed: its id is known for the drive's life.
        let add = match self.store.read(|tx| tx.child(user.root, ADD)) {
            Ok(add) => add,
            Err(e) => {
                tracing::error!(user = %user.name, error = %e, "looking up /Add");
                None
            }
        };
        UserDrive {
            storage: self.clone(),
            user: user.id,
            name: user.name.clone(),
            root: user.root,
            add,
        }
    }

    /// Reads the metadata store. Inline: a read is a few B-tree lookups, cheaper than a hop
    /// to a blocking thread.
    fn read<T>(&self, f: impl FnOnce(&ReadTx) -> FsResult<T>) -> FsResult<T> {
        self.store.read(f)
    }

    /// Changes the metadata store; returns once the change is durable.
    async fn write<T: Send + 'static>(
        &self,
        f: impl Fn(&WriteTx) -> FsResult<T> + Send + 'static,
    ) -> FsResult<T> {
        self.store.write_async(f).await
    }

    fn handles(&self) -> std::sync::MutexGuard<'_, HandleTable> {
        self.handles.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add_handle(&self, user: u64, h: Handle) -> FileHandle {
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.handles()
            .insert(fh, (user, Arc::new(AsyncMutex::new(h))));
        FileHandle(fh)
    }

    /// The torrent subsystem, once the daemon has started it.
    pub fn torrents(&self) -> Option<&Arc<Torrents>> {
        self.torrents.get()
    }

    pub fn set_torrents(&self, torrents: Arc<Torrents>) {
        let _ = self.torrents.set(torrents);
    }

    /// Deletes content a commit left unreferenced: blobs now, torrent data in the background.
    /// A failure only leaves an orphan behind, for the janitor.
    pub(crate) fn dispose(&self, dead: Vec<Dead>) {
        for d in dead {
            match d {
                Dead::Blob(id) => {
                    let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
                    if held.0 > 0 {
                        held.1.push(id);
                        continue;
                    }
                    drop(held);
                    self.remove_blob(id);
                }
                Dead::Torrent(hash) => {
                    match (self.torrents.get(), tokio::runtime::Handle::try_current()) {
                        (Some(torrents), Ok(rt)) => {
                            let torrents = torrents.clone();
                            rt.spawn(async move { torrents.forget(&hash).await });
                        }
                        _ => {
                            tracing::info!(torrent = %hex(&hash), "no engine running: torrent data left for later")
                        }
                    }
                }
            }
        }
    }

    fn remove_blob(&self, id: BlobId) {
        if let Err(e) = self.blobs.remove(id) {
            tracing::warn!(blob = %format!("{id:032x}"), error = %e, "removing blob");
        }
    }

    /// Keeps unreferenced blobs on disk until `release_blobs`: a backup is copying them.
    pub fn hold_blobs(&self) {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).0 += 1;
    }

    /// Whether a backup holds unreferenced blobs now.
    pub fn blobs_held(&self) -> bool {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).0 > 0
    }

    /// Ends a `hold_blobs`; the last one deletes what was held.
    pub fn release_blobs(&self) {
        let freed = {
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            held.0 = held.0.saturating_sub(1);
            if held.0 == 0 {
                std::mem::take(&mut held.1)
            } else {
                Vec::new()
            }
        };
        for id in freed {
            self.remove_blob(id);
        }
    }

    pub(crate) async fn dispose_async(self: &Arc<Self>, dead: Vec<Dead>) {
        if dead.is_empty() {
            return;
        }
        let me = self.clone();
        let _ = blocking(move || {
            me.dispose(dead);
            Ok(())
        })
        .await;
    }

    async fn open_blob(&self, blob: BlobId) -> FsResult<Base> {
        let blobs = self.blobs.clone();
        blocking(move || Ok(Base::Blob(blobs.open(blob)?))).await
    }
}

/// Content nothing references any more, to delete once the commit that dropped it is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dead {
    Blob(BlobId),
    Torrent([u8; 20]),
}

/// Drops a node's claim on its content; returns content nothing references any more.
pub(crate) fn release_content(tx: &WriteTx, rec: &NodeRec) -> Result<Option<Dead>, StoreError> {
    match &rec.content {
        Content::Inline => Ok(None),
        Content::Blob(id) => Ok((tx.add_blob_ref(*id, -1)? == 0).then_some(Dead::Blob(*id))),
        Content::Torrent { hash, .. } => {
            // The user's transfer ends with their last file of it...
            if let Some(mut t) = tx.transfer(rec.owner, hash)? {
                t.refs = t.refs.saturating_sub(1);
                if t.refs == 0 {
                    tx.remove_transfer(rec.owner, hash)?;
                } else {
                    tx.put_transfer(rec.owner, hash, &t)?;
                }
            }
            // ...and the torrent with the last file of anyone.
            let Some(mut torrent) = tx.torrent(hash)? else {
                return Ok(None);
            };
            torrent.refs = torrent.refs.saturating_sub(1);
            if torrent.refs == 0 {
                tx.remove_torrent(hash)?;
                Ok(Some(Dead::Torrent(*hash)))
            } else {
                tx.put_torrent(hash, &torrent)?;
                Ok(None)
            }
        }
    }
}

/// Takes one more reference on a node's content (a copy of node `from`, `rec`, as `to`).
fn share_content(tx: &WriteTx, from: u64, to: u64, rec: &NodeRec) -> Result<(), StoreError> {
    match &rec.content {
        Content::Inline => tx.set_inline(to, Some(&tx.inline(from)?)),
        Content::Blob(b) => tx.add_blob_ref(*b, 1).map(|_| ()),
        Content::Torrent { hash, .. } => {
            if let Some(mut t) = tx.transfer(rec.owner, hash)? {
                t.refs += 1;
                tx.put_transfer(rec.owner, hash, &t)?;
            }
            if let Some(mut torrent) = tx.torrent(hash)? {
                torrent.refs += 1;
                tx.put_torrent(hash, &torrent)?;
            }
            Ok(())
        }
    }
}

/// One user's drive.
#[derive(Clone)]
pub struct UserDrive {
    pub(crate) storage: Arc<Storage>,
    pub(crate) user: u64,
    pub(crate) name: String,
    pub(crate) root: u64,
    /// The `/Add` folder (`None` only if the store could not be read).
    pub(crate) add: Option<u64>,
}

/// The node `id` if it belongs to `user`.
fn owned(tx_node: Option<NodeRec>, user: u64) -> FsResult<NodeRec> {
    match tx_node {
        Some(rec) if rec.owner == user => Ok(rec),
        _ => Err(FsError::NotFound),
    }
}

macro_rules! node_of {
    ($tx:expr, $id:expr, $user:expr) => {
        owned($tx.node($id)?, $user)
    };
}

macro_rules! dir_of {
    ($tx:expr, $id:expr, $user:expr) => {{
        let rec = node_of!($tx, $id, $user)?;
        if rec.kind != Kind::Dir {
            return Err(FsError::NotADirectory);
        }
        rec
    }};
}

impl UserDrive {
    pub fn user_name(&self) -> &str {
        &self.name
    }

    fn is_fixed(&self, parent: u64, name: &str) -> bool {
        parent == self.root && FIXED_FOLDERS.contains(&name)
    }

    /// The state of one of this user's handles.
    fn handle(&self, fh: FileHandle) -> FsResult<Arc<AsyncMutex<Handle>>> {
        match self.storage.handles().get(&fh.0) {
            Some((user, h)) if *user == self.user => Ok(h.clone()),
            _ => Err(FsError::BadHandle),
        }
    }

    /// (bytes used, nodes, quota) of this user.
    fn account(&self) -> FsResult<(u64, u64, Option<u64>)> {
        self.storage.read(|tx| {
            let quota = tx.user(&self.name)?.ok_or(FsError::PermissionDenied)?.quota;
            let (used, nodes) = tx.usage(self.user)?;
            Ok((used, nodes, quota))
        })
    }

    /// Fails unless `new` bytes in place of `old` fit the quota and the disk.
    fn check_space(&self, old: u64, new: u64) -> FsResult<()> {
        if new <= old {
            return Ok(());
        }
        let (used, _, quota) = self.account()?;
        if let Some(q) = quota {
            if used.saturating_sub(old).saturating_add(new) > q {
                return Err(FsError::QuotaExceeded);
            }
        }
        if new - old > self.storage.free_space()? {
            return Err(FsError::NoSpace);
        }
        Ok(())
    }

    /// Makes sure the handle has staged content to write to.
    async fn ensure_staging(&self, h: &mut Handle) -> FsResult<()> {
        if h.staging.is_some() {
            return Ok(());
        }
        let staging = match (&h.base, h.truncated) {
            (_, true) => Staging::Mem(Vec::new()),
            (Base::Inline(b), false) => Staging::Mem(b.to_vec()),
            (Base::Blob(reader), false) => {
                Staging::copy_of(&self.storage.blobs, reader.clone(), h.base_size).await?
            }
            (Base::Torrent { .. }, false) => return Err(FsError::ReadOnly),
        };
        h.staging = Some(staging);
        Ok(())
    }

    /// How a handle reads a torrent file: straight from disk once the torrent is complete,
    /// else through the engine, which fetches missing pieces first.
    async fn torrent_base(&self, hash: [u8; 20], file: u32) -> Base {
        let path = self
            .storage
            .torrents()
            .and_then(|t| t.engine().completed_file(&hash, file));
        if let Some(path) = path {
            let opened = blocking(move || Ok(std::fs::File::open(path)?)).await;
            match opened {
                Ok(f) => return Base::Blob(Arc::new(f)),
                Err(e) => {
                    tracing::warn!(torrent = %hex(&hash), error = %e, "opening complete torrent data")
                }
            }
        }
        Base::Torrent {
            hash,
            file,
            stream: None,
        }
    }

    async fn write_staged(&self, h: &mut Handle, offset: u64, data: &[u8]) -> FsResult<u32> {
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or(FsError::InvalidArgument("offset too large"))?;
        self.ensure_staging(h).await?;
        let new_len = end.max(h.staging.as_ref().map_or(0, Staging::len));
        if new_len > h.allowance {
            let committed = h.base_size;
            // Ask for some headroom so a stream of small writes doesn't check every time.
            let want = new_len.max(h.allowance.saturating_add(SPILL as u64));
            match self.check_space(committed, want) {
                Ok(()) => h.allowance = want,
                Err(_) => {
                    self.check_space(committed, new_len)?;
                    h.allowance = new_len;
                }
            }
        }
        let blobs = self.storage.blobs.clone();
        match &mut h.staging {
            Some(staging) => staging.write(&blobs, offset, data).await?,
            None => return Err(FsError::BadHandle),
        }
        h.dirty = true;
        h.written += data.len() as u64;
        Ok(data.len() as u32)
    }

    async fn truncate_staged(&self, h: &mut Handle, size: u64) -> FsResult<()> {
        self.ensure_staging(h).await?;
        if size > h.allowance {
            self.check_space(h.base_size, size)?;
            h.allowance = size;
        }
        let blobs = self.storage.blobs.clone();
        match &mut h.staging {
            Some(staging) => staging.resize(&blobs, size).await?,
            None => return Err(FsError::BadHandle),
        }
        h.dirty = true;
        Ok(())
    }

    /// Commits the handle's staged content, if any changed.
    async fn commit_staged(&self, h: &mut Handle) -> FsResult<Attr> {
        if !h.dirty {
            return match h.node {
                Some(id) => self.read_attr(id),
                None => Err(FsError::BadHandle),
            };
        }
        check_complete(h.expected, h.written)?;
        if h.staging.is_none() && !h.truncated {
            self.ensure_staging(h).await?;
        }
        let (content, size) = match h.staging.take() {
            Some(staging) => staging.into_content(&self.storage.blobs).await?,
            None => (NewContent::Inline(Vec::new()), 0),
        };
        let (user, name, target, deferred) =
            (self.user, self.name.clone(), h.node, h.deferred.clone());
        let committed = Arc::new(content);
        let to_commit = committed.clone();
        let result = self
            .storage
            .write(move |tx| {
                commit_content(tx, user, &name, target, deferred.clone(), &to_commit, size)
            })
            .await;
        let (id, rec, dead) = match result {
            Ok(r) => r,
            Err(e) => {
                if let NewContent::Blob(b) = *committed {
                    self.storage.dispose_async(vec![Dead::Blob(b)]).await;
                }
                return Err(e);
            }
        };
        self.storage.dispose_async(dead).await;
        h.base = match &*committed {
            NewContent::Inline(v) => Base::Inline(Bytes::copy_from_slice(v)),
            NewContent::Blob(b) => self.storage.open_blob(*b).await?,
        };
        h.base_size = rec.size;
        h.node = Some(id);
        h.deferred = None;
        h.dirty = false;
        h.truncated = false;
        h.allowance = rec.size;
        self.after_commit(id, &rec);
        Ok(attr_of(id, &rec))
    }

    /// Removes this user's files of torrent `hash` (a transfer, as the API names it), and
    /// the folders that leaves empty up to `/Downloads`, in one transaction. Returns how many
    /// files went; `NotFound` if the user has none.
    pub async fn remove_transfer(&self, hash: [u8; 20]) -> FsResult<usize> {
        let (user, root) = (self.user, self.root);
        let (removed, dead) = self
            .storage
            .write(move |tx| {
                let mut files = Vec::new();
                let mut stack = vec![root];
                while let Some(id) = stack.pop() {
                    for (_, child) in tx.children(id)? {
                        let Some(rec) = tx.node(child)? else { continue };
                        match (&rec.kind, &rec.content) {
                            (Kind::Dir, _) => stack.push(child),
                            (Kind::File, Content::Torrent { hash: h, .. }) if *h == hash => {
                                files.push((child, rec))
                            }
                            _ => {}
                        }
                    }
                }
                if files.is_empty() {
                    return Err(FsError::NotFound);
                }
                let mut dead = Vec::new();
                let mut parents = Vec::new();
                for (id, rec) in &files {
                    parents.push(rec.parent);
                    dead.extend(remove_node(tx, user, *id, rec)?);
                }
                // Folders the drop made for the torrent, now empty; never the fixed ones.
                while let Some(dir) = parents.pop() {
                    let Some(rec) = tx.node(dir)? else { continue };
                    let fixed = rec.parent == root && FIXED_FOLDERS.contains(&rec.name.as_str());
                    if dir == root || fixed || tx.has_children(dir)? {
                        continue;
                    }
                    parents.push(rec.parent);
                    dead.extend(remove_node(tx, user, dir, &rec)?);
                }
                Ok((files.len(), dead))
            })
            .await?;
        self.storage.dispose_async(dead).await;
        Ok(removed)
    }

    /// A read, not counted as traffic.
    async fn read_content(&self, fh: FileHandle, offset: u64, len: u32) -> FsResult<Bytes> {
        let handle = self.handle(fh)?;
        let mut h = handle.lock().await;
        let size = h.visible_len();
        let n = (len as u64).min(size.saturating_sub(offset)) as usize;
        if n == 0 {
            return Ok(Bytes::new());
        }
        let h = &mut *h;
        match (&mut h.staging, &mut h.base) {
            (Some(staging), _) => staging.read(offset, n).await,
            (None, Base::Inline(b)) => {
                // Clamped: never panic on a record that disagrees with its content.
                let start = (offset as usize).min(b.len());
                Ok(b.slice(start..(start + n).min(b.len())))
            }
            (None, Base::Blob(r)) => read_at(r.clone(), offset, n).await,
            (None, Base::Torrent { hash, file, stream }) => {
                let torrents = self
                    .storage
                    .torrents()
                    .ok_or_else(|| FsError::Io("the torrent engine is not running".into()))?;
                let engine = torrents.engine();
                if stream.is_none() {
                    *stream = Some(engine.open(hash, *file).await?);
                }
                match stream {
                    Some(s) => engine.read(s, offset, n).await,
                    None => Err(FsError::BadHandle),
                }
            }
        }
    }

    fn read_attr(&self, id: u64) -> FsResult<Attr> {
        if self.is_status(id) {
            return Ok(self.status_file().0);
        }
        self.storage
            .read(|tx| Ok(attr_of(id, &node_of!(tx, id, self.user)?)))
    }
}

#[async_trait]
impl Drive for UserDrive {
    fn root(&self) -> NodeId {
        NodeId(self.root)
    }

    async fn lookup(&self, parent: NodeId, name: &str) -> FsResult<Attr> {
        if self.is_status_name(parent.0, name) {
            return Ok(self.status_file().0);
        }
        let user = self.user;
        self.storage.read(|tx| {
            dir_of!(tx, parent.0, user);
            let id = tx.child(parent.0, name)?.ok_or(FsError::NotFound)?;
            Ok(attr_of(id, &node_of!(tx, id, user)?))
        })
    }

    async fn getattr(&self, node: NodeId) -> FsResult<Attr> {
        self.read_attr(node.0)
    }

    async fn list(&self, dir: NodeId) -> FsResult<Vec<DirEntry>> {
        let user = self.user;
        let mut list = self.storage.read(|tx| {
            dir_of!(tx, dir.0, user);
            let mut out = Vec::new();
            for (name, id) in tx.children(dir.0)? {
                let rec = node_of!(tx, id, user)?;
                out.push(DirEntry {
                    name,
                    attr: attr_of(id, &rec),
                });
            }
            Ok(out)
        })?;
        if self.is_status_name(dir.0, STATUS_NAME) {
            let (attr, _) = self.status_file();
            let at = list.partition_point(|e| e.name.as_str() < STATUS_NAME);
            list.insert(
                at,
                DirEntry {
                    name: STATUS_NAME.to_owned(),
                    attr,
                },
            );
        }
        Ok(list)
    }

    async fn resolve(&self, names: &[&str]) -> FsResult<Attr> {
        if let Some((&last, rest)) = names.split_last() {
            if last == STATUS_NAME {
                let parent = self.resolve(rest).await?;
                if self.is_status_name(parent.id.0, last) {
                    return Ok(self.status_file().0);
                }
            }
        }
        let (user, root) = (self.user, self.root);
        self.storage.read(|tx| {
            let mut id = root;
            let mut rec = node_of!(tx, id, user)?;
            for name in names {
                if rec.kind != Kind::Dir {
                    return Err(FsError::NotADirectory);
                }
                id = tx.child(id, name)?.ok_or(FsError::NotFound)?;
                rec = node_of!(tx, id, user)?;
            }
            Ok(attr_of(id, &rec))
        })
    }

    async fn open(&self, node: NodeId, opts: OpenOptions) -> FsResult<FileHandle> {
        let user = self.user;
        if self.is_status(node.0) {
            if opts.write {
                return Err(FsError::ReadOnly);
            }
            let (_, text) = self.status_file();
            return Ok(self.storage.add_handle(
                user,
                Handle {
                    node: Some(node.0),
                    deferred: None,
                    writable: false,
                    dirty: false,
                    expected: None,
                    written: 0,
                    base_size: text.len() as u64,
                    base: Base::Inline(text),
                    staging: None,
                    truncated: false,
                    allowance: 0,
                    failed: None,
                },
            ));
        }
        let mut retried = false;
        let (rec, base) = loop {
            // Record and inline content from one snapshot, so they agree.
            let (rec, inline) = self.storage.read(|tx| {
                let rec = node_of!(tx, node.0, user)?;
                let inline = match (rec.kind, rec.content) {
                    (Kind::File, Content::Inline) => Some(tx.inline(node.0)?),
                    _ => None,
                };
                Ok((rec, inline))
            })?;
            if rec.kind == Kind::Dir {
                return Err(FsError::IsADirectory);
            }
            let base = match (inline, rec.content) {
                (Some(data), _) => Base::Inline(Bytes::from(data)),
                (None, Content::Blob(b)) => match self.storage.open_blob(b).await {
                    // Replaced and deleted since the snapshot: look again.
                    Err(FsError::NotFound) if !retried => {
                        retried = true;
                        continue;
                    }
                    other => other?,
                },
                (None, Content::Inline) => Base::Inline(Bytes::new()),
                (None, Content::Torrent { hash, file }) => {
                    if opts.write {
                        return Err(FsError::ReadOnly);
                    }
                    self.torrent_base(hash, file).await
                }
            };
            break (rec, base);
        };
        if let Some(expected) = opts.expected_size.filter(|_| opts.write) {
            let base = if opts.truncate { 0 } else { rec.size };
            self.check_space(rec.size, base.max(expected))?;
        }
        Ok(self.storage.add_handle(
            user,
            Handle {
                node: Some(node.0),
                deferred: None,
                writable: opts.write,
                dirty: opts.write && opts.truncate,
                expected: opts.expected_size.filter(|_| opts.write),
                written: 0,
                base,
                base_size: rec.size,
                staging: None,
                truncated: opts.write && opts.truncate,
                allowance: rec.size,
                failed: None,
            },
        ))
    }

    async fn create(
        &self,
        parent: NodeId,
        name: &str,
        opts: CreateOptions,
    ) -> FsResult<(Attr, FileHandle)> {
        check_name(name)?;
        if self.is_status_name(parent.0, name) {
            return Err(FsError::ReadOnly);
        }
        let user = self.user;
        let existing = self.storage.read(|tx| {
            dir_of!(tx, parent.0, user);
            match tx.child(parent.0, name)? {
                Some(id) => Ok(Some((id, node_of!(tx, id, user)?))),
                None => Ok(None),
            }
        })?;
        let old = match &existing {
            Some(_) if opts.exclusive => return Err(FsError::Exists),
            Some((_, rec)) if rec.kind == Kind::Dir => return Err(FsError::IsADirectory),
            Some((_, rec)) if matches!(rec.content, Content::Torrent { .. }) => {
                return Err(FsError::ReadOnly)
            }
            Some((_, rec)) => rec.size,
            None => 0,
        };
        if let Some(expected) = opts.expected_size {
            self.check_space(old, expected)?;
        }
        let now = SystemTime::now();
        let (node, deferred, attr) = match existing {
            Some((id, rec)) => (Some(id), None, attr_of(id, &rec)),
            None if opts.deferred => (
                None,
                Some((parent.0, name.to_owned())),
                Attr::uncommitted_file(now),
            ),
            None => {
                let name = name.to_owned();
                let (id, rec) = self
                    .storage
                    .write(move |tx| {
                        dir_of!(tx, parent.0, user);
                        if tx.child(parent.0, &name)?.is_some() {
                            return Err(FsError::Exists);
                        }
                        let (id, rec) = new_node(tx, user, parent.0, &name, Kind::File)?;
                        Ok((id, rec))
                    })
                    .await?;
                (Some(id), None, attr_of(id, &rec))
            }
        };
        let fh = self.storage.add_handle(
            user,
            Handle {
                node,
                deferred,
                writable: true,
                dirty: true,
                expected: opts.expected_size,
                written: 0,
                base: Base::Inline(Bytes::new()),
                // What the commit replaces; reads see nothing of it (`truncated`).
                base_size: old,
                staging: None,
                truncated: true,
                allowance: old,
                failed: None,
            },
        );
        Ok((Attr { size: 0, ..attr }, fh))
    }

    async fn read(&self, fh: FileHandle, offset: u64, len: u32) -> FsResult<Bytes> {
        let data = self.read_content(fh, offset, len).await?;
        self.storage.traffic.served(self.user, data.len() as u64);
        Ok(data)
    }

    async fn write(&self, fh: FileHandle, offset: u64, data: &[u8]) -> FsResult<u32> {
        let handle = self.handle(fh)?;
        let mut h = handle.lock().await;
        if !h.writable {
            return Err(FsError::BadHandle);
        }
        let result = self.write_staged(&mut h, offset, data).await;
        if let Err(e) = &result {
            h.failed = Some(e.clone());
        }
        result
    }

    async fn truncate(&self, fh: FileHandle, size: u64) -> FsResult<()> {
        let handle = self.handle(fh)?;
        let mut h = handle.lock().await;
        if !h.writable {
            return Err(FsError::BadHandle);
        }
        let result = self.truncate_staged(&mut h, size).await;
        if let Err(e) = &result {
            h.failed = Some(e.clone());
        }
        result
    }

    async fn flush(&self, fh: FileHandle) -> FsResult<Attr> {
        let handle = self.handle(fh)?;
        let mut h = handle.lock().await;
        if let Some(e) = &h.failed {
            return Err(e.clone());
        }
        self.commit_staged(&mut h).await
    }

    async fn release(&self, fh: FileHandle) -> FsResult<()> {
        self.handle(fh)?;
        self.storage.handles().remove(&fh.0);
        Ok(())
    }

    async fn handle_attr(&self, fh: FileHandle) -> FsResult<Attr> {
        let handle = self.handle(fh)?;
        let h = handle.lock().await;
        let size = h.visible_len();
        let mut attr = match h.node {
            Some(id) => self.read_attr(id)?,
            None => Attr::uncommitted_file(SystemTime::now()),
        };
        attr.size = size;
        Ok(attr)
    }

    async fn mkdir(&self, parent: NodeId, name: &str) -> FsResult<Attr> {
        check_name(name)?;
        if self.is_status_name(parent.0, name) {
            return Err(FsError::Exists);
        }
        let (user, name) = (self.user, name.to_owned());
        self.storage
            .write(move |tx| {
                dir_of!(tx, parent.0, user);
                if tx.child(parent.0, &name)?.is_some() {
                    return Err(FsError::Exists);
                }
                let (id, rec) = new_node(tx, user, parent.0, &name, Kind::Dir)?;
                Ok(attr_of(id, &rec))
            })
            .await
    }

    async fn unlink(&self, parent: NodeId, name: &str) -> FsResult<()> {
        if self.is_status_name(parent.0, name) {
            return Err(FsError::PermissionDenied);
        }
        let (user, root, name) = (self.user, self.root, name.to_owned());
        let (id, dead) = self
            .storage
            .write(move |tx| {
                dir_of!(tx, parent.0, user);
                let id = tx.child(parent.0, &name)?.ok_or(FsError::NotFound)?;
                let rec = node_of!(tx, id, user)?;
                if rec.kind == Kind::Dir {
                    return Err(FsError::IsADirectory);
                }
                let mut dead: Vec<Dead> = remove_node(tx, user, id, &rec)?.into_iter().collect();
                // A file dropped into /Add takes its error file with it.
                dead.extend(remove_error_file(tx, user, root, parent.0, &name)?);
                Ok((id, dead))
            })
            .await?;
        self.storage.dispose_async(dead).await;
        // A magnet dropped into /Add and deleted while its metadata is fetched: stop that.
        if let Some(torrents) = self.storage.torrents() {
            torrents.cancel_drop(user, id);
        }
        Ok(())
    }

    async fn rmdir(&self, parent: NodeId, name: &str) -> FsResult<()> {
        if self.is_fixed(parent.0, name) {
            return Err(FsError::PermissionDenied);
        }
        let (user, name) = (self.user, name.to_owned());
        self.storage
            .write(move |tx| {
                dir_of!(tx, parent.0, user);
                let id = tx.child(parent.0, &name)?.ok_or(FsError::NotFound)?;
                let rec = node_of!(tx, id, user)?;
                if rec.kind != Kind::Dir {
                    return Err(FsError::NotADirectory);
                }
                if tx.has_children(id)? {
                    return Err(FsError::NotEmpty);
                }
                remove_node(tx, user, id, &rec)?;
                Ok(())
            })
            .await
    }

    async fn rename(
        &self,
        parent: NodeId,
        name: &str,
        new_parent: NodeId,
        new_name: &str,
        opts: RenameOptions,
    ) -> FsResult<()> {
        check_name(new_name)?;
        if self.is_fixed(parent.0, name)
            || self.is_fixed(new_parent.0, new_name)
            || self.is_status_name(parent.0, name)
            || self.is_status_name(new_parent.0, new_name)
        {
            return Err(FsError::PermissionDenied);
        }
        let (user, root) = (self.user, self.root);
        let (name, new_name) = (name.to_owned(), new_name.to_owned());
        let dead = self
            .storage
            .write(move |tx| {
                dir_of!(tx, parent.0, user);
                dir_of!(tx, new_parent.0, user);
                let id = tx.child(parent.0, &name)?.ok_or(FsError::NotFound)?;
                let mut rec = node_of!(tx, id, user)?;
                if rec.kind == Kind::Dir {
                    // Refuse moving a folder below itself.
                    let mut p = new_parent.0;
                    loop {
                        if p == id {
                            return Err(FsError::MoveIntoItself);
                        }
                        if p == root {
                            break;
                        }
                        p = node_of!(tx, p, user)?.parent;
                    }
                }
                let mut dead = None;
                if let Some(target) = tx.child(new_parent.0, &new_name)? {
                    if target == id {
                        return Ok(None);
                    }
                    if opts.no_replace {
                        return Err(FsError::Exists);
                    }
                    let t = node_of!(tx, target, user)?;
                    match (rec.kind, t.kind) {
                        (Kind::Dir, Kind::File) => return Err(FsError::NotADirectory),
                        (Kind::File, Kind::Dir) => return Err(FsError::IsADirectory),
                        (Kind::Dir, Kind::Dir) if tx.has_children(target)? => {
                            return Err(FsError::NotEmpty)
                        }
                        _ => {}
                    }
                    dead = remove_node(tx, user, target, &t)?;
                }
                let now = now_nanos();
                tx.unlink(parent.0, &name)?;
                tx.link(new_parent.0, &new_name, id)?;
                rec.parent = new_parent.0;
                rec.name = new_name.clone();
                rec.ctime = now;
                tx.put_node(id, &rec)?;
                touch(tx, parent.0, now)?;
                if new_parent != parent {
                    touch(tx, new_parent.0, now)?;
                }
                Ok(dead)
            })
            .await?;
        self.storage.dispose_async(dead.into_iter().collect()).await;
        Ok(())
    }

    async fn copy(&self, node: NodeId, new_parent: NodeId, new_name: &str) -> FsResult<Attr> {
        check_name(new_name)?;
        if self.is_status(node.0) || self.is_status_name(new_parent.0, new_name) {
            return Err(FsError::PermissionDenied);
        }
        let (user, uname, new_name) = (self.user, self.name.clone(), new_name.to_owned());
        self.storage
            .write(move |tx| {
                let src = node_of!(tx, node.0, user)?;
                if src.kind == Kind::Dir {
                    return Err(FsError::IsADirectory);
                }
                dir_of!(tx, new_parent.0, user);
                if tx.child(new_parent.0, &new_name)?.is_some() {
                    return Err(FsError::Exists);
                }
                let (used, nodes) = tx.usage(user)?;
                check_quota(tx, &uname, used, 0, src.size)?;
                let id = tx.next_id("node")?;
                share_content(tx, node.0, id, &src)?;
                let now = now_nanos();
                let rec = NodeRec {
                    parent: new_parent.0,
                    name: new_name.clone(),
                    ctime: now,
                    version: 1,
                    ..src
                };
                tx.put_node(id, &rec)?;
                tx.link(new_parent.0, &new_name, id)?;
                for (k, v) in tx.xattrs(node.0)? {
                    tx.set_xattr(id, &k, Some(&v))?;
                }
                tx.set_usage(user, used + rec.size, nodes + 1)?;
                touch(tx, new_parent.0, now)?;
                Ok(attr_of(id, &rec))
            })
            .await
    }

    async fn setattr(&self, node: NodeId, changes: SetAttr) -> FsResult<Attr> {
        if self.is_status(node.0) {
            return Err(FsError::ReadOnly);
        }
        let mut attr = self.read_attr(node.0)?;
        if let Some(size) = changes.size {
            if attr.is_dir() {
                return Err(FsError::IsADirectory);
            }
            let opts = OpenOptions {
                write: true,
                ..Default::default()
            };
            let fh = self.open(node, opts).await?;
            let result = async {
                self.truncate(fh, size).await?;
                self.flush(fh).await
            }
            .await;
            self.release(fh).await?;
            attr = result?;
        }
        if let Some(mtime) = changes.mtime {
            let user = self.user;
            attr = self
                .storage
                .write(move |tx| {
                    let mut rec = node_of!(tx, node.0, user)?;
                    rec.mtime = to_nanos(mtime);
                    rec.ctime = now_nanos();
                    tx.put_node(node.0, &rec)?;
                    Ok(attr_of(node.0, &rec))
                })
                .await?;
        }
        Ok(attr)
    }

    async fn usage(&self) -> FsResult<Usage> {
        let (used, nodes, quota) = self.account()?;
        let free = self.storage.free_space()?;
        let available = quota.map_or(free, |q| q.saturating_sub(used).min(free));
        Ok(Usage {
            used,
            limit: quota,
            available,
            nodes,
        })
    }

    async fn xattrs(&self, node: NodeId) -> FsResult<Vec<(String, Vec<u8>)>> {
        if self.is_status(node.0) {
            return Ok(Vec::new());
        }
        let user = self.user;
        self.storage.read(|tx| {
            node_of!(tx, node.0, user)?;
            Ok(tx.xattrs(node.0)?)
        })
    }

    async fn local_file(&self, fh: FileHandle) -> FsResult<Option<std::fs::File>> {
        let handle = self.handle(fh)?;
        let h = handle.lock().await;
        if h.writable || h.staging.is_some() {
            return Ok(None);
        }
        match &h.base {
            Base::Blob(reader) => match reader.file() {
                Some(file) => Ok(Some(file.try_clone()?)),
                None => Ok(None),
            },
            Base::Inline(_) | Base::Torrent { .. } => Ok(None),
        }
    }

    fn watch(&self) -> Option<ChangeReceiver> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let mut all = self.storage.store().subscribe();
        let (changes, receiver) = tokio::sync::mpsc::channel(1024);
        let user = self.user;
        runtime.spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                let change = match all.recv().await {
                    Ok((owner, change)) if owner == user => change,
                    Ok(_) => continue,
                    Err(RecvError::Lagged(_)) => Change::Lost,
                    Err(RecvError::Closed) => return,
                };
                if changes.send(change).await.is_err() {
                    return; // the watcher is gone
                }
            }
        });
        Some(receiver)
    }

    async fn set_xattrs(&self, node: NodeId, changes: Vec<XattrChange>) -> FsResult<()> {
        if self.is_status(node.0) {
            return Err(FsError::ReadOnly);
        }
        let user = self.user;
        self.storage
            .write(move |tx| {
                let mut rec = node_of!(tx, node.0, user)?;
                for c in &changes {
                    tx.set_xattr(node.0, &c.name, c.value.as_deref())?;
                }
                rec.has_xattrs = !tx.xattrs(node.0)?.is_empty();
                rec.ctime = now_nanos();
                tx.put_node(node.0, &rec)?;
                Ok(())
            })
            .await
    }
}

pub(crate) fn check_quota(
    tx: &WriteTx,
    user_name: &str,
    used: u64,
    old: u64,
    new: u64,
) -> FsResult<()> {
    if new <= old {
        return Ok(());
    }
    let quota = tx.user(user_name)?.ok_or(FsError::PermissionDenied)?.quota;
    match quota {
        Some(q) if used.saturating_sub(old).saturating_add(new) > q => Err(FsError::QuotaExceeded),
        _ => Ok(()),
    }
}

/// Updates a folder's times after a change of its entries.
fn touch(tx: &WriteTx, dir: u64, now: i64) -> Result<(), StoreError> {
    if let Some(mut rec) = tx.node(dir)? {
        rec.mtime = now;
        rec.ctime = now;
        tx.put_node(dir, &rec)?;
    }
    Ok(())
}

/// Creates an empty file or folder and links it.
pub(crate) fn new_node(
    tx: &WriteTx,
    user: u64,
    parent: u64,
    name: &str,
    kind: Kind,
) -> Result<(u64, NodeRec), StoreError> {
    let id = tx.next_id("node")?;
    let now = now_nanos();
    let rec = NodeRec {
        owner: user,
        parent,
        name: name.to_owned(),
        kind,
        size: 0,
        mtime: now,
        ctime: now,
        version: 1,
        content: Content::Inline,
        has_xattrs: false,
    };
    tx.put_node(id, &rec)?;
    if parent != 0 {
        tx.link(parent, name, id)?;
        touch(tx, parent, now)?;
    }
    let (used, nodes) = tx.usage(user)?;
    tx.set_usage(user, used, nodes + 1)?;
    Ok((id, rec))
}

/// Unlinks and deletes one node (a file or an empty folder), keeping usage right.
pub(crate) fn remove_node(
    tx: &WriteTx,
    user: u64,
    id: u64,
    rec: &NodeRec,
) -> Result<Option<Dead>, StoreError> {
    tx.unlink(rec.parent, &rec.name)?;
    tx.remove_node(id)?;
    touch(tx, rec.parent, now_nanos())?;
    let (used, nodes) = tx.usage(user)?;
    tx.set_usage(user, used.saturating_sub(rec.size), nodes.saturating_sub(1))?;
    release_content(tx, rec)
}

/// The write transaction of `flush`: links a deferred file, swaps in the new content.
fn commit_content(
    tx: &WriteTx,
    user: u64,
    user_name: &str,
    target: Option<u64>,
    deferred: Option<(u64, String)>,
    content: &NewContent,
    size: u64,
) -> FsResult<(u64, NodeRec, Vec<Dead>)> {
    let id = match (target, deferred) {
        (Some(id), _) => id,
        (None, Some((parent, name))) => {
            dir_of!(tx, parent, user);
            match tx.child(parent, &name)? {
                Some(id) => {
                    // Someone took the name meanwhile: an upload replaces a file, as a later
                    // PUT would.
                    if node_of!(tx, id, user)?.kind == Kind::Dir {
                        return Err(FsError::IsADirectory);
                    }
                    id
                }
                None => new_node(tx, user, parent, &name, Kind::File)?.0,
            }
        }
        (None, None) => return Err(FsError::BadHandle),
    };
    let mut rec = node_of!(tx, id, user)?;
    if matches!(rec.content, Content::Torrent { .. }) {
        return Err(FsError::ReadOnly);
    }
    let (used, nodes) = tx.usage(user)?;
    check_quota(tx, user_name, used, rec.size, size)?;
    let mut dead = Vec::new();
    dead.extend(release_content(tx, &rec)?);
    rec.content = match content {
        NewContent::Inline(data) => {
            tx.set_inline(id, Some(data))?;
            Content::Inline
        }
        NewContent::Blob(b) => {
            tx.add_blob_ref(*b, 1)?;
            tx.set_inline(id, None)?;
            Content::Blob(*b)
        }
    };
    let now = now_nanos();
    tx.set_usage(user, used.saturating_sub(rec.size) + size, nodes)?;
    rec.size = size;
    rec.mtime = now;
    rec.ctime = now;
    rec.version += 1;
    tx.put_node(id, &rec)?;
    Ok((id, rec, dead))
}
