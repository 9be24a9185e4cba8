//! Hostile audit bundles: an oversized member, a rewritten manifest, a
//! bundle from an attacker's own workspace, duplicate and unsafe member
//! names; and an export's faults: a missing blob, a killed export's
//! leftovers.

mod common;

use std::path::{Path, PathBuf};

use common::{stderr, stdout, stella};

const CONFIG: &str = r#"
[workspace]
name = "audited"

[apps.api]
image = "oci-layout:images/api"

[environments.dev]
"#;

fn workspace() -> tempfile::TempDir {
    common::promoted_twice("audited", CONFIG)
}

fn export(ws: &Path) -> PathBuf {
    let bundle = ws.join("bundle.tar.gz");
    let out = stella(ws)
        .args(["audit", "export", "--out"])
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    bundle
}

fn members(bundle: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(
        std::fs::File::open(bundle).unwrap(),
    ));
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut bytes).unwrap();
        files.push((path, bytes));
    }
    files
}

/// Writes members as a bundle; a member named with a trailing `@link`
/// is written as a symlink to its content.
fn pack(path: &Path, files: &[(String, Vec<u8>)]) {
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::fast(),
    );
    let mut tar = tar::Builder::new(gz);
    for (p, b) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        if let Some(name) = p.strip_suffix("@link") {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            tar.append_link(&mut h, name, String::from_utf8_lossy(b).as_ref())
                .unwrap();
        } else {
            h.set_size(b.len() as u64);
            // Raw names, `..` included, as an attacker writes them.
            let bytes = p.as_bytes();
            h.as_gnu_mut().unwrap().name[..bytes.len()].copy_from_slice(bytes);
            h.set_cksum();
            tar.append(&h, b.as_slice()).unwrap();
        }
    }
    tar.into_inner().unwrap().finish().unwrap();
}

fn verify(dir: &Path, bundle: &Path, extra: &[&str]) -> std::process::Output {
    stella(dir)
        .args(["audit", "verify"])
        .args(extra)
        .arg(bundle)
        .output()
        .unwrap()
}

#[test]
fn an_intact_bundle_verifies_in_its_workspace_naming_the_key() {
    let dir = workspace();
    let ws = dir.path();
    let bundle = export(ws);
    let out = verify(ws, &bundle, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("signed by key ")
            && stdout(&out).contains("(workspace, a sealing key of this workspace)"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn an_oversized_member_is_refused_unread_naming_the_limit() {
    let dir = workspace();
    let ws = dir.path();
    let bundle = export(ws);
    let mut files = members(&bundle);
    files.push(("padding.bin".into(), vec![0u8; 1 << 20]));
    let bad = ws.join("big.tar.gz");
    pack(&bad, &files);
    let out = verify(ws, &bad, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("member `padding.bin` is 1048576 bytes, over the 64 KiB limit"),
        "{}",
        stderr(&out)
    );

    // A capsule member whose header claims 1.5 GiB: refused from its
    // header, before a byte of it is read.
    let mut raw = Vec::new();
    {
        let mut tar = tar::Builder::new(&mut raw);
        for (p, b) in &files[..files.len() - 1] {
            let mut h = tar::Header::new_ustar();
            h.set_size(b.len() as u64);
            h.set_mode(0o644);
            tar.append_data(&mut h, p, b.as_slice()).unwrap();
        }
        tar.finish().unwrap();
    }
    raw.truncate(raw.len() - 1024);
    let mut h = tar::Header::new_ustar();
    h.set_path("capsules/dev/99.json").unwrap();
    h.set_size(1536 << 20);
    h.set_mode(0o644);
    h.set_cksum();
    raw.extend_from_slice(h.as_bytes());
    raw.extend_from_slice(&[b' '; 4096]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &raw).unwrap();
    let bad = ws.join("huge.tar.gz");
    std::fs::write(&bad, gz.finish().unwrap()).unwrap();
    let out = verify(ws, &bad, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out)
            .contains("member `capsules/dev/99.json` is 1610612736 bytes, over the 128 MiB limit"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_rewritten_manifest_is_named() {
    let dir = workspace();
    let ws = dir.path();
    let bundle = export(ws);
    let mut files = members(&bundle);
    let (_, manifest) = files
        .iter_mut()
        .find(|(p, _)| p == "manifest.json")
        .unwrap();
    let mut m: serde_json::Value = serde_json::from_slice(manifest).unwrap();
    for e in m["chains"]["dev"].as_array_mut().unwrap() {
        e["decision"] = "deny".into();
        e["app"] = "billing".into();
        e["action"] = "rollback".into();
        e["digest"] = format!("sha256:{}", "0".repeat(64)).into();
        e["sealed_at"] = "2020-01-01T00:00:00Z".into();
    }
    *manifest = serde_json::to_vec_pretty(&m).unwrap();
    let bad = ws.join("rewritten.tar.gz");
    pack(&bad, &files);
    let out = verify(ws, &bad, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("manifest.json was changed after it was signed"),
        "{text}"
    );
    assert!(
        text.contains("the manifest disagrees with the signed statement: action `rollback` (signed: `promote`), decision `deny` (signed: `allow`), app `billing` (signed: `api`)"),
        "{text}"
    );
    assert!(text.contains("sealed_at `2020-01-01T00:00:00Z`"), "{text}");
}

#[test]
fn a_bundle_from_another_workspace_is_not_valid_and_names_its_key() {
    let attacker = workspace();
    let victim = workspace();
    let bundle = export(attacker.path());
    let out = verify(victim.path(), &bundle, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(!text.contains("valid —"), "{text}");
    let pem = stdout(
        &stella(attacker.path())
            .args(["key", "export", "workspace"])
            .output()
            .unwrap(),
    );
    let key = stella::sign::PublicKey::from_pem(&pem).unwrap();
    assert!(
        text.contains(&format!(
            "the bundle is signed only by key(s) {}, not trusted here",
            &key.keyid()[..16]
        )),
        "{text}"
    );
    // Trusted explicitly, it verifies, and says by whose word.
    std::fs::write(victim.path().join("their.pub"), &pem).unwrap();
    let out = verify(victim.path(), &bundle, &["--trust", "their.pub"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("their.pub, trusted by --trust"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn duplicate_unsafe_and_extra_members_are_refused_by_name() {
    let dir = workspace();
    let ws = dir.path();
    let bundle = export(ws);
    let files = members(&bundle);
    let capsule = files
        .iter()
        .find(|(p, _)| p.starts_with("capsules/dev/"))
        .unwrap()
        .clone();

    let mut dup = files.clone();
    dup.push(capsule.clone());
    let bad = ws.join("dup.tar.gz");
    pack(&bad, &dup);
    let out = verify(ws, &bad, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("member `{}` appears twice", capsule.0)),
        "{}",
        stderr(&out)
    );

    let mut dotdot = files.clone();
    dotdot.push(("capsules/../../etc/x.json".into(), b"{}".to_vec()));
    pack(&bad, &dotdot);
    let out = verify(ws, &bad, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("member `capsules/../../etc/x.json` has an unsafe name"),
        "{}",
        stderr(&out)
    );

    let mut link = files.clone();
    link.push(("keys/evil.pub@link".into(), b"/etc/passwd".to_vec()));
    pack(&bad, &link);
    let out = verify(ws, &bad, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("member `keys/evil.pub` is not a regular file"),
        "{}",
        stderr(&out)
    );

    let mut extra = files.clone();
    extra.push(("capsules/dev/999.json".into(), capsule.1.clone()));
    pack(&bad, &extra);
    let out = verify(ws, &bad, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("member `capsules/dev/999.json` is not named by the manifest"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_bundle_cut_at_its_end_is_named() {
    let dir = workspace();
    let ws = dir.path();
    let bundle = export(ws);
    let files = members(&bundle);
    // The newest capsule removed, with its manifest entry, and the
    // manifest re-signed by someone else's key: still refused, and the
    // signed head names the cut even if the reviewer trusts that key.
    let mut m: serde_json::Value =
        serde_json::from_slice(&files.iter().find(|(p, _)| p == "manifest.json").unwrap().1)
            .unwrap();
    let last = m["chains"]["dev"].as_array_mut().unwrap().pop().unwrap();
    let manifest = serde_json::to_vec_pretty(&m).unwrap();
    let other = stella::sign::PrivateKey::from_seed(&[3; 32]);
    let sig = stella::sign::Envelope::sign(
        "application/vnd.stella.audit-manifest+json",
        &manifest,
        &other,
    );
    let cut: Vec<(String, Vec<u8>)> = files
        .into_iter()
        .filter(|(p, _)| *p != last["file"].as_str().unwrap())
        .map(|(p, b)| match p.as_str() {
            "manifest.json" => (p, manifest.clone()),
            "manifest.sig.json" => (p, serde_json::to_vec(&sig).unwrap()),
            _ => (p, b),
        })
        .collect();
    let bad = ws.join("cut.tar.gz");
    pack(&bad, &cut);
    std::fs::write(ws.join("other.pub"), other.public().to_pem()).unwrap();
    let out = verify(ws, &bad, &["--trust", "other.pub"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("dev: the chain was cut at its end"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_missing_blob_names_its_capsule_and_a_killed_exports_leftovers_go() {
    let dir = workspace();
    let ws = dir.path();
    // Leftovers of a killed export: the name older versions used, and a
    // temp file of a process that is gone.
    std::fs::write(ws.join("bundle.tar.tmp"), b"partial").unwrap();
    std::fs::write(ws.join(".bundle.tar.gz.999999999.tmp"), b"partial").unwrap();
    export(ws);
    assert!(!ws.join("bundle.tar.tmp").exists());
    assert!(!ws.join(".bundle.tar.gz.999999999.tmp").exists());

    // Remove one blob the newest capsule needs.
    let conn = rusqlite::Connection::open(ws.join(".stella/stella.db")).unwrap();
    let (id, envelope): (i64, Vec<u8>) = conn
        .query_row(
            "SELECT id, envelope FROM capsules ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let env: stella::sign::Envelope = serde_json::from_slice(&envelope).unwrap();
    let st: stella::capsule::Statement =
        serde_json::from_slice(&env.payload_bytes().unwrap()).unwrap();
    let blob = st.referenced()[0].clone();
    std::fs::remove_file(ws.join(".stella/evidence").join("sha256").join(blob.hex())).unwrap();
    let out = stella(ws)
        .args(["audit", "export", "--out", "again.tar.gz"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    // The first capsule that needs it is named (the blob may be shared).
    let first = (1..=id)
        .find(|i| {
            let envelope: Vec<u8> = conn
                .query_row("SELECT envelope FROM capsules WHERE id = ?1", [i], |r| {
                    r.get(0)
                })
                .unwrap();
            let env: stella::sign::Envelope = serde_json::from_slice(&envelope).unwrap();
            let st: stella::capsule::Statement =
                serde_json::from_slice(&env.payload_bytes().unwrap()).unwrap();
            st.referenced().contains(&&blob)
        })
        .unwrap();
    assert!(
        stderr(&out).contains(&format!(
            "capsule #{first} (allowed promote of api in dev) needs evidence {blob}"
        )),
        "{}",
        stderr(&out)
    );
    assert!(!ws.join("again.tar.gz").exists());
    let leftovers: Vec<_> = std::fs::read_dir(ws)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_scan_report_over_its_limit_is_refused_unread() {
    let dir = workspace();
    let ws = dir.path();
    // 33 MiB of JSON: valid-looking, over the 32 MiB limit.
    let mut big = b"{\"SchemaVersion\": 2, \"Results\": [], \"pad\": \"".to_vec();
    big.resize(33 << 20, b'x');
    big.extend_from_slice(b"\"}");
    std::fs::write(ws.join("big.json"), &big).unwrap();
    let out = stella(ws)
        .args(["evidence", "add", "api:1.0", "big.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("over the 32 MiB limit of a piece of evidence"),
        "{}",
        stderr(&out)
    );
    // And the parser refuses it too, wherever it comes from (collection,
    // replay).
    let e = stella::scan::read(&big).unwrap_err().to_string();
    assert!(e.contains("over the 32 MiB limit of a scan report"), "{e}");
}
