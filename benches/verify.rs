//! `stella verify` end to end against a real `docker-registry` on
//! loopback: the process a deploy script runs (spawn, read the key, list
//! the referrers, fetch and check every summary), the same check in
//! process, and beside them the floor — the same HTTP requests made by a
//! plain keep-alive client that checks nothing. Measured with 1, 10 and
//! 50 decisions attached to the image. A bench binary; skipped where
//! `docker-registry` or `skopeo` is missing.
//!
//!     cargo bench --bench verify

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use stella::registry::layout::{LayerFile, LayoutWriter};

const RUNS: usize = 30;

struct Registry(Child);

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn on_path(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn stella(dir: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_stella"))
        .current_dir(dir)
        .env_remove("STELLA_WORKSPACE")
        .env("DOCKER_CONFIG", dir.join(".no-docker-config"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success() || out.status.code() == Some(3),
        "stella {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn median(mut xs: Vec<Duration>) -> f64 {
    xs.sort();
    xs[xs.len() / 2].as_secs_f64() * 1e3
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    if !on_path("docker-registry") || !on_path("skopeo") {
        println!("docker-registry or skopeo is not installed: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let config = dir.path().join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let _registry = Registry(
        Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    while std::net::TcpStream::connect(&addr).is_err() {
        std::thread::sleep(Duration::from_millis(50));
    }

    let ws = dir.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    stella(&ws, &["init", "--name", "bench"]);
    let layout = ws.join("build");
    let digest = LayoutWriter::create(&layout)
        .unwrap()
        .add_image(
            "1.0",
            &[LayerFile {
                path: "index.html",
                mode: 0o644,
                contents: b"bench",
            }],
        )
        .unwrap()
        .to_string();
    assert!(
        Command::new("skopeo")
            .args([
                "--insecure-policy",
                "copy",
                "--quiet",
                "--dest-tls-verify=false"
            ])
            .arg(format!("oci:{}:1.0", layout.display()))
            .arg(format!("docker://{addr}/acme/api:1.0"))
            .status()
            .unwrap()
            .success()
    );
    let toml = std::fs::read_to_string(ws.join("stella.toml"))
        .unwrap()
        .replace(
            "image = \"oci-layout:images/api-gateway\"",
            &format!("image = \"{addr}/acme/api\""),
        );
    std::fs::write(ws.join("stella.toml"), toml).unwrap();
    let key = dir.path().join("workspace.pub");
    std::fs::write(&key, stella(&ws, &["key", "export", "workspace"]).stdout).unwrap();
    let image = format!("{addr}/acme/api@{digest}");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let trusted = stella::capsule::trust::from_files(std::slice::from_ref(&key)).unwrap();
    let repository = stella::domain::Repository::Remote {
        registry: addr.clone(),
        repository: "acme/api".into(),
    };
    let subject: stella::domain::Digest = digest.parse().unwrap();

    println!(
        "| decisions attached | `stella verify` (process) | in process | plain GETs, no checks (floor) |"
    );
    println!("|---|---|---|---|");
    let mut promoted = 0;
    for n in [1, 10, 50] {
        while promoted < n {
            stella(
                &ws,
                &[
                    "release",
                    "promote",
                    &format!("api-gateway@{digest}"),
                    "--to",
                    "dev",
                ],
            );
            promoted += 1;
        }
        let key_arg = key.to_str().unwrap();
        let process: Vec<Duration> = (0..RUNS)
            .map(|_| {
                let t = Instant::now();
                let out = stella(
                    &empty,
                    &["verify", &image, "--env", "dev", "--key", key_arg, "--json"],
                );
                let e = t.elapsed();
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                assert_eq!(v["allowed"], true);
                assert_eq!(v["decisions"], n);
                e
            })
            .collect();
        let in_process: Vec<Duration> = (0..RUNS)
            .map(|_| {
                let t = Instant::now();
                let v = rt
                    .block_on(stella::capsule::attached::verify_image(
                        &repository,
                        &subject,
                        "dev",
                        &trusted,
                        false,
                        Path::new("."),
                    ))
                    .unwrap();
                assert!(v.allowed);
                t.elapsed()
            })
            .collect();
        let floor: Vec<Duration> = (0..RUNS)
            .map(|_| rt.block_on(plain_gets(&addr, &digest)))
            .collect();
        println!(
            "| {n} | {:.1} ms | {:.1} ms | {:.1} ms |",
            median(process),
            median(in_process),
            median(floor)
        );
    }
}

/// What any client must fetch: the referrers tag index, then each
/// summary's manifest and its layer — over one keep-alive connection,
/// nothing verified.
async fn plain_gets(addr: &str, digest: &str) -> Duration {
    let client = reqwest::Client::new();
    let t = Instant::now();
    let base = format!("http://{addr}/v2/acme/api");
    let index: serde_json::Value = client
        .get(format!("{base}/manifests/{}", digest.replace(':', "-")))
        .header("Accept", "application/vnd.oci.image.index.v1+json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for m in index["manifests"].as_array().unwrap() {
        if m["artifactType"] != stella::capsule::summary::SUMMARY_ARTIFACT_TYPE {
            continue;
        }
        let manifest: serde_json::Value = client
            .get(format!(
                "{base}/manifests/{}",
                m["digest"].as_str().unwrap()
            ))
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let layer = manifest["layers"][0]["digest"].as_str().unwrap();
        client
            .get(format!("{base}/blobs/{layer}"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    }
    t.elapsed()
}
