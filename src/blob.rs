//! The blob store: the bytes of uploaded files, one immutable blob per committed version.
//!
//! Content is staged in a local temp file, then `commit` makes it durable and visible under
//! its id: fsync the file, rename it into place, fsync the folder. A blob is never changed
//! after that; a new version of a file is a new blob. The metadata store decides which blobs
//! are referenced. The trait leaves room for a remote (S3-compatible) store later: staging
//! stays local, `commit` would upload.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub type BlobId = u128;

/// Content being written, not yet a blob. Removed from disk if dropped before `commit`.
pub struct Staged {
    file: Arc<File>,
    path: Option<PathBuf>,
}

impl Staged {
    /// The open temp file, for positional reads and writes.
    pub fn file(&self) -> &Arc<File> {
        &self.file
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = fs::remove_file(path);
        }
    }
}

/// Reads one committed blob.
pub trait BlobReader: Send + Sync {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    /// The blob as one local file, if it is one: the kernel can then read it directly.
    fn file(&self) -> Option<&File> {
        None
    }
}

impl BlobReader for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(self, buf, offset)
    }

    fn file(&self) -> Option<&File> {
        Some(self)
    }
}

pub trait BlobStore: Send + Sync + 'static {
    /// An empty staging file.
    fn stage(&self) -> io::Result<Staged>;
    /// A staging file holding a copy of blob `id` (to modify a file in place).
    fn stage_copy(&self, id: BlobId) -> io::Result<Staged>;
    /// Makes staged content a durable blob and returns its new id.
    fn commit(&self, staged: Staged) -> io::Result<BlobId>;
    fn open(&self, id: BlobId) -> io::Result<Arc<dyn BlobReader>>;
    /// Deletes a blob nothing references any more. Missing blobs are not an error.
    fn remove(&self, id: BlobId) -> io::Result<()>;
    /// Bytes free for new blobs.
    fn free_space(&self) -> io::Result<u64>;
}

/// Blobs as files under `<data>/blobs/<2 hex>/<32 hex>`, staged in `<data>/tmp/`.
pub struct LocalBlobStore {
    blobs: PathBuf,
    tmp: PathBuf,
}

impl LocalBlobStore {
    pub fn open(data_dir: &Path) -> io::Result<LocalBlobStore> {
        let store = LocalBlobStore {
            blobs: data_dir.join("blobs"),
            tmp: data_dir.join("tmp"),
        };
        fs::create_dir_all(&store.blobs)?;
        fs::create_dir_all(&store.tmp)?;
        Ok(store)
    }

    /// Deletes every staging file; returns how many. Only safe while nothing stages.
    pub fn clear_staging(&self) -> io::Result<usize> {
        let mut removed = 0;
        for entry in fs::read_dir(&self.tmp)? {
            fs::remove_file(entry?.path())?;
            removed += 1;
        }
        Ok(removed)
    }

    fn path(&self, id: BlobId) -> PathBuf {
        let hex = format!("{id:032x}");
        self.blobs.join(&hex[..2]).join(hex)
    }

    fn new_staging(&self) -> io::Result<(File, PathBuf)> {
        let path = self
            .tmp
            .join(format!("{:032x}.part", rand::random::<u128>()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok((file, path))
    }
}

fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

impl BlobStore for LocalBlobStore {
    fn stage(&self) -> io::Result<Staged> {
        let (file, path) = self.new_staging()?;
        Ok(Staged {
            file: Arc::new(file),
            path: Some(path),
        })
    }

    fn stage_copy(&self, id: BlobId) -> io::Result<Staged> {
        let mut src = File::open(self.path(id))?;
        let (mut file, path) = self.new_staging()?;
        let staged = Staged {
            file: Arc::new(file.try_clone()?),
            path: Some(path),
        };
        // copy_file_range under the hood: a reflink or in-kernel copy where possible.
        io::copy(&mut src, &mut file)?;
        Ok(staged)
    }

    fn commit(&self, mut staged: Staged) -> io::Result<BlobId> {
        staged.file.sync_all()?;
        let id: BlobId = rand::random();
        let dest = self.path(id);
        let dir = dest.parent().unwrap_or(&self.blobs).to_owned();
        if !dir.exists() {
            fs::create_dir_all(&dir)?;
            sync_dir(&self.blobs)?;
        }
        let Some(from) = staged.path.take() else {
            return Err(io::Error::other("staging file already committed"));
        };
        if let Err(e) = fs::rename(&from, &dest) {
            staged.path = Some(from);
            return Err(e);
        }
        sync_dir(&dir)?;
        Ok(id)
    }

    fn open(&self, id: BlobId) -> io::Result<Arc<dyn BlobReader>> {
        Ok(Arc::new(File::open(self.path(id))?))
    }

    fn remove(&self, id: BlobId) -> io::Result<()> {
        match fs::remove_file(self.path(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn free_space(&self) -> io::Result<u64> {
        free_space(&self.blobs)
    }
}

/// Bytes of the files under `path` (a file or a folder), not following links.
pub fn disk_usage(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path)
        .map(|rd| rd.flatten().map(|e| disk_usage(&e.path())).sum())
        .unwrap_or(0)
}

/// Size in bytes of the file system holding `path`.
pub fn disk_size(path: &Path) -> io::Result<u64> {
    let st = statvfs(path)?;
    Ok((st.f_blocks as u64).saturating_mul(st.f_frsize as u64))
}

/// Bytes available to unprivileged writers on the file system holding `path`.
pub fn free_space(path: &Path) -> io::Result<u64> {
    let st = statvfs(path)?;
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

fn statvfs(path: &Path) -> io::Result<libc::statvfs> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::other("path contains NUL"))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `st` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_content_becomes_a_blob_or_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalBlobStore::open(dir.path()).expect("open");
        let staged = store.stage().expect("stage");
        staged.file().write_all_at(b"hello", 0).expect("write");
        let id = store.commit(staged).expect("commit");
        let mut buf = [0u8; 5];
        store
            .open(id)
            .expect("open")
            .read_at(&mut buf, 0)
            .expect("read");
        assert_eq!(&buf, b"hello");
        let copy = store.stage_copy(id).expect("copy");
        copy.file().write_all_at(b"J", 0).expect("write");
        let id2 = store.commit(copy).expect("commit");
        store
            .open(id2)
            .expect("open")
            .read_at(&mut buf, 0)
            .expect("read");
        assert_eq!(&buf, b"Jello");
        // Dropped staging leaves no temp file.
        drop(store.stage().expect("stage"));
        assert_eq!(fs::read_dir(dir.path().join("tmp")).expect("ls").count(), 0);
        store.remove(id).expect("remove");
        assert!(store.open(id).is_err());
        store.remove(id).expect("removing twice is fine");
        assert!(store.free_space().expect("statvfs") > 0);
    }
}
