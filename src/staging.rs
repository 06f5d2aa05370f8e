//! Content being written through a handle, before it is committed: in memory while small,
//! then in a temp file of the blob store, with writes gathered into large ones.

use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use torrentdrive_fs::{FsError, FsResult};

use crate::blob::{BlobId, BlobReader, BlobStore, Staged};

/// Content up to this size is stored in the metadata database instead of a blob.
pub const INLINE_MAX: usize = 16 * 1024;
/// Staged content is kept in memory up to this size, then moved to a temp file.
pub const SPILL: usize = 1 << 20;
/// Sequential writes are gathered up to this size before they reach the temp file.
const GATHER: usize = 1 << 20;

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> FsResult<T> + Send + 'static,
) -> FsResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| FsError::Io(format!("worker failed: {e}")))?
}

/// Reads up to `buf.len()` bytes at `offset`, retrying short reads until end of file.
pub(crate) fn read_full(r: &dyn BlobReader, buf: &mut [u8], offset: u64) -> FsResult<usize> {
    let mut done = 0;
    while done < buf.len() {
        let n = r.read_at(&mut buf[done..], offset + done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

/// Reads `n` bytes at `offset` (fewer at end of file) off the async threads.
pub(crate) async fn read_at(r: Arc<dyn BlobReader>, offset: u64, n: usize) -> FsResult<Bytes> {
    blocking(move || {
        let mut buf = vec![0u8; n];
        let got = read_full(&*r, &mut buf, offset)?;
        buf.truncate(got);
        Ok(Bytes::from(buf))
    })
    .await
}

/// Content ready to be committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NewContent {
    /// Small: stored in the metadata database by the commit.
    Inline(Vec<u8>),
    /// A durable new blob.
    Blob(BlobId),
}

pub(crate) enum Staging {
    Mem(Vec<u8>),
    File(Spilled),
}

pub(crate) struct Spilled {
    staged: Staged,
    /// Logical length, counting `gathered`.
    len: u64,
    /// Bytes for `[gathered_at, gathered_at + gathered.len())`, not yet in the file.
    gathered: Vec<u8>,
    gathered_at: u64,
}

impl Spilled {
    fn new(staged: Staged, len: u64) -> Spilled {
        Spilled {
            staged,
            len,
            gathered: Vec::new(),
            gathered_at: 0,
        }
    }

    async fn write_gathered(&mut self) -> FsResult<()> {
        if self.gathered.is_empty() {
            return Ok(());
        }
        let (f, data, at) = (
            self.staged.file().clone(),
            std::mem::take(&mut self.gathered),
            self.gathered_at,
        );
        blocking(move || Ok(f.write_all_at(&data, at)?)).await
    }

    async fn write(&mut self, offset: u64, data: &[u8]) -> FsResult<()> {
        let end = offset + data.len() as u64;
        let appends = offset == self.gathered_at + self.gathered.len() as u64;
        if !(appends && self.gathered.len() + data.len() <= GATHER) {
            self.write_gathered().await?;
            self.gathered_at = offset;
        }
        if data.len() >= GATHER {
            let (f, data) = (self.staged.file().clone(), data.to_vec());
            blocking(move || Ok(f.write_all_at(&data, offset)?)).await?;
            self.gathered_at = end;
        } else {
            if self.gathered.capacity() == 0 {
                self.gathered.reserve(GATHER);
            }
            self.gathered.extend_from_slice(data);
        }
        self.len = self.len.max(end);
        Ok(())
    }
}

impl Staging {
    pub(crate) fn len(&self) -> u64 {
        match self {
            Staging::Mem(v) => v.len() as u64,
            Staging::File(s) => s.len,
        }
    }

    /// A copy of committed blob content of `len` bytes, to modify.
    pub(crate) async fn copy_of(
        blobs: &Arc<dyn BlobStore>,
        reader: Arc<dyn BlobReader>,
        len: u64,
    ) -> FsResult<Staging> {
        if len <= SPILL as u64 {
            let data = read_at(reader, 0, len as usize).await?;
            return Ok(Staging::Mem(data.to_vec()));
        }
        let blobs = blobs.clone();
        blocking(move || {
            let staged = blobs.stage()?;
            let mut buf = vec![0u8; SPILL];
            let mut off = 0u64;
            while off < len {
                let n = read_full(&*reader, &mut buf, off)?;
                if n == 0 {
                    return Err(FsError::Io("blob shorter than its file".into()));
                }
                staged.file().write_all_at(&buf[..n], off)?;
                off += n as u64;
            }
            Ok(Staging::File(Spilled::new(staged, len)))
        })
        .await
    }

    /// Moves in-memory content to a temp file.
    async fn spill(&mut self, blobs: &Arc<dyn BlobStore>) -> FsResult<()> {
        if let Staging::Mem(v) = self {
            let data = std::mem::take(v);
            let len = data.len() as u64;
            let blobs = blobs.clone();
            let staged = blocking(move || {
                let staged = blobs.stage()?;
                staged.file().write_all_at(&data, 0)?;
                Ok(staged)
            })
            .await?;
            *self = Staging::File(Spilled::new(staged, len));
        }
        Ok(())
    }

    pub(crate) async fn write(
        &mut self,
        blobs: &Arc<dyn BlobStore>,
        offset: u64,
        data: &[u8],
    ) -> FsResult<()> {
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or(FsError::InvalidArgument("offset too large"))?;
        if end > SPILL as u64 {
            self.spill(blobs).await?;
        }
        match self {
            Staging::Mem(v) => {
                let (start, end) = (offset as usize, end as usize);
                if v.len() < end {
                    v.resize(end, 0);
                }
                v[start..end].copy_from_slice(data);
                Ok(())
            }
            Staging::File(s) => s.write(offset, data).await,
        }
    }

    /// `n` bytes at `offset`, fewer at the end.
    pub(crate) async fn read(&mut self, offset: u64, n: usize) -> FsResult<Bytes> {
        match self {
            Staging::Mem(v) => {
                let start = (offset as usize).min(v.len());
                let end = start.saturating_add(n).min(v.len());
                Ok(Bytes::copy_from_slice(&v[start..end]))
            }
            Staging::File(s) => {
                s.write_gathered().await?;
                let file: Arc<dyn BlobReader> = s.staged.file().clone();
                read_at(file, offset, n).await
            }
        }
    }

    /// Truncates or extends (with zeros) to `size`.
    pub(crate) async fn resize(&mut self, blobs: &Arc<dyn BlobStore>, size: u64) -> FsResult<()> {
        if size > SPILL as u64 {
            self.spill(blobs).await?;
        }
        match self {
            Staging::Mem(v) => v.resize(size as usize, 0),
            Staging::File(s) => {
                s.write_gathered().await?;
                let f = s.staged.file().clone();
                blocking(move || Ok(f.set_len(size)?)).await?;
                s.len = size;
            }
        }
        Ok(())
    }

    /// Makes the content committable: inline if small, else a durable new blob.
    pub(crate) async fn into_content(
        self,
        blobs: &Arc<dyn BlobStore>,
    ) -> FsResult<(NewContent, u64)> {
        let len = self.len();
        let staged = match self {
            Staging::Mem(v) if v.len() <= INLINE_MAX => return Ok((NewContent::Inline(v), len)),
            Staging::Mem(v) => {
                let blobs = blobs.clone();
                blocking(move || {
                    let staged = blobs.stage()?;
                    staged.file().write_all_at(&v, 0)?;
                    Ok(staged)
                })
                .await?
            }
            Staging::File(mut s) => {
                s.write_gathered().await?;
                s.staged
            }
        };
        let blobs = blobs.clone();
        blocking(move || Ok((NewContent::Blob(blobs.commit(staged)?), len))).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::LocalBlobStore;

    #[tokio::test]
    async fn gathered_writes_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs: Arc<dyn BlobStore> = Arc::new(LocalBlobStore::open(dir.path()).expect("open"));
        let mut s = Staging::Mem(Vec::new());
        let chunk: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let mut expected = Vec::new();
        for i in 0..300u64 {
            s.write(&blobs, i * 10_000, &chunk).await.expect("write");
            expected.extend_from_slice(&chunk);
        }
        // Overwrite in the middle, then read across the seam.
        s.write(&blobs, 5, b"XYZ").await.expect("write");
        expected[5..8].copy_from_slice(b"XYZ");
        assert!(matches!(s, Staging::File(_)));
        assert_eq!(s.len(), 3_000_000);
        let back = s.read(0, 3_000_000).await.expect("read");
        assert!(back == expected);
        s.resize(&blobs, 10).await.expect("resize");
        assert_eq!(
            s.read(0, 100).await.expect("read").as_ref(),
            &expected[..10]
        );
        let (content, len) = s.into_content(&blobs).await.expect("commit");
        assert_eq!(len, 10);
        assert!(matches!(content, NewContent::Blob(_)));
    }
}
