//! The workbench. One inbound channel carries terminal input, engine
//! events, store changes and effect answers; the loop awaits one, takes
//! everything else already queued, folds it all into the state with the
//! reducers, and draws at most every ~16 ms — a flood of step progress
//! never queues frames. The engine task owns the runs; the view never
//! blocks on I/O. The terminal is given back on every exit path, panics
//! included.

pub mod action;
pub mod data;
mod effects;
pub mod keymap;
pub mod panic;
pub mod reduce;
#[doc(hidden)]
pub mod sample;
pub mod state;
pub mod theme;
pub mod views;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{Local, Offset, Utc};
use ratatui::crossterm::event::{self as ct, Event as TermEvent, KeyEventKind, MouseEventKind};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::engine::EngineError;
use crate::workspace::Workspace;
use action::{Action, Screen};
use state::{App, Msg};

/// One inbound event: from the terminal, or a message for the reducers.
#[derive(Debug)]
pub enum Inbound {
    Term(TermEvent),
    Msg(Msg),
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// A built-in theme name or a theme file's path.
    pub theme: Option<String>,
    /// Your key: `a` approves with it, and it signs every action the
    /// workbench seals (without one: the operating-system account,
    /// unverified).
    pub key: Option<String>,
}

/// The user's config folder for stella: `$XDG_CONFIG_HOME/stella` or
/// `~/.config/stella`.
pub fn config_dir() -> Option<std::path::PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".config")))
        .map(|d| d.join("stella"))
}

/// A theme by name (built in, or `NAME.toml` in the config dir's
/// `themes/`) or by path; `NO_COLOR` respected.
pub fn load_theme(name: Option<&str>, ws: &Workspace) -> Result<theme::Theme, String> {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let name = name.unwrap_or("dark");
    if let Some(t) = theme::Theme::builtin(name, no_color) {
        return Ok(t);
    }
    let candidates = [
        std::path::PathBuf::from(name),
        ws.root().join("themes").join(format!("{name}.toml")),
    ]
    .into_iter()
    .chain(config_dir().map(|d| d.join("themes").join(format!("{name}.toml"))));
    for path in candidates {
        if let Ok(text) = std::fs::read_to_string(&path) {
            return theme::Theme::from_toml(&path.display().to_string(), &text, no_color);
        }
    }
    Err(format!(
        "no theme `{name}`: built in are {}; or give a theme file's path",
        theme::BUILTIN
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// The user's workbench settings: `config.toml` in the config dir. A flag
/// or variable given for the same setting wins.
#[derive(Debug, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// The theme to open with (`--theme`, `STELLA_THEME`).
    pub theme: Option<String>,
    /// The key `a` approves with (`--key`).
    pub key: Option<String>,
}

impl UserConfig {
    pub fn parse(text: &str, path: &str) -> Result<UserConfig, String> {
        toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start].matches('\n').count() + 1;
                    format!(":{line}")
                })
                .unwrap_or_default();
            format!("{path}{at}: {}; it takes `theme` and `key`", e.message())
        })
    }
}

/// The user's `config.toml`, if any; a bad one is reported (for the
/// status line) and ignored.
pub fn load_user_config() -> (UserConfig, Option<String>) {
    let Some(path) = config_dir().map(|d| d.join("config.toml")) else {
        return (UserConfig::default(), None);
    };
    match std::fs::read_to_string(&path) {
        Err(_) => (UserConfig::default(), None),
        Ok(text) => match UserConfig::parse(&text, &path.display().to_string()) {
            Ok(c) => (c, None),
            Err(e) => (UserConfig::default(), Some(format!("{e}; ignoring it"))),
        },
    }
}

/// The default keymap, with the user's `keymap.toml` merged over it.
pub fn load_keymap() -> (keymap::Keymap, Option<String>) {
    let Some(path) = config_dir().map(|d| d.join("keymap.toml")) else {
        return (keymap::Keymap::default_keys(), None);
    };
    match std::fs::read_to_string(&path) {
        Err(_) => (keymap::Keymap::default_keys(), None),
        Ok(text) => match keymap::Keymap::with_user(&text, &path.display().to_string()) {
            Ok(k) => (k, None),
            Err(e) => (
                keymap::Keymap::default_keys(),
                Some(format!("{e}; using the default keys")),
            ),
        },
    }
}

fn reload(ctx: &effects::Context) {
    let c = ctx.clone();
    tokio::task::spawn_blocking(move || {
        let m = match data::load(&c.ws, &c.config, Utc::now()) {
            Ok(s) => Msg::Snapshot(Box::new(s)),
            Err(e) => Msg::Error(format!("cannot read the store: {e}")),
        };
        let _ = c.tx.send(Inbound::Msg(m));
    });
}

/// Terminal input on its own thread (crossterm's reads block); it stops
/// when the workbench's channel closes.
fn spawn_input(tx: mpsc::UnboundedSender<Inbound>) {
    std::thread::spawn(move || {
        loop {
            match ct::poll(Duration::from_millis(100)) {
                Ok(true) => match ct::read() {
                    Ok(ev) => {
                        if tx.send(Inbound::Term(ev)).is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                },
                Ok(false) if tx.is_closed() => return,
                Ok(false) => {}
                Err(_) => return,
            }
        }
    });
}

/// Notices commits by any process (another engineer's CLI, this
/// workbench's engine) within a quarter second, via `PRAGMA data_version`.
fn spawn_watcher(ctx: effects::Context) {
    tokio::spawn(async move {
        let mut last = None;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let ws = ctx.ws.clone();
        let store = tokio::task::spawn_blocking(move || ws.read_store())
            .await
            .ok()
            .and_then(Result::ok);
        let Some(store) = store else { return };
        let store = Arc::new(std::sync::Mutex::new(store));
        loop {
            tick.tick().await;
            let s = store.clone();
            let v = tokio::task::spawn_blocking(move || s.lock().ok()?.data_version().ok())
                .await
                .ok()
                .flatten();
            if v.is_some() && v != last {
                if last.is_some() {
                    reload(&ctx);
                }
                last = v;
            }
            if ctx.tx.is_closed() {
                return;
            }
        }
    });
}

/// What a terminal event asks of the reducers.
fn term_event(app: &mut App, ev: TermEvent, width: u16) -> Vec<state::Effect> {
    match ev {
        TermEvent::Key(k) if k.kind != KeyEventKind::Release => reduce::key(app, k),
        // The "too small" screen shows nothing to click.
        TermEvent::Mouse(_) if app.too_small() => vec![],
        TermEvent::Mouse(m) => match m.kind {
            MouseEventKind::ScrollDown => reduce::act(app, Action::Down),
            MouseEventKind::ScrollUp => reduce::act(app, Action::Up),
            MouseEventKind::Down(ct::MouseButton::Left) if m.row == 0 => {
                match views::tab_spans(app, width)
                    .into_iter()
                    .find(|(_, x, w)| m.column >= *x && m.column < x + w)
                {
                    Some((s, _, _)) => reduce::act(app, Action::Screen(s)),
                    None => vec![],
                }
            }
            MouseEventKind::Down(ct::MouseButton::Left)
                if app.screen == Screen::Capsules && m.column < width / 2 && m.row >= 3 =>
            {
                let n = app.filtered_capsules().len();
                let i = (m.row - 3) as usize;
                if i < n {
                    app.capsule = i;
                }
                reduce::act(app, Action::Down)
                    .into_iter()
                    .chain(reduce::act(app, Action::Up))
                    .collect()
            }
            _ => vec![],
        },
        _ => vec![],
    }
}

/// Opens the workbench on a workspace until the user quits.
pub fn run(ws: Workspace, config: Config, opts: Options) -> Result<(), EngineError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| EngineError::error(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(async move {
        let (user, mut warnings) = load_user_config();
        // A theme asked for on the command line must exist; one from the
        // user's config falls back to the default, with a word.
        let theme = match (&opts.theme, &user.theme) {
            (Some(t), _) => load_theme(Some(t), &ws).map_err(EngineError::usage)?,
            (None, Some(t)) => load_theme(Some(t), &ws).unwrap_or_else(|e| {
                warnings = Some(format!("config.toml: {e}; using the dark theme"));
                load_theme(None, &ws).expect("the default theme is built in")
            }),
            (None, None) => load_theme(None, &ws).map_err(EngineError::usage)?,
        };
        let key = opts.key.clone().or(user.key);
        // Who the workbench acts as, proven once before the first frame.
        let asker = crate::engine::keys::Asker::from_key(key.clone());
        let (requested_by, key_problem) = match crate::engine::keys::prove(&ws, &asker) {
            Ok(p) => (p.requested_by(), None),
            Err(e) => (
                format!(
                    "{}{}",
                    crate::domain::requester::UNVERIFIED_PREFIX,
                    crate::engine::keys::os_account().1
                ),
                Some(format!(
                    "{e}; actions would be refused until --key names a key you hold"
                )),
            ),
        };
        let (keymap, keymap_warning) = load_keymap();
        // Opening changes nothing: promotions whose process died are
        // named before the first frame (`stella recover`, or the next
        // promotion or rollback, recovers them under their locks).
        let (snap, recovered) = {
            let (ws, config) = (ws.clone(), config.clone());
            tokio::task::spawn_blocking(move || {
                let snap = data::load(&ws, &config, Utc::now())?;
                let dead = data::interrupted(&ws).unwrap_or_else(|e| {
                    vec![format!("could not look for interrupted promotions: {e}")]
                });
                Ok::<_, EngineError>((snap, dead))
            })
            .await
            .map_err(EngineError::error)??
        };
        let local = Local::now().offset().fix();
        let mut app = App::new(snap, Utc::now(), local, keymap, theme);
        app.say(format!("acting as {requested_by}"));
        let said: Vec<String> = [keymap_warning, warnings, key_problem]
            .into_iter()
            .flatten()
            .chain(recovered)
            .collect();
        if !said.is_empty() {
            app.complain(said.join(" · "));
        }
        let (engine, mut events) = crate::engine::spawn(ws.clone(), config.clone());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let ctx = effects::Context {
            ws: ws.clone(),
            config: Arc::new(config),
            engine: engine.clone(),
            requested_by,
            asker,
            key,
            tx: tx.clone(),
        };
        {
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(ev) = events.recv().await {
                    if tx.send(Inbound::Msg(Msg::Engine(ev))).is_err() {
                        return;
                    }
                }
            });
        }
        {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut t = tokio::time::interval(Duration::from_secs(1));
                loop {
                    t.tick().await;
                    if tx.send(Inbound::Msg(Msg::Tick(Utc::now()))).is_err() {
                        return;
                    }
                }
            });
        }
        spawn_watcher(ctx.clone());

        let mut terminal = ratatui::init();
        let _ = ratatui::crossterm::execute!(std::io::stdout(), ct::EnableMouseCapture);
        let notify = tx.clone();
        let _hook = panic::install(std::thread::current().id(), move |m| {
            let _ = notify.send(Inbound::Msg(Msg::Error(m)));
        });
        spawn_input(tx.clone());

        let frame = Duration::from_millis(16);
        let mut last_draw = Instant::now() - frame;
        // Draw, then sleep until something arrives; what arrives within a
        // frame of the last draw waits for the next one, together.
        let result: Result<(), EngineError> = loop {
            let wait = frame.saturating_sub(last_draw.elapsed());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            while let Ok(ev) = rx.try_recv() {
                handle(
                    &ctx,
                    &mut app,
                    ev,
                    terminal.size().ok().map(|s| (s.width, s.height)),
                );
            }
            if app.quit {
                break Ok(());
            }
            if let Err(e) = terminal.draw(|f| views::render(f, &app)) {
                break Err(EngineError::error(format!("cannot draw: {e}")));
            }
            last_draw = Instant::now();
            let Some(ev) = rx.recv().await else {
                break Ok(());
            };
            handle(
                &ctx,
                &mut app,
                ev,
                terminal.size().ok().map(|s| (s.width, s.height)),
            );
            while let Ok(ev) = rx.try_recv() {
                handle(
                    &ctx,
                    &mut app,
                    ev,
                    terminal.size().ok().map(|s| (s.width, s.height)),
                );
            }
            if app.quit {
                break Ok(());
            }
        };
        let _ = ratatui::crossterm::execute!(std::io::stdout(), ct::DisableMouseCapture);
        ratatui::restore();
        drop(rx);
        // Runs still going are aborted and sealed before the process ends.
        let running = app.live.values().filter(|r| r.outcome.is_none()).count();
        if running > 0 {
            eprintln!("stopping {running} running promotion(s): aborting and sealing…");
        }
        engine.shutdown().await;
        result
    })
}

fn handle(ctx: &effects::Context, app: &mut App, ev: Inbound, size: Option<(u16, u16)>) {
    // A resize lands here too: the size is read before every event.
    if size.is_some() {
        app.size = size;
    }
    let width = size.map_or(0, |s| s.0);
    let effects = match ev {
        Inbound::Term(t) => term_event(app, t, width),
        Inbound::Msg(m) => reduce::reduce(app, m),
    };
    for e in effects {
        effects::run(ctx, app, e);
    }
}
