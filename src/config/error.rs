//! Config errors that point at `FILE:LINE:COL`.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in a config file, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// Everything wrong with one config file, or why it could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", render(.path, .problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

fn render(path: &Path, problems: &[Problem]) -> String {
    let mut out = String::new();
    for (i, p) in problems.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!(
            "{}:{}:{}: {}",
            path.display(),
            p.line,
            p.col,
            p.message
        ));
    }
    out
}

/// Maps byte offsets of a source to 1-based line and column (in characters).
pub struct Locator<'a> {
    src: &'a str,
}

impl<'a> Locator<'a> {
    pub fn new(src: &'a str) -> Self {
        Locator { src }
    }

    pub fn problem(&self, span: Option<Range<usize>>, message: impl Into<String>) -> Problem {
        let offset = span.map_or(0, |s| s.start).min(self.src.len());
        let before = &self.src[..floor_char_boundary(self.src, offset)];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Problem {
            line,
            col,
            message: message.into(),
        }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.col, self.message)
    }
}

impl ConfigError {
    /// The same error naming its file relative to `base` when it lies under
    /// it (`stella.toml:3:1` reads better than a long absolute path).
    pub fn relative_to(self, base: &Path) -> ConfigError {
        let rel = |p: PathBuf| match p.strip_prefix(base) {
            Ok(r) if !r.as_os_str().is_empty() => r.to_path_buf(),
            _ => p,
        };
        match self {
            ConfigError::Read { path, source } => ConfigError::Read {
                path: rel(path),
                source,
            },
            ConfigError::Invalid { path, problems } => ConfigError::Invalid {
                path: rel(path),
                problems,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_lines_and_columns() {
        let src = "a = 1\nbé = 2\n";
        let l = Locator::new(src);
        let p = l.problem(Some(0..1), "x");
        assert_eq!((p.line, p.col), (1, 1));
        let p = l.problem(Some(src.find('=').unwrap()..0), "x");
        assert_eq!((p.line, p.col), (1, 3));
        let off = src.rfind('=').unwrap();
        let p = l.problem(Some(off..off), "x");
        assert_eq!((p.line, p.col), (2, 4));
    }
}
