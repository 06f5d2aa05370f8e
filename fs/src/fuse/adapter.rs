//! fuser's `Filesystem` over `Drive`s. Each method copies its arguments, starts a task on the
//! runtime and returns at once; the task answers. Nothing here decides what is allowed: that
//! is the drive's job, and its errors become errnos through `FsError::errno` only.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::future::Future;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use fuser::{
    BackingId, Errno, FileAttr, FileType, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig,
    OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request, TimeOrNow,
};

use super::inodes::{Inodes, Target, ROOT_INO};
use super::{MountOptions, Tree};
use crate::{
    name_from_bytes, Attr, Change, CreateOptions, Drive, FileHandle, FsError, FsResult, NodeId,
    NodeKind, OpenOptions, RenameOptions, SetAttr, Usage,
};

/// `st_blksize`: what `cp` and friends size their buffers by.
const BLOCK_SIZE: u32 = 128 * 1024;
/// Inodes whose cached content version is remembered after their last close.
const MAX_REMEMBERED_INODES: usize = 100_000;

pub(super) struct Adapter {
    inner: Arc<Inner>,
}

/// A cache entry the kernel should drop, sent to the thread that tells it.
enum Inval {
    Entry(u64, String),
    Inode(u64),
}

/// Tells the kernel about changes made behind its back. Runs on a thread of its own: a
/// notification can wait on a kernel lock held by a request we have yet to answer.
pub(super) struct Invalidations {
    receiver: mpsc::Receiver<Inval>,
}

impl Invalidations {
    pub(super) fn start(self, notifier: fuser::Notifier) -> io::Result<()> {
        std::thread::Builder::new()
            .name("fuse-invalidate".into())
            .spawn(move || {
                for inval in self.receiver {
                    // ENOENT (the kernel has nothing cached for it) is the common case.
                    let _ = match inval {
                        Inval::Entry(parent, name) => {
                            notifier.inval_entry(INodeNo(parent), OsStr::new(&name))
                        }
                        Inval::Inode(ino) => notifier.inval_inode(INodeNo(ino), 0, 0),
                    };
                }
            })?;
        Ok(())
    }
}

/// How the kernel reads an open file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IoMode {
    /// Through the page cache.
    Cached,
    /// Every read is a request.
    Direct,
    /// The kernel reads the local file itself.
    Passthrough,
}

struct OpenFile {
    drive: Arc<dyn Drive>,
    fh: FileHandle,
    ino: u64,
    mode: IoMode,
    write: bool,
}

/// How an inode's open files read. The kernel refuses to mix page-cache and passthrough
/// opens of one inode, and wants one backing file for all its passthrough opens.
#[derive(Default)]
struct InodeIo {
    cached: usize,
    passthrough: usize,
    backing: Option<(u64, Arc<BackingId>)>,
    /// Content version the page cache was last filled from: kept on open if unchanged.
    /// Forgotten when a writer opens or closes: the cache may then hold bytes of a write
    /// that never committed.
    cached_version: Option<u64>,
}

/// A folder listing taken at opendir, served by offset to readdir.
struct Listed {
    ino: u64,
    name: String,
    attr: FileAttr,
    ttl: Duration,
}

struct Inner {
    tree: Tree,
    inodes: Inodes,
    options: MountOptions,
    runtime: tokio::runtime::Handle,
    uid: u32,
    gid: u32,
    mounted_at: SystemTime,
    passthrough: AtomicBool,
    next_fh: AtomicU64,
    files: Mutex<HashMap<u64, OpenFile>>,
    dirs: Mutex<HashMap<u64, Arc<Vec<Listed>>>>,
    io: Mutex<HashMap<u64, InodeIo>>,
    invalidate: mpsc::Sender<Inval>,
    /// Files open now, for the daemon's metrics.
    open_files: Arc<AtomicU64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn errno(e: &FsError) -> Errno {
    Errno::from_i32(e.errno())
}

/// A reply that can carry an error.
trait Fail: Send + 'static {
    fn fail(self, e: Errno);
}

macro_rules! fail_for {
    ($($t:ty),*) => {$(
        impl Fail for $t {
            fn fail(self, e: Errno) {
                self.error(e)
            }
        }
    )*};
}
fail_for!(
    ReplyAttr,
    ReplyCreate,
    ReplyData,
    ReplyDirectory,
    ReplyDirectoryPlus,
    ReplyEmpty,
    ReplyEntry,
    ReplyOpen,
    ReplyStatfs,
    ReplyWrite,
    ReplyXattr
);

/// A name from the kernel, checked as the drive would check it.
fn name_of(name: &OsStr) -> FsResult<String> {
    name_from_bytes(name.as_bytes()).map(str::to_owned)
}

impl Adapter {
    pub(super) fn new(
        tree: Tree,
        options: MountOptions,
        runtime: tokio::runtime::Handle,
    ) -> (Adapter, Invalidations) {
        let (invalidate, receiver) = mpsc::channel();
        let inodes = match &tree {
            Tree::Drive(d) => Inodes::single(d.clone()),
            Tree::Drives(_) => Inodes::many(),
        };
        let inner = Arc::new(Inner {
            tree,
            inodes,
            options,
            runtime,
            // SAFETY: geteuid/getegid have no preconditions.
            uid: unsafe { libc::geteuid() },
            gid: unsafe { libc::getegid() },
            mounted_at: SystemTime::now(),
            passthrough: AtomicBool::new(false),
            next_fh: AtomicU64::new(1),
            files: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            io: Mutex::new(HashMap::new()),
            invalidate,
            open_files: Arc::default(),
        });
        if let Tree::Drive(d) = &inner.tree {
            inner.watch(1, d);
        }
        (Adapter { inner }, Invalidations { receiver })
    }

    /// The count of open files, kept up to date.
    pub(super) fn open_files(&self) -> Arc<AtomicU64> {
        self.inner.open_files.clone()
    }
}

impl Inner {
    /// Runs `work` as a task and answers with `answer`, or with the error. `bounded` work
    /// fails with EIO after the request timeout.
    fn serve<R, T, F, A>(
        self: &Arc<Self>,
        op: &'static str,
        reply: R,
        bounded: bool,
        work: F,
        answer: A,
    ) where
        R: Fail,
        T: Send + 'static,
        F: Future<Output = FsResult<T>> + Send + 'static,
        A: FnOnce(R, T) + Send + 'static,
    {
        let timeout = self.options.request_timeout;
        self.runtime.spawn(async move {
            let result = if bounded {
                match tokio::time::timeout(timeout, work).await {
                    Ok(r) => r,
                    Err(_) => Err(FsError::TimedOut),
                }
            } else {
                work.await
            };
            match result {
                Ok(value) => answer(reply, value),
                Err(e) => {
                    // Failures of the daemon, not refusals of the caller's request.
                    if matches!(e, FsError::Io(_) | FsError::TimedOut) {
                        tracing::warn!(op, error = %e, "FUSE request failed");
                    }
                    reply.fail(errno(&e))
                }
            }
        });
    }

    /// Pushes the kernel's cache entries for a drive's changes to the invalidation thread.
    fn watch(self: &Arc<Self>, slot: u16, drive: &Arc<dyn Drive>) {
        let _in_runtime = self.runtime.enter();
        let Some(mut changes) = drive.watch() else {
            return;
        };
        let me: Weak<Inner> = Arc::downgrade(self);
        self.runtime.spawn(async move {
            while let Some(change) = changes.recv().await {
                let Some(me) = me.upgrade() else { return };
                let inval = match change {
                    Change::Entry { parent, name } => {
                        Inval::Entry(me.inodes.ino(slot, parent), name)
                    }
                    Change::Node(node) => Inval::Inode(me.inodes.ino(slot, node)),
                    // Entries expire with their TTL.
                    Change::Lost => continue,
                };
                if me.invalidate.send(inval).is_err() {
                    return;
                }
            }
        });
    }

    /// The drive and node of `ino`; the folder of drives is not a node of any drive.
    fn node(&self, ino: INodeNo) -> FsResult<(u16, Arc<dyn Drive>, NodeId)> {
        match self.inodes.target(ino.0)? {
            Target::Node { slot, drive, node } => Ok((slot, drive, node)),
            Target::Drives => Err(FsError::PermissionDenied),
        }
    }

    /// The drive called `name` of the folder of drives, with its slot.
    async fn drive_named(self: &Arc<Self>, name: &str) -> FsResult<(u16, Arc<dyn Drive>)> {
        let Tree::Drives(set) = &self.tree else {
            return Err(FsError::NotFound);
        };
        let drive = set.drive(name).await?;
        let (slot, new) = self.inodes.slot_of(name, &drive)?;
        if new {
            self.watch(slot, &drive);
        }
        Ok((slot, drive))
    }

    fn attr(&self, ino: u64, a: &Attr) -> FileAttr {
        let (kind, perm, nlink) = match a.kind {
            NodeKind::Dir => (FileType::Directory, 0o755, 2),
            NodeKind::File if a.read_only => (FileType::RegularFile, 0o444, 1),
            NodeKind::File => (FileType::RegularFile, 0o644, 1),
        };
        FileAttr {
            ino: INodeNo(ino),
            size: a.size,
            blocks: a.size.div_ceil(512),
            atime: a.mtime,
            mtime: a.mtime,
            ctime: a.ctime,
            crtime: a.ctime,
            kind,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: BLOCK_SIZE,
            flags: 0,
        }
    }

    fn drives_attr(&self) -> FileAttr {
        FileAttr {
            ino: INodeNo(ROOT_INO),
            size: 0,
            blocks: 0,
            atime: self.mounted_at,
            mtime: self.mounted_at,
            ctime: self.mounted_at,
            crtime: self.mounted_at,
            kind: FileType::Directory,
            perm: 0o555,
            nlink: 2,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: BLOCK_SIZE,
            flags: 0,
        }
    }

    fn ttl(&self, a: &Attr) -> Duration {
        if a.volatile {
            Duration::ZERO
        } else {
            self.options.ttl
        }
    }

    fn entry(&self, slot: u16, a: &Attr) -> (FileAttr, Duration) {
        (self.attr(self.inodes.ino(slot, a.id), a), self.ttl(a))
    }

    fn open_file(&self, fh: fuser::FileHandle) -> FsResult<(Arc<dyn Drive>, FileHandle, u64)> {
        let files = lock(&self.files);
        let f = files.get(&fh.0).ok_or(FsError::BadHandle)?;
        Ok((f.drive.clone(), f.fh, f.ino))
    }

    fn add_open_file(
        &self,
        drive: Arc<dyn Drive>,
        fh: FileHandle,
        ino: u64,
        mode: IoMode,
        write: bool,
    ) -> u64 {
        let id = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.open_files.fetch_add(1, Ordering::Relaxed);
        lock(&self.files).insert(
            id,
            OpenFile {
                drive,
                fh,
                ino,
                mode,
                write,
            },
        );
        id
    }

    /// Chooses how the kernel reads a file just opened, and accounts for it.
    fn io_mode(
        &self,
        ino: u64,
        attr: &Attr,
        write: bool,
        local: Option<std::fs::File>,
        reply: &ReplyOpen,
    ) -> (IoMode, FopenFlags, Option<Arc<BackingId>>) {
        let mut io = lock(&self.io);
        let state = io.entry(ino).or_default();
        if attr.volatile {
            return (IoMode::Direct, FopenFlags::FOPEN_DIRECT_IO, None);
        }
        if let Some(file) = local {
            if state.cached == 0 && self.passthrough.load(Ordering::Relaxed) {
                let backing = match &state.backing {
                    Some((version, b)) if *version == attr.version => Some(b.clone()),
                    Some(_) => None,
                    None => match reply.open_backing(&file) {
                        Ok(b) => {
                            let b = Arc::new(b);
                            state.backing = Some((attr.version, b.clone()));
                            Some(b)
                        }
                        Err(e) => {
                            tracing::info!(error = %e, "FUSE passthrough unavailable, reading through the daemon");
                            self.passthrough.store(false, Ordering::Relaxed);
                            None
                        }
                    },
                };
                if let Some(b) = backing {
                    state.passthrough += 1;
                    return (IoMode::Passthrough, FopenFlags::empty(), Some(b));
                }
            }
        }
        if state.passthrough > 0 {
            return (IoMode::Direct, FopenFlags::FOPEN_DIRECT_IO, None);
        }
        state.cached += 1;
        let keep = !write && state.cached_version == Some(attr.version);
        state.cached_version = (!write).then_some(attr.version);
        let flags = if keep {
            FopenFlags::FOPEN_KEEP_CACHE
        } else {
            FopenFlags::empty()
        };
        (IoMode::Cached, flags, None)
    }

    /// Accounts for a file created (always read through the page cache, unless passthrough
    /// opens of the inode forbid it).
    fn created_mode(&self, ino: u64) -> (IoMode, FopenFlags) {
        let mut io = lock(&self.io);
        let state = io.entry(ino).or_default();
        if state.passthrough > 0 {
            return (IoMode::Direct, FopenFlags::FOPEN_DIRECT_IO);
        }
        state.cached += 1;
        state.cached_version = None;
        (IoMode::Cached, FopenFlags::empty())
    }

    fn closed(&self, ino: u64, mode: IoMode, write: bool) {
        let mut io = lock(&self.io);
        if let Some(state) = io.get_mut(&ino) {
            if write {
                state.cached_version = None;
            }
            match mode {
                IoMode::Cached => state.cached = state.cached.saturating_sub(1),
                IoMode::Passthrough => {
                    state.passthrough = state.passthrough.saturating_sub(1);
                    if state.passthrough == 0 {
                        state.backing = None;
                    }
                }
                IoMode::Direct => {}
            }
            if state.cached == 0 && state.passthrough == 0 && state.cached_version.is_none() {
                io.remove(&ino);
            }
        }
        // Remembered versions only save re-reading pages: forget them rather than grow.
        if io.len() > MAX_REMEMBERED_INODES {
            io.retain(|_, s| s.cached + s.passthrough > 0);
        }
    }

    async fn usage(self: &Arc<Self>, ino: INodeNo) -> FsResult<Usage> {
        match self.inodes.target(ino.0)? {
            Target::Node { drive, .. } => drive.usage().await,
            Target::Drives => {
                let Tree::Drives(set) = &self.tree else {
                    return Err(FsError::NotFound);
                };
                let mut total = Usage {
                    used: 0,
                    limit: None,
                    available: 0,
                    nodes: 0,
                };
                for name in set.names().await? {
                    let u = set.drive(&name).await?.usage().await?;
                    total.used += u.used;
                    total.nodes += u.nodes;
                    total.available = total.available.max(u.available);
                }
                Ok(total)
            }
        }
    }

    async fn listing(self: &Arc<Self>, ino: INodeNo) -> FsResult<Vec<Listed>> {
        let mut out = Vec::new();
        match self.inodes.target(ino.0)? {
            Target::Drives => {
                let Tree::Drives(set) = &self.tree else {
                    return Err(FsError::NotFound);
                };
                let here = self.drives_attr();
                for dot in [".", ".."] {
                    out.push(Listed {
                        ino: ROOT_INO,
                        name: dot.into(),
                        attr: here,
                        ttl: self.options.ttl,
                    });
                }
                for name in set.names().await? {
                    let (slot, drive) = match self.drive_named(&name).await {
                        Ok(d) => d,
                        Err(FsError::NotFound) => continue, // removed meanwhile
                        Err(e) => return Err(e),
                    };
                    let attr = drive.getattr(drive.root()).await?;
                    let (attr, ttl) = self.entry(slot, &attr);
                    out.push(Listed {
                        ino: attr.ino.0,
                        name,
                        attr,
                        ttl,
                    });
                }
            }
            Target::Node { slot, drive, node } => {
                let here = drive.getattr(node).await?;
                let (here, ttl) = self.entry(slot, &here);
                for dot in [".", ".."] {
                    out.push(Listed {
                        ino: ino.0,
                        name: dot.into(),
                        attr: here,
                        ttl,
                    });
                }
                for e in drive.list(node).await? {
                    let (attr, ttl) = self.entry(slot, &e.attr);
                    out.push(Listed {
                        ino: attr.ino.0,
                        name: e.name,
                        attr,
                        ttl,
                    });
                }
            }
        }
        Ok(out)
    }

    fn listed(&self, fh: fuser::FileHandle) -> FsResult<Arc<Vec<Listed>>> {
        lock(&self.dirs)
            .get(&fh.0)
            .cloned()
            .ok_or(FsError::BadHandle)
    }
}

impl fuser::Filesystem for Adapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // Each is an optimisation: go on without any the kernel lacks.
        let _ = config.add_capabilities(InitFlags::FUSE_DO_READDIRPLUS);
        let _ = config.add_capabilities(InitFlags::FUSE_PARALLEL_DIROPS);
        let _ = config.add_capabilities(InitFlags::FUSE_ATOMIC_O_TRUNC);
        let _ = config.set_max_background(64);
        if self.inner.options.passthrough
            && config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(1).is_ok()
        {
            self.inner.passthrough.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let me = self.inner.clone();
        let name = match name_of(name) {
            Ok(n) => n,
            Err(FsError::NameTooLong) => return reply.error(Errno::ENAMETOOLONG),
            // No such name can exist.
            Err(_) => return reply.error(Errno::ENOENT),
        };
        let work = async move {
            match me.inodes.target(parent.0)? {
                Target::Drives => {
                    let (slot, drive) = me.drive_named(&name).await?;
                    let attr = drive.getattr(drive.root()).await?;
                    Ok(me.entry(slot, &attr))
                }
                Target::Node { slot, drive, node } => {
                    let attr = drive.lookup(node, &name).await?;
                    Ok(me.entry(slot, &attr))
                }
            }
        };
        self.inner
            .serve("lookup", reply, true, work, |reply, (attr, ttl)| {
                reply.entry(&ttl, &attr, Generation(0))
            });
    }

    fn getattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: Option<fuser::FileHandle>,
        reply: ReplyAttr,
    ) {
        let me = self.inner.clone();
        let work = async move {
            let (drive, node) = match me.inodes.target(ino.0)? {
                Target::Drives => return Ok((me.drives_attr(), me.options.ttl)),
                Target::Node { drive, node, .. } => (drive, node),
            };
            let attr = match fh.map(|fh| me.open_file(fh)) {
                Some(Ok((d, fh, _))) => d.handle_attr(fh).await?,
                _ => drive.getattr(node).await?,
            };
            Ok((me.attr(ino.0, &attr), me.ttl(&attr)))
        };
        self.inner
            .serve("getattr", reply, true, work, |reply, (attr, ttl)| {
                reply.attr(&ttl, &attr)
            });
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<fuser::FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // Files belong to the daemon's user; modes are fixed (chmod is accepted, as many
        // copy tools insist on it).
        if uid.is_some_and(|u| u != self.inner.uid) || gid.is_some_and(|g| g != self.inner.gid) {
            return reply.error(Errno::EPERM);
        }
        let me = self.inner.clone();
        let work = async move {
            let (slot, drive, node) = match me.inodes.target(ino.0)? {
                Target::Drives => return Ok((me.drives_attr(), me.options.ttl)),
                Target::Node { slot, drive, node } => (slot, drive, node),
            };
            let changes = SetAttr {
                size,
                mtime: mtime.map(|t| match t {
                    TimeOrNow::SpecificTime(t) => t,
                    TimeOrNow::Now => SystemTime::now(),
                }),
            };
            let handle = fh.and_then(|fh| me.open_file(fh).ok());
            let attr = match handle {
                // ftruncate(2): the open file's staged content, committed with its writes.
                Some((d, fh, _)) if changes.size.is_some() => {
                    d.truncate(fh, changes.size.unwrap_or(0)).await?;
                    if changes.mtime.is_some() {
                        d.setattr(
                            node,
                            SetAttr {
                                size: None,
                                ..changes
                            },
                        )
                        .await?;
                    }
                    d.handle_attr(fh).await?
                }
                _ if changes == SetAttr::default() => drive.getattr(node).await?,
                _ => drive.setattr(node, changes).await?,
            };
            Ok(me.entry(slot, &attr))
        };
        self.inner
            .serve("setattr", reply, false, work, |reply, (attr, ttl)| {
                reply.attr(&ttl, &attr)
            });
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let me = self.inner.clone();
        let name = name_of(name);
        let work = async move {
            let name = name?;
            let (slot, drive, node) = me.node(parent)?;
            let attr = drive.mkdir(node, &name).await?;
            Ok(me.entry(slot, &attr))
        };
        self.inner
            .serve("mkdir", reply, false, work, |reply, (attr, ttl)| {
                reply.entry(&ttl, &attr, Generation(0))
            });
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        // Regular files come through `create`; devices, FIFOs and sockets can't be stored.
        reply.error(Errno::EPERM);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let me = self.inner.clone();
        let name = name_of(name);
        let work = async move {
            let name = name?;
            let (_, drive, node) = me.node(parent)?;
            drive.unlink(node, &name).await
        };
        self.inner
            .serve("unlink", reply, false, work, |reply, ()| reply.ok());
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let me = self.inner.clone();
        let name = name_of(name);
        let work = async move {
            let name = name?;
            let (_, drive, node) = me.node(parent)?;
            drive.rmdir(node, &name).await
        };
        self.inner
            .serve("rmdir", reply, false, work, |reply, ()| reply.ok());
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            return reply.error(Errno::EINVAL);
        }
        let me = self.inner.clone();
        let (name, newname) = (name_of(name), name_of(newname));
        let opts = RenameOptions {
            no_replace: flags.contains(RenameFlags::RENAME_NOREPLACE),
        };
        let work = async move {
            let (name, newname) = (name?, newname?);
            let (from_slot, drive, from) = me.node(parent)?;
            let (to_slot, _, to) = me.node(newparent)?;
            if from_slot != to_slot {
                return Err(FsError::PermissionDenied);
            }
            drive.rename(from, &name, to, &newname, opts).await
        };
        self.inner
            .serve("rename", reply, false, work, |reply, ()| reply.ok());
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let me = self.inner.clone();
        let write = !matches!(flags.acc_mode(), OpenAccMode::O_RDONLY);
        let opts = OpenOptions {
            write,
            truncate: write && flags.0 & libc::O_TRUNC != 0,
            expected_size: None,
        };
        let work = async move {
            let (_, drive, node) = me.inodes.target(ino.0).and_then(|t| match t {
                Target::Node { slot, drive, node } => Ok((slot, drive, node)),
                Target::Drives => Err(FsError::IsADirectory),
            })?;
            let fh = drive.open(node, opts).await?;
            let prepared = async {
                let attr = drive.handle_attr(fh).await?;
                let local = if write || attr.volatile || !me.passthrough.load(Ordering::Relaxed) {
                    None
                } else {
                    drive.local_file(fh).await?
                };
                Ok::<_, FsError>((attr, local))
            }
            .await;
            match prepared {
                Ok((attr, local)) => Ok((me, drive, fh, attr, local)),
                Err(e) => {
                    let _ = drive.release(fh).await;
                    Err(e)
                }
            }
        };
        self.inner.serve(
            "open",
            reply,
            true,
            work,
            move |reply, (me, drive, fh, attr, local)| {
                let (mode, flags, backing) = me.io_mode(ino.0, &attr, write, local, &reply);
                let id = me.add_open_file(drive, fh, ino.0, mode, write);
                match backing {
                    Some(b) => reply.opened_passthrough(fuser::FileHandle(id), flags, &b),
                    None => reply.opened(fuser::FileHandle(id), flags),
                }
            },
        );
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let me = self.inner.clone();
        let name = name_of(name);
        let opts = CreateOptions {
            exclusive: flags & libc::O_EXCL != 0,
            deferred: false,
            expected_size: None,
        };
        let work = async move {
            let name = name?;
            let (slot, drive, node) = me.node(parent)?;
            let (attr, fh) = drive.create(node, &name, opts).await?;
            Ok((me, slot, drive, attr, fh))
        };
        self.inner.serve(
            "create",
            reply,
            false,
            work,
            |reply, (me, slot, drive, attr, fh)| {
                let (fattr, ttl) = me.entry(slot, &attr);
                let (mode, flags) = me.created_mode(fattr.ino.0);
                let id = me.add_open_file(drive, fh, fattr.ino.0, mode, true);
                reply.created(&ttl, &fattr, Generation(0), fuser::FileHandle(id), flags)
            },
        );
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: fuser::FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let me = self.inner.clone();
        let work = async move {
            let (drive, fh, _) = me.open_file(fh)?;
            drive.read(fh, offset, size).await
        };
        self.inner
            .serve("read", reply, true, work, |reply, data| reply.data(&data));
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: fuser::FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: fuser::WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        let me = self.inner.clone();
        let data = data.to_vec();
        let work = async move {
            let (drive, fh, _) = me.open_file(fh)?;
            drive.write(fh, offset, &data).await
        };
        self.inner
            .serve("write", reply, false, work, |reply, n| reply.written(n));
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: fuser::FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        self.commit(fh, reply);
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: fuser::FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.commit(fh, reply);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: fuser::FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let me = self.inner.clone();
        let Some(file) = lock(&me.files).remove(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        me.open_files.fetch_sub(1, Ordering::Relaxed);
        let work = async move {
            // Commit first: a writer that never called close(2) (killed) still had its data
            // written, and POSIX keeps what was written.
            let committed = file.drive.flush(file.fh).await;
            let released = file.drive.release(file.fh).await;
            me.closed(file.ino, file.mode, file.write);
            committed.map(|_| ())?;
            released
        };
        self.inner
            .serve("release", reply, false, work, |reply, ()| reply.ok());
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let me = self.inner.clone();
        let work = async move {
            let listing = me.listing(ino).await?;
            let id = me.next_fh.fetch_add(1, Ordering::Relaxed);
            lock(&me.dirs).insert(id, Arc::new(listing));
            Ok(id)
        };
        self.inner.serve("opendir", reply, true, work, |reply, id| {
            reply.opened(fuser::FileHandle(id), FopenFlags::empty())
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: fuser::FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let listed = match self.inner.listed(fh) {
            Ok(l) => l,
            Err(e) => return reply.error(errno(&e)),
        };
        for (i, e) in listed.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(e.ino), i as u64 + 1, e.attr.kind, &e.name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: fuser::FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let listed = match self.inner.listed(fh) {
            Ok(l) => l,
            Err(e) => return reply.error(errno(&e)),
        };
        for (i, e) in listed.iter().enumerate().skip(offset as usize) {
            if reply.add(
                INodeNo(e.ino),
                i as u64 + 1,
                &e.name,
                &e.ttl,
                &e.attr,
                Generation(0),
            ) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: fuser::FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        lock(&self.inner.dirs).remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: fuser::FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Every change to a folder is durable when its request is answered.
        reply.ok();
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        Self::refuse_xattrs(reply)
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        Self::refuse_xattrs(reply)
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        Self::refuse_xattrs(reply)
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        Self::refuse_xattrs(reply)
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EPERM)
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EPERM)
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: fuser::FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::from_i32(libc::EOPNOTSUPP))
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        _fh_in: fuser::FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _fh_out: fuser::FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: fuser::CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        // ENOSYS: the kernel stops asking and copies with reads and writes.
        reply.error(Errno::ENOSYS)
    }

    fn statfs(&self, _req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        let me = self.inner.clone();
        let work = async move { me.usage(ino).await };
        self.inner.serve("statfs", reply, true, work, |reply, u| {
            // In bytes (a block size of 1): quotas are exact to the byte, and both ways
            // programs compute space (f_frsize or f_bsize times blocks) agree.
            let total = u
                .limit
                .unwrap_or(u.used.saturating_add(u.available))
                .max(u.used);
            let ffree = u64::from(u32::MAX);
            reply.statfs(
                total,
                total - u.used,
                u.available,
                u.nodes.saturating_add(ffree),
                ffree,
                1,
                crate::NAME_MAX as u32,
                1,
            )
        });
    }
}

/// What the drive can't store, answered without the warnings fuser logs for methods a file
/// system leaves out.
impl Adapter {
    fn refuse_xattrs<R: Fail>(reply: R) {
        // ENOSYS: the kernel stops asking (`ls -l` asks for security.selinux and ACLs of every
        // file otherwise) and tells callers EOPNOTSUPP.
        reply.fail(Errno::ENOSYS)
    }
}

impl Adapter {
    /// FLUSH and FSYNC: commit what the handle wrote, durably; the error reaches close(2).
    fn commit(&self, fh: fuser::FileHandle, reply: ReplyEmpty) {
        let me = self.inner.clone();
        let work = async move {
            let (drive, fh, ino) = me.open_file(fh)?;
            if let Err(e) = drive.flush(fh).await {
                // The kernel may hold the refused bytes in its page cache: drop them.
                let _ = me.invalidate.send(Inval::Inode(ino));
                return Err(e);
            }
            Ok(())
        };
        self.inner
            .serve("commit", reply, false, work, |reply, ()| reply.ok());
    }
}
