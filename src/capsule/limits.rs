//! Size and nesting limits for what comes from elsewhere — capsule files,
//! audit bundles and their members — checked before anything is parsed, so
//! a hostile file costs at most its limit in memory and linear time.

use std::io::Read;
use std::path::Path;

/// The largest capsule file read (its evidence embedded).
pub const MAX_CAPSULE_BYTES: u64 = 128 << 20;
/// The most `[` and `{` a YAML capsule file may hold. The YAML parser's
/// time grows with the square of the flow nesting depth, and a file's
/// depth is at most its count of brackets; a capsule stella writes holds a
/// handful.
pub const MAX_YAML_BRACKETS: usize = 1024;
/// The deepest indentation (columns of spaces and `- `/`? `/`: `
/// indicators opening a line) of a YAML capsule file; stella writes 8.
pub const MAX_YAML_INDENT: usize = 256;
/// serde_json's own recursion limit, which it checks as it reads.
pub const MAX_JSON_DEPTH: usize = 128;

/// Largest members of an audit bundle, and most members.
pub const MAX_MANIFEST_BYTES: u64 = 64 << 20;
pub const MAX_SMALL_MEMBER_BYTES: u64 = 64 << 10;
pub const MAX_BUNDLE_MEMBERS: usize = 1_000_000;

/// A human size: 128 MiB, 64 KiB.
pub fn human(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else if bytes >= 1 << 20 {
        format!("{:.0} MiB", bytes as f64 / (1u64 << 20) as f64)
    } else if bytes >= 1 << 10 {
        format!("{:.0} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} bytes")
    }
}

/// Refuses YAML nested past the limits, by a linear pass over the text.
/// Conservative: it counts every bracket, quoted or not, so it never
/// under-estimates the depth the parser will meet.
pub fn check_yaml_nesting(text: &str) -> Result<(), String> {
    let brackets = text.bytes().filter(|b| matches!(b, b'[' | b'{')).count();
    if brackets > MAX_YAML_BRACKETS {
        return Err(format!(
            "it holds {brackets} `[`/`{{` brackets, over the limit of {MAX_YAML_BRACKETS} (nesting is bounded before parsing)"
        ));
    }
    for (n, line) in text.lines().enumerate() {
        let indent = line
            .bytes()
            .take_while(|b| matches!(b, b' ' | b'-' | b'?' | b':' | b'\t'))
            .count();
        if indent > MAX_YAML_INDENT {
            return Err(format!(
                "line {} is indented {indent} columns, over the limit of {MAX_YAML_INDENT} (nesting is bounded before parsing)",
                n + 1
            ));
        }
    }
    Ok(())
}

/// Reads a file of at most `limit` bytes; a larger one is refused without
/// being read, naming the limit.
pub fn read_bounded(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>, String> {
    let f =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let len = f
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len();
    let over = || {
        format!(
            "{}: over the {} limit of a {what}; refused unread",
            path.display(),
            human(limit)
        )
    };
    if len > limit {
        return Err(over());
    }
    let mut bytes = Vec::with_capacity(len as usize);
    f.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > limit {
        return Err(over());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_yaml_is_refused_before_parsing() {
        let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
        let e = check_yaml_nesting(&deep).unwrap_err();
        assert!(e.contains("over the limit of 1024"), "{e}");
        let compact = format!("{}x\n", "- ".repeat(200));
        assert!(check_yaml_nesting(&compact).unwrap_err().contains("line 1"));
        assert!(check_yaml_nesting("a:\n  b: [1, 2]\n  c: {d: e}\n").is_ok());
    }
}
