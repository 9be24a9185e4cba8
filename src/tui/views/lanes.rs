//! Lanes: one column per environment in `from` order; in each, every
//! app's live release, its age and health, the last decision, and badges;
//! promotions in flight drawn between the lanes.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{age, block, selected};
use crate::tui::data::Health;
use crate::tui::state::App;
use crate::tui::theme::Role;

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let lanes = &app.snap.lanes;
    if lanes.is_empty() {
        frame.render_widget(
            Paragraph::new("No environments in stella.toml.").block(block(app, " Lanes ")),
            area,
        );
        return;
    }
    let [grid, flight] = Layout::vertical([
        Constraint::Min(0),
        Constraint::Length(in_flight_height(app)),
    ])
    .areas(area);
    // As many lanes as fit (about 30 columns each), scrolled to the
    // selected one; each lane's cells scroll to keep the selection in view.
    let fit = ((grid.width as usize + 3) / 33).max(1);
    let first = app
        .lane
        .saturating_sub(fit - 1)
        .min(lanes.len().saturating_sub(fit));
    let shown: Vec<(usize, &crate::tui::data::Lane)> =
        lanes.iter().enumerate().skip(first).take(fit).collect();
    let per_cell = 4usize;
    let rows = (grid.height.saturating_sub(3) as usize / per_cell).max(1);
    let skip = app.cell.saturating_sub(rows - 1);
    // Lanes with a narrow gutter between them for the arrows.
    let mut constraints = Vec::new();
    for i in 0..shown.len() {
        if i > 0 {
            constraints.push(Constraint::Length(3));
        }
        constraints.push(Constraint::Fill(1));
    }
    let cols = Layout::horizontal(constraints).split(grid);
    for (k, (i, lane)) in shown.into_iter().enumerate() {
        let col = cols[k * 2];
        if k > 0 {
            let gutter = cols[k * 2 - 1];
            let mut arrows = vec![Line::raw(""); 2];
            for cell in lane.cells.iter().skip(skip) {
                let moving = app
                    .live
                    .values()
                    .any(|r| r.env == lane.env && r.app == cell.app && r.outcome.is_none());
                arrows.push(Line::styled(
                    if moving { " ⇢ " } else { " → " },
                    app.theme.get(if moving {
                        Role::StepRunning
                    } else {
                        Role::Muted
                    }),
                ));
                arrows.push(Line::raw(""));
                arrows.push(Line::raw(""));
                arrows.push(Line::raw(""));
            }
            frame.render_widget(Paragraph::new(arrows), gutter);
        }
        let mut title = Vec::new();
        // Lanes that do not fit are named at the edges: h/l reach them.
        if k == 0 && first > 0 {
            title.push(Span::styled(
                format!(" ◀ {first} more "),
                app.theme.get(Role::Badge),
            ));
        }
        title.push(Span::styled(
            format!(" {} ", lane.env),
            app.theme.get(Role::Title),
        ));

        let frozen: Vec<&String> = lane
            .freeze_windows
            .iter()
            .filter(|w| {
                app.snap
                    .freeze
                    .iter()
                    .any(|(n, win)| n == *w && win.active_at(app.now).is_some())
            })
            .collect();
        if !frozen.is_empty() {
            title.push(Span::styled(" FROZEN ", app.theme.get(Role::Badge)));
            title.push(Span::raw(" "));
        }
        let after = lanes.len() - (first + fit).min(lanes.len());
        if k + 1 == fit.min(lanes.len() - first) && after > 0 {
            title.push(Span::styled(
                format!(" {after} more ▶ "),
                app.theme.get(Role::Badge),
            ));
        }
        let mut lines = Vec::new();
        if let Some(from) = &lane.from {
            lines.push(Line::styled(
                format!("from {from}"),
                app.theme.get(Role::Muted),
            ));
        } else {
            lines.push(Line::styled("first lane", app.theme.get(Role::Muted)));
        }
        if skip > 0 {
            lines[0].spans.push(Span::styled(
                format!("  ↑ {skip} more"),
                app.theme.get(Role::Muted),
            ));
        }
        let below = lane.cells.len().saturating_sub(skip + rows);
        for (j, cell) in lane.cells.iter().enumerate().skip(skip).take(rows) {
            let sel = i == app.lane && j == app.cell;
            let mark = if sel { "▌" } else { " " };
            let mut head = match &cell.live {
                Some(l) => Line::from(vec![
                    Span::styled(mark, app.theme.get(Role::BorderFocus)),
                    Span::styled(format!("{:<12}", cell.app), selected(app, sel)),
                    Span::raw(" "),
                    Span::styled(
                        l.tag.clone().unwrap_or_else(|| "-".into()),
                        app.theme.get(Role::Text),
                    ),
                ]),
                None => Line::from(vec![
                    Span::styled(mark, app.theme.get(Role::BorderFocus)),
                    Span::styled(format!("{:<12}", cell.app), selected(app, sel)),
                    Span::styled(" not live", app.theme.get(Role::Muted)),
                ]),
            };
            if cell.pin.is_some() {
                head.spans.push(Span::raw(" "));
                head.spans
                    .push(Span::styled(" PINNED ", app.theme.get(Role::Badge)));
            }
            lines.push(head);
            match &cell.live {
                Some(l) => {
                    let (health, role) = match cell.health {
                        Health::Serving => ("● serving", Role::GatePass),
                        Health::Drift => ("● drift", Role::GateBlocked),
                        Health::Unknown => ("○ unknown", Role::Muted),
                    };
                    lines.push(Line::from(vec![
                        Span::raw("  "),
                        Span::styled(
                            // A narrow lane drops the algorithm before
                            // the health is cut.
                            if col.width >= 38 {
                                format!("sha256:{}", l.digest.short())
                            } else {
                                l.digest.short().to_owned()
                            },
                            app.theme.get(Role::Digest),
                        ),
                        Span::styled(
                            format!(" {:>4}", age(app.now, l.since)),
                            app.theme.get(Role::Muted),
                        ),
                        Span::raw(" "),
                        Span::styled(health, app.theme.get(role)),
                    ]));
                }
                None => lines.push(Line::raw("")),
            }
            match &cell.last {
                Some(p) => {
                    let status = crate::tui::state::RunStatus::of(p);
                    lines.push(Line::from(vec![
                        Span::styled(format!("  #{} ", p.id), app.theme.get(Role::Muted)),
                        Span::styled(status.as_str(), app.theme.get(status.role())),
                        Span::styled(
                            format!(
                                " {}",
                                p.tag.clone().unwrap_or_else(|| short_digest(&p.digest))
                            ),
                            app.theme.get(Role::Muted),
                        ),
                    ]));
                }
                None => lines.push(Line::raw("")),
            }
            lines.push(Line::raw(""));
        }
        if below > 0 {
            // In place of the last cell's blank line, so it always shows.
            lines.pop();
            lines.push(Line::styled(
                format!("  ↓ {below} more (j)"),
                app.theme.get(Role::Muted),
            ));
        }
        let focus = if i == app.lane {
            Role::BorderFocus
        } else {
            Role::Border
        };
        frame.render_widget(
            Paragraph::new(lines)
                .block(block(app, Line::from(title)).border_style(app.theme.get(focus))),
            col,
        );
    }
    frame.render_widget(in_flight(app), flight);
}

fn short_digest(d: &str) -> String {
    d.trim_start_matches("sha256:").chars().take(12).collect()
}

fn in_flight_height(app: &App) -> u16 {
    let n = running(app).len() as u16;
    if n == 0 { 3 } else { n.min(5) + 2 }
}

fn running(app: &App) -> Vec<String> {
    let mut out: Vec<String> = app
        .live
        .values()
        .filter(|r| r.outcome.is_none())
        .map(|r| {
            let done = r.steps.values().filter(|s| s.duration.is_some()).count();
            format!(
                "#{} {} sha256:{} → {}  {}/{} steps{}",
                r.id,
                r.app,
                r.digest.short(),
                r.env,
                done,
                r.graph.len(),
                if r.paused { "  PAUSED" } else { "" }
            )
        })
        .collect();
    // Runs other processes drive, seen in the store.
    for p in &app.snap.promotions {
        let pr = &p.promotion;
        if pr.state == crate::domain::PromotionState::Running && !app.live.contains_key(&pr.id) {
            let done = p.steps.iter().filter(|s| s.finished_at.is_some()).count();
            out.push(format!(
                "#{} {} {} → {}  {}/{} steps  (another process)",
                pr.id,
                pr.app,
                short_digest(&pr.digest),
                pr.environment,
                done,
                p.graph.len()
            ));
        }
    }
    out
}

fn in_flight(app: &App) -> Paragraph<'_> {
    let lines: Vec<Line> = match running(app) {
        r if r.is_empty() => vec![Line::styled(
            "No promotion in flight. p promote · a approve · r roll back · enter open",
            app.theme.get(Role::Muted),
        )],
        r => r
            .into_iter()
            .map(|l| Line::styled(l, app.theme.get(Role::StepRunning)))
            .collect(),
    };
    Paragraph::new(lines).block(block(app, " In flight "))
}
