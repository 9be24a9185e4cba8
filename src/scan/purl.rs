//! Package URL matching, enough for VEX: type, namespace and name must
//! agree; a version on the statement's side must agree too; qualifiers
//! and subpaths are ignored.

struct Parts<'a> {
    base: String,
    version: Option<&'a str>,
}

fn split(purl: &str) -> Option<Parts<'_>> {
    let rest = purl.strip_prefix("pkg:")?;
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    let (base, version) = match rest.rsplit_once('@') {
        Some((b, v)) if !b.is_empty() => (b, Some(v)),
        _ => (rest, None),
    };
    Some(Parts {
        base: decode(base).to_ascii_lowercase(),
        version: version.filter(|v| !v.is_empty()),
    })
}

fn decode(s: &str) -> String {
    s.replace("%40", "@")
        .replace("%2F", "/")
        .replace("%2f", "/")
        .replace("%3A", ":")
        .replace("%3a", ":")
}

/// Whether `stated` (from a VEX statement) covers `actual` (a finding's
/// package). Non-PURL identifiers must match exactly.
pub fn purl_matches(stated: &str, actual: &str) -> bool {
    match (split(stated), split(actual)) {
        (Some(s), Some(a)) => {
            s.base == a.base
                && s.version
                    .is_none_or(|v| a.version.is_some_and(|av| decode(v) == decode(av)))
        }
        _ => stated == actual,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_on_name_and_optional_version() {
        assert!(purl_matches("pkg:npm/lodash", "pkg:npm/lodash@4.17.20"));
        assert!(purl_matches(
            "pkg:npm/lodash@4.17.20",
            "pkg:npm/lodash@4.17.20?x=1"
        ));
        assert!(!purl_matches(
            "pkg:npm/lodash@4.17.21",
            "pkg:npm/lodash@4.17.20"
        ));
        assert!(!purl_matches("pkg:npm/lodash", "pkg:npm/underscore@1"));
        assert!(purl_matches(
            "pkg:npm/%40babel/core",
            "pkg:npm/@babel/core@7.0.0"
        ));
        assert!(purl_matches(
            "pkg:deb/debian/openssl@3.0.11-1~deb12u2?arch=amd64",
            "pkg:deb/debian/openssl@3.0.11-1~deb12u2"
        ));
        assert!(!purl_matches("pkg:npm/lodash", "lodash"));
    }
}
