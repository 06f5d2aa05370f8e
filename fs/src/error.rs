//! The one error type of the VFS contract, and its two translations: to an errno (FUSE)
//! and to an HTTP status (WebDAV, the API). Nothing else in the project maps errors.

/// What can go wrong in a drive operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FsError {
    #[error("no such file or folder")]
    NotFound,
    #[error("already exists")]
    Exists,
    #[error("not a folder")]
    NotADirectory,
    #[error("is a folder")]
    IsADirectory,
    #[error("folder is not empty")]
    NotEmpty,
    #[error("invalid name: {0}")]
    InvalidName(&'static str),
    #[error("name longer than 255 bytes")]
    NameTooLong,
    #[error("read-only")]
    ReadOnly,
    #[error("permission denied")]
    PermissionDenied,
    #[error("quota exceeded")]
    QuotaExceeded,
    #[error("no space left on the server")]
    NoSpace,
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    #[error("a folder cannot be moved into itself")]
    MoveIntoItself,
    #[error("stale file handle")]
    BadHandle,
    #[error("upload incomplete: {written} of {expected} bytes arrived")]
    Incomplete { expected: u64, written: u64 },
    #[error("timed out")]
    TimedOut,
    #[error("I/O error: {0}")]
    Io(String),
}

pub type FsResult<T> = Result<T, FsError>;

/// Whether a writer that announced `expected` bytes (`OpenOptions::expected_size`) wrote
/// them all: `flush` commits nothing otherwise.
pub fn check_complete(expected: Option<u64>, written: u64) -> FsResult<()> {
    match expected {
        Some(expected) if expected != written => Err(FsError::Incomplete { expected, written }),
        _ => Ok(()),
    }
}

impl FsError {
    /// The errno a FUSE reply carries for this error.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::Exists => libc::EEXIST,
            FsError::NotADirectory => libc::ENOTDIR,
            FsError::IsADirectory => libc::EISDIR,
            FsError::NotEmpty => libc::ENOTEMPTY,
            FsError::InvalidName(_) => libc::EINVAL,
            FsError::NameTooLong => libc::ENAMETOOLONG,
            FsError::ReadOnly => libc::EROFS,
            FsError::PermissionDenied => libc::EACCES,
            FsError::QuotaExceeded => libc::EDQUOT,
            FsError::NoSpace => libc::ENOSPC,
            FsError::InvalidArgument(_) | FsError::MoveIntoItself => libc::EINVAL,
            FsError::BadHandle => libc::EBADF,
            FsError::Incomplete { .. } => libc::EIO,
            FsError::TimedOut => libc::EIO,
            FsError::Io(_) => libc::EIO,
        }
    }

    /// A stable, machine-readable name of the error, for JSON APIs.
    pub fn code(&self) -> &'static str {
        match self {
            FsError::NotFound => "not_found",
            FsError::Exists => "exists",
            FsError::NotADirectory => "not_a_folder",
            FsError::IsADirectory => "is_a_folder",
            FsError::NotEmpty => "not_empty",
            FsError::InvalidName(_) => "invalid_name",
            FsError::NameTooLong => "name_too_long",
            FsError::ReadOnly => "read_only",
            FsError::PermissionDenied => "permission_denied",
            FsError::QuotaExceeded => "quota_exceeded",
            FsError::NoSpace => "no_space",
            FsError::InvalidArgument(_) => "invalid_argument",
            FsError::MoveIntoItself => "move_into_itself",
            FsError::BadHandle => "bad_handle",
            FsError::Incomplete { .. } => "incomplete",
            FsError::TimedOut => "timed_out",
            FsError::Io(_) => "io",
        }
    }

    /// The HTTP status a web front end answers with for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            FsError::NotFound => 404,
            FsError::Exists => 405,
            // RFC 4918 9.7.1: a parent that is not a collection is a conflict.
            FsError::NotADirectory => 409,
            FsError::IsADirectory => 405,
            FsError::NotEmpty => 409,
            FsError::InvalidName(_) | FsError::NameTooLong => 400,
            FsError::ReadOnly | FsError::PermissionDenied => 403,
            FsError::QuotaExceeded | FsError::NoSpace => 507,
            FsError::InvalidArgument(_) => 400,
            FsError::MoveIntoItself => 403,
            FsError::BadHandle => 500,
            FsError::Incomplete { .. } => 400,
            FsError::TimedOut => 504,
            FsError::Io(_) => 500,
        }
    }
}

impl From<std::io::Error> for FsError {
    fn from(e: std::io::Error) -> Self {
        match e.raw_os_error() {
            Some(libc::ENOSPC) => FsError::NoSpace,
            Some(libc::EDQUOT) => FsError::QuotaExceeded,
            _ => match e.kind() {
                std::io::ErrorKind::NotFound => FsError::NotFound,
                std::io::ErrorKind::TimedOut => FsError::TimedOut,
                _ => FsError::Io(e.to_string()),
            },
        }
    }
}
