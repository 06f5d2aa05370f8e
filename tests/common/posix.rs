//! A `Drive` made of plain POSIX calls (`std::fs`, `libc`) on a directory.
//!
//! It exists to run the `Drive` conformance suite through a real FUSE mount: pointed at
//! `<mountpoint>/<user>`, every operation of the suite goes through the kernel and the FUSE
//! adapter to the user's drive and back, so the mount is held to the same contract as the
//! drive itself. Nothing here is clever on purpose — each `Drive` method is the system call a
//! program would make, and each errno is translated back to the `FsError` it stands for.
//!
//! What POSIX can't express, this can't either, and the cases that need it are skipped by
//! the tests that use it:
//! - a deferred create (`CreateOptions::deferred`): the file is created at once;
//! - discarding a handle's writes: `close` flushes them, so `release` commits;
//! - `expected_size`: remembered, and `flush` refuses with `Incomplete` when a different
//!   number of bytes was written, but the kernel still commits those bytes at `close`;
//! - atomic multi-attribute `set_xattrs`: changes are applied one by one and undone on error.
//!
//! Node ids are inode numbers (`st_ino`); a map from id to path stands in for the kernel's
//! dentry cache, and follows renames and removals made through this drive.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::ffi::CString;
use std::fs::{File, Metadata};
use std::hash::{Hash, Hasher};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::io::{AsRawFd, IntoRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use torrentdrive_fs::{
    check_complete, Attr, CreateOptions, DirEntry, Drive, FileHandle, FsError, FsResult, NodeId,
    NodeKind, OpenOptions, RenameOptions, SetAttr, Usage, XattrChange,
};

/// The namespace the drive's extended attributes appear in: drive name `x` is `user.x`.
const XATTR_PREFIX: &str = "user.";

/// A `Drive` over the directory `root`, by system calls. See the module documentation.
pub struct PosixDrive {
    root: PathBuf,
    root_id: NodeId,
    /// Where each node seen so far is, by inode number.
    paths: Mutex<HashMap<u64, PathBuf>>,
    handles: Mutex<HashMap<u64, HandleState>>,
    next_handle: AtomicU64,
}

/// An open file.
struct HandleState {
    /// Shared with the blocking tasks using it; the descriptor closes when the last one goes.
    file: Arc<File>,
    /// The announced length (`expected_size`), checked at `flush`.
    expected: Option<u64>,
    /// Bytes written through this handle.
    written: u64,
    /// Something changed since the last `flush` (as in the drive: writes, a truncating open,
    /// a create).
    dirty: bool,
}

impl PosixDrive {
    /// A drive over `root`, an existing directory.
    ///
    /// # Panics
    /// If `root` can't be examined (use [`PosixDrive::try_new`] to get the error instead).
    pub fn new(root: PathBuf) -> PosixDrive {
        PosixDrive::try_new(root.clone())
            .unwrap_or_else(|e| panic!("PosixDrive: can't use {}: {e}", root.display()))
    }

    /// A drive over `root`, or why `root` can't be examined. This one call blocks: the
    /// constructor is synchronous.
    pub fn try_new(root: PathBuf) -> FsResult<PosixDrive> {
        let meta = std::fs::metadata(&root).map_err(io_to_fs)?;
        if !meta.is_dir() {
            return Err(FsError::NotADirectory);
        }
        let root_id = NodeId(meta.ino());
        let paths = HashMap::from([(root_id.0, root.clone())]);
        Ok(PosixDrive {
            root,
            root_id,
            paths: Mutex::new(paths),
            handles: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
        })
    }

    fn paths(&self) -> MutexGuard<'_, HashMap<u64, PathBuf>> {
        self.paths.lock().expect("PosixDrive path map poisoned")
    }

    fn handles(&self) -> MutexGuard<'_, HashMap<u64, HandleState>> {
        self.handles
            .lock()
            .expect("PosixDrive handle table poisoned")
    }

    /// The path of a node seen before; `NotFound` for one never seen or removed since.
    fn path_of(&self, node: NodeId) -> FsResult<PathBuf> {
        self.paths().get(&node.0).cloned().ok_or(FsError::NotFound)
    }

    /// The path of `name` in folder `parent`, if `name` can be passed to a system call.
    fn child_path(&self, parent: NodeId, name: &str) -> FsResult<PathBuf> {
        check_expressible(name)?;
        Ok(self.path_of(parent)?.join(name))
    }

    fn remember(&self, node: NodeId, path: PathBuf) {
        self.paths().insert(node.0, path);
    }

    /// Forgets `path` and everything below it.
    fn forget(&self, path: &Path) {
        self.paths().retain(|_, p| !p.starts_with(path));
    }

    /// Follows a rename of `from` to `to`: what was at `to` is gone, and everything at or
    /// below `from` is now below `to`.
    fn renamed(&self, from: &Path, to: &Path) {
        if from == to {
            return;
        }
        let mut paths = self.paths();
        // Only a file or an empty folder can have been replaced at `to`.
        paths.retain(|_, p| p != to);
        for p in paths.values_mut() {
            if let Ok(rest) = p.strip_prefix(from) {
                *p = if rest.as_os_str().is_empty() {
                    to.to_path_buf()
                } else {
                    to.join(rest)
                };
            }
        }
    }

    fn add_handle(&self, file: File, expected: Option<u64>, dirty: bool) -> FileHandle {
        let id = self.next_handle.fetch_add(1, Ordering::Relaxed);
        let state = HandleState {
            file: Arc::new(file),
            expected,
            written: 0,
            dirty,
        };
        self.handles().insert(id, state);
        FileHandle(id)
    }

    fn file_of(&self, fh: FileHandle) -> FsResult<Arc<File>> {
        self.handles()
            .get(&fh.0)
            .map(|h| h.file.clone())
            .ok_or(FsError::BadHandle)
    }
}

#[async_trait]
impl Drive for PosixDrive {
    fn root(&self) -> NodeId {
        self.root_id
    }

    async fn lookup(&self, parent: NodeId, name: &str) -> FsResult<Attr> {
        let path = self.child_path(parent, name)?;
        let p = path.clone();
        let attr = blocking(move || stat(&p)).await.map_err(in_name_call)?;
        self.remember(attr.id, path);
        Ok(attr)
    }

    async fn getattr(&self, node: NodeId) -> FsResult<Attr> {
        let path = self.path_of(node)?;
        let attr = blocking(move || stat(&path)).await?;
        if attr.id != node {
            // The path names another node now: ours is gone.
            return Err(FsError::NotFound);
        }
        Ok(attr)
    }

    async fn list(&self, dir: NodeId) -> FsResult<Vec<DirEntry>> {
        let path = self.path_of(dir)?;
        let p = path.clone();
        let entries = blocking(move || {
            let mut out = Vec::new();
            for entry in std::fs::read_dir(&p).map_err(io_to_fs)? {
                let entry = entry.map_err(io_to_fs)?;
                let name = entry
                    .file_name()
                    .into_string()
                    .map_err(|n| FsError::Io(format!("non-UTF-8 name {n:?}")))?;
                let meta = match std::fs::symlink_metadata(entry.path()) {
                    Ok(meta) => meta,
                    // Removed since read_dir saw it.
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                    Err(e) => return Err(io_to_fs(e)),
                };
                out.push(DirEntry {
                    name,
                    attr: attr_of(&meta),
                });
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
        .await?;
        let mut paths = self.paths();
        for e in &entries {
            paths.insert(e.attr.id.0, path.join(&e.name));
        }
        Ok(entries)
    }

    async fn open(&self, node: NodeId, opts: OpenOptions) -> FsResult<FileHandle> {
        let path = self.path_of(node)?;
        let file = blocking(move || {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(opts.write)
                .truncate(opts.truncate)
                .open(&path)
                .map_err(io_to_fs)?;
            // POSIX opens a folder for reading; the contract doesn't (the descriptor closes
            // here, off the async threads).
            if file.metadata().map_err(io_to_fs)?.is_dir() {
                return Err(FsError::IsADirectory);
            }
            Ok(file)
        })
        .await?;
        Ok(self.add_handle(file, opts.expected_size, opts.truncate))
    }

    async fn create(
        &self,
        parent: NodeId,
        name: &str,
        opts: CreateOptions,
    ) -> FsResult<(Attr, FileHandle)> {
        let path = self.child_path(parent, name)?;
        let p = path.clone();
        // `opts.deferred` has no POSIX equivalent: the file appears at once.
        let (file, attr) = blocking(move || {
            let mut o = std::fs::OpenOptions::new();
            o.read(true).write(true);
            if opts.exclusive {
                o.create_new(true);
            } else {
                o.create(true).truncate(true);
            }
            let file = o.open(&p).map_err(io_to_fs)?;
            let attr = attr_of(&file.metadata().map_err(io_to_fs)?);
            Ok((file, attr))
        })
        .await
        .map_err(in_name_call)?;
        self.remember(attr.id, path);
        let fh = self.add_handle(file, opts.expected_size, true);
        Ok((attr, fh))
    }

    async fn read(&self, fh: FileHandle, offset: u64, len: u32) -> FsResult<Bytes> {
        let file = self.file_of(fh)?;
        blocking(move || {
            let mut buf = vec![0; len as usize];
            let mut filled = 0;
            while filled < buf.len() {
                match file.read_at(&mut buf[filled..], offset + filled as u64) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(io_to_fs(e)),
                }
            }
            buf.truncate(filled);
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn write(&self, fh: FileHandle, offset: u64, data: &[u8]) -> FsResult<u32> {
        let len =
            u32::try_from(data.len()).map_err(|_| FsError::InvalidArgument("write too large"))?;
        let file = self.file_of(fh)?;
        let data = data.to_vec();
        blocking(move || file.write_all_at(&data, offset).map_err(io_to_fs)).await?;
        if let Some(h) = self.handles().get_mut(&fh.0) {
            h.written += u64::from(len);
            h.dirty = true;
        }
        Ok(len)
    }

    async fn flush(&self, fh: FileHandle) -> FsResult<Attr> {
        let (file, expected, written, dirty) = {
            let handles = self.handles();
            let h = handles.get(&fh.0).ok_or(FsError::BadHandle)?;
            (h.file.clone(), h.expected, h.written, h.dirty)
        };
        if dirty {
            check_complete(expected, written)?;
        }
        let attr = blocking(move || {
            close_dup(file.as_raw_fd())?;
            Ok(attr_of(&file.metadata().map_err(io_to_fs)?))
        })
        .await?;
        if let Some(h) = self.handles().get_mut(&fh.0) {
            h.dirty = false;
        }
        Ok(attr)
    }

    async fn release(&self, fh: FileHandle) -> FsResult<()> {
        let state = self.handles().remove(&fh.0).ok_or(FsError::BadHandle)?;
        // The last close of a descriptor on a mount flushes: it may wait for the drive.
        blocking(move || {
            drop(state);
            Ok(())
        })
        .await
    }

    async fn truncate(&self, fh: FileHandle, size: u64) -> FsResult<()> {
        let file = self.file_of(fh)?;
        blocking(move || file.set_len(size).map_err(io_to_fs)).await
    }

    async fn handle_attr(&self, fh: FileHandle) -> FsResult<Attr> {
        let file = self.file_of(fh)?;
        blocking(move || Ok(attr_of(&file.metadata().map_err(io_to_fs)?))).await
    }

    async fn mkdir(&self, parent: NodeId, name: &str) -> FsResult<Attr> {
        let path = self.child_path(parent, name)?;
        let p = path.clone();
        let attr = blocking(move || {
            std::fs::create_dir(&p).map_err(io_to_fs)?;
            stat(&p)
        })
        .await
        .map_err(in_name_call)?;
        self.remember(attr.id, path);
        Ok(attr)
    }

    async fn unlink(&self, parent: NodeId, name: &str) -> FsResult<()> {
        let path = self.child_path(parent, name)?;
        let p = path.clone();
        blocking(move || std::fs::remove_file(&p).map_err(io_to_fs))
            .await
            .map_err(in_name_call)?;
        self.forget(&path);
        Ok(())
    }

    async fn rmdir(&self, parent: NodeId, name: &str) -> FsResult<()> {
        let path = self.child_path(parent, name)?;
        let p = path.clone();
        blocking(move || std::fs::remove_dir(&p).map_err(io_to_fs))
            .await
            .map_err(in_name_call)?;
        self.forget(&path);
        Ok(())
    }

    async fn rename(
        &self,
        parent: NodeId,
        name: &str,
        new_parent: NodeId,
        new_name: &str,
        opts: RenameOptions,
    ) -> FsResult<()> {
        let from = self.child_path(parent, name)?;
        let to = self.child_path(new_parent, new_name)?;
        let (f, t) = (from.clone(), to.clone());
        let result = blocking(move || {
            if opts.no_replace {
                let (cf, ct) = (c_path(&f)?, c_path(&t)?);
                // SAFETY: both are NUL-terminated paths that outlive the call.
                let rc = unsafe {
                    libc::renameat2(
                        libc::AT_FDCWD,
                        cf.as_ptr(),
                        libc::AT_FDCWD,
                        ct.as_ptr(),
                        libc::RENAME_NOREPLACE,
                    )
                };
                if rc != 0 {
                    return Err(io_to_fs(io::Error::last_os_error()));
                }
                Ok(())
            } else {
                std::fs::rename(&f, &t).map_err(io_to_fs)
            }
        })
        .await;
        match result {
            Ok(()) => {
                self.renamed(&from, &to);
                Ok(())
            }
            // EINVAL from rename is either a folder moved below itself or a name the file
            // system refused: the paths tell which.
            Err(FsError::InvalidArgument(_)) if to.starts_with(&from) => {
                Err(FsError::MoveIntoItself)
            }
            // A folder over a non-empty one: POSIX allows EEXIST as well as ENOTEMPTY.
            Err(FsError::Exists) if !opts.no_replace => Err(FsError::NotEmpty),
            Err(e) => Err(in_name_call(e)),
        }
    }

    async fn copy(&self, node: NodeId, new_parent: NodeId, new_name: &str) -> FsResult<Attr> {
        let src = self.path_of(node)?;
        let dst = self.child_path(new_parent, new_name)?;
        let d = dst.clone();
        let attr = blocking(move || copy_file(&src, &d))
            .await
            .map_err(in_name_call)?;
        self.remember(attr.id, dst);
        Ok(attr)
    }

    async fn setattr(&self, node: NodeId, changes: SetAttr) -> FsResult<Attr> {
        let path = self.path_of(node)?;
        blocking(move || {
            let c = c_path(&path)?;
            if let Some(size) = changes.size {
                let size = libc::off_t::try_from(size)
                    .map_err(|_| FsError::InvalidArgument("size too large"))?;
                // SAFETY: a NUL-terminated path that outlives the call.
                if unsafe { libc::truncate(c.as_ptr(), size) } != 0 {
                    return Err(io_to_fs(io::Error::last_os_error()));
                }
            }
            if let Some(mtime) = changes.mtime {
                set_mtime(&c, mtime)?;
            }
            stat(&path)
        })
        .await
    }

    async fn usage(&self) -> FsResult<Usage> {
        let root = self.root.clone();
        blocking(move || {
            let c = c_path(&root)?;
            // SAFETY: statvfs is plain data, filled in by the call.
            let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
            // SAFETY: a NUL-terminated path and a valid out-pointer.
            if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
                return Err(io_to_fs(io::Error::last_os_error()));
            }
            #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
            let (blocks, bfree, bavail, frsize, files, ffree) = (
                st.f_blocks as u64,
                st.f_bfree as u64,
                st.f_bavail as u64,
                st.f_frsize as u64,
                st.f_files as u64,
                st.f_ffree as u64,
            );
            Ok(Usage {
                used: blocks.saturating_sub(bfree).saturating_mul(frsize),
                limit: Some(blocks.saturating_mul(frsize)),
                available: bavail.saturating_mul(frsize),
                nodes: files.saturating_sub(ffree),
            })
        })
        .await
    }

    async fn xattrs(&self, node: NodeId) -> FsResult<Vec<(String, Vec<u8>)>> {
        let path = self.path_of(node)?;
        blocking(move || {
            let c = c_path(&path)?;
            let mut out = Vec::new();
            for name in list_xattrs(&c)? {
                // Removed since listed: skip it.
                if let Some(value) = get_xattr(&c, &name)? {
                    out.push((name, value));
                }
            }
            out.sort();
            Ok(out)
        })
        .await
    }

    async fn set_xattrs(&self, node: NodeId, changes: Vec<XattrChange>) -> FsResult<()> {
        let path = self.path_of(node)?;
        blocking(move || {
            let c = c_path(&path)?;
            // POSIX changes one attribute per call: remember the old values to undo a
            // partial change.
            let mut undo: Vec<(String, Option<Vec<u8>>)> = Vec::new();
            for change in &changes {
                if !undo.iter().any(|(n, _)| *n == change.name) {
                    undo.push((change.name.clone(), get_xattr(&c, &change.name)?));
                }
            }
            for (i, change) in changes.iter().enumerate() {
                if let Err(e) = put_xattr(&c, &change.name, change.value.as_deref()) {
                    for (name, old) in undo
                        .iter()
                        .filter(|(n, _)| changes[..i].iter().any(|c| c.name == *n))
                    {
                        // Best effort: the error to report is the first one.
                        let _ = put_xattr(&c, name, old.as_deref());
                    }
                    return Err(e);
                }
            }
            Ok(())
        })
        .await
    }
}

/// Runs a blocking system call off the async threads (a call on a mount may wait for the
/// drive behind it); a panic in it is the caller's.
async fn blocking<T, F>(f: F) -> FsResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> FsResult<T> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(FsError::Io(format!("blocking task: {e}"))),
    }
}

/// Refuses the names that can't be passed to a system call as one name: the kernel's path
/// walk would resolve them (`""`, `.`, `..`, `a/b`) or refuse the path (`\0`) before any
/// file system sees them. Every other name goes to the file system, which decides.
fn check_expressible(name: &str) -> FsResult<()> {
    if name.is_empty() {
        return Err(FsError::InvalidName("empty name"));
    }
    if name == "." || name == ".." {
        return Err(FsError::InvalidName("'.' and '..' are not names"));
    }
    if name.contains('/') {
        return Err(FsError::InvalidName("a name can't contain '/'"));
    }
    if name.contains('\0') {
        return Err(FsError::InvalidName("a name can't contain NUL"));
    }
    Ok(())
}

/// The `FsError` an errno stands for; the inverse of `FsError::errno`, except that EINVAL
/// is `InvalidArgument` here (see [`in_name_call`]).
pub fn errno_to_fs(errno: i32) -> FsError {
    match errno {
        libc::ENOENT => FsError::NotFound,
        libc::EEXIST => FsError::Exists,
        libc::ENOTDIR => FsError::NotADirectory,
        libc::EISDIR => FsError::IsADirectory,
        libc::ENOTEMPTY => FsError::NotEmpty,
        libc::EINVAL => FsError::InvalidArgument("EINVAL"),
        libc::ENAMETOOLONG => FsError::NameTooLong,
        libc::EROFS => FsError::ReadOnly,
        libc::EACCES | libc::EPERM => FsError::PermissionDenied,
        libc::EDQUOT => FsError::QuotaExceeded,
        libc::ENOSPC => FsError::NoSpace,
        libc::EBADF => FsError::BadHandle,
        libc::ETIMEDOUT => FsError::TimedOut,
        // EIO and everything else.
        _ => FsError::Io(io::Error::from_raw_os_error(errno).to_string()),
    }
}

/// An `std::io::Error` as an `FsError`, by its errno when it has one.
fn io_to_fs(e: io::Error) -> FsError {
    match e.raw_os_error() {
        Some(errno) => errno_to_fs(errno),
        None => match e.kind() {
            io::ErrorKind::NotFound => FsError::NotFound,
            io::ErrorKind::InvalidInput => FsError::InvalidArgument("invalid input"),
            io::ErrorKind::TimedOut => FsError::TimedOut,
            _ => FsError::Io(e.to_string()),
        },
    }
}

/// In a call that takes a name, EINVAL is the file system refusing the name (that is how
/// the drive's `InvalidName` crosses FUSE).
fn in_name_call(e: FsError) -> FsError {
    match e {
        FsError::InvalidArgument(_) => FsError::InvalidName("refused by the file system"),
        e => e,
    }
}

fn c_path(path: &Path) -> FsResult<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| FsError::InvalidArgument("path contains NUL"))
}

fn stat(path: &Path) -> FsResult<Attr> {
    std::fs::symlink_metadata(path)
        .map(|m| attr_of(&m))
        .map_err(io_to_fs)
}

fn attr_of(m: &Metadata) -> Attr {
    let kind = if m.is_dir() {
        NodeKind::Dir
    } else {
        NodeKind::File
    };
    // A folder's st_size is the file system's business; the contract says 0.
    let size = if m.is_dir() { 0 } else { m.size() };
    let mtime = system_time(m.mtime(), m.mtime_nsec());
    let ctime = system_time(m.ctime(), m.ctime_nsec());
    // POSIX has no content version. st_ctime changes with every content change and, unlike
    // st_mtime, can't be set back by a client; mixed with mtime and size it changes whenever
    // any of them does (it also changes on renames and attribute changes, which is harmless).
    let mut h = DefaultHasher::new();
    (
        m.ctime(),
        m.ctime_nsec(),
        m.mtime(),
        m.mtime_nsec(),
        m.size(),
    )
        .hash(&mut h);
    Attr {
        id: NodeId(m.ino()),
        kind,
        size,
        mtime,
        ctime,
        version: h.finish(),
        read_only: m.mode() & 0o222 == 0,
        has_xattrs: false,
        // POSIX can't tell a status file from any other.
        volatile: false,
    }
}

fn system_time(secs: i64, nsecs: i64) -> SystemTime {
    let nanos = Duration::from_nanos(u64::try_from(nsecs).unwrap_or(0));
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs()) + nanos
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + nanos
    }
}

fn timespec(t: SystemTime) -> libc::timespec {
    let (secs, nsecs) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, i64::from(d.subsec_nanos())),
        Err(e) => {
            // Before 1970: whole seconds down, nanoseconds up.
            let d = e.duration();
            let (secs, nsecs) = (-(d.as_secs() as i64), i64::from(d.subsec_nanos()));
            if nsecs > 0 {
                (secs - 1, 1_000_000_000 - nsecs)
            } else {
                (secs, 0)
            }
        }
    };
    // SAFETY: timespec is plain data (zeroed also clears padding fields on some targets).
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    ts.tv_sec = secs as libc::time_t;
    ts.tv_nsec = nsecs as _;
    ts
}

/// Sets a node's mtime, leaving its atime.
fn set_mtime(path: &CString, mtime: SystemTime) -> FsResult<()> {
    // SAFETY: timespec is plain data.
    let mut keep: libc::timespec = unsafe { std::mem::zeroed() };
    keep.tv_nsec = libc::UTIME_OMIT;
    let times = [keep, timespec(mtime)];
    // SAFETY: a NUL-terminated path and two timespecs, as utimensat wants.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            path.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(io_to_fs(io::Error::last_os_error()));
    }
    Ok(())
}

/// Closes a duplicate of `fd`: on a FUSE mount every close sends FLUSH, which commits the
/// handle's content, and close reports how that went (`drop(File)` would ignore it).
fn close_dup(fd: RawFd) -> FsResult<()> {
    // F_DUPFD_CLOEXEC rather than dup: a child spawned meanwhile must not inherit it.
    // SAFETY: fcntl on a descriptor we own; the copy is closed right below.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(io_to_fs(io::Error::last_os_error()));
    }
    // SAFETY: `dup` is ours alone.
    if unsafe { libc::close(dup) } != 0 {
        return Err(io_to_fs(io::Error::last_os_error()));
    }
    Ok(())
}

/// Closes a file, reporting the error `drop` would ignore (a mount's FLUSH result).
fn close_checked(file: File) -> FsResult<()> {
    let fd = file.into_raw_fd();
    // SAFETY: `fd` came out of the `File`, which no longer owns it.
    if unsafe { libc::close(fd) } != 0 {
        return Err(io_to_fs(io::Error::last_os_error()));
    }
    Ok(())
}

/// Copies file `src` to the new name `dst` with its mtime and extended attributes, as the
/// drive's copy does; nothing is left at `dst` on failure.
fn copy_file(src: &Path, dst: &Path) -> FsResult<Attr> {
    let meta = std::fs::symlink_metadata(src).map_err(io_to_fs)?;
    if meta.is_dir() {
        return Err(FsError::IsADirectory);
    }
    let mut from = File::open(src).map_err(io_to_fs)?;
    let mut to = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dst)
        .map_err(io_to_fs)?;
    let filled = (|| {
        io::copy(&mut from, &mut to).map_err(io_to_fs)?;
        close_checked(to)?;
        let (cs, cd) = (c_path(src)?, c_path(dst)?);
        for name in list_xattrs(&cs)? {
            if let Some(value) = get_xattr(&cs, &name)? {
                put_xattr(&cd, &name, Some(&value))?;
            }
        }
        set_mtime(&cd, system_time(meta.mtime(), meta.mtime_nsec()))?;
        stat(dst)
    })();
    if filled.is_err() {
        // Best effort: the error to report is the copy's.
        let _ = std::fs::remove_file(dst);
    }
    filled
}

/// The drive's extended attribute names on `path` (the `user.` ones, prefix removed); none
/// on a file system without extended attributes.
fn list_xattrs(path: &CString) -> FsResult<Vec<String>> {
    loop {
        // SAFETY: a NUL-terminated path; a null buffer of size 0 asks for the size.
        let size = unsafe { libc::llistxattr(path.as_ptr(), std::ptr::null_mut(), 0) };
        if size < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
                return Ok(Vec::new());
            }
            return Err(io_to_fs(e));
        }
        let mut buf = vec![0u8; size as usize];
        // SAFETY: `buf` has room for `buf.len()` bytes.
        let n = unsafe { libc::llistxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ERANGE) {
                continue; // grew since we asked
            }
            return Err(io_to_fs(e));
        }
        buf.truncate(n as usize);
        return Ok(buf
            .split(|&b| b == 0)
            .filter_map(|name| std::str::from_utf8(name).ok())
            .filter_map(|name| name.strip_prefix(XATTR_PREFIX))
            .map(str::to_owned)
            .collect());
    }
}

fn xattr_name(name: &str) -> FsResult<CString> {
    CString::new(format!("{XATTR_PREFIX}{name}"))
        .map_err(|_| FsError::InvalidArgument("attribute name contains NUL"))
}

/// One extended attribute's value; `None` if it isn't set.
fn get_xattr(path: &CString, name: &str) -> FsResult<Option<Vec<u8>>> {
    let cname = xattr_name(name)?;
    loop {
        // SAFETY: NUL-terminated path and name; a null buffer of size 0 asks for the size.
        let size =
            unsafe { libc::lgetxattr(path.as_ptr(), cname.as_ptr(), std::ptr::null_mut(), 0) };
        if size < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENODATA) {
                return Ok(None);
            }
            return Err(io_to_fs(e));
        }
        let mut buf = vec![0u8; size as usize];
        // SAFETY: `buf` has room for `buf.len()` bytes.
        let n = unsafe {
            libc::lgetxattr(
                path.as_ptr(),
                cname.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ERANGE) => continue, // grew since we asked
                Some(libc::ENODATA) => return Ok(None),
                _ => return Err(io_to_fs(e)),
            }
        }
        buf.truncate(n as usize);
        return Ok(Some(buf));
    }
}

/// Sets (`Some`) or removes (`None`) one extended attribute; removing an absent one is fine.
fn put_xattr(path: &CString, name: &str, value: Option<&[u8]>) -> FsResult<()> {
    let cname = xattr_name(name)?;
    // SAFETY: NUL-terminated path and name, and a value of the length passed.
    let rc = unsafe {
        match value {
            Some(v) => {
                libc::lsetxattr(path.as_ptr(), cname.as_ptr(), v.as_ptr().cast(), v.len(), 0)
            }
            None => libc::lremovexattr(path.as_ptr(), cname.as_ptr()),
        }
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if value.is_none() && e.raw_os_error() == Some(libc::ENODATA) {
            return Ok(());
        }
        return Err(io_to_fs(e));
    }
    Ok(())
}
