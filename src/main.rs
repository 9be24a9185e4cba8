#![forbid(unsafe_code)]

/// Whether a panic is `println!` finding stdout closed (`stella … | head`).
fn is_broken_pipe(payload: &(dyn std::any::Any + Send)) -> bool {
    let message = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or_default();
    message.starts_with("failed printing to stdout") && message.contains("os error 32")
}

fn main() -> std::process::ExitCode {
    // The policy evaluator: stella itself, in a bounded child process.
    if std::env::args_os().nth(1).as_deref() == Some(stella::gates::policy::CHILD_ARG.as_ref()) {
        return std::process::ExitCode::from(stella::gates::policy::child_main());
    }
    if let Ok(me) = std::env::current_exe() {
        stella::gates::policy::isolate_with(me);
    }
    // A reader that stops early (`stella status | head -1`) ends the
    // command quietly with 141, the code of a command ended by SIGPIPE: not
    // 0, since the verdict the command was printing (a forged capsule, a
    // blocked gate) was never finished, and a pipeline under `pipefail`
    // must not read that as success. Any other panic is reported as before.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !is_broken_pipe(info.payload()) {
            default_hook(info);
        }
    }));
    let (cli, json) = match stella::cli::parse(std::env::args_os()) {
        Ok(parsed) => parsed,
        Err(code) => return std::process::ExitCode::from(code),
    };
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        stella::cli::run_with(cli, json)
    }));
    // Policy workers are stopped and reaped, not left to notice stdin close.
    stella::gates::policy::shutdown();
    match ran {
        Ok(code) => std::process::ExitCode::from(code),
        Err(payload) if is_broken_pipe(payload.as_ref()) => {
            std::process::ExitCode::from(stella::cli::exit::BROKEN_PIPE)
        }
        Err(payload) => std::panic::resume_unwind(payload),
    }
}
