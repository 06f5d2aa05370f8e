//! What a name in a drive may be. Every `Drive` checks names here, so every front end gets
//! the same answer.

use crate::{FsError, FsResult};

/// The longest name, in bytes, as on Linux file systems.
pub const NAME_MAX: usize = 255;

/// Accepts a name for a new file or folder, or says why not.
pub fn check_name(name: &str) -> FsResult<()> {
    if name.is_empty() {
        return Err(FsError::InvalidName("empty name"));
    }
    if name == "." || name == ".." {
        return Err(FsError::InvalidName("'.' and '..' are not names"));
    }
    if name.len() > NAME_MAX {
        return Err(FsError::NameTooLong);
    }
    if name.contains('/') {
        return Err(FsError::InvalidName("a name can't contain '/'"));
    }
    if name.chars().any(char::is_control) {
        return Err(FsError::InvalidName(
            "a name can't contain control characters",
        ));
    }
    Ok(())
}

/// A name arriving as raw bytes (FUSE, decoded URLs): UTF-8 and valid, or an error.
pub fn name_from_bytes(bytes: &[u8]) -> FsResult<&str> {
    if bytes.len() > NAME_MAX {
        return Err(FsError::NameTooLong);
    }
    let name = std::str::from_utf8(bytes).map_err(|_| FsError::InvalidName("not UTF-8"))?;
    check_name(name)?;
    Ok(name)
}

/// Splits an absolute path (`/a/b/`) into checked names. Used by path-based front ends.
pub fn split_path(path: &str) -> FsResult<Vec<&str>> {
    path.split('/')
        .filter(|c| !c.is_empty())
        .map(|c| check_name(c).map(|()| c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_tricks() {
        for bad in ["", ".", "..", "a/b", "a\0b", "a\nb", "\u{7f}", "\u{85}x"] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(check_name(&"x".repeat(256)), Err(FsError::NameTooLong));
        assert!(check_name(&"é".repeat(127)).is_ok());
        assert_eq!(check_name(&"é".repeat(128)), Err(FsError::NameTooLong));
        for good in [
            "a",
            "...",
            "a b",
            "Ünïcödé",
            "a\\b",
            ".hidden",
            "日本語.mkv",
        ] {
            assert!(check_name(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn bytes_must_be_utf8() {
        assert!(name_from_bytes(b"\xff\xfe").is_err());
        assert_eq!(name_from_bytes(b"ok"), Ok("ok"));
    }

    #[test]
    fn splits_paths() {
        assert_eq!(split_path("/a//b/"), Ok(vec!["a", "b"]));
        assert_eq!(split_path("/"), Ok(vec![]));
        assert!(split_path("/a/../b").is_err());
    }
}
