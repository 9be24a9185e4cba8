//! Capsules: the history, newest first, with a `/` filter and each
//! capsule's verification (checked in the background, cached); the
//! selected capsule's statement, verdicts and evidence; replay with `R`.

use chrono::SecondsFormat;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{block, selected, verdict_lines};
use crate::domain::PromotionOutcome;
use crate::tui::state::{App, ReplayState, Verification};
use crate::tui::theme::Role;

/// The colour of a capsule's outcome: the same role on every screen.
fn outcome_role(outcome: Option<PromotionOutcome>) -> Role {
    outcome.map_or(Role::Muted, crate::tui::theme::outcome_role)
}

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let [list, detail] =
        Layout::horizontal([Constraint::Percentage(58), Constraint::Percentage(42)]).areas(area);
    let rows = app.filtered_capsules();
    let height = list.height.saturating_sub(3) as usize;
    let start = app.capsule.saturating_sub(height.saturating_sub(1));
    // Columns as wide as what they hold in view (`canary-step` too),
    // within bounds, so no word runs into the next column.
    let fit = |f: &dyn Fn(&crate::store::CapsuleRow) -> usize, min: usize, max: usize| {
        rows.iter()
            .skip(start)
            .take(height)
            .map(|c| f(c))
            .max()
            .unwrap_or(0)
            .clamp(min, max)
    };
    let env_w = fit(&|c| c.environment.chars().count(), 7, 16);
    let app_w = fit(&|c| c.app.chars().count(), 8, 24);
    let act_w = fit(&|c| c.action.chars().count(), 6, 16);
    let cut = |s: &str, w: usize| -> String {
        if s.chars().count() > w {
            let mut t: String = s.chars().take(w.saturating_sub(1)).collect();
            t.push('…');
            t
        } else {
            s.to_owned()
        }
    };
    let out_w = fit(
        &|c| c.outcome.map_or(1, |o| o.as_str().chars().count()),
        7,
        15,
    );
    // Whole columns only: where the list is narrow, the least needed go
    // first (the digest, the decision, the environment: the detail on the
    // right says them), never a column cut in half.
    let inner = list.width.saturating_sub(2) as usize;
    let base = 5 + 1 + 3 + (app_w + 1) + (act_w + 1) + (out_w + 1);
    let mut room = inner.saturating_sub(base);
    let mut take = |w: usize| {
        let yes = room >= w;
        if yes {
            room -= w;
        }
        yes
    };
    let show_env = take(env_w + 1);
    let show_dec = take(7);
    let show_digest = take(12);
    let mut head = format!("{:>5} {:<2} ", "ID", "");
    if show_env {
        head.push_str(&format!("{:<env_w$} ", "ENV"));
    }
    head.push_str(&format!("{:<app_w$} {:<act_w$} ", "APP", "ACTION"));
    if show_dec {
        head.push_str(&format!("{:<6} ", "DEC"));
    }
    head.push_str(&format!("{:<out_w$} ", "OUTCOME"));
    if show_digest {
        head.push_str("DIGEST");
    }
    let mut lines = vec![Line::styled(head, app.theme.get(Role::Muted))];
    for (i, c) in rows.iter().enumerate().skip(start).take(height) {
        let (mark, role) = match app.verified.get(&c.id) {
            Some(Verification::Valid) => ("✓", Role::GatePass),
            Some(Verification::Invalid(_)) => ("✗", Role::GateBlocked),
            None => ("…", Role::Muted),
        };
        let sel = i == app.capsule;
        let mut spans = vec![
            Span::styled(format!("{:>5} ", c.id), selected(app, sel)),
            Span::styled(format!("{mark:<2} "), app.theme.get(role)),
        ];
        if show_env {
            spans.push(Span::styled(
                format!("{:<env_w$} ", cut(&c.environment, env_w)),
                selected(app, sel),
            ));
        }
        spans.push(Span::styled(
            format!(
                "{:<app_w$} {:<act_w$} ",
                cut(&c.app, app_w),
                cut(&c.action, act_w)
            ),
            selected(app, sel),
        ));
        if show_dec {
            spans.push(Span::styled(
                format!("{:<6} ", c.decision),
                app.theme
                    .get(if c.decision == crate::domain::Decision::Allow.as_str() {
                        Role::GatePass
                    } else {
                        Role::GateBlocked
                    }),
            ));
        }
        spans.push(Span::styled(
            format!("{:<out_w$} ", c.outcome.map_or("?", |o| o.as_str())),
            app.theme.get(outcome_role(c.outcome)),
        ));
        if show_digest {
            spans.push(Span::styled(
                c.digest.short().to_string(),
                app.theme.get(Role::Digest),
            ));
        }
        lines.push(Line::from(spans));
    }
    let title = if app.filter.is_empty() {
        format!(" Capsules — {} of {} ", rows.len(), app.snap.capsule_count)
    } else {
        format!(" Capsules — /{} — {} match ", app.filter, rows.len())
    };
    frame.render_widget(Paragraph::new(lines).block(block(app, title)), list);

    let Some(row) = rows.get(app.capsule) else {
        frame.render_widget(
            Paragraph::new("No capsule matches.").block(block(app, " Capsule ")),
            detail,
        );
        return;
    };
    let mut out: Vec<Line> = vec![
        Line::from(vec![
            Span::styled(format!("#{} ", row.id), app.theme.get(Role::Title)),
            Span::raw(format!("{} {} in {}", row.action, row.app, row.environment)),
        ]),
        Line::from(vec![
            Span::raw("outcome "),
            Span::styled(
                row.outcome
                    .map_or("not recorded", |o| o.as_str())
                    .to_owned(),
                app.theme.get(outcome_role(row.outcome)),
            ),
        ]),
        Line::from(vec![
            Span::raw("subject "),
            Span::styled(row.digest.to_string(), app.theme.get(Role::Digest)),
        ]),
        Line::raw(format!("payload {}", row.payload_digest)),
        Line::raw(format!(
            "previous {}",
            row.previous
                .as_ref()
                .map_or("none (first of its chain)".into(), |p| p.to_string())
        )),
        Line::raw(format!(
            "sealed {}",
            row.sealed_at.to_rfc3339_opts(SecondsFormat::Secs, true)
        )),
    ];
    match app.verified.get(&row.id) {
        Some(Verification::Valid) => out.push(Line::styled(
            "verified: signature and payload digest hold",
            app.theme.get(Role::GatePass),
        )),
        Some(Verification::Invalid(p)) => {
            for problem in p {
                out.push(Line::styled(
                    format!("INVALID: {problem}"),
                    app.theme.get(Role::GateBlocked),
                ));
            }
        }
        None => out.push(Line::styled("verifying…", app.theme.get(Role::Muted))),
    }
    match app.replays.get(&row.id) {
        Some(ReplayState::Running) => {
            out.push(Line::styled("replaying…", app.theme.get(Role::StepRunning)))
        }
        Some(ReplayState::Identical) => out.push(Line::styled(
            "replay: identical — every gate gives the same verdict from the embedded inputs",
            app.theme.get(Role::GatePass),
        )),
        Some(ReplayState::Differs(d)) => {
            out.push(Line::styled(
                format!("replay: {} differences", d.len()),
                app.theme.get(Role::GateBlocked),
            ));
            out.extend(d.iter().map(|x| Line::raw(format!("  {x}"))));
        }
        Some(ReplayState::Failed(e)) => out.push(Line::styled(
            format!("replay failed: {e}"),
            app.theme.get(Role::GateBlocked),
        )),
        None => {
            // Whole hints a line, as many as fit.
            let mut hints: Vec<String> = ["R replay", "e export", "/ filter", "←/→ scroll"]
                .map(String::from)
                .to_vec();
            let width = detail.width.saturating_sub(2) as usize;
            while !hints.is_empty() {
                let line = super::whole(&hints, " · ", width);
                let n = if line.is_empty() {
                    1
                } else {
                    line.split(" · ").count()
                };
                out.push(Line::styled(
                    if line.is_empty() {
                        hints[0].clone()
                    } else {
                        line
                    },
                    app.theme.get(Role::Muted),
                ));
                hints.drain(..n.min(hints.len()));
            }
        }
    }
    out.push(Line::raw(""));
    match app.detail.as_ref().filter(|d| d.id == row.id) {
        None => out.push(Line::styled("loading…", app.theme.get(Role::Muted))),
        Some(d) => match &d.statement {
            Err(e) => out.push(Line::styled(
                format!("cannot read it: {e}"),
                app.theme.get(Role::GateBlocked),
            )),
            Ok(st) => {
                let p = &st.predicate;
                out.push(Line::from(vec![
                    Span::styled("decision ", app.theme.get(Role::Title)),
                    Span::styled(
                        format!("{:?}", p.decision).to_lowercase(),
                        app.theme
                            .get(if p.decision == crate::domain::Decision::Allow {
                                Role::GatePass
                            } else {
                                Role::GateBlocked
                            }),
                    ),
                    Span::raw(" → "),
                    Span::styled(
                        p.outcome.as_str(),
                        app.theme.get(crate::tui::theme::outcome_role(p.outcome)),
                    ),
                ]));
                out.push(Line::raw(format!(
                    "clock {} · requested by {} · promotion #{}",
                    p.clock,
                    p.requested_by,
                    p.promotion_id.unwrap_or_default()
                )));
                if let Some(t) = &p.release.tag {
                    out.push(Line::raw(format!("tag {t}")));
                }
                if let Some(r) = &p.reason {
                    out.push(Line::raw(format!("reason: {r}")));
                }
                if let Some(r) = &p.restores {
                    out.push(Line::raw(format!("restores {}", r.digest)));
                }
                out.push(Line::raw(""));
                for v in &p.gates {
                    out.extend(verdict_lines(app, v, false));
                }
                out.push(Line::raw(""));
                out.push(Line::styled(
                    format!(
                        "evidence ({})",
                        p.inputs.evidence.len() + p.inputs.policies.len() + p.inputs.keys.len() + 1
                    ),
                    app.theme.get(Role::Title),
                ));
                for e in &p.inputs.evidence {
                    out.push(Line::raw(format!("  {:<9} {}", e.kind, e.digest.short())));
                }
                for pol in &p.inputs.policies {
                    out.push(Line::raw(format!(
                        "  {:<9} {} {}",
                        "policy",
                        pol.digest.short(),
                        pol.path
                    )));
                }
                out.push(Line::raw(format!(
                    "  {:<9} {}",
                    "config",
                    p.inputs.environment.digest.short()
                )));
                for k in &p.inputs.keys {
                    out.push(Line::raw(format!("  {:<9} {}", "key", k.digest.short())));
                }
                out.push(Line::raw(format!(
                    "engine {} {}",
                    p.engine.name, p.engine.version
                )));
            }
        },
    }
    let width = detail.width.saturating_sub(2) as usize;
    let out: Vec<Line> = out
        .into_iter()
        .flat_map(|l| super::wrap_line(l, width))
        .collect();
    frame.render_widget(
        Paragraph::new(out)
            .scroll((app.detail_scroll, 0))
            .block(block(app, " Capsule ")),
        detail,
    );
}
