//! Pure views: each draws from `&App` and never mutates it or does I/O.

mod capsules;
mod freeze;
mod gates;
mod lanes;
mod layers;
mod promotion;
mod releases;
mod rollout;
pub mod waiting;

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
        let mut msg = msg;
        if let Some(super::state::Layer::Confirm {
            title,
            effect: super::state::Effect::Quit,
            ..
        }) = app.layers.last()
        {
            msg.push(Line::from(""));
            msg.push(Line::styled(
                format!("{title} y quits and aborts it, n stays."),
                app.theme.get(Role::StatusError),
            ));
        }
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
    frame.render_widget(tab_bar(app, area.width), tabs);
    match app.screen {
        Screen::Lanes => lanes::render(frame, body, app),
        Screen::Promotion => promotion::render(frame, body, app),
        Screen::Gates => gates::render(frame, body, app),
        Screen::Freeze => freeze::render(frame, body, app),
        Screen::Capsules => capsules::render(frame, body, app),
        Screen::Releases => releases::render(frame, body, app),
        Screen::Rollout => rollout::render(frame, body, app),
        Screen::Waiting => waiting::render(frame, body, app),
    }
    frame.render_widget(status_line(app, area.width), status);
    layers::render(frame, area, app);
}

/// The tab bar's labels at a width: every tab in full where they fit;
/// else the tabs but the current one shortened to four letters; else to
/// their numbers. The current tab is always named in full, and every tab
/// keeps its number (the key that opens it).
fn tab_labels(app: &App, width: u16) -> (String, Vec<(Screen, String)>) {
    // Tier 0: every title in full; 1: the others' first four letters;
    // 2: the others' numbers only.
    let label = |tier: usize, s: &Screen, i: usize| -> String {
        let title: String = match tier {
            _ if *s == app.screen => s.title().to_owned(),
            0 => s.title().to_owned(),
            1 => s.title().chars().take(4).collect(),
            _ => return format!(" {} ", i + 1),
        };
        format!(" {} {title} ", i + 1)
    };
    let head = format!(" {} ", app.snap.workspace);
    let mut last = (head.clone(), vec![]);
    for t in 0..3 {
        let head = if t == 0 {
            format!("{head}  ")
        } else {
            format!("{head} ")
        };
        let tabs: Vec<(Screen, String)> = Screen::ALL
            .iter()
            .enumerate()
            .map(|(i, s)| (*s, label(t, s, i)))
            .collect();
        let w = head.chars().count()
            + tabs
                .iter()
                .map(|(_, l)| l.chars().count() + 1)
                .sum::<usize>();
        last = (head, tabs);
        if w <= width as usize + 1 {
            break;
        }
    }
    last
}

/// Where each tab is drawn at `width` columns, for mouse clicks: (screen,
/// first column, width).
pub fn tab_spans(app: &App, width: u16) -> Vec<(Screen, u16, u16)> {
    let (head, tabs) = tab_labels(app, width);
    let mut x = head.chars().count() as u16;
    tabs.into_iter()
        .map(|(s, l)| {
            let w = l.chars().count() as u16;
            let span = (s, x, w);
            x += w + 1;
            span
        })
        .collect()
}

fn tab_bar(app: &App, width: u16) -> Paragraph<'_> {
    let (head, tabs) = tab_labels(app, width);
    let name = head.trim_end().len() + 1;
    let mut spans = vec![
        Span::styled(head[..name].to_owned(), app.theme.get(Role::Title)),
        Span::raw(head[name..].to_owned()),
    ];
    for (s, label) in tabs {
        let role = if s == app.screen {
            Role::TabActive
        } else {
            Role::Tab
        };
        spans.push(Span::styled(label, app.theme.get(role)));
        spans.push(Span::raw(" "));
    }
    Paragraph::new(Line::from(spans))
}

fn status_line(app: &App, width: u16) -> Paragraph<'_> {
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
            // `? help` and `q quit` first: a narrow terminal drops the
            // last hints whole, never the way to every key or out.
            let hints: Vec<String> = ["? help".to_owned(), "q quit".into()]
                .into_iter()
                .chain(
                    app.keymap
                        .section(app.screen.name())
                        .iter()
                        .take(5)
                        .map(|b| format!("{} {}", b.key.label(), short(b))),
                )
                .chain([": command".into()])
                .collect();
            Line::from(Span::styled(
                whole(&hints, "  ·  ", width as usize),
                app.theme.get(Role::Muted),
            ))
        }
    };
    Paragraph::new(line)
}

/// As many of `parts` as fit in `width` columns, joined by `sep`: a part
/// that does not fit is left out whole, never cut.
pub fn whole(parts: &[String], sep: &str, width: usize) -> String {
    let mut out = String::new();
    for p in parts {
        let add = if out.is_empty() {
            p.chars().count()
        } else {
            sep.chars().count() + p.chars().count()
        };
        if out.chars().count() + add > width {
            break;
        }
        if !out.is_empty() {
            out.push_str(sep);
        }
        out.push_str(p);
    }
    out
}

/// A binding's hint: its description when that is at most three words
/// (up to a `:`, `,` or `(`), else the action's own name — a whole
/// phrase either way (`r roll back`, never `r Roll back the`).
fn short(b: &crate::tui::keymap::Bound) -> String {
    let head = b
        .desc
        .split([':', ',', '('])
        .next()
        .unwrap_or(&b.desc)
        .trim();
    if head.split_whitespace().count() <= 3 {
        return head.to_lowercase();
    }
    match &b.action {
        super::action::Action::Screen(s) => s.name().to_owned(),
        super::action::Action::Rollback => "roll back".to_owned(),
        a => super::action::NAMES
            .iter()
            .find(|(_, x)| x == a)
            .map_or_else(|| head.to_lowercase(), |(n, _)| n.replace('-', " ")),
    }
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
            "          measured",
            app.theme.get(Role::Muted),
        )));
        let mut kv = Vec::new();
        measured_lines(&v.measured, 12, &mut kv);
        out.extend(
            kv.into_iter()
                .map(|l| Line::from(Span::styled(l, app.theme.get(Role::Muted)))),
        );
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

/// A gate's measured values as indented `key: value` lines: an object's
/// keys one a line, nested objects one level deeper, a short list of
/// scalars on one line.
pub fn measured_lines(v: &serde_json::Value, indent: usize, out: &mut Vec<String>) {
    const MAX: usize = 40;
    let pad = " ".repeat(indent);
    let Some(map) = v.as_object() else {
        out.push(format!("{pad}{}", scalar(v)));
        return;
    };
    for (k, v) in map {
        if out.len() >= MAX {
            out.push(format!("{pad}…"));
            return;
        }
        match v {
            serde_json::Value::Object(m) if !m.is_empty() => {
                out.push(format!("{pad}{k}:"));
                measured_lines(v, indent + 2, out);
            }
            serde_json::Value::Array(items) if items.iter().any(|i| i.is_object()) => {
                out.push(format!("{pad}{k}:"));
                for i in items {
                    if out.len() >= MAX {
                        break;
                    }
                    let mut one = Vec::new();
                    measured_lines(i, indent + 4, &mut one);
                    if let Some(first) = one.first_mut() {
                        first.replace_range(indent + 2..indent + 3, "-");
                    }
                    out.extend(one);
                }
            }
            _ => out.push(format!("{pad}{k}: {}", scalar(v))),
        }
    }
}

fn scalar(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => items.iter().map(scalar).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// A line wrapped at word boundaries to `width` columns, keeping each
/// span's style; continuation lines are indented two columns past the
/// line's own leading spaces, so a wrapped sentence reads as one item.
pub fn wrap_line(line: Line<'_>, width: usize) -> Vec<Line<'static>> {
    fn cols(s: &str) -> usize {
        Span::raw(s).width()
    }
    let style = line.style;
    let own: Vec<(String, Style)> = line
        .spans
        .iter()
        .map(|s| (s.content.to_string(), s.style))
        .collect();
    let total: usize = own.iter().map(|(t, _)| cols(t)).sum();
    if width == 0 || total <= width {
        return vec![
            Line::from(
                own.into_iter()
                    .map(|(t, st)| Span::styled(t, st))
                    .collect::<Vec<_>>(),
            )
            .style(style),
        ];
    }
    let lead = own
        .iter()
        .flat_map(|(t, _)| t.chars())
        .take_while(|c| *c == ' ')
        .count();
    let indent = (lead + 2).min(width / 2);
    let mut out: Vec<Line<'static>> = Vec::new();
    let mut cur: Vec<Span<'static>> = Vec::new();
    let mut used = 0usize;
    let mut fresh = true; // nothing but the indent on the current line
    for (text, st) in own {
        for word in text.split_inclusive(' ') {
            let mut word = word.to_owned();
            loop {
                let w = cols(word.trim_end());
                if used + w <= width {
                    used += cols(&word);
                    cur.push(Span::styled(word, st));
                    fresh = false;
                    break;
                }
                // A word too long for any line is cut where it stands;
                // a shorter one goes on to the next line.
                if !fresh && w <= width.saturating_sub(indent) {
                    out.push(Line::from(std::mem::take(&mut cur)).style(style));
                    cur.push(Span::raw(" ".repeat(indent)));
                    used = indent;
                    fresh = true;
                    word = word.trim_start().to_owned();
                    if word.is_empty() {
                        break;
                    }
                    continue;
                }
                // A word longer than the line: cut it.
                let room = width.saturating_sub(used).max(1);
                let head: String = word.chars().take(room).collect();
                let rest: String = word.chars().skip(room).collect();
                cur.push(Span::styled(head, st));
                out.push(Line::from(std::mem::take(&mut cur)).style(style));
                cur.push(Span::raw(" ".repeat(indent)));
                used = indent;
                word = rest;
                if word.is_empty() {
                    break;
                }
            }
        }
    }
    if !fresh || out.is_empty() {
        out.push(Line::from(cur).style(style));
    }
    out
}

/// `lines` wrapped to `width` (continuations indented), from line
/// `scroll` on, fitting `height` rows: what does not fit is announced on
/// the last row (`↓ 12 more lines`, with `hint` saying how to reach it),
/// never silently cut.
pub fn fitted(
    lines: Vec<Line<'_>>,
    width: usize,
    height: usize,
    scroll: usize,
    hint: &str,
    style: Style,
) -> Vec<Line<'static>> {
    let mut all: Vec<Line<'static>> = lines
        .into_iter()
        .flat_map(|l| wrap_line(l, width))
        .collect();
    let scroll = scroll.min(all.len().saturating_sub(1));
    all.drain(..scroll);
    if all.len() > height && height > 0 {
        let more = all.len() - (height - 1);
        all.truncate(height - 1);
        all.push(Line::styled(
            format!(
                "↓ {more} more line{} {hint}",
                if more == 1 { "" } else { "s" }
            ),
            style,
        ));
    } else if scroll > 0 && height > 0 && all.len() < height {
        // Scrolled: say there is more above.
        all.insert(0, Line::styled(format!("↑ {scroll} more {hint}"), style));
    }
    all
}

/// A dialog over the screen: its body wrapped (continuation lines
/// indented), and its key hints on the last line, which is always drawn
/// whatever the body's length — the body is cut first, with a `…` line.
pub fn dialog(
    frame: &mut Frame,
    area: Rect,
    outer: Block<'_>,
    body: Vec<Line<'_>>,
    hints: Line<'_>,
    max_width: u16,
) {
    let width = max_width.min(area.width.saturating_sub(2));
    let inner_w = width.saturating_sub(2) as usize;
    let mut lines: Vec<Line<'static>> = body
        .into_iter()
        .flat_map(|l| wrap_line(l, inner_w))
        .collect();
    let hint_lines: Vec<Line<'static>> = wrap_line(hints, inner_w);
    let want = lines.len() as u16 + 1 + hint_lines.len() as u16 + 2;
    let r = centered(area, width, want);
    let room = r.height.saturating_sub(2 + 1 + hint_lines.len() as u16) as usize;
    if lines.len() > room {
        lines.truncate(room.saturating_sub(1));
        lines.push(Line::raw("…"));
    }
    let inner = outer.inner(r);
    frame.render_widget(ratatui::widgets::Clear, r);
    frame.render_widget(outer, r);
    let [top, bottom] = Layout::vertical([
        Constraint::Min(0),
        Constraint::Length(hint_lines.len() as u16),
    ])
    .areas(inner);
    frame.render_widget(Paragraph::new(lines), top);
    frame.render_widget(Paragraph::new(hint_lines), bottom);
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
