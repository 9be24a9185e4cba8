//! What a panic does to the workbench. On the thread that draws, the
//! terminal is given back first — mouse capture off, the main screen back,
//! the cursor shown, raw mode off — and only then is the panic printed, so
//! the message lands on a usable terminal. The process then ends; work it
//! was running stays in the store as running under a lock held by a dead
//! process, which the existing crash recovery marks interrupted and puts
//! back on the next start, as after `kill -9`.
//!
//! A panic on another thread (a background load, a spawned task) does not
//! end the workbench: printing it over the screen, or giving the terminal
//! back under a loop that keeps drawing, would wreck both. It is written
//! to the log and reported in the status line instead.

use std::io::Write;
use std::panic::PanicHookInfo;
use std::thread::ThreadId;

use ratatui::crossterm::{cursor, event, execute, terminal};

/// Gives the terminal back: mouse capture off, the main screen, the
/// cursor, and cooked mode. Safe to call twice, or when nothing was taken.
pub fn restore_terminal(out: &mut impl Write) -> std::io::Result<()> {
    execute!(
        out,
        event::DisableMouseCapture,
        terminal::LeaveAlternateScreen,
        cursor::Show
    )?;
    out.flush()?;
    terminal::disable_raw_mode()
}

/// The panic's message and where it happened, in one line.
pub fn describe(info: &PanicHookInfo<'_>) -> String {
    let payload = info.payload();
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into());
    match info.location() {
        Some(l) => format!("{what} at {}:{}", l.file(), l.line()),
        None => what,
    }
}

/// What the hook does for a panic, given whether it happened on the
/// drawing thread: `true` when the previous hook (which prints it) should
/// run after the terminal was restored on `out`.
pub fn on_panic(out: &mut impl Write, on_ui_thread: bool) -> bool {
    if on_ui_thread {
        let _ = restore_terminal(out);
    }
    on_ui_thread
}

type Hook = Box<dyn Fn(&PanicHookInfo<'_>) + Send + Sync + 'static>;

/// Puts the hook that was there before back when the workbench is done.
pub struct Installed {
    previous: std::sync::Arc<Hook>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        let previous = self.previous.clone();
        std::panic::set_hook(Box::new(move |info| previous(info)));
    }
}

/// Installs the hook for the workbench drawing on `ui`, until the
/// returned guard drops. `report` hears of panics on other threads (the
/// status line).
pub fn install(ui: ThreadId, report: impl Fn(String) + Send + Sync + 'static) -> Installed {
    let previous = std::sync::Arc::new(std::panic::take_hook());
    let prev = previous.clone();
    std::panic::set_hook(Box::new(move |info| {
        let here = std::thread::current().id() == ui;
        if on_panic(&mut std::io::stdout(), here) {
            prev(info);
        } else {
            let what = describe(info);
            tracing::error!("panic in a background thread: {what}");
            report(format!(
                "internal error in a background task: {what} (logged; the workbench keeps running)"
            ));
        }
    }));
    Installed { previous }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On the drawing thread the terminal is given back (main screen,
    /// cursor, no mouse) before the panic is printed; elsewhere the screen
    /// is left alone and nothing is printed over it.
    #[test]
    fn a_panic_on_the_drawing_thread_gives_the_terminal_back_first() {
        let mut out = Vec::new();
        assert!(on_panic(&mut out, true));
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.contains("\x1b[?1049l"),
            "leaves the alternate screen: {s:?}"
        );
        assert!(s.contains("\x1b[?25h"), "shows the cursor: {s:?}");
        assert!(
            s.contains("\x1b[?1000l"),
            "stops capturing the mouse: {s:?}"
        );

        let mut out = Vec::new();
        assert!(!on_panic(&mut out, false));
        assert!(out.is_empty());
    }
}
