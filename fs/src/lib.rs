//! torrentdrive's VFS contract.
//!
//! [`Drive`] is one user's tree; front ends (WebDAV in `torrentdrive-dav`, FUSE, the web API)
//! are thin adapters over it. [`FsError`] is the only error type, mapped to errno and HTTP
//! status in one place each. [`MemoryDrive`] is an in-memory implementation, and
//! [`conformance`] the suite every implementation must pass.

pub mod conformance;
mod drive;
mod error;
pub mod fuse;
mod memory;
mod name;
mod types;

pub use drive::Drive;
pub use error::{check_complete, FsError, FsResult};
pub use memory::MemoryDrive;
pub use name::{check_name, name_from_bytes, split_path, NAME_MAX};
pub use types::{
    Attr, Change, ChangeReceiver, CreateOptions, DirEntry, FileHandle, NodeId, NodeKind,
    OpenOptions, RenameOptions, SetAttr, Usage, XattrChange,
};
