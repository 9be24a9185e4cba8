//! Pure views: each draws from `&App` and never mutates it or does I/O.

mod capsules;
mod freeze;
mod gates;
mod lanes;
mod layers;
mod promotion;
mod releases;
mod rollout;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use super::action::Screen;
use super::state::App;
use crate::domain::{Outcome, Verdict};
use crate::tui::theme::Role;
use crate::workflow::executor::StepState;

/// The smallest terminal the workbench draws in.
pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;

pub fn render(frame: &mut Frame, app: &App) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let msg = vec![
            Line::from(Span::styled(
                "Terminal too small",
                app.theme.get(Role::Title),
            )),
            Line::from(format!(
                "{}×{} here; stella needs at least {MIN_WIDTH}×{MIN_HEIGHT}.",
                area.width, area.height
            )),
            Line::from("Enlarge the window, or press q to quit."),
        ];
        frame.render_widget(
            Paragraph::new(msg).wrap(ratatui::widgets::Wrap { trim: true }),
            area,
        );
        return;
    }
    let [tabs, body, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    frame.render_widget(tab_bar(app), tabs);
    match app.screen {
        Screen::Lanes => lanes::render(frame, body, app),
        Screen::Promotion => promotion::render(frame, body, app),
        Screen::Gates => gates::render(frame, body, app),
        Screen::Freeze => freeze::render(frame, body, app),
        Screen::Capsules => capsules::render(frame, body, app),
        Screen::Releases => releases::render(frame, body, app),
        Screen::Rollout => rollout::render(frame, body, app),
    }
    frame.render_widget(status_line(app), status);
    layers::render(frame, area, app);
}

/// Where each tab is drawn, for mouse clicks: (screen, first column, width).
pub fn tab_spans(app: &App) -> Vec<(Screen, u16, u16)> {
    let mut x = 1 + app.snap.workspace.chars().count() as u16 + 3;
    Screen::ALL
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let w = format!(" {} {} ", i + 1, s.title()).chars().count() as u16;
            let span = (*s, x, w);
            x += w + 1;
            span
        })
        .collect()
}

fn tab_bar(app: &App) -> Paragraph<'_> {
    let mut spans = vec![
        Span::styled(
            format!(" {} ", app.snap.workspace),
            app.theme.get(Role::Title),
        ),
        Span::raw("  "),
    ];
    for (i, s) in Screen::ALL.iter().enumerate() {
        let role = if *s == app.screen {
            Role::TabActive
        } else {
            Role::Tab
        };
        spans.push(Span::styled(
            format!(" {} {} ", i + 1, s.title()),
            app.theme.get(role),
        ));
        spans.push(Span::raw(" "));
    }
    Paragraph::new(Line::from(spans))
}

fn status_line(app: &App) -> Paragraph<'_> {
    let line = match &app.status {
        Some(s) => Line::from(Span::styled(
            s.text.clone(),
            app.theme.get(if s.error {
                Role::StatusError
            } else {
                Role::StatusInfo
            }),
        )),
        None => {
            // `? help` and `q quit` first: a narrow terminal cuts the end
            // of the line, never the way to every key or out.
            let hints: Vec<String> = ["? help".to_owned(), "q quit".into()]
                .into_iter()
                .chain(
                    app.keymap
                        .section(app.screen.name())
                        .iter()
                        .take(5)
                        .map(|b| format!("{} {}", b.key.label(), short(&b.desc))),
                )
                .chain([": command".into()])
                .collect();
            Line::from(Span::styled(
                hints.join("  ·  "),
                app.theme.get(Role::Muted),
            ))
        }
    };
    Paragraph::new(line)
}

/// The first words of a description (at most three, and none past a
/// `:`, `,` or `(`), for the hint line.
fn short(desc: &str) -> String {
    let head = desc.split([':', ',', '(']).next().unwrap_or(desc);
    head.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn block<'a>(app: &App, title: impl Into<Line<'a>>) -> Block<'a> {
    Block::bordered()
        .border_style(app.theme.get(Role::Border))
        .title(title)
        .title_style(app.theme.get(Role::Title))
}

pub fn verdict_role(v: &Verdict) -> Role {
    match v.verdict {
        Outcome::Pass => Role::GatePass,
        Outcome::Warn => Role::GateWarn,
        Outcome::Fail => Role::GateBlocked,
        Outcome::Skipped => Role::GateSkipped,
    }
}

pub fn step_role(s: StepState) -> Role {
    match s {
        StepState::Pending => Role::StepPending,
        StepState::Running => Role::StepRunning,
        StepState::Succeeded => Role::StepDone,
        StepState::Failed => Role::StepFailed,
        StepState::Skipped | StepState::Cancelled => Role::StepSkipped,
        // Its process died mid-step: it did not finish.
        StepState::Interrupted => Role::StepFailed,
    }
}

pub fn step_glyph(s: StepState) -> &'static str {
    match s {
        StepState::Pending => "·",
        StepState::Running => "▶",
        StepState::Succeeded => "✓",
        StepState::Failed => "✗",
        StepState::Skipped => "–",
        StepState::Cancelled => "⊘",
        StepState::Interrupted => "↯",
    }
}

/// `3m`, `4h`, `2d` ago.
pub fn age(now: chrono::DateTime<chrono::Utc>, t: chrono::DateTime<chrono::Utc>) -> String {
    let d = now - t;
    if d.num_days() > 0 {
        format!("{}d", d.num_days())
    } else if d.num_hours() > 0 {
        format!("{}h", d.num_hours())
    } else if d.num_minutes() > 0 {
        format!("{}m", d.num_minutes())
    } else {
        format!("{}s", d.num_seconds().max(0))
    }
}

/// Lines of a gate verdict: summary, reasons, measured, and what unblocks it.
pub fn verdict_lines<'a>(app: &App, v: &'a Verdict, full: bool) -> Vec<Line<'a>> {
    let mut out = vec![Line::from(vec![
        Span::styled(
            format!("{:<10}", v.gate.as_str()),
            app.theme.get(Role::Title),
        ),
        Span::styled(v.summary.clone(), app.theme.get(verdict_role(v))),
    ])];
    let reasons = if full { v.reasons.len() } else { 3 };
    for r in v.reasons.iter().take(reasons) {
        out.push(Line::from(format!("          {r}")));
    }
    if v.reasons.len() > reasons {
        out.push(Line::from(Span::styled(
            format!("          … {} more", v.reasons.len() - reasons),
            app.theme.get(Role::Muted),
        )));
    }
    if full && v.measured.as_object().is_some_and(|m| !m.is_empty()) {
        out.push(Line::from(Span::styled(
            format!("          measured {}", v.measured),
            app.theme.get(Role::Muted),
        )));
    }
    if v.verdict == Outcome::Fail {
        for u in &v.unblock {
            out.push(Line::from(vec![
                Span::styled("          unblock: ", app.theme.get(Role::GateWarn)),
                Span::raw(u.clone()),
            ]));
        }
    }
    out
}

/// A rectangle of at most `w`×`h` centred in `area`.
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width.saturating_sub(2));
    let h = h.min(area.height.saturating_sub(2));
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

pub fn selected(app: &App, yes: bool) -> Style {
    if yes {
        app.theme.get(Role::Selected)
    } else {
        Style::default()
    }
}
