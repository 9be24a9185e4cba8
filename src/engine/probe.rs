//! What the machine offers a routed target, asked before building one:
//! whether nginx is installed, and a free loopback port. Read only.

/// The nginx binary to run, or why there is none.
pub fn nginx() -> Result<std::path::PathBuf, String> {
    crate::deploy::nginx::find_binary()
}

/// A loopback port free right now.
pub fn free_port() -> std::io::Result<u16> {
    crate::deploy::backends::free_port()
}
