//! An open drive file as dav-server's `DavFile`.

use std::io::SeekFrom;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use dav_server::fs::{DavFile, DavMetaData, FsError as DavError, FsFuture};
use futures_util::FutureExt;
use torrentdrive_fs::{Drive, FileHandle};

use crate::fs::{dav_error, Meta};

pub(crate) struct DriveFile {
    drive: Arc<dyn Drive>,
    fh: FileHandle,
    pos: u64,
}

impl DriveFile {
    pub(crate) fn new(drive: Arc<dyn Drive>, fh: FileHandle) -> DriveFile {
        DriveFile { drive, fh, pos: 0 }
    }
}

impl std::fmt::Debug for DriveFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriveFile")
            .field("fh", &self.fh)
            .field("pos", &self.pos)
            .finish()
    }
}

/// dav-server drops the file when the request ends, successfully or not (a client that went
/// away mid-PUT): closing the handle discards whatever `flush` did not commit.
impl Drop for DriveFile {
    fn drop(&mut self) {
        let (drive, fh) = (self.drive.clone(), self.fh);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = drive.release(fh).await {
                    tracing::warn!(error = %e, "closing a WebDAV file");
                }
            });
        }
    }
}

impl DavFile for DriveFile {
    fn metadata(&mut self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        async move {
            let attr = self.drive.handle_attr(self.fh).await.map_err(dav_error)?;
            Ok(Box::new(Meta(attr)) as Box<dyn DavMetaData>)
        }
        .boxed()
    }

    fn write_buf(&mut self, mut buf: Box<dyn Buf + Send>) -> FsFuture<'_, ()> {
        async move {
            let bytes = buf.copy_to_bytes(buf.remaining());
            self.write_bytes(bytes).await
        }
        .boxed()
    }

    fn write_bytes(&mut self, buf: Bytes) -> FsFuture<'_, ()> {
        async move {
            let mut done = 0;
            while done < buf.len() {
                let n = self
                    .drive
                    .write(self.fh, self.pos, &buf[done..])
                    .await
                    .map_err(dav_error)?;
                done += n as usize;
                self.pos += u64::from(n);
            }
            Ok(())
        }
        .boxed()
    }

    fn read_bytes(&mut self, count: usize) -> FsFuture<'_, Bytes> {
        async move {
            let len = u32::try_from(count).unwrap_or(u32::MAX);
            let data = self
                .drive
                .read(self.fh, self.pos, len)
                .await
                .map_err(dav_error)?;
            // dav-server only asks for bytes inside the length it saw; nothing there means the
            // file shrank. Fail, so the response is cut off: empty would make it send zeros.
            if data.is_empty() && count > 0 {
                return Err(DavError::GeneralFailure);
            }
            self.pos += data.len() as u64;
            Ok(data)
        }
        .boxed()
    }

    fn seek(&mut self, pos: SeekFrom) -> FsFuture<'_, u64> {
        async move {
            let new = match pos {
                SeekFrom::Start(n) => Some(n),
                SeekFrom::Current(d) => self.pos.checked_add_signed(d),
                SeekFrom::End(d) => {
                    let attr = self.drive.handle_attr(self.fh).await.map_err(dav_error)?;
                    attr.size.checked_add_signed(d)
                }
            };
            self.pos = new.ok_or(DavError::GeneralFailure)?;
            Ok(self.pos)
        }
        .boxed()
    }

    fn flush(&mut self) -> FsFuture<'_, ()> {
        async move {
            self.drive.flush(self.fh).await.map_err(dav_error)?;
            Ok(())
        }
        .boxed()
    }
}
