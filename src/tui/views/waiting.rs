//! Waiting: every release waiting to come into each lane from upstream —
//! the same picture as `stella gate check --all` — what blocks it, and
//! when each blocker clears, in the rule's zone and the user's; beside
//! any freeze, when the next one starts.

use chrono::{DateTime, SecondsFormat, Utc};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::block;
use crate::engine::waiting::{Overview, When};
use crate::tui::state::App;
use crate::tui::theme::Role;

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let title = " Waiting ";
    let o = match &app.waiting {
        None => {
            frame.render_widget(
                Paragraph::new("Evaluating what waits upstream of each lane…")
                    .wrap(Wrap { trim: true })
                    .block(block(app, title)),
                area,
            );
            return;
        }
        Some(Err(e)) => {
            frame.render_widget(
                Paragraph::new(Line::styled(
                    format!("cannot evaluate what waits: {e}"),
                    app.theme.get(Role::StatusError),
                ))
                .wrap(Wrap { trim: true })
                .block(block(app, title)),
                area,
            );
            return;
        }
        Some(Ok(o)) => o,
    };
    let lines = super::fitted(
        lines(app, o),
        area.width.saturating_sub(2) as usize,
        area.height.saturating_sub(2) as usize,
        app.scroll as usize,
        "(j/k scroll)",
        app.theme.get(Role::Muted),
    );
    frame.render_widget(Paragraph::new(lines).block(block(app, title)), area);
}

/// An instant as the rule writes it, and in the user's zone.
fn when(app: &App, w: &When) -> String {
    format!("{} — yours {}", w.written, local(app, w.at))
}

fn local(app: &App, t: DateTime<Utc>) -> String {
    t.with_timezone(&app.local)
        .format("%a %Y-%m-%d %H:%M %:z")
        .to_string()
}

/// The screen's lines, one section per lane (also what tests compare with
/// `gate check --all --json`).
pub fn lines(app: &App, o: &Overview) -> Vec<Line<'static>> {
    let muted = app.theme.get(Role::Muted);
    let mut out = vec![Line::styled(
        format!(
            "at {} · asked as {}",
            o.now.to_rfc3339_opts(SecondsFormat::Secs, true),
            o.requested_as
        ),
        muted,
    )];
    if o.lanes.is_empty() {
        out.push(Line::raw(
            "No lane is promoted from another: nothing waits upstream.",
        ));
    }
    for lane in &o.lanes {
        out.push(Line::raw(""));
        out.push(Line::styled(
            format!("{} ← {}", lane.environment, lane.from),
            app.theme.get(Role::Title),
        ));
        for a in &lane.freeze.active {
            out.push(Line::styled(
                match &a.ends {
                    Some(e) => format!("  FROZEN by {} until {}", a.window, when(app, e)),
                    None => format!("  FROZEN by {}, with no end in sight", a.window),
                },
                app.theme.get(Role::GateBlocked),
            ));
        }
        if let Some(n) = &lane.freeze.next {
            out.push(Line::styled(
                format!("  next freeze: {} from {}", n.window, when(app, &n.starts)),
                muted,
            ));
        }
        if lane.waiting.is_empty() {
            out.push(Line::styled(
                format!(
                    "  nothing waiting: every app live in {} runs here",
                    lane.from
                ),
                muted,
            ));
        }
        for w in &lane.waiting {
            let here = w
                .live_here
                .as_ref()
                .map_or("nothing".to_owned(), |d| format!("sha256:{}", d.short()));
            let (state, role) = if w.ready {
                ("ready".to_owned(), Role::GatePass)
            } else {
                (
                    format!(
                        "blocked by {}",
                        w.blockers
                            .iter()
                            .map(|b| b.gate.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    Role::GateBlocked,
                )
            };
            out.push(Line::from(vec![
                Span::raw(format!("  {} ", w.app)),
                Span::styled(
                    format!("sha256:{}", w.digest.short()),
                    app.theme.get(Role::Digest),
                ),
                Span::styled(format!(" (here: {here}) "), muted),
                Span::styled(state, app.theme.get(role)),
            ]));
            for b in &w.blockers {
                out.push(Line::raw(format!(
                    "    {:<9} {}",
                    b.gate,
                    b.summary.trim_start_matches("FAIL — ")
                )));
                if let Some(c) = &b.clears {
                    out.push(Line::styled(
                        format!("    {:<9} clears {}", "", when(app, c)),
                        muted,
                    ));
                }
                if let Some(n) = b.approvals_needed {
                    out.push(Line::styled(
                        format!(
                            "    {:<9} {n} more from: {}",
                            "",
                            if b.missing_approvers.is_empty() {
                                "nobody left on the list".to_owned()
                            } else {
                                b.missing_approvers.join(", ")
                            }
                        ),
                        muted,
                    ));
                } else if b.clears.is_none()
                    && let Some(u) = b.unblock.first()
                {
                    out.push(Line::styled(format!("    {:<9} {u}", ""), muted));
                }
            }
        }
    }
    out
}
