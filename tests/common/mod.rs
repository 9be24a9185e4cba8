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
    child: Option<Child>,
    pub addr: String,
    pub storage: PathBuf,
    config: PathBuf,
    htpasswd: Option<PathBuf>,
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
        let htpasswd = htpasswd.map(|entries| {
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, entries).unwrap();
            file
        });
        let mut reg = Registry {
            child: None,
            addr: format!("127.0.0.1:{}", free_port()),
            storage: dir.path().join("data"),
            config: dir.path().join("config.yml"),
            htpasswd,
            _dir: dir,
        };
        reg.run(false);
        Some(reg)
    }

    /// A registry in read-only maintenance mode (reads work, pushes are
    /// refused), as `storage: maintenance: readonly: enabled: true` makes it.
    pub fn start_read_only() -> Option<Registry> {
        let mut reg = Registry::start()?;
        reg.restart(true);
        Some(reg)
    }

    /// Stops the registry; its address then refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops and starts the registry on the same address and storage,
    /// read-only or not.
    pub fn restart(&mut self, read_only: bool) {
        self.stop();
        self.run(read_only);
    }

    fn run(&mut self, read_only: bool) {
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n",
            self.storage.display()
        );
        if read_only {
            yaml.push_str("  maintenance:\n    readonly:\n      enabled: true\n");
        }
        yaml.push_str(&format!("http:\n  addr: {}\n", self.addr));
        if let Some(file) = &self.htpasswd {
            yaml.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: stella-test\n    path: {}\n",
                file.display()
            ));
        }
        std::fs::write(&self.config, yaml).unwrap();
        self.child = Some(
            Command::new("docker-registry")
                .arg("serve")
                .arg(&self.config)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start docker-registry"),
        );
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(&self.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not start on {}",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
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

    /// A plain HTTP/1.1 request written here (no client library in
    /// between): the status code and the body.
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Vec<u8>) {
        use std::io::{Read, Write};
        let mut s = TcpStream::connect(&self.addr).unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.addr,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).unwrap();
        let split = resp
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an HTTP response");
        let head = String::from_utf8_lossy(&resp[..split]).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head}"));
        let mut body = resp[split + 4..].to_vec();
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            body = dechunk(&body);
        }
        (status, body)
    }

    /// Stores `bytes` as the manifest `repo:tag` with a raw PUT.
    pub fn put_manifest(&self, repo: &str, tag: &str, media_type: &str, bytes: &[u8]) -> u16 {
        self.raw(
            "PUT",
            &format!("/v2/{repo}/manifests/{tag}"),
            &[("Content-Type", media_type)],
            bytes,
        )
        .0
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

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = body.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let len =
            usize::from_str_radix(String::from_utf8_lossy(&body[..eol]).trim(), 16).unwrap_or(0);
        if len == 0 || body.len() < eol + 2 + len {
            return out;
        }
        out.extend_from_slice(&body[eol + 2..eol + 2 + len]);
        body = &body[(eol + 4 + len).min(body.len())..];
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
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
