//! `stella release resolve` against a real `docker-registry` on loopback,
//! loaded with `skopeo`. Skipped (with a reason) where those are missing,
//! except under CI=true.

mod common;

use common::{Registry, add_image, init_workspace, stderr, stdout, stella};

fn point_app_at(ws: &std::path::Path, image: &str) {
    let path = ws.join("stella.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replace(
        "image = \"oci-layout:images/api-gateway\"",
        &format!("image = \"{image}\""),
    );
    std::fs::write(path, text).unwrap();
}

#[test]
fn resolves_to_the_registrys_content_digest_and_follows_a_moved_tag() {
    let Some(reg) = Registry::start() else { return };
    let ws = init_workspace();
    let layout = ws.path().join("build");
    let v1 = add_image(&layout, "1.0", "first");
    let v2 = add_image(&layout, "2.0", "second");
    reg.push(&layout, "1.0", "acme/api-gateway", "stable");
    point_app_at(ws.path(), &format!("{}/acme/api-gateway", reg.addr));

    let out = stella(ws.path())
        .args(["release", "resolve", "api-gateway:stable", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let served = reg.content_digest("acme/api-gateway", "stable");
    assert_eq!(v["digest"], served.as_str());
    assert_eq!(
        v["digest"],
        v1.as_str(),
        "skopeo kept the OCI manifest byte for byte"
    );
    assert_eq!(
        v["reference"],
        format!("{}/acme/api-gateway:stable", reg.addr)
    );

    reg.push(&layout, "2.0", "acme/api-gateway", "stable");
    let out = stella(ws.path())
        .args(["release", "resolve", "api-gateway:stable"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), v2);
    assert_eq!(reg.content_digest("acme/api-gateway", "stable"), v2);

    // A direct reference to the same registry works without an app.
    let out = stella(ws.path())
        .args([
            "release",
            "resolve",
            &format!("{}/acme/api-gateway:stable", reg.addr),
        ])
        .output()
        .unwrap();
    assert_eq!(stdout(&out).trim(), v2);

    let out = stella(ws.path())
        .args(["release", "list", "--json"])
        .output()
        .unwrap();
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let digests: Vec<&str> = rows.iter().map(|r| r["digest"].as_str().unwrap()).collect();
    assert_eq!(digests, [v1.as_str(), v2.as_str(), v2.as_str()]);
}

#[test]
fn a_missing_tag_is_named() {
    let Some(reg) = Registry::start() else { return };
    let ws = init_workspace();
    let layout = ws.path().join("build");
    add_image(&layout, "1.0", "first");
    reg.push(&layout, "1.0", "acme/api-gateway", "1.0");
    point_app_at(ws.path(), &format!("{}/acme/api-gateway", reg.addr));
    let out = stella(ws.path())
        .args(["release", "resolve", "api-gateway:nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!("error: {}/acme/api-gateway:nope: tag not found\n", reg.addr)
    );
}

#[test]
fn a_registry_that_is_down_is_a_clear_error_and_records_nothing() {
    if !common::require(&["docker-registry", "skopeo"]) {
        return;
    }
    let ws = init_workspace();
    let addr = format!("127.0.0.1:{}", common::free_port());
    point_app_at(ws.path(), &format!("{addr}/acme/api-gateway"));
    let out = stella(ws.path())
        .args(["release", "resolve", "api-gateway:1.0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!("error: registry {addr} is unreachable")),
        "{err}"
    );
    assert!(err.contains("check that it is running"), "{err}");
    let out = stella(ws.path())
        .args(["release", "list", "--json"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out).trim(), "[]");
}

/// The registry serves manifest bytes that no longer hash to the digest it
/// advertises (its storage was altered): refused, nothing recorded.
#[test]
fn a_manifest_that_does_not_match_its_digest_is_refused() {
    let Some(reg) = Registry::start() else { return };
    let ws = init_workspace();
    let layout = ws.path().join("build");
    let digest = add_image(&layout, "1.0", "first");
    reg.push(&layout, "1.0", "acme/api-gateway", "1.0");
    point_app_at(ws.path(), &format!("{}/acme/api-gateway", reg.addr));

    let hex = &digest["sha256:".len()..];
    let data = reg
        .storage
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    let text = std::fs::read_to_string(&data).unwrap();
    std::fs::write(
        &data,
        text.replacen("\"schemaVersion\":2", "\"schemaVersion\": 2", 1),
    )
    .unwrap();

    let out = stella(ws.path())
        .args(["release", "resolve", "api-gateway:1.0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("does not match its digest"), "{err}");
    assert!(err.contains(&digest), "{err}");
    let out = stella(ws.path())
        .args(["release", "list", "--json"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out).trim(), "[]");
}

#[test]
fn a_multi_platform_tag_resolves_to_the_index_digest() {
    let Some(reg) = Registry::start() else { return };
    let ws = init_workspace();
    let layout = ws.path().join("build");
    let amd = add_image(&layout, "amd", "amd64").parse().unwrap();
    let arm = add_image(&layout, "arm", "arm64").parse().unwrap();
    let index = stella::registry::layout::LayoutWriter::create(&layout)
        .unwrap()
        .add_index("multi", &[(amd, "amd64"), (arm, "arm64")])
        .unwrap();
    reg.push_with(&layout, "multi", "acme/api-gateway", "2.0", &["--all"]);
    point_app_at(ws.path(), &format!("{}/acme/api-gateway", reg.addr));
    let out = stella(ws.path())
        .args(["release", "resolve", "api-gateway:2.0"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), index.to_string());
}

#[test]
fn credentials_come_from_the_environment_or_docker_config_and_refusals_are_named() {
    let Some(reg) = Registry::start_with_auth() else {
        return;
    };
    let ws = init_workspace();
    let layout = ws.path().join("build");
    let digest = add_image(&layout, "1.0", "private");
    reg.push_with(
        &layout,
        "1.0",
        "acme/api-gateway",
        "1.0",
        &["--dest-creds", "alice:sekret"],
    );
    point_app_at(ws.path(), &format!("{}/acme/api-gateway", reg.addr));
    let resolve = |cmd: &mut assert_cmd::Command| {
        cmd.args(["release", "resolve", "api-gateway:1.0"])
            .output()
            .unwrap()
    };

    let out = resolve(&mut stella(ws.path()));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("access denied"), "{err}");
    assert!(
        err.contains(&format!("no credentials were found for {}", reg.addr)),
        "{err}"
    );

    let out = resolve(
        stella(ws.path())
            .env("STELLA_REGISTRY_USERNAME", "alice")
            .env("STELLA_REGISTRY_PASSWORD", "wrong"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("credentials from STELLA_REGISTRY_USERNAME/PASSWORD were refused")
    );

    let out = resolve(
        stella(ws.path())
            .env("STELLA_REGISTRY_USERNAME", "alice")
            .env("STELLA_REGISTRY_PASSWORD", "sekret"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), digest);

    // `docker login` leaves base64("alice:sekret") in config.json.
    let docker = ws.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::write(
        docker.join("config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"auth": "YWxpY2U6c2VrcmV0"}}}}}}"#,
            reg.addr
        ),
    )
    .unwrap();
    let out = resolve(stella(ws.path()).env("DOCKER_CONFIG", &docker));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), digest);
}

#[test]
fn a_release_from_a_registry_deploys_to_a_dir_target() {
    let Some(reg) = Registry::start() else { return };
    let ws = init_workspace();
    let layout = ws.path().join("build");
    add_image(&layout, "1.0", "served from the registry");
    reg.push(&layout, "1.0", "acme/api-gateway", "1.0");
    point_app_at(ws.path(), &format!("{}/acme/api-gateway", reg.addr));
    let out = stella(ws.path())
        .args([
            "release",
            "promote",
            "api-gateway:1.0",
            "--to",
            "dev",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"], "deployed");
    let served = std::fs::read_to_string(ws.path().join("deploy/dev/current/index.html")).unwrap();
    assert_eq!(served, "served from the registry");
}
