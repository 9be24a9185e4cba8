//! Releases: each app's digests with their tags and attached evidence; the
//! security verdict of the selected release (reachable and suppressed
//! findings, and the VEX statement that suppressed each), when it has been
//! evaluated on the Gates screen.

use chrono::SecondsFormat;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{block, selected};
use crate::domain::GateKind;
use crate::tui::state::App;
use crate::tui::theme::Role;

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(area);
    let apps: Vec<Span> = app
        .snap
        .releases
        .iter()
        .enumerate()
        .map(|(i, r)| {
            Span::styled(
                format!(" {} ", r.app),
                app.theme.get(if i == app.rel_app {
                    Role::TabActive
                } else {
                    Role::Tab
                }),
            )
        })
        .collect();
    let mut lines = vec![Line::from(apps), Line::raw("")];
    let Some(group) = app.snap.releases.get(app.rel_app) else {
        frame.render_widget(
            Paragraph::new("No apps.").block(block(app, " Releases ")),
            area,
        );
        return;
    };
    // Two lines a release; scrolled to keep the selected one in view.
    let fit = (left.height.saturating_sub(6) as usize / 2).max(1);
    let skip = app.rel.saturating_sub(fit - 1);
    for (i, r) in group.releases.iter().enumerate().skip(skip).take(fit) {
        let sel = i == app.rel;
        let live = live_in(app, &group.app, &r.digest);
        lines.push(Line::from(vec![
            Span::styled(format!("{:<8}", r.tags.join(",")), selected(app, sel)),
            Span::styled(
                format!(" sha256:{}", r.digest.short()),
                app.theme.get(Role::Digest),
            ),
        ]));
        // Where it is live and its evidence, on a line of their own so a
        // narrow list never cuts them.
        lines.push(Line::from(vec![if live.is_empty() {
            Span::styled("         not live anywhere", app.theme.get(Role::Muted))
        } else {
            Span::styled(
                format!(
                    "         ● live in {}",
                    live.iter()
                        .map(|(e, _)| e.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                app.theme.get(Role::GatePass),
            )
        }]));
        // Its evidence, where the line has room for it whole.
        let room = left.width.saturating_sub(2) as usize;
        let more = format!(" · {} evidence", r.evidence.len());
        if let Some(l) = lines.last_mut()
            && l.width() + more.chars().count() <= room
        {
            l.spans.push(Span::styled(more, app.theme.get(Role::Muted)));
        }
    }
    if group.releases.is_empty() {
        lines.push(Line::styled(
            "nothing resolved yet",
            app.theme.get(Role::Muted),
        ));
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        "h/l app · j/k release",
        app.theme.get(Role::Muted),
    ));
    frame.render_widget(Paragraph::new(lines).block(block(app, " Releases ")), left);

    let mut out = Vec::new();
    if let Some(r) = group.releases.get(app.rel) {
        out.push(Line::styled(
            format!("{}@{}", group.app, r.digest),
            app.theme.get(Role::Digest),
        ));
        out.push(Line::raw(format!(
            "first resolved {}",
            r.resolved_at.to_rfc3339_opts(SecondsFormat::Secs, true)
        )));
        let live = live_in(app, &group.app, &r.digest);
        if live.is_empty() {
            out.push(Line::styled("live in no lane", app.theme.get(Role::Muted)));
        }
        for (env, since) in live {
            out.push(Line::styled(
                format!(
                    "live in {env} since {} ({} ago)",
                    since.to_rfc3339_opts(SecondsFormat::Secs, true),
                    super::age(app.now, since)
                ),
                app.theme.get(Role::GatePass),
            ));
        }
        out.push(Line::raw(""));
        out.push(Line::styled("evidence", app.theme.get(Role::Title)));
        for (kind, media, d) in &r.evidence {
            out.push(Line::raw(format!("  {kind:<9} {} {media}", d.short())));
        }
        if r.evidence.is_empty() {
            out.push(Line::styled("  none attached", app.theme.get(Role::Muted)));
        }
        out.push(Line::raw(""));
        let judged = app.gates.as_ref().filter(|g| g.request.digest == r.digest);
        let security = judged
            .and_then(|g| g.outcome.as_ref().ok())
            .and_then(|(_, vs)| vs.iter().find(|v| v.gate == GateKind::Security));
        match (judged, security) {
            (Some(g), Some(v)) => {
                out.push(Line::from(vec![
                    Span::styled(
                        format!("security in {}: ", g.request.env),
                        app.theme.get(Role::Title),
                    ),
                    Span::styled(v.summary.clone(), app.theme.get(super::verdict_role(v))),
                ]));
                for f in &g.findings {
                    let head = format!(
                        "  {:<8} {} in {}{}",
                        f.severity,
                        f.id,
                        f.package,
                        f.version
                            .as_ref()
                            .map_or(String::new(), |v| format!(" {v}"))
                    );
                    match &f.excused {
                        None => out.push(Line::from(vec![
                            Span::styled("● ", app.theme.get(Role::GateBlocked)),
                            Span::raw(head),
                            Span::styled("  reachable", app.theme.get(Role::GateWarn)),
                        ])),
                        Some(why) => {
                            out.push(Line::from(vec![
                                Span::styled("○ ", app.theme.get(Role::GatePass)),
                                Span::styled(head, app.theme.get(Role::Muted)),
                            ]));
                            out.push(Line::styled(
                                format!("      {why}"),
                                app.theme.get(Role::Muted),
                            ));
                        }
                    }
                }
                if g.findings.is_empty() {
                    out.push(Line::styled("  no findings", app.theme.get(Role::Muted)));
                }
                out.push(Line::styled(
                    "● reachable (counted)  ○ suppressed or not applicable",
                    app.theme.get(Role::Muted),
                ));
            }
            _ => out.push(Line::styled(
                "findings: evaluating…",
                app.theme.get(Role::Muted),
            )),
        }
    }
    let out = super::fitted(
        out,
        right.width.saturating_sub(2) as usize,
        right.height.saturating_sub(2) as usize,
        0,
        "",
        app.theme.get(Role::Muted),
    );
    frame.render_widget(Paragraph::new(out).block(block(app, " Release ")), right);
}

/// The lanes where `digest` of `app` is live now, in lane order, with
/// since when.
fn live_in(
    app: &App,
    name: &str,
    digest: &crate::domain::Digest,
) -> Vec<(String, chrono::DateTime<chrono::Utc>)> {
    app.snap
        .lanes
        .iter()
        .filter_map(|l| {
            let live = l.cells.iter().find(|c| c.app == name)?.live.as_ref()?;
            (live.digest == *digest).then(|| (l.env.clone(), live.since))
        })
        .collect()
}
