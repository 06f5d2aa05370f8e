//! Sizes as people type them: `500M`, `10GiB`, `1.5T`, `2GB`, `none`.

/// Parses a size. `K`, `M`, `G`, `T` (optionally with `iB`) are powers of 1024; `KB`, `MB`,
/// `GB`, `TB` powers of 1000. `none` and `unlimited` give `None`.
pub fn parse_size(text: &str) -> Result<Option<u64>, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("none") || t.eq_ignore_ascii_case("unlimited") {
        return Ok(None);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size (examples: 500M, 10G, 1.5TB, none)"))?;
    let factor: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KIB" => 1 << 10,
        "M" | "MIB" => 1 << 20,
        "G" | "GIB" => 1 << 30,
        "T" | "TIB" => 1 << 40,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "unknown unit in `{text}` (use K, M, G, T, KB, MB, GB, TB)"
            ))
        }
    };
    let bytes = number * factor as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("`{text}` is too large"));
    }
    Ok(Some(bytes.round() as u64))
}

/// A size for people: `1.5 GiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!(parse_size("10G"), Ok(Some(10 << 30)));
        assert_eq!(parse_size("10 GiB"), Ok(Some(10 << 30)));
        assert_eq!(parse_size("1.5T"), Ok(Some(3 << 39)));
        assert_eq!(parse_size("2GB"), Ok(Some(2_000_000_000)));
        assert_eq!(parse_size("123"), Ok(Some(123)));
        assert_eq!(parse_size("none"), Ok(None));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5X").is_err());
        assert!(parse_size("99999999999999T").is_err());
        assert_eq!(format_size(1536 << 20), "1.5 GiB");
        assert_eq!(format_size(12), "12 B");
    }
}

/// How much of the disk to keep free (`--min-free`): a size, a percentage of the disk, or
/// `auto`, 5% of the disk but at most 2 GiB.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MinFree {
    Auto,
    Percent(f64),
    Bytes(u64),
}

impl MinFree {
    pub fn parse(text: &str) -> Result<MinFree, String> {
        let t = text.trim();
        if t == "auto" {
            return Ok(MinFree::Auto);
        }
        if let Some(p) = t.strip_suffix('%') {
            return match p.trim().parse::<f64>() {
                Ok(p) if (0.0..=100.0).contains(&p) => Ok(MinFree::Percent(p)),
                _ => Err(format!("`{text}` is not a percentage from 0% to 100%")),
            };
        }
        match parse_size(t)? {
            Some(bytes) => Ok(MinFree::Bytes(bytes)),
            None => Ok(MinFree::Bytes(0)),
        }
    }

    /// Bytes to keep free on a disk of `disk` bytes.
    pub fn bytes(self, disk: u64) -> u64 {
        match self {
            MinFree::Auto => (disk / 20).min(2 << 30),
            MinFree::Percent(p) => (disk as f64 * p / 100.0) as u64,
            MinFree::Bytes(b) => b,
        }
    }
}

#[cfg(test)]
mod min_free_tests {
    use super::*;

    #[test]
    fn min_free_forms() {
        assert_eq!(MinFree::parse("auto"), Ok(MinFree::Auto));
        assert_eq!(MinFree::Auto.bytes(10 << 30), (10 << 30) / 20);
        assert_eq!(MinFree::Auto.bytes(1 << 40), 2 << 30);
        assert_eq!(MinFree::parse("10%").map(|m| m.bytes(1000)), Ok(100));
        assert_eq!(MinFree::parse("0").map(|m| m.bytes(1000)), Ok(0));
        assert_eq!(MinFree::parse("1G").map(|m| m.bytes(0)), Ok(1 << 30));
        assert!(MinFree::parse("120%").is_err());
        assert!(MinFree::parse("lots").is_err());
    }
}
