//! What a dropped `.torrent` holds, checked against the drive's rules before anything is
//! created or downloaded.
//!
//! Names: every path component must be a valid drive name (`torrentdrive_fs::check_name`:
//! UTF-8, no control characters or NUL, at most 255 bytes, not `.`/`..`, no `/`). A torrent
//! with a name that breaks these rules is refused with the offending name in the error, not
//! silently renamed: renaming would make the files differ from what other peers and the
//! user expect. librqbit itself already refuses `..`, separators and duplicate paths.

use torrentdrive_fs::check_name;

/// More files than this is refused: each becomes a node, and listing such a folder is
/// unusable anyway.
pub const MAX_FILES: usize = 20_000;
/// Pieces above this size (64 MiB) are refused as absurd; BitTorrent clients use 16 KiB
/// to 16 MiB.
pub const MAX_PIECE_LENGTH: u32 = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    #[error("not a torrent file (invalid bencode: {0})")]
    NotBencode(String),
    #[error("invalid torrent: {0}")]
    Invalid(String),
    #[error("invalid name in torrent {name:?}: {reason}")]
    BadName { name: String, reason: String },
    #[error("too many files in torrent ({0}; at most {MAX_FILES})")]
    TooManyFiles(usize),
    #[error("invalid piece length {0} (must be 1 byte to 64 MiB)")]
    PieceLength(u32),
}

/// One file of a torrent, as the drive shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorrentFile {
    /// librqbit's file id (index among all files, padding files included).
    pub index: u32,
    /// Path inside the torrent's folder (for a single-file torrent: just its name).
    pub path: Vec<String>,
    pub len: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorrentMeta {
    pub info_hash: [u8; 20],
    pub name: String,
    /// Whether the torrent is a folder of files (else a single file named `name`).
    pub multi_file: bool,
    pub files: Vec<TorrentFile>,
    pub total: u64,
    pub piece_length: u32,
}

impl TorrentMeta {
    pub fn hash_hex(&self) -> String {
        hex(&self.info_hash)
    }
}

pub fn hex(hash: &[u8; 20]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

fn check(name: &str) -> Result<(), MetaError> {
    check_name(name).map_err(|e| MetaError::BadName {
        name: name.chars().take(80).collect(),
        reason: e.to_string(),
    })
}

/// Parses and checks a `.torrent` file.
pub fn parse(bytes: &[u8]) -> Result<TorrentMeta, MetaError> {
    let torrent =
        librqbit::torrent_from_bytes(bytes).map_err(|e| MetaError::NotBencode(e.to_string()))?;
    let info = &torrent.info.data;
    if info.piece_length == 0 || info.piece_length > MAX_PIECE_LENGTH {
        return Err(MetaError::PieceLength(info.piece_length));
    }
    let count = info.files.as_ref().map_or(1, Vec::len);
    if count > MAX_FILES {
        return Err(MetaError::TooManyFiles(count));
    }
    let multi_file = info.files.is_some();
    let validated = info
        .clone()
        .validate()
        .map_err(|e| MetaError::Invalid(e.to_string()))?;
    let name = validated
        .name()
        .map(|n| n.into_owned())
        .ok_or_else(|| MetaError::Invalid("the torrent has no name".into()))?;
    check(&name)?;
    let mut files = Vec::new();
    let mut total = 0u64;
    for (index, details) in validated.iter_file_details().enumerate() {
        if details.attrs().padding {
            continue;
        }
        let path = details.filename.to_vec();
        for component in &path {
            check(component)?;
        }
        total = total
            .checked_add(details.len)
            .ok_or_else(|| MetaError::Invalid("total size overflows".into()))?;
        files.push(TorrentFile {
            index: u32::try_from(index).map_err(|_| MetaError::TooManyFiles(index))?,
            path,
            len: details.len,
        });
    }
    Ok(TorrentMeta {
        info_hash: torrent.info_hash.0,
        name,
        multi_file,
        files,
        total,
        piece_length: info.piece_length,
    })
}
