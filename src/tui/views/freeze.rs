//! Freeze calendar: a month grid for one environment with frozen days
//! shaded and today marked, in the user's zone; each window's periods in
//! its own zone and the user's; when the current freeze ends.

use chrono::Datelike;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::block;
use crate::gates::calendar::{self, Frozen};
use crate::gates::freeze::{Window, when};
use crate::tui::state::App;
use crate::tui::theme::Role;

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let Some(lane) = app.snap.lanes.get(app.freeze_env) else {
        return;
    };
    let windows: Vec<Window> = app
        .snap
        .freeze
        .iter()
        .filter(|(n, _)| lane.freeze_windows.contains(n))
        .map(|(_, w)| w.clone())
        .collect();
    let [grid, list] = Layout::horizontal([Constraint::Length(36), Constraint::Min(0)]).areas(area);
    let days = calendar::month(&windows, app.month, &app.local);
    let today = app.now.with_timezone(&app.local).date_naive();
    let mut lines = vec![
        Line::styled(
            format!("{}  (UTC{})", app.month.format("%B %Y"), app.local),
            app.theme.get(Role::Title),
        ),
        Line::raw(" Mo  Tu  We  Th  Fr  Sa  Su"),
    ];
    let mut spans = vec![Span::raw(
        "    ".repeat(app.month.weekday().num_days_from_monday() as usize),
    )];
    for d in &days {
        // A mark beside the shade, so NO_COLOR still shows it.
        let (role, mark) = match d.frozen {
            Frozen::Full => (Role::Frozen, "*"),
            Frozen::Partial => (Role::FrozenPartial, "+"),
            Frozen::None => (Role::Text, " "),
        };
        let mut style = app.theme.get(role);
        if d.date == today {
            style = style.patch(app.theme.get(Role::Today));
        }
        spans.push(Span::styled(format!("{:>3}", d.date.day()), style));
        spans.push(Span::styled(mark, app.theme.get(role)));
        if d.date.weekday() == chrono::Weekday::Sun {
            lines.push(Line::from(std::mem::take(&mut spans)));
        }
    }
    if !spans.is_empty() {
        lines.push(Line::from(spans));
    }
    lines.push(Line::raw(""));
    lines.push(Line::from(vec![
        Span::styled(" 27*", app.theme.get(Role::Frozen)),
        Span::raw(" frozen all day"),
    ]));
    lines.push(Line::from(vec![
        Span::styled(" 27+", app.theme.get(Role::FrozenPartial)),
        Span::raw(" frozen part of it"),
    ]));
    lines.push(Line::styled(
        "n/N month · h/l environment",
        app.theme.get(Role::Muted),
    ));
    frame.render_widget(
        Paragraph::new(lines).block(block(app, format!(" Freeze — {} ", lane.env))),
        grid,
    );

    let mut out = Vec::new();
    if windows.is_empty() {
        out.push(Line::styled(
            format!("{} has no freeze gate: it is never frozen.", lane.env),
            app.theme.get(Role::Muted),
        ));
    }
    for w in &windows {
        out.push(Line::styled(
            format!("{} — {}", w.name, w.described),
            app.theme.get(Role::Title),
        ));
        match w.active_at(app.now) {
            Some(p) => out.push(Line::styled(
                match p.end {
                    Some(e) => format!("  FROZEN NOW until {}", both_zones(app, w, e)),
                    None => "  FROZEN NOW, with no end".to_owned(),
                },
                app.theme.get(Role::GateBlocked),
            )),
            None => out.push(Line::styled(
                "  not frozen now",
                app.theme.get(Role::GatePass),
            )),
        }
        let periods = calendar::periods(std::slice::from_ref(w), app.month, &app.local);
        for (_, ps) in periods {
            if ps.is_empty() {
                out.push(Line::styled(
                    "  not frozen this month",
                    app.theme.get(Role::Muted),
                ));
            }
            for p in ps.iter().take(8) {
                out.push(Line::raw(format!(
                    "  {} → {}",
                    when(p.start, w.zone()),
                    p.end.map_or_else(|| "no end".into(), |e| when(e, w.zone()))
                )));
            }
        }
        out.push(Line::raw(""));
    }
    for next in next_lines(app, &windows, app.now) {
        out.push(Line::styled(next, app.theme.get(Role::GateWarn)));
    }
    let out = super::fitted(
        out,
        list.width.saturating_sub(2) as usize,
        list.height.saturating_sub(2) as usize,
        app.scroll as usize,
        "(j/k scroll)",
        app.theme.get(Role::Muted),
    );
    frame.render_widget(Paragraph::new(out).block(block(app, " Windows ")), list);
}

/// A time in a window's zone and the user's: `Wed 2026-11-25 18:00 UTC
/// (your time Wed 2026-11-25 19:00 +01:00)`. The Freeze and Gates
/// screens and the promote dialog all say a freeze's times this way.
pub fn both_zones(app: &App, w: &Window, t: chrono::DateTime<chrono::Utc>) -> String {
    format!(
        "{} (your time {})",
        when(t, w.zone()),
        t.with_timezone(&app.local).format("%a %Y-%m-%d %H:%M %:z")
    )
}

/// The windows the freeze gate of `env` names.
pub fn windows_of<'a>(app: &'a App, env: &str) -> Vec<&'a Window> {
    let Some(lane) = app.snap.lanes.iter().find(|l| l.env == env) else {
        return vec![];
    };
    app.snap
        .freeze
        .iter()
        .filter(|(n, _)| lane.freeze_windows.contains(n))
        .map(|(_, w)| w)
        .collect()
}

/// `next freeze: weekend from …`, when one of `windows` starts after
/// `at`: its start in its zone, then the user's, then its end.
pub fn next_lines(app: &App, windows: &[Window], at: chrono::DateTime<chrono::Utc>) -> Vec<String> {
    let Some((w, p)) = crate::gates::freeze::next_freeze(windows, at) else {
        return vec![];
    };
    vec![
        format!("next freeze: {} from {}", w.name, when(p.start, w.zone())),
        format!(
            "  (your time {}){}",
            p.start
                .with_timezone(&app.local)
                .format("%a %Y-%m-%d %H:%M %:z"),
            p.end
                .map_or_else(String::new, |e| format!(" until {}", when(e, w.zone())))
        ),
    ]
}

/// What the Gates screen and the promote dialog say about `env`'s
/// freezes at `at`: each active freeze's end in its zone and the user's,
/// and when the next one starts. Short lines, so a dialog need not wrap.
pub fn notes(app: &App, env: &str, at: chrono::DateTime<chrono::Utc>) -> Vec<String> {
    let windows: Vec<Window> = windows_of(app, env).into_iter().cloned().collect();
    let mut out = Vec::new();
    for w in &windows {
        if let Some(p) = w.active_at(at) {
            match p.end {
                Some(e) => {
                    out.push(format!("frozen by {} until {}", w.name, when(e, w.zone())));
                    out.push(format!(
                        "  (your time {})",
                        e.with_timezone(&app.local).format("%a %Y-%m-%d %H:%M %:z")
                    ));
                }
                None => out.push(format!("frozen by {} with no end", w.name)),
            }
        }
    }
    out.extend(next_lines(app, &windows, at));
    out
}

/// `notes` as lines under a freeze verdict, indented like its reasons.
pub fn note_lines(app: &App, env: &str, at: chrono::DateTime<chrono::Utc>) -> Vec<Line<'static>> {
    notes(app, env, at)
        .into_iter()
        .map(|n| Line::styled(format!("          {n}"), app.theme.get(Role::GateWarn)))
        .collect()
}
