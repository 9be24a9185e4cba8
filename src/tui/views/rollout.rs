//! Rollout: each `router` target's traffic split as a gauge, per-version
//! error rate and p95 as sparklines, the canary's steps with the current
//! one marked, and its analysis samples; an interrupted canary, an A/B
//! test and a release kept warm say so. Keys pause, resume, promote,
//! abort and roll back (all but the first two confirm).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::{block, selected};
use crate::domain::CanaryPhase;
use crate::tui::state::App;
use crate::tui::theme::Role;

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A sparkline of `values`, scaled to their maximum (at least `floor`).
fn spark(values: impl Iterator<Item = f64> + Clone, floor: f64, width: usize) -> String {
    let v: Vec<f64> = values.collect();
    let v = &v[v.len().saturating_sub(width)..];
    let max = v.iter().cloned().fold(floor, f64::max);
    v.iter()
        .map(|x| BARS[((x / max) * 7.0).round().clamp(0.0, 7.0) as usize])
        .collect()
}

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    if app.rollouts.is_empty() {
        frame.render_widget(
            Paragraph::new(
                "No router targets. A `router` target serves releases through stella's built-in router; \
                 with `strategy = \"canary\"` its promotions walk through weights here (docs/targets.md).",
            )
            .wrap(Wrap { trim: true })
            .block(block(app, " Rollout ")),
            area,
        );
        return;
    }
    let [list, detail] =
        Layout::horizontal([Constraint::Length(30), Constraint::Min(0)]).areas(area);
    let lines: Vec<Line> = app
        .rollouts
        .iter()
        .enumerate()
        .map(|(i, r)| {
            Line::from(vec![
                Span::styled(format!("{:<14}", r.target), selected(app, i == app.rollout)),
                Span::styled(format!(" {:<8}", r.env), app.theme.get(Role::Muted)),
                Span::styled(
                    format!(" {:>3}%", r.weight),
                    app.theme.get(if r.weight > 0 {
                        Role::StepRunning
                    } else {
                        Role::Muted
                    }),
                ),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(lines).block(block(app, " Targets ")), list);

    let r = &app.rollouts[app.rollout.min(app.rollouts.len() - 1)];
    let p = &r.progress;
    let phase = p.state;
    let ab = phase == Some(CanaryPhase::Experiment);
    let warm = r.candidate.is_some() && r.weight == 0 && !p.in_flight() && !ab;
    let width = detail.width.saturating_sub(4) as usize;
    let gauge_w = width.saturating_sub(30).max(10);
    let cand = (gauge_w * usize::from(r.weight)).div_ceil(100).min(gauge_w);
    let mut out = vec![
        Line::from(vec![
            Span::styled(format!("{} ", r.target), app.theme.get(Role::Title)),
            Span::raw(format!("in {}", r.env)),
            Span::styled(
                if r.running {
                    format!("  {} running", r.router)
                } else {
                    format!("  {} not running", r.router)
                },
                app.theme.get(if r.running {
                    Role::GatePass
                } else {
                    Role::GateBlocked
                }),
            ),
        ]),
        Line::raw(""),
        Line::from(vec![
            Span::raw(format!(
                "{} {:>3}% ",
                if ab { "     a" } else { "stable" },
                100 - u16::from(r.weight)
            )),
            Span::styled("█".repeat(gauge_w - cand), app.theme.get(Role::GatePass)),
            // Another glyph, so the split reads without colour too.
            Span::styled("▒".repeat(cand), app.theme.get(Role::StepRunning)),
            Span::raw(format!(
                " {:>3}% {}",
                r.weight,
                if ab { "b" } else { "candidate" }
            )),
        ]),
        Line::raw(""),
    ];
    let history = app.rollout_history.get(&r.target);
    for (name, label, digest, stats, err_i, p95_i) in [
        (
            "stable",
            if ab { "a stable" } else { "stable" },
            &r.stable,
            &r.stats.0,
            0usize,
            2usize,
        ),
        (
            "candidate",
            if ab {
                "b"
            } else if warm {
                "warm"
            } else {
                "candidate"
            },
            &r.candidate,
            &r.stats.1,
            1,
            3,
        ),
    ] {
        out.push(Line::from(vec![
            Span::styled(format!("{label:<10}"), app.theme.get(Role::Title)),
            Span::styled(
                digest
                    .as_ref()
                    .map_or("-".into(), |d| format!("sha256:{}", d.short())),
                app.theme.get(Role::Digest),
            ),
            Span::raw(format!(
                "  {} requests, error rate {:.3}, p95 ≤ {} ms",
                stats.requests,
                stats.error_rate(),
                stats.p95_ms
            )),
        ]));
        if let Some(h) = history {
            let role = if name == "stable" {
                Role::GatePass
            } else {
                Role::StepRunning
            };
            // Each line says its scale (the lowest and highest point
            // drawn) and the time it covers, so a bar reads as a number.
            let spark_w = width.saturating_sub(12 + 34).max(8);
            let shown = h.len().min(spark_w);
            let span = app
                .rollout_times
                .get(&r.target)
                .and_then(|t| Some(*t.back()? - *t.get(t.len().checked_sub(shown)?)?))
                .filter(|d| d.num_seconds() > 0)
                .map_or(String::new(), |d| {
                    format!(
                        ", last {}",
                        crate::domain::duration::format_duration(d.to_std().unwrap_or_default())
                    )
                });
            for (label, i, floor, unit, digits) in [
                ("  errors  ", err_i, 0.01, "", 3usize),
                ("  p95     ", p95_i, 1.0, " ms", 1),
            ] {
                let points = || h.iter().rev().take(shown).map(move |p| p[i]);
                let max = points().fold(f64::MIN, f64::max);
                let min = points().fold(f64::MAX, f64::min);
                out.push(Line::from(vec![
                    Span::styled(label, app.theme.get(Role::Muted)),
                    Span::styled(
                        spark(h.iter().map(|p| p[i]), floor, spark_w),
                        app.theme.get(role),
                    ),
                    Span::styled(
                        if shown == 0 {
                            String::new()
                        } else {
                            format!(
                                "  {min:.digits$}–{max:.digits$}{unit}{span}",
                                max = max.max(min)
                            )
                        },
                        app.theme.get(Role::Muted),
                    ),
                ]));
            }
        }
    }
    out.push(Line::raw(""));
    if warm {
        out.push(Line::styled(
            "the previous release is kept warm: r rolls back to it in one swap",
            app.theme.get(Role::Muted),
        ));
    }
    if ab {
        out.push(Line::styled(
            format!(
                "A/B test: b takes {}% of new clients, each kept on its variant by a cookie",
                r.weight
            ),
            app.theme.get(Role::Title),
        ));
        out.push(Line::styled(
            format!(
                "  r ends it on a · `stella rollout consolidate {} --winner a|b` picks the winner",
                r.env
            ),
            app.theme.get(Role::Muted),
        ));
        for s in p.samples.iter().rev().take(8) {
            out.push(Line::styled(format!("  {s}"), app.theme.get(Role::Muted)));
        }
    } else if p.steps.is_empty() {
        out.push(Line::styled(
            "no canary has run on this target",
            app.theme.get(Role::Muted),
        ));
    } else {
        if p.interrupted {
            out.push(Line::styled(
                format!(
                    "interrupted: its promotion stopped at {}%; traffic is held there",
                    p.steps.get(p.step).copied().unwrap_or(0)
                ),
                app.theme.get(Role::GateBlocked),
            ));
            out.push(Line::styled(
                "  space resumes it in a new promotion · p promotes it · x or r aborts it",
                app.theme.get(Role::Muted),
            ));
        }
        let mut steps = vec![Span::styled(
            format!("canary {}: ", p.state.map_or("-", |s| s.as_str())),
            app.theme.get(Role::Title),
        )];
        for (i, w) in p.steps.iter().enumerate() {
            if i > 0 {
                steps.push(Span::styled(" → ", app.theme.get(Role::Muted)));
            }
            let current = i == p.step && p.in_flight();
            steps.push(Span::styled(
                if current {
                    format!("[{w}%]")
                } else {
                    format!("{w}%")
                },
                app.theme.get(if current {
                    Role::StepRunning
                } else if i < p.step {
                    Role::StepDone
                } else {
                    Role::Muted
                }),
            ));
        }
        if let Some(next) = p.steps.get(p.step + 1).filter(|_| p.in_flight()) {
            let when = match (phase, p.next_at) {
                (Some(CanaryPhase::Running), Some(at)) => format!(
                    "in {}",
                    crate::domain::duration::format_duration(
                        (at - app.now).to_std().unwrap_or_default()
                    )
                ),
                (Some(CanaryPhase::Running), None) if p.manual => "when an operator resumes".into(),
                (Some(CanaryPhase::Running), None) => "once this step's weight is live".into(),
                _ => "once resumed".into(),
            };
            steps.push(Span::styled(
                format!("   next {next}% {when}"),
                app.theme.get(Role::Muted),
            ));
        }
        out.push(Line::from(steps));
        for s in p.samples.iter().rev().take(8) {
            let role = if s.ends_with("FAIL") {
                Role::GateBlocked
            } else if s.ends_with("pass") {
                Role::GatePass
            } else {
                Role::Muted
            };
            out.push(Line::styled(format!("  {s}"), app.theme.get(role)));
        }
    }
    out.push(Line::raw(""));
    let hints = [
        "space pause/resume",
        "p promote now",
        "x abort",
        "r roll back",
        "j/k target",
    ]
    .map(String::from);
    // The hints on the last row, whole; the rest wrapped above them, with
    // what does not fit announced.
    let inner_w = detail.width.saturating_sub(2) as usize;
    let inner_h = detail.height.saturating_sub(2) as usize;
    let mut out = super::fitted(
        out,
        inner_w,
        inner_h.saturating_sub(1),
        0,
        "",
        app.theme.get(Role::Muted),
    );
    while out.len() < inner_h.saturating_sub(1) {
        out.push(Line::raw(""));
    }
    out.push(Line::styled(
        super::whole(&hints, " · ", inner_w),
        app.theme.get(Role::Muted),
    ));
    frame.render_widget(Paragraph::new(out).block(block(app, " Rollout ")), detail);
}
