//! A deterministic taste of what the fuzz targets do: every parser, fed
//! truncated and byte-flipped versions of the seed corpus, returns a
//! result — never a panic.

use std::path::Path;

use stella::scan::{self, Format};

const FORMATS: [Format; 5] = [
    Format::Trivy,
    Format::Grype,
    Format::Sarif,
    Format::CycloneDx,
    Format::OpenVex,
];

#[test]
fn mangled_reports_are_errors_not_panics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scan");
    let mut inputs = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let seed = std::fs::read(entry.unwrap().path()).unwrap();
        let mut variants: Vec<Vec<u8>> = (0..seed.len())
            .step_by(7)
            .map(|n| seed[..n].to_vec())
            .collect();
        for i in (0..seed.len()).step_by(13) {
            let mut v = seed.clone();
            v[i] = v[i].wrapping_add(1 + (i % 5) as u8);
            variants.push(v);
        }
        for v in &variants {
            let _ = scan::read(v);
            for f in FORMATS {
                let _ = scan::parse(f, v);
            }
            inputs += 1;
        }
    }
    assert!(inputs > 1000, "only {inputs} inputs");
}

/// A small deterministic generator (xorshift64*), so a failure replays.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }

    /// Strings built from the pieces time input is made of, plus
    /// multi-byte characters and huge numbers.
    fn time_text(&mut self) -> String {
        const PIECES: &[&str] = &[
            "+",
            "-",
            "±",
            "0",
            "1",
            "2",
            "9",
            "99999999999999",
            "9999999999",
            "9223372036854775807",
            "9223372036854775808",
            "18446744073709551616",
            "m",
            "h",
            "d",
            "s",
            "w",
            "é",
            "日",
            "🙂",
            " ",
            "T",
            ":",
            "Z",
            "2026-12-24",
            "T18:00:00Z",
            "+01:00",
            ".",
            "\u{0}",
            "\u{301}",
        ];
        let n = self.next() % 8;
        (0..n).map(|_| self.pick(PIECES)).collect()
    }
}

/// The workbench's `:at` command line and the Gates `t` prompt, `--at`,
/// durations in config (soak, timeouts, waits) and freeze calendars: any
/// text is a value or an error, never a panic.
#[test]
fn time_and_duration_parsers_never_panic() {
    use stella::domain::duration::{parse_duration, parse_when};
    use stella::domain::schedule::{parse_cron, parse_tz};

    let now: chrono::DateTime<chrono::Utc> = "2026-12-04T12:00:00Z".parse().unwrap();
    let edges = [
        chrono::DateTime::<chrono::Utc>::MIN_UTC,
        chrono::DateTime::<chrono::Utc>::MAX_UTC,
        now,
    ];
    let seen = [
        "+2é",
        "+99999999999999d",
        "-99999999999999d",
        "+9999999999h",
        "-9999999999h",
        "±9999999999h",
    ];
    for s in seen {
        for at in edges {
            assert!(parse_when(s, at).is_err(), "{s} at {at}");
            assert!(
                stella::tui::reduce::parse_time(s, at).is_err(),
                "{s} at {at}"
            );
        }
        assert!(parse_duration(s).is_err(), "{s}");
        assert!(stella::cli::parse_at(Some(s)).is_err(), "{s}");
    }
    let mut noise = Noise(0x5EED_0016);
    for _ in 0..20_000 {
        let s = noise.time_text();
        for at in edges {
            let _ = parse_when(&s, at);
        }
        if let Ok(d) = parse_duration(&s) {
            // Whatever a duration names can be added to a clock.
            let d = chrono::TimeDelta::from_std(d).unwrap();
            assert!(now.checked_add_signed(d).is_some(), "{s}");
        }
        let _ = stella::cli::parse_at(Some(&s));
        let _ = parse_cron(&s);
        let _ = parse_tz(&s);
    }
}

/// Every key the workbench reads, on every screen and in every prompt,
/// with typed text mixing the inputs above: the reducer returns, never
/// panics.
#[test]
fn workbench_keys_and_prompts_never_panic() {
    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    use stella::tui::{reduce, sample};

    let mut noise = Noise(0xC0FF_EE16);
    let mut app = stella::tui::state::App::new(
        sample::snapshot(3, 12),
        sample::now(),
        chrono::FixedOffset::east_opt(0).unwrap(),
        stella::tui::keymap::Keymap::default_keys(),
        stella::tui::theme::Theme::builtin("dark", false).unwrap(),
    );
    let codes = [
        KeyCode::Enter,
        KeyCode::Esc,
        KeyCode::Tab,
        KeyCode::BackTab,
        KeyCode::Backspace,
        KeyCode::Up,
        KeyCode::Down,
        KeyCode::Left,
        KeyCode::Right,
        KeyCode::PageUp,
        KeyCode::PageDown,
        KeyCode::Home,
        KeyCode::End,
    ];
    let typed = |app: &mut stella::tui::state::App, text: &str| {
        for c in text.chars() {
            let _ = reduce::key(app, KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
        }
        let _ = reduce::key(app, KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    };
    // The inputs that ended the workbench, at the `:at` command line and
    // at the Gates screen's `t` prompt.
    for seen in ["+2é", "+99999999999999d", "-9999999999h", "+9999999999h"] {
        typed(&mut app, &format!(":at {seen}"));
        assert!(app.status.as_ref().is_some_and(|s| s.error), "{seen}");
        typed(&mut app, ":gates");
        assert_eq!(app.screen, stella::tui::action::Screen::Gates);
        let _ = reduce::key(
            &mut app,
            KeyEvent::new(KeyCode::Char('t'), KeyModifiers::NONE),
        );
        app.status = None;
        typed(&mut app, seen);
        assert!(app.status.as_ref().is_some_and(|s| s.error), "{seen}");
    }
    let chars: Vec<char> = ":tT/?ghjklnpqxyrRaAuUPcC0123456789+-mhdé日 \u{301}"
        .chars()
        .collect();
    for i in 0..20_000u32 {
        let r = noise.next();
        let code = if r.is_multiple_of(3) {
            codes[(r / 3 % codes.len() as u64) as usize]
        } else {
            KeyCode::Char(chars[(r / 3 % chars.len() as u64) as usize])
        };
        let mods = if r.is_multiple_of(17) {
            KeyModifiers::CONTROL
        } else {
            KeyModifiers::NONE
        };
        let _ = reduce::key(&mut app, KeyEvent::new(code, mods));
        if app.quit {
            app.quit = false;
        }
        // Now and then type a whole time into whatever prompt is open.
        if i.is_multiple_of(50) {
            for c in noise.time_text().chars() {
                let _ = reduce::key(
                    &mut app,
                    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE),
                );
            }
            let _ = reduce::key(&mut app, KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
        }
    }
}
