//! Image references: where an artifact lives (an OCI layout on disk or a
//! remote repository) and, optionally, which one (a tag or a digest).

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::path::PathBuf;

use super::digest::Digest;

/// The prefix that marks an OCI image-layout directory.
pub const LAYOUT_PREFIX: &str = "oci-layout:";

/// Where images live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repository {
    /// An OCI image-layout directory on disk.
    Layout(PathBuf),
    /// A repository on a registry, e.g. `127.0.0.1:5000` + `acme/api-gateway`.
    Remote {
        registry: String,
        repository: String,
    },
}

/// Which image of a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Tag(String),
    Digest(Digest),
}

/// A repository plus, optionally, a tag or digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub repository: Repository,
    pub selector: Option<Selector>,
}

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not an image reference: {reason}")]
pub struct ReferenceError {
    pub input: String,
    pub reason: String,
}

fn err(input: &str, reason: impl Into<String>) -> ReferenceError {
    ReferenceError {
        input: input.to_owned(),
        reason: reason.into(),
    }
}

impl ImageRef {
    /// Parses `oci-layout:PATH[:TAG|@DIGEST]` or `HOST[:PORT]/REPO[:TAG|@DIGEST]`.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        if input.trim() != input || input.is_empty() {
            return Err(err(input, "it is empty or has surrounding spaces"));
        }
        let layout = input.strip_prefix(LAYOUT_PREFIX);
        let body = layout.unwrap_or(input);
        let (rest, digest) = match body.rsplit_once('@') {
            Some((rest, d)) => (
                rest,
                Some(d.parse::<Digest>().map_err(|e| err(input, e.to_string()))?),
            ),
            None => (body, None),
        };
        // A tag is what follows the last ':' when no '/' comes after it
        // (a ':' before a '/' is a registry port or part of a path).
        let (name, tag) = match rest.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') && !name.is_empty() => {
                if digest.is_some() {
                    return Err(err(input, "give a tag or a digest, not both"));
                }
                if !valid_tag(tag) {
                    return Err(err(
                        input,
                        format!(
                            "`{tag}` is not a valid tag (letters, digits, `_`, `.`, `-`; at most 128; not starting with `.` or `-`)"
                        ),
                    ));
                }
                (name, Some(tag))
            }
            _ => (rest, None),
        };
        let selector = match (tag, digest) {
            (Some(t), _) => Some(Selector::Tag(t.to_owned())),
            (None, Some(d)) => Some(Selector::Digest(d)),
            (None, None) => None,
        };

        let repository = if layout.is_some() {
            let path = name;
            if path.is_empty() {
                return Err(err(
                    input,
                    "the layout path is empty (expected `oci-layout:PATH[:TAG]`)",
                ));
            }
            Repository::Layout(PathBuf::from(path))
        } else {
            let (registry, repository) = name.split_once('/').ok_or_else(|| {
                err(
                    input,
                    "expected `HOST[:PORT]/REPOSITORY[:TAG]` or `oci-layout:PATH[:TAG]`",
                )
            })?;
            if !looks_like_host(registry) {
                return Err(err(
                    input,
                    format!(
                        "`{registry}` is not a registry host; name the registry explicitly (e.g. `127.0.0.1:5000/{name}` or `docker.io/library/{repository}`)"
                    ),
                ));
            }
            if let Some(bad) = repository.split('/').find(|c| !valid_component(c)) {
                return Err(err(
                    input,
                    format!(
                        "repository component `{bad}` must be lowercase letters and digits, separated by `.`, `_`, `__` or `-`"
                    ),
                ));
            }
            Repository::Remote {
                registry: registry.to_owned(),
                repository: repository.to_owned(),
            }
        };
        Ok(ImageRef {
            repository,
            selector,
        })
    }

    pub fn tag(&self) -> Option<&str> {
        match &self.selector {
            Some(Selector::Tag(t)) => Some(t),
            _ => None,
        }
    }

    /// The same repository with another selector.
    pub fn with_selector(&self, selector: Selector) -> ImageRef {
        ImageRef {
            repository: self.repository.clone(),
            selector: Some(selector),
        }
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Repository::Layout(p) => write!(f, "{LAYOUT_PREFIX}{}", p.display()),
            Repository::Remote {
                registry,
                repository,
            } => write!(f, "{registry}/{repository}"),
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repository)?;
        match &self.selector {
            Some(Selector::Tag(t)) => write!(f, ":{t}"),
            Some(Selector::Digest(d)) => write!(f, "@{d}"),
            None => Ok(()),
        }
    }
}

/// `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`, as the distribution spec defines tags.
pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: &u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(&b[0]) || !alnum(&b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(&b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(&b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn looks_like_host(h: &str) -> bool {
    !h.is_empty()
        && (h.contains('.') || h.contains(':') || h == "localhost" || h.starts_with('['))
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

/// Whether a registry host is on the loopback interface, where plain HTTP is
/// used by default (as Docker does).
pub fn is_loopback_registry(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        registry.rsplit_once(':').map_or(registry, |(h, _)| h)
    };
    if host == "localhost" {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => v6 == Ipv6Addr::LOCALHOST,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_layouts() {
        let r = ImageRef::parse("oci-layout:images/api:1.2").unwrap();
        assert_eq!(r.repository, Repository::Layout("images/api".into()));
        assert_eq!(r.tag(), Some("1.2"));
        let r = ImageRef::parse("oci-layout:api").unwrap();
        assert_eq!(r.repository, Repository::Layout("api".into()));
        let r = ImageRef::parse("oci-layout:./images/api").unwrap();
        assert_eq!(r.repository, Repository::Layout("./images/api".into()));
        assert_eq!(r.selector, None);
        let r = ImageRef::parse(&format!("oci-layout:/abs/api@{D}")).unwrap();
        assert_eq!(r.repository, Repository::Layout("/abs/api".into()));
        assert!(matches!(r.selector, Some(Selector::Digest(_))));
        assert_eq!(r.to_string(), format!("oci-layout:/abs/api@{D}"));
    }

    #[test]
    fn parses_remotes() {
        let r = ImageRef::parse("127.0.0.1:5000/acme/api-gateway:v1").unwrap();
        assert_eq!(
            r.repository,
            Repository::Remote {
                registry: "127.0.0.1:5000".into(),
                repository: "acme/api-gateway".into()
            }
        );
        assert_eq!(r.tag(), Some("v1"));
        assert_eq!(r.to_string(), "127.0.0.1:5000/acme/api-gateway:v1");
        let r = ImageRef::parse("127.0.0.1:5000/acme/api").unwrap();
        assert_eq!(r.selector, None);
        let r = ImageRef::parse(&format!("ghcr.io/a/b@{D}")).unwrap();
        assert_eq!(r.to_string(), format!("ghcr.io/a/b@{D}"));
    }

    #[test]
    fn rejects_bad_references() {
        for (bad, needle) in [
            ("api-gateway", "expected `HOST[:PORT]/REPOSITORY"),
            ("acme/api:v1", "is not a registry host"),
            ("127.0.0.1:5000/Acme/api", "repository component `Acme`"),
            ("127.0.0.1:5000/acme/api:-x", "not a valid tag"),
            ("127.0.0.1:5000/acme/api@sha256:123", "is not a digest"),
            ("oci-layout:", "layout path is empty"),
            ("", "empty"),
        ] {
            let e = ImageRef::parse(bad).unwrap_err().to_string();
            assert!(e.contains(needle), "{bad}: {e}");
        }
        let both = format!("127.0.0.1:5000/a:v1@{D}");
        assert!(
            ImageRef::parse(&both)
                .unwrap_err()
                .reason
                .contains("not both")
        );
    }

    #[test]
    fn knows_loopback() {
        assert!(is_loopback_registry("127.0.0.1:5000"));
        assert!(is_loopback_registry("127.8.0.1"));
        assert!(is_loopback_registry("localhost:5000"));
        assert!(is_loopback_registry("[::1]:5000"));
        assert!(!is_loopback_registry("ghcr.io"));
        assert!(!is_loopback_registry("10.0.0.1:5000"));
    }
}
