//! Running a user's command (a script target's hook, an existing nginx's
//! test and reload) with a time limit, its output captured.

use std::time::{Duration, Instant};

/// What a command printed (stdout, then stderr) and how it ended.
pub struct HookOutput {
    /// `None`: killed at the time limit.
    pub status: Option<std::process::ExitStatus>,
    pub output: String,
}

/// Runs `cmd` in its own process group, capturing stdout and stderr; past
/// `limit` the whole group is killed, children included.
pub fn run_with_timeout(
    mut cmd: std::process::Command,
    limit: Duration,
) -> std::io::Result<HookOutput> {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    let mut child = cmd
        .process_group(0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut b);
            }
            b
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Whatever the hook left running in its group goes with it.
    let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
    if status.is_none() {
        let _ = child.wait();
    }
    let mut output = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
    output.push_str(&String::from_utf8_lossy(&err.join().unwrap_or_default()));
    Ok(HookOutput { status, output })
}
