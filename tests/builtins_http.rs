//! The HTTP builtins, against a small server on loopback written here:
//! `health-check` waits for the expected status and body, `notify` POSTs
//! the promotion as JSON.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use common::stella;

/// Answers GET /health with `status` and "ok", records POST bodies.
fn server(status: u16) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let posts = Arc::new(Mutex::new(Vec::new()));
    let seen = posts.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            if request.starts_with("POST") {
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&body).into_owned());
            }
            let code = if request.starts_with("GET") {
                status
            } else {
                204
            };
            let text = if code == 204 { "" } else { "ok" };
            let mut s = stream;
            let _ = write!(
                s,
                "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    (port, posts)
}

fn workspace(port: u16) -> tempfile::TempDir {
    let dir = common::workspace_with_dev_workflow(&format!(
        "[[steps]]\nid = \"deploy\"\nuses = \"deploy\"\n\n\
             [[steps]]\nid = \"health\"\nuses = \"health-check\"\nwith = {{ url = \"http://127.0.0.1:{port}/health\", status = 200, body = \"ok\", attempts = 2, interval = \"1s\" }}\nneeds = [\"deploy\"]\n\n\
             [[steps]]\nid = \"tell\"\nuses = \"notify\"\nwith = {{ url = \"http://127.0.0.1:{port}/hook\", message = \"shipped ${{{{ release.digest }}}}\" }}\nneeds = [\"health\"]\n"
    ));
    common::app_image(dir.path(), "1.0", "v1");
    dir
}

#[test]
fn health_check_and_notify_speak_http() {
    let (port, posts) = server(200);
    let dir = workspace(port);
    let out = stella(dir.path())
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
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["outcome"],
        "deployed",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let posts = posts.lock().unwrap();
    assert_eq!(posts.len(), 1);
    let event: serde_json::Value = serde_json::from_str(&posts[0]).unwrap();
    assert_eq!(event["app"], "api-gateway");
    assert_eq!(event["environment"], "dev");
    assert_eq!(
        event["message"],
        format!("shipped {}", v["digest"].as_str().unwrap())
    );
}

#[test]
fn an_unhealthy_release_fails_the_promotion_and_is_switched_back() {
    let (port, posts) = server(503);
    let dir = workspace(port);
    let out = stella(dir.path())
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
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"], "deploy-failed");
    assert!(
        !dir.path().join("deploy/dev/current").exists(),
        "nothing served before, so nothing serves now"
    );
    assert!(posts.lock().unwrap().is_empty(), "notify needs health");
    let show: serde_json::Value = serde_json::from_slice(
        &stella(dir.path())
            .args(["capsule", "show", "latest", "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let reason = show["predicate"]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!(
            "step `health` failed: http://127.0.0.1:{port}/health did not answer 200 in 2 attempts"
        )),
        "{reason}"
    );
}
