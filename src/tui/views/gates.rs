//! Gates: every verdict for the selected release in the next lane, its
//! reasons, measured values, and what would unblock it; `t` evaluates at
//! another time.

use chrono::SecondsFormat;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::{block, verdict_lines};
use crate::domain::Decision;
use crate::tui::state::App;
use crate::tui::theme::Role;

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let Some(g) = &app.gates else {
        frame.render_widget(
            Paragraph::new(
                "Select a live release on the Lanes screen and press g (or 3) to see its gates for the next lane.",
            )
            .wrap(Wrap { trim: true })
            .block(block(app, " Gates ")),
            area,
        );
        return;
    };
    let r = &g.request;
    let when = match r.at {
        Some(t) => format!(
            "what-if at {} (local {})",
            t.to_rfc3339_opts(SecondsFormat::Secs, true),
            t.with_timezone(&app.local).format("%a %Y-%m-%d %H:%M %:z")
        ),
        None => format!(
            "now ({})",
            g.evaluated_at.to_rfc3339_opts(SecondsFormat::Secs, true)
        ),
    };
    let mut lines = vec![
        Line::from(vec![
            Span::styled(
                format!("{}:{} ", r.app, r.tag.clone().unwrap_or_default()),
                app.theme.get(Role::Title),
            ),
            Span::styled(r.digest.to_string(), app.theme.get(Role::Digest)),
        ]),
        Line::from(format!("into {}, evaluated {when}", r.env)),
        Line::raw(""),
    ];
    match &g.outcome {
        Err(e) => lines.push(Line::styled(
            format!("cannot evaluate: {e}"),
            app.theme.get(Role::StatusError),
        )),
        Ok((decision, verdicts)) => {
            for v in verdicts {
                lines.extend(verdict_lines(app, v, true));
                if v.gate == crate::domain::GateKind::Freeze {
                    lines.extend(super::freeze::note_lines(
                        app,
                        &r.env,
                        r.at.unwrap_or(g.evaluated_at),
                    ));
                }
                lines.push(Line::raw(""));
            }
            lines.push(match decision {
                Decision::Allow => Line::styled(
                    "ALLOWED — p on the Lanes screen promotes it",
                    app.theme.get(Role::GatePass),
                ),
                Decision::Deny => Line::styled(
                    format!(
                        "BLOCKED by {}",
                        verdicts
                            .iter()
                            .filter(|v| v.blocks())
                            .map(|v| v.gate.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    app.theme.get(Role::GateBlocked),
                ),
            });
        }
    }
    // A rollback's pin holds it whatever the gates say, as the command
    // line's gate check says too.
    if let Some(pin) = app.pin_of(&r.env, &r.app) {
        lines.push(Line::styled(
            format!(
                "PINNED — the rollback in capsule #{} ({}) holds {} in {} on sha256:{}; u on that lane unpins it",
                pin.capsule_id,
                pin.pinned_by,
                r.app,
                r.env,
                pin.digest.short()
            ),
            app.theme.get(Role::GateBlocked),
        ));
    }
    lines.push(Line::styled(
        "t evaluate at another time (+2h, -1d, RFC 3339) · n now",
        app.theme.get(Role::Muted),
    ));
    // Wrapped here, so a reason's continuation stays under its start;
    // what does not fit says so, and j/k scroll to it.
    let lines = super::fitted(
        lines,
        area.width.saturating_sub(2) as usize,
        area.height.saturating_sub(2) as usize,
        app.scroll as usize,
        "(j/k scroll)",
        app.theme.get(Role::Muted),
    );
    frame.render_widget(Paragraph::new(lines).block(block(app, " Gates ")), area);
}
