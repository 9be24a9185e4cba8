//! The policy evaluator as its own small program: what `stella` starts to
//! evaluate Rego under a memory and time bound (see `gates::policy`). It
//! links little besides regorus, so it starts in a fraction of the time
//! the whole `stella` binary takes. Not meant to be run by hand.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(stella::gates::policy::child_main())
}
