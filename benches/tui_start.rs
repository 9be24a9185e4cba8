//! The workbench's start on a 100,000-capsule store: open the workspace,
//! load everything the screens show, build the state and draw the first
//! frame; then one history page; and the process's peak RSS. A bench
//! binary, not criterion: start-up happens once per process.
//!
//!     cargo bench --bench tui_start

#[path = "support/store100k.rs"]
mod store100k;

use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use stella::store::CapsuleFilter;
use stella::tui::{data, keymap::Keymap, state::App, theme::Theme, views};
use stella::workspace::Workspace;

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let (store, _) = store100k::ensure();
    // A workspace around the store: its config, and the store linked in.
    let dir = store.parent().unwrap().join("tui-workspace");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join(".stella")).unwrap();
    std::fs::write(
        dir.join("stella.toml"),
        "[workspace]\nname = \"bench\"\n\n[apps.api]\nimage = \"oci-layout:images/api\"\n\n\
         [environments.dev]\n\n[environments.staging]\nfrom = \"dev\"\n\n[environments.prod]\nfrom = \"staging\"\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(&store, dir.join(".stella/stella.db")).unwrap();
    let before = peak_rss_kib();

    let mut starts = Vec::new();
    let mut pages = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let ws = Workspace::at(dir.clone());
        let config = ws.load_config().unwrap();
        let snap = data::load(&ws, &config, chrono::Utc::now()).unwrap();
        assert_eq!(snap.capsule_count, store100k::N as i64);
        let app = App::new(
            snap,
            chrono::Utc::now(),
            chrono::FixedOffset::east_opt(0).unwrap(),
            Keymap::default_keys(),
            Theme::dark(),
        );
        let mut term = Terminal::new(TestBackend::new(120, 40)).unwrap();
        term.draw(|f| views::render(f, &app)).unwrap();
        starts.push(t.elapsed());

        let s = ws.open_store().unwrap();
        let t = Instant::now();
        let page = s
            .capsules_page(
                &CapsuleFilter {
                    environment: Some("staging".into()),
                    ..Default::default()
                },
                data::PAGE,
            )
            .unwrap();
        pages.push(t.elapsed());
        assert_eq!(page.len(), data::PAGE);
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    println!(
        "workbench start on {} capsules (open, load every screen's data, first frame): median {:.1} ms",
        store100k::N,
        median(&mut starts).as_secs_f64() * 1e3
    );
    println!(
        "history page ({} capsules of one environment, newest first): median {:.2} ms",
        data::PAGE,
        median(&mut pages).as_secs_f64() * 1e3
    );
    println!(
        "peak RSS: {} MiB{}",
        peak_rss_kib() / 1024,
        if before > 64 * 1024 {
            " (this run also built the store: rerun for the workbench's own figure)"
        } else {
            ""
        }
    );
}
