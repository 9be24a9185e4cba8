//! Registry credentials: `STELLA_REGISTRY_USERNAME`/`STELLA_REGISTRY_PASSWORD`,
//! else the `auths` of Docker's `config.json` (`$DOCKER_CONFIG` or
//! `~/.docker`), else anonymous.

use std::path::PathBuf;

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;

/// Where a credential came from, for messages (never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    Anonymous,
    Environment,
    DockerConfig(PathBuf),
}

pub fn credentials_for(registry: &str) -> (RegistryAuth, CredentialSource) {
    if let (Ok(user), Ok(pass)) = (
        std::env::var("STELLA_REGISTRY_USERNAME"),
        std::env::var("STELLA_REGISTRY_PASSWORD"),
    ) {
        return (
            RegistryAuth::Basic(user, pass),
            CredentialSource::Environment,
        );
    }
    let path = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
        .map(|d| d.join("config.json"));
    if let Some(path) = path
        && let Ok(text) = std::fs::read_to_string(&path)
        && let Some(auth) = from_docker_config(&text, registry)
    {
        return (auth, CredentialSource::DockerConfig(path));
    }
    (RegistryAuth::Anonymous, CredentialSource::Anonymous)
}

/// Finds `registry` in a Docker `config.json`'s `auths` (keys may carry a
/// scheme and a path, as `docker login` writes them).
pub fn from_docker_config(text: &str, registry: &str) -> Option<RegistryAuth> {
    let json: serde_json::Value = serde_json::from_str(text).ok()?;
    let auths = json.get("auths")?.as_object()?;
    let entry = auths.iter().find_map(|(k, v)| {
        let host = k
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()?;
        (host == registry).then_some(v)
    })?;
    if let Some(encoded) = entry.get("auth").and_then(|a| a.as_str()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, pass) = text.split_once(':')?;
        return Some(RegistryAuth::Basic(user.to_owned(), pass.to_owned()));
    }
    let user = entry.get("username")?.as_str()?;
    let pass = entry.get("password")?.as_str()?;
    Some(RegistryAuth::Basic(user.to_owned(), pass.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_config_auths() {
        // "alice:s3cret"
        let cfg = r#"{"auths": {"https://registry.example.com/v1/": {"auth": "YWxpY2U6czNjcmV0"},
                                 "127.0.0.1:5000": {"username": "bob", "password": "pw"}}}"#;
        match from_docker_config(cfg, "registry.example.com") {
            Some(RegistryAuth::Basic(u, p)) => {
                assert_eq!((u.as_str(), p.as_str()), ("alice", "s3cret"))
            }
            other => panic!("{other:?}"),
        }
        match from_docker_config(cfg, "127.0.0.1:5000") {
            Some(RegistryAuth::Basic(u, _)) => assert_eq!(u, "bob"),
            other => panic!("{other:?}"),
        }
        assert!(from_docker_config(cfg, "ghcr.io").is_none());
        assert!(from_docker_config("not json", "ghcr.io").is_none());
    }
}
