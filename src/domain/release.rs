//! Releases: an app (or a bare reference) at one digest, and the names
//! people type to point at one.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::digest::Digest;
use super::reference::{ImageRef, LAYOUT_PREFIX, ReferenceError, Selector, valid_tag};

/// What a user typed to name a release: `APP`, `APP:TAG`, `APP@sha256:HEX`,
/// or a direct image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseSpec {
    App {
        app: String,
        selector: Option<Selector>,
    },
    Direct(ImageRef),
}

impl ReleaseSpec {
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        if input.starts_with(LAYOUT_PREFIX) || input.contains('/') {
            return ImageRef::parse(input).map(ReleaseSpec::Direct);
        }
        let bad = |reason: String| ReferenceError {
            input: input.to_owned(),
            reason,
        };
        let (app, selector) = if let Some((app, d)) = input.split_once('@') {
            let d = d.parse::<Digest>().map_err(|e| bad(e.to_string()))?;
            (app, Some(Selector::Digest(d)))
        } else if let Some((app, tag)) = input.split_once(':') {
            if !valid_tag(tag) {
                return Err(bad(format!("`{tag}` is not a valid tag")));
            }
            (app, Some(Selector::Tag(tag.to_owned())))
        } else {
            (input, None)
        };
        if !valid_app_name(app) {
            return Err(bad(
                "expected `APP`, `APP:TAG`, `APP@sha256:HEX`, `oci-layout:PATH:TAG` or `HOST[:PORT]/REPO:TAG`".into(),
            ));
        }
        Ok(ReleaseSpec::App {
            app: app.to_owned(),
            selector,
        })
    }
}

/// App and environment names: what can stand in a TOML key without quotes
/// and in a file name.
pub fn valid_app_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `user@host.tld`, without spaces: enough to tell an email address from a
/// typo, which is all config and key files need.
pub fn valid_email(s: &str) -> bool {
    s.split_once('@').is_some_and(|(user, host)| {
        !user.is_empty() && host.contains('.') && !s.contains(char::is_whitespace)
    })
}

/// A tag (or digest) resolved to a digest at one moment. The JSON shape is a
/// contract: `{"app", "reference", "tag", "digest", "resolved_at"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolution {
    pub app: Option<String>,
    pub reference: String,
    pub tag: Option<String>,
    pub digest: Digest,
    #[serde(serialize_with = "rfc3339")]
    pub resolved_at: DateTime<Utc>,
}

pub fn rfc3339<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_apps_and_references() {
        assert_eq!(
            ReleaseSpec::parse("api-gateway").unwrap(),
            ReleaseSpec::App {
                app: "api-gateway".into(),
                selector: None
            }
        );
        assert_eq!(
            ReleaseSpec::parse("api-gateway:1.4.2").unwrap(),
            ReleaseSpec::App {
                app: "api-gateway".into(),
                selector: Some(Selector::Tag("1.4.2".into()))
            }
        );
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(matches!(
            ReleaseSpec::parse(&format!("api@{d}")).unwrap(),
            ReleaseSpec::App {
                selector: Some(Selector::Digest(_)),
                ..
            }
        ));
        assert!(matches!(
            ReleaseSpec::parse("oci-layout:x:1").unwrap(),
            ReleaseSpec::Direct(_)
        ));
        assert!(matches!(
            ReleaseSpec::parse("localhost:5000/a:1").unwrap(),
            ReleaseSpec::Direct(_)
        ));
        assert!(ReleaseSpec::parse("api@sha256:zz").is_err());
        assert!(ReleaseSpec::parse("api:.bad").is_err());
        assert!(ReleaseSpec::parse("-api").is_err());
    }
}
