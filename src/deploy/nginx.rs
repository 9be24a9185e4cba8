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
//! An nginx stella does not run (the target's `nginx = { conf_dir, … }`)
//! gets only the target's part of an `http` block, as
//! `CONF_DIR/stella-TARGET.conf`: renamed into place, checked with the
//! operator's `test` command, applied with their `reload`, confirmed the
//! same way, and put back on any failure.
//!
//! Unforced requests split by weight with `split_clients` on the
//! request's random id; the `X-Stella-Variant` header or the
//! `stella-variant` cookie forces a slot through a `map`. Each slot is an
//! internal location — its release's files, or a proxy to its process —
//! so nginx never proxies to itself. A JSON access log says which slot
//! and which release answered, with what status and in how long; the
//! controller tails it into the same per-release counters the built-in
//! router keeps (a request a retiring worker answered after a swap is
//! credited to the release that config named), so the canary's analysis
//! reads one format whichever router serves.

use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::collections::BTreeMap;

use super::router::{Backend, Routes, Slot, SlotStats, Tally};
use crate::domain::Digest;

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
    mode: Mode,
    /// What the config's names start with: `stella` in stella's own
    /// nginx, `stella_TARGET` in a shared one, so targets never collide.
    ns: String,
    listen: SocketAddr,
    target: String,
    log: LogTail,
    tally: Tally,
    /// The master's pid once nginx runs: it is stopped by this even when
    /// its pid file went with a deleted workspace.
    master: Option<i64>,
}

/// Whose nginx serves the target.
enum Mode {
    /// stella's own, under the prefix. As root, its workers run as
    /// `worker`, never as root; `root` is the workspace.
    Owned {
        binary: PathBuf,
        worker: Option<Worker>,
        root: PathBuf,
    },
    /// One stella does not run, whose `http` block includes `file`'s
    /// directory; checked and reloaded with the user's commands.
    Existing {
        file: PathBuf,
        test: String,
        reload: String,
        /// nginx's error log, read for why a reload did not take.
        error_log: Option<PathBuf>,
        /// Where the commands run: the workspace.
        root: PathBuf,
    },
}

/// The unprivileged user nginx's workers run as when stella is root:
/// `www-data` (Debian's web user), else `nobody`, as this machine's user
/// database has them, with its primary group.
#[derive(Debug, Clone)]
struct Worker {
    user: String,
    group: String,
}

impl Worker {
    fn find() -> Result<Worker, String> {
        for name in ["www-data", "nginx", "nobody"] {
            if let Ok(Some(u)) = nix::unistd::User::from_name(name) {
                let group = match nix::unistd::Group::from_gid(u.gid) {
                    Ok(Some(g)) => g.name,
                    _ => u.gid.to_string(),
                };
                return Ok(Worker {
                    user: u.name,
                    group,
                });
            }
        }
        Err("stella runs as root and found no unprivileged user for nginx's workers (`www-data`, `nginx` or `nobody`); create one, or run stella as an unprivileged user".to_owned())
    }

    /// Makes what the workers must reach searchable by them (`o+x`, not
    /// readable): the folders from the workspace down to each release
    /// served, and to the prefix's temp paths. Folders above the
    /// workspace are not changed; one the workers cannot search is an
    /// error naming it.
    fn grant(&self, root: &Path, prefix: &Path, routes: &Routes) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        let mut chains: Vec<PathBuf> = vec![prefix.join("temp"), prefix.join("logs")];
        for b in [&routes.stable, &routes.candidate].into_iter().flatten() {
            if let Backend::Static(dir) = b {
                chains.push(dir.clone());
            }
        }
        for above in root.ancestors().skip(1) {
            if let Ok(m) = std::fs::metadata(above)
                && m.permissions().mode() & 0o001 == 0
            {
                return Err(format!(
                    "nginx's workers run as `{}` (stella runs as root) and cannot reach the workspace: {} is not searchable by other users; `chmod o+x` it, or run stella as an unprivileged user",
                    self.user,
                    above.display()
                ));
            }
        }
        for end in chains {
            let Ok(rel) = end.strip_prefix(root) else {
                continue;
            };
            let mut cur = root.to_path_buf();
            for c in std::iter::once(None).chain(rel.components().map(Some)) {
                if let Some(c) = c {
                    cur.push(c);
                }
                let Ok(m) = std::fs::symlink_metadata(&cur) else {
                    break;
                };
                let mode = m.permissions().mode();
                if m.is_dir() && mode & 0o001 == 0 {
                    std::fs::set_permissions(&cur, std::fs::Permissions::from_mode(mode | 0o001))
                        .map_err(|e| format!("{}: {e}", cur.display()))?;
                }
            }
        }
        Ok(())
    }
}

/// How long an existing nginx's `test` or `reload` command may take.
const COMMAND_LIMIT: Duration = Duration::from_secs(30);

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl Nginx {
    /// stella's own nginx for `target`, or with `existing`, the nginx
    /// that config names.
    pub fn new(
        root: &Path,
        target: &str,
        listen: SocketAddr,
        existing: Option<&crate::config::ExistingNginx>,
    ) -> Result<Nginx, String> {
        let prefix = prefix_dir(root, target);
        for d in ["logs", "temp"] {
            std::fs::create_dir_all(prefix.join(d))
                .map_err(|e| format!("{}: {e}", prefix.join(d).display()))?;
        }
        let (mode, ns) = match existing {
            None => (
                Mode::Owned {
                    binary: find_binary()?,
                    worker: if nix::unistd::geteuid().is_root() {
                        Some(Worker::find()?)
                    } else {
                        None
                    },
                    root: root.to_owned(),
                },
                "stella".to_owned(),
            ),
            Some(x) => {
                let dir = root.join(x.conf_dir.get_ref());
                if !dir.is_dir() {
                    return Err(format!(
                        "target `{target}`: nginx's conf_dir {} is not a directory; create it and include it in nginx's `http` block (`include {}/*.conf;`)",
                        dir.display(),
                        dir.display()
                    ));
                }
                let ns: String = target
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                (
                    Mode::Existing {
                        file: dir.join(format!("stella-{target}.conf")),
                        test: x.test.clone().unwrap_or_else(|| "nginx -t".into()),
                        reload: x.reload.clone().unwrap_or_else(|| "nginx -s reload".into()),
                        error_log: x.error_log.as_ref().map(|e| root.join(e)),
                        root: root.to_owned(),
                    },
                    format!("stella_{ns}"),
                )
            }
        };
        Ok(Nginx {
            log: LogTail::new(prefix.join("logs/access.json")),
            prefix,
            mode,
            ns,
            listen,
            target: target.to_owned(),
            tally: Tally::default(),
            master: None,
        })
    }

    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    pub fn conf(&self) -> PathBuf {
        self.prefix.join("nginx.conf")
    }

    /// The config for `routes`: a whole one for stella's own nginx, the
    /// part an existing nginx's `http` block includes otherwise.
    pub fn render(&self, routes: &Routes) -> String {
        let p = |rel: &str| quote(&self.prefix.join(rel).display().to_string());
        let mut c = String::new();
        let _ = writeln!(
            c,
            "# Written by stella for target `{}`, routes version {}.\n\
             # Do not edit: stella rewrites it on every change.",
            self.target, routes.version
        );
        if let Mode::Existing { .. } = self.mode {
            c.push_str(&self.render_http(routes));
            return c;
        }
        // Workers run as whoever runs stella, or, when that is root, as an
        // unprivileged user (`Worker`): never as root.
        if let Mode::Owned {
            worker: Some(w), ..
        } = &self.mode
        {
            let _ = writeln!(c, "user {} {};", w.user, w.group);
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
        c.push_str(&self.render_http(routes));
        c.push_str("}\n");
        c
    }

    /// What the target adds to an `http` block: the log format, the
    /// split, the forcing maps, the upstreams and the server.
    fn render_http(&self, routes: &Routes) -> String {
        let ns = &self.ns;
        let mut c = String::new();
        let _ = writeln!(
            c,
            "  log_format {ns} escape=json '{{\"slot\":\"${ns}_slot\",\"release\":\"${ns}_release\",\"status\":$status,\"time\":$request_time}}';"
        );
        // Which release each slot serves, logged so counters are kept
        // per release.
        let _ = writeln!(
            c,
            "  map ${ns}_slot ${ns}_release {{\n    stable \"{}\";\n    candidate \"{}\";\n    default \"\";\n  }}",
            routes
                .stable_release
                .as_ref()
                .map_or(String::new(), |d| d.to_string()),
            routes
                .candidate_release
                .as_ref()
                .map_or(String::new(), |d| d.to_string()),
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
        let _ = writeln!(c, "  split_clients \"${{request_id}}\" ${ns}_split {{");
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
        let _ = writeln!(
            c,
            "  map $http_cookie ${ns}_cookie {{\n    \"~(?:^|;)\\s*stella-variant=(?<v>[^;\\s]+)\" $v;\n    default \"\";\n  }}"
        );
        let _ = writeln!(
            c,
            "  map \"$http_x_stella_variant:${ns}_cookie\" ${ns}_slot {{\n    default ${ns}_split;\n    \"~*^(stable|a):\" {s};\n    \"~*^(candidate|b):\" {k};\n    \"~*^:(stable|a)$\" {s};\n    \"~*^:(candidate|b)$\" {k};\n  }}",
            s = name(stable, "stable"),
            k = name(candidate, "candidate"),
        );
        // A/B: a client the split assigned (no cookie yet) is told its
        // variant, and keeps it.
        let _ = writeln!(
            c,
            "  map \"$http_x_stella_variant${ns}_cookie\" ${ns}_assign {{\n    \"\" {};\n    default \"\";\n  }}",
            if routes.sticky {
                format!("\"stella-variant=${ns}_ab; Path=/\"")
            } else {
                "\"\"".to_owned()
            }
        );
        let _ = writeln!(
            c,
            "  map ${ns}_slot ${ns}_ab {{\n    stable a;\n    candidate b;\n    default \"\";\n  }}"
        );
        // Feature flags: a percentage is decided per client address.
        let mut flags = Vec::new();
        for (i, (name, value)) in routes.flags.iter().enumerate() {
            let v = match value.as_str() {
                "on" | "off" => value.clone(),
                pct => {
                    let n: u8 = pct.trim_end_matches('%').parse().unwrap_or(0);
                    let _ = writeln!(
                        c,
                        "  split_clients \"${{remote_addr}}/{name}\" ${ns}_flag_{i} {{\n    {}\n  }}",
                        match n {
                            0 => "* off;".to_owned(),
                            100.. => "* on;".to_owned(),
                            n => format!("{n}% on;\n    * off;"),
                        }
                    );
                    format!("${ns}_flag_{i}")
                }
            };
            flags.push(format!("{name}={v}"));
        }
        let flags_header = flags.join("; ");
        for (slot, b) in [("stable", stable), ("candidate", candidate)] {
            if let Some(Backend::Http(a)) = b {
                let _ = writeln!(c, "  upstream {ns}_{slot} {{ server {a}; keepalive 16; }}");
            }
        }
        let _ = writeln!(
            c,
            "  server {{\n    listen {};\n    add_header X-Stella-Routes {} always;\n    add_header X-Stella-Slot ${ns}_slot always;\n    add_header Set-Cookie ${ns}_assign always;\n    access_log {} {ns};\n    location / {{\n      if (${ns}_slot = none) {{ return 503 \"no release is routed here\\n\"; }}\n      rewrite ^ /.stella-slot/${ns}_slot$uri last;\n    }}",
            self.listen,
            routes.version,
            quote(&self.prefix.join("logs/access.json").display().to_string()),
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
                    // Links inside the release (same owner as the files
                    // stella unpacked) are followed; one to a file another
                    // user owns is refused (defence in depth: the unpacker
                    // already refuses links that lead out). As root, what
                    // stella unpacks is root's, like most of the system, so
                    // "same owner" would let a link reach any file the
                    // workers can read: no link is followed then.
                    let links = if nix::unistd::geteuid().is_root() {
                        "on"
                    } else {
                        "if_not_owner from=$document_root"
                    };
                    let _ = writeln!(
                        c,
                        "      alias {};\n      index index.html;\n      disable_symlinks {links};",
                        quote(&format!("{}/", dir.display()))
                    );
                }
                Backend::Http(_) => {
                    let _ = writeln!(
                        c,
                        "      proxy_pass http://{ns}_{slot}/;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_set_header Host $http_host;\n      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n      proxy_set_header X-Stella-Flags {};\n      proxy_connect_timeout 5s;",
                        quote(&flags_header)
                    );
                }
            }
            c.push_str("    }\n");
        }
        c.push_str("  }\n");
        c
    }

    /// stella's own nginx binary, run on its prefix with `conf`.
    fn nginx(&self, binary: &Path, conf: &Path) -> std::process::Command {
        let mut cmd = std::process::Command::new(binary);
        cmd.arg("-p")
            .arg(&self.prefix)
            .arg("-c")
            .arg(conf)
            .arg("-e")
            .arg(self.prefix.join("logs/error.log"))
            .stdin(std::process::Stdio::null());
        cmd
    }

    /// The master pid of stella's own nginx, if it runs.
    pub fn running_pid(&self) -> Option<i64> {
        if let Mode::Existing { .. } = self.mode {
            return None;
        }
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
        match &self.mode {
            Mode::Owned {
                binary,
                worker,
                root,
            } => {
                if let Some(w) = worker {
                    w.grant(root, &self.prefix, routes)?;
                }
                let binary = binary.clone();
                self.apply_owned(&binary, routes).await
            }
            Mode::Existing {
                file,
                test,
                reload,
                error_log,
                root,
            } => {
                let file = file.clone();
                let errors = error_log.clone();
                let test = Shell::new(test, root);
                let reload = Shell::new(reload, root);
                self.apply_existing(&file, &test, &reload, errors.as_deref(), routes)
                    .await
            }
        }
    }

    async fn apply_owned(&mut self, binary: &Path, routes: &Routes) -> Result<(), String> {
        let text = self.render(routes);
        let next = self.prefix.join("nginx.conf.next");
        std::fs::write(&next, &text).map_err(|e| format!("{}: {e}", next.display()))?;
        let out = self
            .nginx(binary, &next)
            .arg("-t")
            .output()
            .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
        if !out.status.success() {
            return Err(format!(
                "nginx refused the config for routes {} ({}): {}; the previous config keeps serving",
                routes.version,
                next.display(),
                printed(&out.stderr)
            ));
        }
        let conf = self.conf();
        let kept = Kept::replace(&next, &conf, self.prefix.join("nginx.conf.prev"))?;
        let errors = self.prefix.join("logs/error.log");
        let seen = std::fs::metadata(&errors).map_or(0, |m| m.len());
        let master = self.master_pid();
        let out = match master {
            // A graceful reload is SIGHUP to the master (`nginx -s reload`
            // without the extra process).
            Some(pid) => {
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGHUP,
                )
                .map_err(|e| {
                    kept.undo(format!("cannot signal nginx (pid {pid}) to reload: {e}"))
                })?;
                None
            }
            None => Some(
                self.nginx(binary, &conf)
                    .output()
                    .map_err(|e| kept.undo(format!("cannot run {}: {e}", binary.display())))?,
            ),
        };
        if let Some(out) = out.filter(|o| !o.status.success()) {
            return Err(kept.undo(format!(
                "nginx could not start with routes {}: {}",
                routes.version,
                printed(&out.stderr)
            )));
        }
        // Its pid, kept: the pid file may go with a deleted workspace.
        if let Some(pid) = self.running_pid() {
            self.master = Some(pid);
        }
        let why = match confirm(self.listen, routes.version, Some(&errors), seen).await {
            Ok(()) => return Ok(()),
            Err(why) => why,
        };
        Err(kept.undo(format!(
            "nginx did not take routes {}: {why}; it keeps serving the previous config",
            routes.version
        )))
    }

    /// An existing nginx: the target's file goes into its conf dir, then
    /// the user's `test` and `reload` run; any failure puts the previous
    /// file back (reloading again if nginx may have taken the new one).
    async fn apply_existing(
        &mut self,
        file: &Path,
        test: &Shell,
        reload: &Shell,
        errors: Option<&Path>,
        routes: &Routes,
    ) -> Result<(), String> {
        let v = routes.version;
        // A dot name: no include glob (`*.conf`, `*`) picks it up.
        let next = hidden_beside(file, "next");
        std::fs::write(&next, self.render(routes)).map_err(|e| {
            format!(
                "cannot write {}: {e}; stella needs write access to nginx's conf_dir",
                next.display()
            )
        })?;
        let kept = Kept::replace(&next, file, self.prefix.join("existing.conf.prev"))?;
        if let Err(e) = test.run() {
            return Err(kept.undo(format!(
                "nginx refused the config for routes {v} ({}): {e}; the previous config is back in place and keeps serving",
                file.display()
            )));
        }
        let seen = errors
            .and_then(|e| std::fs::metadata(e).ok())
            .map_or(0, |m| m.len());
        if let Err(e) = reload.run() {
            return Err(kept.undo(format!(
                "nginx could not reload routes {v}: {e}; the previous config is back in place"
            )));
        }
        match confirm(self.listen, v, errors, seen).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let why = kept.undo(format!(
                    "nginx did not take routes {v} after `{}`: {e}; stella put the previous config back and reloaded, so it keeps serving the previous config{}",
                    reload.command,
                    if errors.is_none() { " (nginx's error log says why; set `error_log` on the target for stella to read it)" } else { "" }
                ));
                let _ = reload.run();
                Err(why)
            }
        }
    }

    /// Stops serving the target: stella's own nginx quits gracefully
    /// (SIGQUIT to its master, waiting up to `grace`, then SIGKILL to its
    /// process group, workers included) — found by the pid it had when
    /// started if its pid file is gone with the workspace; an existing
    /// nginx loses the target's file and is reloaded.
    pub fn stop(&self, grace: Duration) {
        if let Mode::Existing {
            file, reload, root, ..
        } = &self.mode
        {
            if std::fs::remove_file(file).is_ok() {
                let _ = Shell::new(reload, root).run();
            }
            return;
        }
        if let Some(pid) = self.master_pid() {
            quit_master(pid, grace);
        }
    }

    /// The master of stella's own nginx: from its pid file, or the one
    /// this front started when the file is gone.
    fn master_pid(&self) -> Option<i64> {
        self.running_pid().or(self
            .master
            .filter(|p| crate::store::process_alive(*p) && is_nginx(*p)))
    }

    /// Stops an nginx of this target's prefix that no controller runs (its
    /// controller was killed): a new controller starts its own. Returns
    /// its pid.
    pub fn stop_orphan(&self, grace: Duration) -> Option<i64> {
        let pid = self.running_pid().filter(|p| is_nginx(*p))?;
        quit_master(pid, grace);
        Some(pid)
    }

    /// Every release's counters, with the access log read up to now.
    pub fn stats(&mut self) -> BTreeMap<Digest, SlotStats> {
        self.drain_log();
        self.tally.snapshot()
    }

    fn drain_log(&mut self) {
        let pid = self.running_pid();
        let mode = &self.mode;
        // After the log is renamed, nginx is asked to open a new one.
        let reopen = || match (mode, pid) {
            (Mode::Owned { .. }, Some(pid)) => nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGUSR1,
            )
            .is_ok(),
            (Mode::Existing { reload, root, .. }, _) => Shell::new(reload, root).run().is_ok(),
            _ => false,
        };
        for line in self.log.read_lines(reopen) {
            let Ok(e) = serde_json::from_str::<AccessEntry>(&line) else {
                continue;
            };
            let took = Duration::from_secs_f64(e.time.max(0.0));
            let error = e.status >= 500;
            match (e.release.parse::<Digest>(), e.slot.as_str()) {
                (Ok(d), _) => self.tally.release(&d).record(error, took),
                (Err(_), "stable") => self.tally.unnamed(Slot::Stable).record(error, took),
                (Err(_), "candidate") => self.tally.unnamed(Slot::Candidate).record(error, took),
                _ => {}
            }
        }
    }
}

#[derive(serde::Deserialize)]
struct AccessEntry {
    slot: String,
    #[serde(default)]
    release: String,
    status: u16,
    time: f64,
}

/// Whether `pid` runs nginx: a pid file left behind may name a reused pid.
fn is_nginx(pid: i64) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| String::from_utf8_lossy(&c).contains("nginx"))
}

/// SIGQUIT to an nginx master (a graceful stop: workers finish their
/// requests), then after `grace` SIGKILL to its process group — nginx's
/// master leads one with its workers — or to it alone if it leads none.
fn quit_master(pid: i64, grace: Duration) {
    use nix::sys::signal::{Signal, kill, killpg};
    let p = nix::unistd::Pid::from_raw(pid as i32);
    let _ = kill(p, Signal::SIGQUIT);
    let deadline = std::time::Instant::now() + grace;
    while crate::store::process_alive(pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if nix::unistd::getpgid(Some(p)).is_ok_and(|g| g == p) {
        let _ = killpg(p, Signal::SIGKILL);
    } else if crate::store::process_alive(pid) {
        let _ = kill(p, Signal::SIGKILL);
    }
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

/// Waits until the listener answers with routes `version` (up to 5 s,
/// or 10 s when nginx's error log is unknown); with the log, fails as
/// soon as nginx logs (after byte `seen`) why it kept the old config.
async fn confirm(
    listen: SocketAddr,
    version: u64,
    errors: Option<&Path>,
    seen: u64,
) -> Result<(), String> {
    let within = Duration::from_secs(if errors.is_some() { 5 } else { 10 });
    let deadline = std::time::Instant::now() + within;
    let logged = || {
        errors.map_or(String::new(), |e| {
            emerg_lines(&read_from(e, seen), &["[emerg]", "[alert]"])
        })
    };
    let size = |len: u64| {
        errors
            .and_then(|e| std::fs::metadata(e).ok())
            .map_or(len, |m| m.len())
    };
    loop {
        let step = Duration::from_millis(100);
        match super::routed::wait_live(listen, version, step, None).await {
            Ok(()) => return Ok(()),
            Err(_) if !logged().is_empty() => {
                // nginx retries a failed bind every 500 ms before it
                // gives up: wait until it has, so what it logs is
                // reported here, not taken for the next change's.
                let mut len = size(0);
                let give_up = std::time::Instant::now() + Duration::from_secs(5);
                while std::time::Instant::now() < give_up {
                    tokio::time::sleep(Duration::from_millis(700)).await;
                    let now = size(len);
                    if now == len {
                        break;
                    }
                    len = now;
                }
                return Err(logged());
            }
            Err(e) if std::time::Instant::now() >= deadline => return Err(e),
            Err(_) => {}
        }
    }
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

/// A config file replaced by a new one, the old kept aside until the new
/// one is known to serve.
struct Kept {
    path: PathBuf,
    prev: PathBuf,
    had: bool,
}

impl Kept {
    /// Renames `next` over `path`, a copy of what was there kept at `prev`.
    fn replace(next: &Path, path: &Path, prev: PathBuf) -> Result<Kept, String> {
        let had = path.exists();
        if had {
            std::fs::copy(path, &prev).map_err(|e| format!("{}: {e}", prev.display()))?;
        }
        std::fs::rename(next, path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Kept {
            path: path.to_owned(),
            prev,
            had,
        })
    }

    /// Puts the old file back (atomically), or removes the new one if
    /// there was none; passes `why` through.
    fn undo(&self, why: String) -> String {
        if self.had {
            let back = hidden_beside(&self.path, "prev");
            if std::fs::copy(&self.prev, &back).is_ok() {
                let _ = std::fs::rename(&back, &self.path);
            }
        } else {
            let _ = std::fs::remove_file(&self.path);
        }
        why
    }
}

/// `.NAME.what` beside `path`: same filesystem, so a rename is atomic,
/// and hidden from nginx's include globs.
fn hidden_beside(path: &Path, what: &str) -> PathBuf {
    let name = path
        .file_name()
        .map_or("stella".into(), |n| n.to_string_lossy());
    path.with_file_name(format!(".{name}.{what}"))
}

/// An existing nginx's `test` or `reload` command, run with `sh -c` from
/// the workspace, at most 30 s.
struct Shell {
    command: String,
    root: PathBuf,
}

impl Shell {
    fn new(command: &str, root: &Path) -> Shell {
        Shell {
            command: command.to_owned(),
            root: root.to_owned(),
        }
    }

    /// An error is what the command printed, nginx's own messages first.
    fn run(&self) -> Result<(), String> {
        let command = &self.command;
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c")
            .arg(command)
            .current_dir(&self.root)
            .stdin(std::process::Stdio::null());
        let out = super::hook::run_with_timeout(cmd, COMMAND_LIMIT)
            .map_err(|e| format!("cannot run `{command}`: {e}"))?;
        match out.status {
            Some(s) if s.success() => Ok(()),
            Some(s) => Err(format!(
                "`{command}` failed ({}): {}",
                s.code().map_or("killed".into(), |c| format!("exit {c}")),
                printed(out.output.as_bytes())
            )),
            None => Err(format!(
                "`{command}` did not finish within {}s and was killed",
                COMMAND_LIMIT.as_secs()
            )),
        }
    }
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

    fn read_lines(&mut self, reopen: impl FnOnce() -> bool) -> Vec<String> {
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
        } else if held.is_some_and(|m| m.len() > ROTATE_AT) {
            let old = self.path.with_extension("json.old");
            if std::fs::rename(&self.path, &old).is_ok() {
                if reopen() {
                    self.rotated = true;
                } else {
                    // Nobody to reopen it: keep following the file nginx holds.
                    let _ = std::fs::rename(&old, &self.path);
                }
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
