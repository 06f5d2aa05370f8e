//! What a dropped `.torrent` holds, checked against the drive's rules before anything is
//! created or downloaded.
//!
//! Names: every path component must be a valid drive name (`torrentdrive_fs::check_name`:
//! UTF-8, no control characters or NUL, at most 255 bytes, not `.`/`..`, no `/`). A torrent
//! with a name that breaks these rules is refused with the offending name in the error, not
//! silently renamed: renaming would make the files differ from what other peers and the
//! user expect. librqbit itself already refuses `..`, separators and duplicate paths; two
//! paths that differ only in Unicode normalisation (NFC vs NFD, as macOS writes them) are
//! refused here too, since clients that normalise would show one file for two.

use torrentdrive_fs::check_name;
use unicode_normalization::UnicodeNormalization;

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
    #[error("two files in the torrent have the same name once normalised: {0:?}")]
    NameClash(String),
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

/// Lower-case hex digits of `hash` (an info hash, a token, a key).
pub fn hex(hash: &[u8]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// The info hash written as 40 hex digits by `hex`.
pub fn unhex(text: &str) -> Option<[u8; 20]> {
    if text.len() != 40 {
        return None;
    }
    let mut hash = [0u8; 20];
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(hash)
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
    let mut seen = std::collections::HashSet::new();
    for f in &files {
        let normalised: Vec<String> = f.path.iter().map(|c| c.nfc().collect()).collect();
        if !seen.insert(normalised) {
            return Err(MetaError::NameClash(f.path.join("/")));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn single(name: &str, piece_length: u32) -> Vec<u8> {
        let mut t = format!(
            "d4:infod6:lengthi3e4:name{}:{name}12:piece lengthi{piece_length}e6:pieces20:",
            name.len()
        )
        .into_bytes();
        t.extend_from_slice(&[1u8; 20]);
        t.extend_from_slice(b"ee");
        t
    }

    fn multi(paths: &[&str]) -> Vec<u8> {
        let mut t = b"d4:infod5:filesl".to_vec();
        for p in paths {
            t.extend_from_slice(format!("d6:lengthi1e4:pathl{}:{p}ee", p.len()).as_bytes());
        }
        t.extend_from_slice(b"e4:name4:pack12:piece lengthi16384e6:pieces20:");
        t.extend_from_slice(&[1u8; 20]);
        t.extend_from_slice(b"ee");
        t
    }

    #[test]
    fn accepts_a_plain_torrent() {
        let m = parse(&single("movie.mkv", 16384)).expect("valid");
        assert_eq!(m.name, "movie.mkv");
        assert!(!m.multi_file);
        assert_eq!(m.total, 3);
        assert_eq!(m.files[0].path, vec!["movie.mkv"]);
    }

    #[test]
    fn refuses_hostile_torrents() {
        assert!(matches!(parse(b"garbage"), Err(MetaError::NotBencode(_))));
        assert!(matches!(
            parse(&single("a\x01b", 16384)),
            Err(MetaError::BadName { .. })
        ));
        let long = "x".repeat(300);
        assert!(matches!(
            parse(&single(&long, 16384)),
            Err(MetaError::BadName { .. })
        ));
        assert!(matches!(
            parse(&single("a", 0)),
            Err(MetaError::PieceLength(0))
        ));
        assert!(matches!(
            parse(&single("a", 1 << 30)),
            Err(MetaError::PieceLength(_))
        ));
        assert!(parse(&multi(&["..", "b"])).is_err());
        assert!(parse(&multi(&["same", "same"])).is_err());
        // "é" precomposed and decomposed.
        let clash = parse(&multi(&["caf\u{e9}", "cafe\u{301}"]));
        assert!(matches!(clash, Err(MetaError::NameClash(_))), "{clash:?}");
        assert!(parse(&multi(&["a", "b"])).is_ok());
    }
}
