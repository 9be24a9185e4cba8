//! Promotion: the workflow DAG as a graph — layers left to right, each
//! step with its state and duration, the critical path marked, edges into
//! each layer — live while it runs, and the selected step's log below.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::{block, selected, step_glyph, step_role};
use crate::tui::state::{App, RunView, layers};
use crate::tui::theme::Role;
use crate::workflow::executor::StepState;

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let id = app.run.or_else(|| app.run_ids().first().copied());
    let Some(view) = id.and_then(|id| app.run_view(id)) else {
        frame.render_widget(
            Paragraph::new("No promotion yet. Promote a release from the Lanes screen with p.")
                .block(block(app, " Promotion ")),
            area,
        );
        return;
    };
    let [graph, log] =
        Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(area);
    render_graph(frame, graph, app, &view);
    render_log(frame, log, app, &view);
}

fn title(app: &App, v: &RunView) -> Line<'static> {
    Line::from(vec![
        Span::styled(format!(" #{} {} ", v.id, v.app), app.theme.get(Role::Title)),
        Span::styled(
            format!(
                "sha256:{} ",
                v.digest
                    .trim_start_matches("sha256:")
                    .chars()
                    .take(12)
                    .collect::<String>()
            ),
            app.theme.get(Role::Digest),
        ),
        Span::raw(format!("→ {} ", v.env)),
        Span::styled(format!(" {} ", v.state), app.theme.get(v.state.role())),
        Span::raw(if v.live { " live " } else { "" }),
    ])
}

fn fmt_duration(d: Option<std::time::Duration>) -> String {
    d.map_or_else(String::new, |d| format!("{:.1}s", d.as_secs_f64()))
}

fn render_graph(frame: &mut Frame, area: Rect, app: &App, v: &RunView) {
    let graph: Vec<(String, Vec<String>)> = v
        .nodes
        .iter()
        .map(|n| (n.id.clone(), n.needs.clone()))
        .collect();
    let layered = layers(&graph);
    let outer = block(app, title(app, v));
    let inner = outer.inner(area);
    frame.render_widget(outer, area);
    if layered.is_empty() {
        frame.render_widget(
            Paragraph::new("This promotion ran no workflow (a rollback, or a blocked decision)."),
            inner,
        );
        return;
    }
    let [cols_area, legend] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(1)]).areas(inner);
    // As many layers as fit (a step needs about 16 columns, an edge 3),
    // scrolled so the selected step's layer is in view.
    let fit = ((cols_area.width as usize + 3) / 19).max(1);
    let sel_layer = layered
        .iter()
        .position(|l| l.contains(&app.step))
        .unwrap_or(0);
    let first = sel_layer
        .saturating_sub(fit - 1)
        .min(layered.len().saturating_sub(fit));
    let shown = &layered[first..(first + fit).min(layered.len())];
    let mut constraints = Vec::new();
    for i in 0..shown.len() {
        if i > 0 {
            constraints.push(Constraint::Length(3));
        }
        constraints.push(Constraint::Fill(1));
    }
    let cols = Layout::horizontal(constraints).split(cols_area);
    let rows = (cols_area.height as usize / 2).max(1);
    for (li, layer) in shown.iter().enumerate() {
        let mut lines = Vec::new();
        let mut edges = Vec::new();
        // A tall layer scrolls to keep the selected step in view.
        let skip = layer
            .iter()
            .position(|&i| i == app.step)
            .map_or(0, |p| p.saturating_sub(rows - 1));
        for &i in layer.iter().skip(skip) {
            let n = &v.nodes[i];
            let sel = i == app.step;
            let critical = v.critical.contains(&n.id);
            let mut spans = vec![
                Span::styled(
                    format!("{} ", step_glyph(n.state)),
                    app.theme.get(step_role(n.state)),
                ),
                Span::styled(
                    n.id.clone(),
                    selected(app, sel).patch(app.theme.get(step_role(n.state))),
                ),
            ];
            if critical {
                spans.push(Span::styled(" ◆", app.theme.get(Role::CriticalPath)));
            }
            lines.push(Line::from(spans));
            // A step that never ran to its end has no duration to show.
            let mut detail = match n.state {
                StepState::Cancelled => "cancelled".to_owned(),
                StepState::Skipped => "skipped".to_owned(),
                _ => fmt_duration(n.duration),
            };
            if n.attempts > 1 {
                detail.push_str(&format!(" ×{}", n.attempts));
            }
            lines.push(Line::styled(
                format!("  {detail}"),
                app.theme.get(Role::Muted),
            ));
            edges.push(Line::styled(
                if n.needs.is_empty() { "   " } else { "─▶ " },
                app.theme.get(if critical {
                    Role::CriticalPath
                } else {
                    Role::Muted
                }),
            ));
            edges.push(Line::raw(""));
        }
        frame.render_widget(Paragraph::new(lines), cols[li * 2]);
        if li > 0 {
            frame.render_widget(Paragraph::new(edges), cols[li * 2 - 1]);
        }
    }
    let done = v
        .nodes
        .iter()
        .filter(|n| {
            n.duration.is_some() || n.state == crate::workflow::executor::StepState::Skipped
        })
        .count();
    let scrolled = if shown.len() < layered.len() {
        format!(
            "  layers {}–{} of {}",
            first + 1,
            first + shown.len(),
            layered.len()
        )
    } else {
        String::new()
    };
    // Whole parts only: what does not fit is left out, never cut.
    let hints: &[&str] = if v.live {
        if v.paused {
            &["space resume", "x abort", "enter capsule"]
        } else {
            &["space pause", "x abort", "enter capsule"]
        }
    } else {
        &["[ ] other promotions", "enter its capsule"]
    };
    let head = format!("{done}/{} steps{scrolled}", v.nodes.len());
    let mut spans = vec![Span::styled(head.clone(), app.theme.get(Role::Text))];
    let mut used = head.chars().count();
    let room = legend.width as usize;
    if used + 19 <= room {
        spans.push(Span::styled(
            "   ◆ critical path",
            app.theme.get(Role::CriticalPath),
        ));
        used += 18;
    }
    let hints: Vec<String> = hints.iter().map(|h| h.to_string()).collect();
    let tail = super::whole(&hints, " · ", room.saturating_sub(used + 3));
    if !tail.is_empty() {
        spans.push(Span::styled(
            format!("   {tail}"),
            app.theme.get(Role::Muted),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), legend);
}

fn render_log(frame: &mut Frame, area: Rect, app: &App, v: &RunView) {
    let Some(node) = v.nodes.get(app.step) else {
        frame.render_widget(Paragraph::new("").block(block(app, " Log ")), area);
        return;
    };
    let mut lines: Vec<Line> = Vec::new();
    // Why the run ended as it did (blocked, failed), before any step's log.
    match crate::tui::state::why(app, v) {
        Some(why) => {
            let any = !why.is_empty();
            for (text, role) in why {
                lines.push(Line::styled(text, app.theme.get(role)));
            }
            if any {
                lines.push(Line::raw(""));
            }
        }
        None => lines.push(Line::styled(
            format!(
                "reading capsule #{} for why it ended {}…",
                v.capsule.unwrap_or_default(),
                v.state
            ),
            app.theme.get(Role::Muted),
        )),
    }
    let needs = if node.needs.is_empty() {
        "needs nothing".to_owned()
    } else {
        format!("needs {}", node.needs.join(", "))
    };
    lines.push(Line::styled(needs, app.theme.get(Role::Muted)));
    if let Some(e) = &node.error {
        lines.push(Line::styled(
            format!("error: {e}"),
            app.theme.get(Role::StepFailed),
        ));
    }
    let live = app.live.get(&v.id).and_then(|r| r.logs.get(&node.id));
    match (live, &node.log_digest) {
        (Some(log), _) => {
            let height = area.height.saturating_sub(3) as usize;
            let skip = log.len().saturating_sub(height);
            lines.extend(log.iter().skip(skip).map(|l| Line::raw(l.clone())));
        }
        (None, Some(d)) => {
            let text = d
                .parse::<crate::domain::Digest>()
                .ok()
                .and_then(|d| app.logs.get(&d));
            match text {
                Some(t) => lines.extend(t.lines().map(|l| Line::raw(l.to_owned()))),
                None => lines.push(Line::styled(
                    format!("log sealed as evidence {d}"),
                    app.theme.get(Role::Muted),
                )),
            }
        }
        (None, None) => lines.push(Line::styled("no output", app.theme.get(Role::Muted))),
    }
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block(
                app,
                format!(" {} — log (j/k select a step) ", node.id),
            )),
        area,
    );
}
