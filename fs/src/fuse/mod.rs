//! The FUSE front end: a `Drive` (or a folder of drives) as a local file system.
//!
//! The adapter (`adapter.rs`) has no policy of its own: it maps inode numbers, chooses how the
//! kernel reads a file (page cache, direct, or passthrough to a local file), and turns every
//! `FsError` into an errno through `FsError::errno`. Requests are answered from tokio tasks,
//! so a read waiting for a torrent's pieces holds up nothing else.

mod adapter;
mod inodes;

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::{Drive, FsResult};

/// A set of named drives shown as one folder each (`DIR/<user>/...`).
#[async_trait]
pub trait DriveSet: Send + Sync + 'static {
    /// The drives' names, sorted.
    async fn names(&self) -> FsResult<Vec<String>>;

    /// The drive called `name` (`FsError::NotFound` if there is none).
    async fn drive(&self, name: &str) -> FsResult<Arc<dyn Drive>>;
}

/// What a mount shows.
#[derive(Clone)]
pub enum Tree {
    /// One drive at the mount's root.
    Drive(Arc<dyn Drive>),
    /// A folder per drive.
    Drives(Arc<dyn DriveSet>),
}

/// How to mount.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// Let other local users in (the `allow_other` mount option; as a non-root user it needs
    /// `user_allow_other` in /etc/fuse.conf). Permissions are checked by the kernel.
    pub allow_other: bool,
    /// Let the kernel read complete local files directly (FUSE passthrough, Linux 6.9+,
    /// needs CAP_SYS_ADMIN); without it, or where it fails, files are read through the daemon.
    pub passthrough: bool,
    /// Longest wait for any request but writes: past it the request fails with EIO, because
    /// a process blocked in a FUSE request can't even be killed.
    pub request_timeout: Duration,
    /// How long the kernel may trust names and attributes without asking again. Changes
    /// made elsewhere are pushed to the kernel at once; this bounds staleness if one is lost.
    pub ttl: Duration,
    /// Threads reading requests from the kernel.
    pub threads: usize,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            allow_other: false,
            passthrough: true,
            request_timeout: Duration::from_secs(90),
            ttl: Duration::from_secs(1),
            threads: 4,
        }
    }
}

/// A mounted tree. Dropping it unmounts (lazily, if the mount is busy).
pub struct Mount {
    session: Option<fuser::BackgroundSession>,
    dir: PathBuf,
    open_files: Arc<std::sync::atomic::AtomicU64>,
}

impl Mount {
    /// Files open on the mount now.
    pub fn open_files(&self) -> u64 {
        self.open_files.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the mount answers (a crashed session leaves "not connected").
    pub fn is_healthy(&self) -> bool {
        std::fs::metadata(&self.dir).is_ok()
    }

    /// Where it is mounted.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Unmounts. A busy mount (a process has a file open or its working directory there) is
    /// detached: it disappears from the tree now and goes when the last user lets go.
    pub fn unmount(mut self) -> io::Result<()> {
        self.unmount_now()
    }

    fn unmount_now(&mut self) -> io::Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        match session.umount_and_join() {
            Ok(()) => Ok(()),
            // The session thread still serves the detached mount; it ends with the process.
            Err(_) => detach(&self.dir),
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Err(e) = self.unmount_now() {
            tracing::warn!(dir = %self.dir.display(), error = %e, "unmounting");
        }
    }
}

/// Mounts `tree` at `dir`. Drive calls run on `runtime`. A stale mount left at `dir` by a
/// crash ("Transport endpoint is not connected") is detached first; a live mount or a folder
/// with files in it is refused, so nothing gets hidden.
pub fn mount(
    tree: Tree,
    dir: &Path,
    options: MountOptions,
    runtime: tokio::runtime::Handle,
) -> io::Result<Mount> {
    clear_stale_mount(dir)?;
    check_mount_point(dir)?;
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName("torrentdrive".into()),
        fuser::MountOption::Subtype("torrentdrive".into()),
        fuser::MountOption::DefaultPermissions,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
        fuser::MountOption::NoAtime,
    ];
    config.acl = if options.allow_other {
        fuser::SessionACL::All
    } else {
        fuser::SessionACL::Owner
    };
    config.n_threads = Some(options.threads.max(1));
    config.clone_fd = true;
    let (filesystem, invalidations) = adapter::Adapter::new(tree, options, runtime);
    let open_files = filesystem.open_files();
    let session = fuser::spawn_mount(filesystem, dir, &config)?;
    invalidations.start(session.notifier())?;
    Ok(Mount {
        session: Some(session),
        dir: dir.to_path_buf(),
        open_files,
    })
}

/// Whether `dir` is a mount point whose file system process is gone.
pub fn is_stale_mount(dir: &Path) -> bool {
    matches!(std::fs::metadata(dir), Err(e) if e.raw_os_error() == Some(libc::ENOTCONN))
}

fn clear_stale_mount(dir: &Path) -> io::Result<()> {
    if !is_stale_mount(dir) {
        return Ok(());
    }
    tracing::warn!(dir = %dir.display(), "replacing a stale mount left by a crash");
    detach(dir)
}

/// Unmounts `dir` lazily: as root with umount2(MNT_DETACH), otherwise through fusermount3.
fn detach(dir: &Path) -> io::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let path = CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in mount path"))?;
        // SAFETY: `path` is a valid C string for the duration of the call.
        if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } == 0 {
            return Ok(());
        }
        return Err(io::Error::last_os_error());
    }
    let status = std::process::Command::new("fusermount3")
        .args(["-u", "-z"])
        .arg(dir)
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "fusermount3 -u -z {} failed ({status})",
            dir.display()
        )))
    }
}

fn check_mount_point(dir: &Path) -> io::Result<()> {
    let meta = std::fs::metadata(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("mount point {}: {e}", dir.display())))?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("mount point {} is not a folder", dir.display()),
        ));
    }
    let parent = dir.join("..");
    if let Ok(up) = std::fs::metadata(&parent) {
        use std::os::unix::fs::MetadataExt;
        if up.dev() != meta.dev() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} is already a mount point", dir.display()),
            ));
        }
    }
    if std::fs::read_dir(dir)?.next().is_some() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "mount point {} is not empty: mounting would hide its files",
                dir.display()
            ),
        ));
    }
    Ok(())
}
