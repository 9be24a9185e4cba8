//! Helpers shared by the integration tests: the real binary in temp
//! workspaces, OCI layouts built here, and a real registry on loopback.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use stella::registry::layout::{LayerFile, LayoutWriter};

/// The `stella` binary, run in `dir`, with no workspace from the environment.
pub fn stella(dir: &Path) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("stella").expect("binary built");
    cmd.current_dir(dir)
        .env_remove("STELLA_WORKSPACE")
        .env_remove("STELLA_LOG")
        .env_remove("STELLA_REGISTRY_USERNAME")
        .env_remove("STELLA_REGISTRY_PASSWORD")
        .env("DOCKER_CONFIG", dir.join(".no-docker-config"));
    cmd
}

/// A fresh workspace made by `stella init`.
pub fn init_workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    stella(dir.path())
        .args(["init", "--name", "acme"])
        .assert()
        .success();
    dir
}

pub fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Writes an image holding `index.html` (saying `body`) under `tag`.
pub fn add_image(layout: &Path, tag: &str, body: &str) -> String {
    LayoutWriter::create(layout)
        .unwrap()
        .add_image(
            tag,
            &[LayerFile {
                path: "index.html",
                mode: 0o644,
                contents: body.as_bytes(),
            }],
        )
        .unwrap()
        .to_string()
}

/// Whether `name` is an executable on PATH.
pub fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false)
}

/// Skips a test whose tools are missing, except under CI where they must
/// be there (a missing tool fails the run instead of hiding a gap).
pub fn require(tools: &[&str]) -> bool {
    let missing: Vec<&&str> = tools.iter().filter(|t| !on_path(t)).collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true but {missing:?} not installed; .ci/run must install them");
    }
    eprintln!("skipped: {missing:?} not installed (install them to run this test)");
    false
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real `docker-registry` on a free loopback port with its own storage,
/// stopped when dropped.
pub struct Registry {
    child: Child,
    pub addr: String,
    pub storage: PathBuf,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Option<Registry> {
        Registry::start_with(None)
    }

    /// A registry that wants HTTP basic auth for `alice` / `sekret`.
    pub fn start_with_auth() -> Option<Registry> {
        // bcrypt of "sekret", as `htpasswd -B` writes it.
        Registry::start_with(Some(
            "alice:$2b$04$WACF/x.RGgWvtpwSo/qBBOcrFXqDSQUcYKvTSHEo3/N0I/zXuHH6.\n",
        ))
    }

    fn start_with(htpasswd: Option<&str>) -> Option<Registry> {
        if !require(&["docker-registry", "skopeo"]) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("data");
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            storage.display()
        );
        if let Some(entries) = htpasswd {
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, entries).unwrap();
            yaml.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: stella-test\n    path: {}\n",
                file.display()
            ));
        }
        std::fs::write(&config, yaml).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let reg = Registry {
            child,
            addr,
            storage,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(&reg.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not start on {}",
                reg.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(reg)
    }

    /// `skopeo copy oci:LAYOUT:TAG docker://ADDR/REPO:DEST_TAG`.
    pub fn push(&self, layout: &Path, tag: &str, repo: &str, dest_tag: &str) {
        self.push_with(layout, tag, repo, dest_tag, &[]);
    }

    pub fn push_with(&self, layout: &Path, tag: &str, repo: &str, dest_tag: &str, extra: &[&str]) {
        let out = Command::new("skopeo")
            .args([
                "--insecure-policy",
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
            ])
            .args(extra)
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{repo}:{dest_tag}", self.addr))
            .output()
            .expect("run skopeo");
        assert!(out.status.success(), "skopeo copy failed: {}", stderr(&out));
    }

    /// The registry's `Docker-Content-Digest` for `repo:tag`, read with a
    /// plain HTTP HEAD written here (no client library in between).
    pub fn content_digest(&self, repo: &str, tag: &str) -> String {
        use std::io::{Read, Write};
        let mut s = TcpStream::connect(&self.addr).unwrap();
        write!(
            s,
            "HEAD /v2/{repo}/manifests/{tag} HTTP/1.1\r\nHost: {}\r\nAccept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        resp.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("docker-content-digest")
                    .then(|| v.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("no Docker-Content-Digest in {resp}"))
    }
}

impl Registry {
    /// Stops the registry (its storage is kept): "the registry is down".
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Restarts it in read-only mode (it serves pulls and refuses every
    /// push: "no write access"), or back in normal mode.
    pub fn set_read_only(&mut self, read_only: bool) {
        let config = self._dir.path().join("config.yml");
        let yaml = std::fs::read_to_string(&config).unwrap();
        let base = yaml.replace("  maintenance:\n    readonly:\n      enabled: true\n", "");
        let yaml = if read_only {
            base.replace(
                "storage:\n",
                "storage:\n  maintenance:\n    readonly:\n      enabled: true\n",
            )
        } else {
            base
        };
        std::fs::write(&config, yaml).unwrap();
        self.restart();
    }

    /// Starts it again on the same address with the same storage.
    pub fn restart(&mut self) {
        self.stop();
        self.child = Command::new("docker-registry")
            .arg("serve")
            .arg(self._dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(&self.addr).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not restart");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Adds an image holding `index.html` (saying `body`) to the starter
/// workspace's `api-gateway` layout.
pub fn app_image(ws: &Path, tag: &str, body: &str) -> String {
    add_image(&ws.join("images/api-gateway"), tag, body)
}

/// A starter workspace whose `dev` environment runs `workflow`.
pub fn workspace_with_dev_workflow(workflow: &str) -> tempfile::TempDir {
    let dir = init_workspace();
    let ws = dir.path();
    let toml = std::fs::read_to_string(ws.join("stella.toml")).unwrap();
    let toml = toml.replace(
        "[environments.dev]\ntargets = [\"dev-local\"]",
        "[environments.dev]\ntargets = [\"dev-local\"]\nworkflow = \"workflows/dev.toml\"",
    );
    std::fs::write(ws.join("stella.toml"), toml).unwrap();
    std::fs::write(ws.join("workflows/dev.toml"), workflow).unwrap();
    dir
}

/// A workspace named `name` with `config` as its stella.toml, app `api`'s
/// layout holding 1.0 and 2.0, and both promoted into `dev` (two allowed,
/// sealed decisions).
pub fn promoted_twice(name: &str, config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path();
    stella(ws).args(["init", "--name", name]).assert().success();
    std::fs::write(ws.join("stella.toml"), config).unwrap();
    add_image(&ws.join("images/api"), "1.0", "v1");
    add_image(&ws.join("images/api"), "2.0", "v2");
    for tag in ["1.0", "2.0"] {
        let out = stella(ws)
            .args(["release", "promote", &format!("api:{tag}"), "--to", "dev"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    }
    dir
}
