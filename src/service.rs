//! Opening a data dir: the pieces every command needs.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::blob::{BlobStore, LocalBlobStore};
use crate::drive::Storage;
use crate::store::{Store, StoreError};
use crate::users::{UserError, Users};

pub const DB_NAME: &str = "meta.redb";

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("another torrentdrive process is using {0}")]
    InUse(PathBuf),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Users(#[from] UserError),
}

/// An open data dir.
pub struct Service {
    pub data: PathBuf,
    pub users: Arc<Users>,
}

impl Service {
    /// Opens (creating if needed) the data dir. Fails with `InUse` if a daemon holds it.
    pub fn open(data: &Path) -> Result<Service, OpenError> {
        let dir_err = |source| OpenError::DataDir {
            path: data.to_owned(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data)
            .map_err(dir_err)?;
        std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700)).map_err(dir_err)?;
        let store = match Store::open(&data.join(DB_NAME)) {
            Err(StoreError::Db(redb::Error::DatabaseAlreadyOpen)) => {
                return Err(OpenError::InUse(data.to_owned()))
            }
            other => other?,
        };
        let local = LocalBlobStore::open(data).map_err(dir_err)?;
        // Holding the database lock, nothing else can be writing: staging files left by a
        // crash belong to uploads that never committed.
        let removed = local.clear_staging().map_err(dir_err)?;
        if removed > 0 {
            tracing::info!(
                removed,
                "removed staging files of uploads interrupted by a stop"
            );
        }
        let blobs: Arc<dyn BlobStore> = Arc::new(local);
        let storage = Storage::new(Arc::new(store), blobs);
        let users = Arc::new(Users::new(storage)?);
        Ok(Service {
            data: data.to_owned(),
            users,
        })
    }
}
