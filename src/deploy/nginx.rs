//! `nginx` targets: the same two slots and routes as the built-in router,
//! served by an unprivileged nginx that stella runs on loopback under a
//! prefix it owns (`.stella/nginx/<target>/`: the config, pid, logs and
//! every temp path). The target's controller (`stella router serve
//! TARGET`, as for `router` targets) turns each routes change into a
//! config and applies it the safe way:
//!
//! 1. render to `nginx.conf.next` and `nginx -t` it — if nginx refuses
//!    it, nothing changes and nginx's own message is the error;
//! 2. rename it over `nginx.conf` (the old one kept as `nginx.conf.prev`);
//! 3. start nginx, or `nginx -s reload` (graceful: old workers finish
//!    their requests);
//! 4. confirm that the listener answers with the new routes version — a
//!    reload nginx could not apply (a port already taken, say) keeps the
//!    old config serving: stella puts the old file back and reports the
//!    `[emerg]` lines nginx logged.
//!
//! Unforced requests split by weight with `split_clients` on the
//! request's random id; the `X-Stella-Variant` header or the
//! `stella-variant` cookie forces a slot through a `map`. Each slot is an
//! internal location — its release's files, or a proxy to its process —
//! so nginx never proxies to itself. A JSON access log says which slot
//! answered, with what status and in how long; the controller tails it into the same per-slot
//! counters the built-in router keeps, so the canary's analysis reads one
//! format whichever router serves.

use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::router::{Backend, Counters, Routes, SlotStats};

/// Where stella keeps an nginx target's config, pid, logs and temp files.
pub fn prefix_dir(root: &Path, target: &str) -> PathBuf {
    root.join(".stella").join("nginx").join(target)
}

/// The nginx binary: `$STELLA_NGINX`, else `nginx` on `PATH`, else
/// `/usr/sbin/nginx` (not on a normal user's `PATH` on Debian).
pub fn find_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("STELLA_NGINX") {
        return Ok(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join("nginx"))
        .chain([PathBuf::from("/usr/sbin/nginx")])
        .find(|p| p.is_file());
    on_path.ok_or_else(|| {
        "nginx is not installed: install it (Debian: `apt-get install nginx`), point \
         STELLA_NGINX at its binary, or use `kind = \"router\"` for the built-in router"
            .to_owned()
    })
}

/// One nginx target's front: renders, tests, applies and tails.
pub struct Nginx {
    prefix: PathBuf,
    binary: PathBuf,
    listen: SocketAddr,
    target: String,
    log: LogTail,
    stable: Counters,
    candidate: Counters,
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl Nginx {
    pub fn new(root: &Path, target: &str, listen: SocketAddr) -> Result<Nginx, String> {
        let prefix = prefix_dir(root, target);
        for d in ["logs", "temp"] {
            std::fs::create_dir_all(prefix.join(d))
                .map_err(|e| format!("{}: {e}", prefix.join(d).display()))?;
        }
        Ok(Nginx {
            log: LogTail::new(prefix.join("logs/access.json")),
            prefix,
            binary: find_binary()?,
            listen,
            target: target.to_owned(),
            stable: Counters::default(),
            candidate: Counters::default(),
        })
    }

    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    pub fn conf(&self) -> PathBuf {
        self.prefix.join("nginx.conf")
    }

    /// The whole config for `routes`.
    pub fn render(&self, routes: &Routes) -> String {
        let p = |rel: &str| quote(&self.prefix.join(rel).display().to_string());
        let mut c = String::new();
        let _ = writeln!(
            c,
            "# Written by stella for target `{}`, routes version {}.\n\
             # Do not edit: stella rewrites it on every change.",
            self.target, routes.version
        );
        // Workers run as whoever runs stella (as root, nginx would
        // otherwise switch them to `nobody`, who cannot read the releases).
        if nix::unistd::geteuid().is_root() {
            c.push_str("user root;\n");
        }
        let _ = writeln!(
            c,
            "worker_processes auto;\npid {};\nerror_log {} notice;\nevents {{ worker_connections 1024; }}\nhttp {{",
            p("nginx.pid"),
            p("logs/error.log")
        );
        for t in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            let _ = writeln!(c, "  {t}_temp_path {};", p(&format!("temp/{t}")));
        }
        c.push_str(
            "  types { text/html html htm; text/plain txt; text/css css; application/javascript js; application/json json; image/svg+xml svg; image/png png; }\n  default_type application/octet-stream;\n  access_log off;\n  server_tokens off;\n",
        );
        c.push_str(
            "  log_format stella escape=json '{\"slot\":\"$stella_slot\",\"status\":$status,\"time\":$request_time}';\n",
        );
        let (stable, candidate) = (routes.stable.as_ref(), routes.candidate.as_ref());
        let name =
            |b: Option<&Backend>, slot: &'static str| if b.is_some() { slot } else { "none" };
        // Unforced requests: split by weight on the request's random id.
        let weight = routes.weight.min(100);
        let split: Vec<(String, &str)> = match (stable, candidate) {
            (None, None) => vec![],
            (Some(_), None) => vec![("*".into(), "stable")],
            (None, Some(_)) => vec![("*".into(), "candidate")],
            (Some(_), Some(_)) => match weight {
                0 => vec![("*".into(), "stable")],
                100 => vec![("*".into(), "candidate")],
                w => vec![(format!("{w}%"), "candidate"), ("*".into(), "stable")],
            },
        };
        c.push_str("  split_clients \"${request_id}\" $stella_split {\n");
        for (share, slot) in &split {
            let _ = writeln!(c, "    {share} {slot};");
        }
        if split.is_empty() {
            c.push_str("    * none;\n");
        }
        c.push_str("  }\n");
        // Forcing a slot: the header first, then the cookie; `a`/`b`
        // name the slots for A/B. (`$cookie_NAME` cannot name a cookie
        // with a hyphen, so the Cookie header is matched instead.)
        c.push_str("  map $http_cookie $stella_cookie {\n    \"~(?:^|;)\\s*stella-variant=(?<v>[^;\\s]+)\" $v;\n    default \"\";\n  }\n");
        let _ = writeln!(
            c,
            "  map \"$http_x_stella_variant:$stella_cookie\" $stella_slot {{\n    default $stella_split;\n    \"~*^(stable|a):\" {s};\n    \"~*^(candidate|b):\" {k};\n    \"~*^:(stable|a)$\" {s};\n    \"~*^:(candidate|b)$\" {k};\n  }}",
            s = name(stable, "stable"),
            k = name(candidate, "candidate"),
        );
        // A/B: a client the split assigned (no cookie yet) is told its
        // variant, and keeps it.
        let _ = writeln!(
            c,
            "  map \"$http_x_stella_variant$stella_cookie\" $stella_assign {{\n    \"\" {};\n    default \"\";\n  }}",
            if routes.sticky {
                "\"stella-variant=$stella_ab; Path=/\""
            } else {
                "\"\""
            }
        );
        c.push_str("  map $stella_slot $stella_ab {\n    stable a;\n    candidate b;\n    default \"\";\n  }\n");
        // Feature flags: a percentage is decided per client address.
        let mut flags = Vec::new();
        for (i, (name, value)) in routes.flags.iter().enumerate() {
            let v = match value.as_str() {
                "on" | "off" => value.clone(),
                pct => {
                    let n: u8 = pct.trim_end_matches('%').parse().unwrap_or(0);
                    let _ = writeln!(
                        c,
                        "  split_clients \"${{remote_addr}}/{name}\" $stella_flag_{i} {{\n    {}\n  }}",
                        match n {
                            0 => "* off;".to_owned(),
                            100.. => "* on;".to_owned(),
                            n => format!("{n}% on;\n    * off;"),
                        }
                    );
                    format!("$stella_flag_{i}")
                }
            };
            flags.push(format!("{name}={v}"));
        }
        let flags_header = flags.join("; ");
        for (slot, b) in [("stable", stable), ("candidate", candidate)] {
            if let Some(Backend::Http(a)) = b {
                let _ = writeln!(
                    c,
                    "  upstream stella_{slot} {{ server {a}; keepalive 16; }}"
                );
            }
        }
        let _ = writeln!(
            c,
            "  server {{\n    listen {};\n    add_header X-Stella-Routes {} always;\n    add_header X-Stella-Slot $stella_slot always;\n    add_header Set-Cookie $stella_assign always;\n    access_log {} stella;\n    location / {{\n      if ($stella_slot = none) {{ return 503 \"no release is routed here\\n\"; }}\n      rewrite ^ /.stella-slot/$stella_slot$uri last;\n    }}",
            self.listen,
            routes.version,
            p("logs/access.json"),
        );
        // Each slot is an internal location: its release's files, or a
        // proxy to its process.
        for (slot, b) in [("stable", stable), ("candidate", candidate)] {
            let Some(b) = b else { continue };
            let _ = write!(
                c,
                "    location ^~ /.stella-slot/{slot}/ {{\n      internal;\n"
            );
            match b {
                Backend::Static(dir) => {
                    let _ = writeln!(
                        c,
                        "      alias {};\n      index index.html;",
                        quote(&format!("{}/", dir.display()))
                    );
                }
                Backend::Http(_) => {
                    let _ = writeln!(
                        c,
                        "      proxy_pass http://stella_{slot}/;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_set_header Host $http_host;\n      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n      proxy_set_header X-Stella-Flags {};\n      proxy_connect_timeout 5s;",
                        quote(&flags_header)
                    );
                }
            }
            c.push_str("    }\n");
        }
        c.push_str("  }\n}\n");
        c
    }

    fn nginx(&self, conf: &Path) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.binary);
        cmd.arg("-p")
            .arg(&self.prefix)
            .arg("-c")
            .arg(conf)
            .arg("-e")
            .arg(self.prefix.join("logs/error.log"))
            .stdin(std::process::Stdio::null());
        cmd
    }

    /// nginx's master pid, if it runs.
    pub fn running_pid(&self) -> Option<i64> {
        let pid: i64 = std::fs::read_to_string(self.prefix.join("nginx.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        crate::store::process_alive(pid).then_some(pid)
    }

    /// Renders, tests and applies `routes`; returns once nginx answers
    /// with them. On any failure the previous config keeps serving.
    pub async fn apply(&mut self, routes: &Routes, listen: SocketAddr) -> Result<(), String> {
        let before = std::mem::replace(&mut self.listen, listen);
        let r = self.try_apply(routes).await;
        if r.is_err() {
            self.listen = before;
        }
        r
    }

    async fn try_apply(&mut self, routes: &Routes) -> Result<(), String> {
        let text = self.render(routes);
        let next = self.prefix.join("nginx.conf.next");
        std::fs::write(&next, &text).map_err(|e| format!("{}: {e}", next.display()))?;
        let out = self
            .nginx(&next)
            .arg("-t")
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        if !out.status.success() {
            return Err(format!(
                "nginx refused the config for routes {} ({}): {}; the previous config keeps serving",
                routes.version,
                next.display(),
                printed(&out.stderr)
            ));
        }
        let conf = self.conf();
        let prev = self.prefix.join("nginx.conf.prev");
        let had = conf.exists();
        if had {
            std::fs::copy(&conf, &prev).map_err(|e| format!("{}: {e}", prev.display()))?;
        }
        std::fs::rename(&next, &conf).map_err(|e| format!("{}: {e}", conf.display()))?;
        let errors = self.prefix.join("logs/error.log");
        let seen = std::fs::metadata(&errors).map_or(0, |m| m.len());
        let master = self.running_pid();
        let out = match master {
            // A graceful reload is SIGHUP to the master (`nginx -s reload`
            // without the extra process).
            Some(pid) => {
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGHUP,
                )
                .map_err(|e| format!("cannot signal nginx (pid {pid}) to reload: {e}"))?;
                None
            }
            None => Some(
                self.nginx(&conf)
                    .output()
                    .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?,
            ),
        };
        let undo = |why: String| -> String {
            if had {
                let _ = std::fs::rename(&prev, &conf);
            } else {
                let _ = std::fs::remove_file(&conf);
            }
            why
        };
        if let Some(out) = out.filter(|o| !o.status.success()) {
            return Err(undo(format!(
                "nginx could not start with routes {}: {}",
                routes.version,
                printed(&out.stderr)
            )));
        }
        // Live when the listener answers with the new version; refused
        // as soon as nginx logs why it kept the old config.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let why = loop {
            let step = Duration::from_millis(100);
            let live = super::routed::wait_live(self.listen, routes.version, step, None).await;
            let logged = emerg_lines(&read_from(&errors, seen), &["[emerg]", "[alert]"]);
            match live {
                Ok(()) => return Ok(()),
                Err(_) if !logged.is_empty() => {
                    // nginx retries a failed bind every 500 ms before it
                    // gives up: wait until it has, so what it logs is
                    // reported here, not taken for the next change's.
                    let quiet_since =
                        |len: u64| std::fs::metadata(&errors).map_or(len, |m| m.len());
                    let mut len = quiet_since(0);
                    let give_up = std::time::Instant::now() + Duration::from_secs(5);
                    while std::time::Instant::now() < give_up {
                        tokio::time::sleep(Duration::from_millis(700)).await;
                        let now = quiet_since(len);
                        if now == len {
                            break;
                        }
                        len = now;
                    }
                    break emerg_lines(&read_from(&errors, seen), &["[emerg]", "[alert]"]);
                }
                Err(e) if std::time::Instant::now() >= deadline => break e,
                Err(_) => {}
            }
        };
        Err(undo(format!(
            "nginx did not take routes {}: {why}; it keeps serving the previous config",
            routes.version
        )))
    }

    /// Stops nginx gracefully (`-s quit`), waiting up to `grace`.
    pub fn stop(&self, grace: Duration) {
        let Some(pid) = self.running_pid() else {
            return;
        };
        let _ = self.nginx(&self.conf()).args(["-s", "quit"]).output();
        let deadline = std::time::Instant::now() + grace;
        while crate::store::process_alive(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(25));
        }
        if crate::store::process_alive(pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    /// The per-slot counters, with the access log read up to now.
    pub fn stats(&mut self) -> (SlotStats, SlotStats) {
        self.drain_log();
        (self.stable.snapshot(), self.candidate.snapshot())
    }

    fn drain_log(&mut self) {
        let pid = self.running_pid();
        for line in self.log.read_lines(pid) {
            let Ok(e) = serde_json::from_str::<AccessEntry>(&line) else {
                continue;
            };
            let took = Duration::from_secs_f64(e.time.max(0.0));
            match e.slot.as_str() {
                "stable" => self.stable.record(e.status >= 500, took),
                "candidate" => self.candidate.record(e.status >= 500, took),
                _ => {}
            }
        }
    }
}

#[derive(serde::Deserialize)]
struct AccessEntry {
    slot: String,
    status: u16,
    time: f64,
}

/// The messages of what nginx printed tagged with one of `tags`, once
/// each, without timestamps or pids.
fn emerg_lines(text: &str, tags: &[&str]) -> String {
    let mut seen: Vec<String> = Vec::new();
    for l in text.lines() {
        let Some((tag, i)) = tags
            .iter()
            .find_map(|tag| l.find(tag).map(|i| (tag, i + tag.len())))
        else {
            continue;
        };
        // "[emerg] 7134#7134: bind() to …" → "[emerg] bind() to …"
        let rest = l[i..].trim_start();
        let rest = match rest.split_once(": ") {
            Some((pid, msg)) if pid.contains('#') => msg,
            _ => rest,
        };
        let picked = format!("{tag} {rest}");
        if !seen.contains(&picked) {
            seen.push(picked);
        }
    }
    seen.join("; ")
}

/// What nginx printed when it failed: its error messages, or all of it.
fn printed(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    match emerg_lines(&text, &["[emerg]", "[alert]", "[crit]", "[error]"]) {
        s if s.is_empty() => text.trim().to_owned(),
        s => s,
    }
}

fn read_from(path: &Path, offset: u64) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(path)
        && f.seek(SeekFrom::Start(offset)).is_ok()
    {
        let _ = f.read_to_string(&mut s);
    }
    s
}

/// Follows nginx's access log: complete lines only, and rotated (renamed,
/// then nginx asked to reopen with SIGUSR1) once it passes 16 MiB so it
/// never grows without bound.
struct LogTail {
    path: PathBuf,
    file: Option<std::fs::File>,
    pending: Vec<u8>,
    rotated: bool,
}

const ROTATE_AT: u64 = 16 << 20;

impl LogTail {
    fn new(path: PathBuf) -> LogTail {
        LogTail {
            path,
            file: None,
            pending: Vec::new(),
            rotated: false,
        }
    }

    fn read_lines(&mut self, master: Option<i64>) -> Vec<String> {
        use std::os::unix::fs::MetadataExt;
        if self.file.is_none() {
            // Start at the end: what came before this controller is history.
            let Ok(mut f) = std::fs::File::open(&self.path) else {
                return vec![];
            };
            let _ = f.seek(SeekFrom::End(0));
            self.file = Some(f);
        }
        let Some(f) = self.file.as_mut() else {
            return vec![];
        };
        let _ = f.read_to_end(&mut self.pending);
        let end = self
            .pending
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        let lines: Vec<String> = String::from_utf8_lossy(&self.pending[..end])
            .lines()
            .map(str::to_owned)
            .collect();
        self.pending.drain(..end);
        let held = f.metadata().ok();
        let at_path = std::fs::metadata(&self.path).ok();
        if self.rotated {
            // nginx reopened the log: finish the old file, then follow the new.
            if let (Some(h), Some(p)) = (&held, &at_path)
                && h.ino() != p.ino()
            {
                let _ = f.read_to_end(&mut self.pending);
                self.file = std::fs::File::open(&self.path).ok();
                self.rotated = false;
            }
        } else if held.is_some_and(|m| m.len() > ROTATE_AT)
            && let Some(pid) = master
        {
            let old = self.path.with_extension("json.old");
            if std::fs::rename(&self.path, &old).is_ok() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGUSR1,
                );
                self.rotated = true;
            }
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_messages_are_picked_out_without_timestamps() {
        let log = "2026/12/02 05:43:43 [notice] 7138#7138: signal process started\n\
                   2026/12/02 05:43:43 [emerg] 7134#7134: bind() to 127.0.0.1:18999 failed (98: Address already in use)\n\
                   2026/12/02 05:43:43 [emerg] 7134#7134: bind() to 127.0.0.1:18999 failed (98: Address already in use)\n";
        assert_eq!(
            emerg_lines(log, &["[emerg]"]),
            "[emerg] bind() to 127.0.0.1:18999 failed (98: Address already in use)"
        );
        assert_eq!(
            printed(b"nginx: [emerg] unknown directive \"x\" in /a/nginx.conf:3\n"),
            "[emerg] unknown directive \"x\" in /a/nginx.conf:3"
        );
    }
}
