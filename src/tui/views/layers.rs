//! The layers over a screen: help (from the keymap's descriptions), a
//! confirmation, the promote dialog with its gate preview, the rollback
//! picker, and the `:` / `/` / time input line.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};

use super::{block, centered, selected, verdict_lines};
use crate::domain::Decision;
use crate::tui::keymap::SECTIONS;
use crate::tui::state::{App, InputKind, Layer};
use crate::tui::theme::Role;

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    for layer in &app.layers {
        match layer {
            Layer::Help { scroll } => help(frame, area, app, *scroll),
            Layer::Confirm { title, lines, .. } => {
                let body: Vec<Line> = lines.iter().map(|l| Line::raw(l.clone())).collect();
                super::dialog(
                    frame,
                    area,
                    block(app, format!(" {title} ")).border_style(app.theme.get(Role::GateBlocked)),
                    body,
                    Line::from(vec![
                        Span::styled(" y ", app.theme.get(Role::TabActive)),
                        Span::raw(" confirm    "),
                        Span::styled(" n ", app.theme.get(Role::Tab)),
                        Span::raw(" cancel"),
                    ]),
                    64,
                );
            }
            Layer::Promote { request, preview } => {
                let mut body = vec![
                    Line::from(vec![
                        Span::styled(format!("{} ", request.app), app.theme.get(Role::Title)),
                        Span::raw(request.tag.clone().unwrap_or_default()),
                        Span::raw(" "),
                        Span::styled(request.digest.to_string(), app.theme.get(Role::Digest)),
                    ]),
                    Line::raw(format!("into {}", request.env)),
                    Line::raw(""),
                ];
                match preview {
                    None => body.push(Line::styled(
                        "evaluating the gates…",
                        app.theme.get(Role::Muted),
                    )),
                    Some(p) => match &p.outcome {
                        Err(e) => {
                            body.push(Line::styled(e.clone(), app.theme.get(Role::StatusError)))
                        }
                        Ok((decision, verdicts)) => {
                            for v in verdicts {
                                body.extend(verdict_lines(app, v, false));
                                if v.gate == crate::domain::GateKind::Freeze {
                                    body.extend(super::freeze::note_lines(
                                        app,
                                        &request.env,
                                        request.at.unwrap_or(p.evaluated_at),
                                    ));
                                }
                            }
                            body.push(Line::raw(""));
                            body.push(match decision {
                                Decision::Allow => {
                                    Line::styled("All gates pass.", app.theme.get(Role::GatePass))
                                }
                                Decision::Deny => Line::styled(
                                    "Blocked: promoting now seals a blocked decision.",
                                    app.theme.get(Role::GateBlocked),
                                ),
                            });
                        }
                    },
                }
                if let Some(pin) = app.pin_of(&request.env, &request.app) {
                    body.push(Line::raw(""));
                    body.push(Line::styled(
                        format!(
                            "Pinned: the rollback in capsule #{} ({}) holds {} in {} on sha256:{}; promoting is refused until `u` on that lane unpins it.",
                            pin.capsule_id,
                            pin.pinned_by,
                            request.app,
                            request.env,
                            pin.digest.short()
                        ),
                        app.theme.get(Role::GateBlocked),
                    ));
                }
                super::dialog(
                    frame,
                    area,
                    block(app, " Promote ").border_style(app.theme.get(Role::BorderFocus)),
                    body,
                    Line::from(vec![
                        Span::styled(" enter ", app.theme.get(Role::TabActive)),
                        Span::raw(" promote   "),
                        Span::styled(" a ", app.theme.get(Role::Tab)),
                        Span::raw(" approve with your key   "),
                        Span::styled(" esc ", app.theme.get(Role::Tab)),
                        Span::raw(" cancel"),
                    ]),
                    90,
                );
            }
            Layer::Rollback {
                app: a,
                env,
                choices,
                sel,
                armed,
            } => {
                let mut body = vec![Line::raw(format!(
                    "Roll {a} in {env} back to (live there before):"
                ))];
                for (i, c) in choices.iter().enumerate() {
                    let tags = app
                        .snap
                        .releases
                        .iter()
                        .find(|r| r.app == *a)
                        .and_then(|r| r.releases.iter().find(|x| x.digest == c.digest))
                        .map(|x| x.tags.join(", "))
                        .unwrap_or_default();
                    body.push(Line::from(vec![
                        Span::styled(
                            format!(" sha256:{} ", c.digest.short()),
                            selected(app, i == *sel).patch(app.theme.get(Role::Digest)),
                        ),
                        Span::styled(format!(" {tags:<10}"), app.theme.get(Role::Text)),
                        Span::styled(
                            format!(
                                " live from {} ({} ago)",
                                c.since.format("%Y-%m-%d %H:%M UTC"),
                                super::age(app.now, c.since)
                            ),
                            app.theme.get(Role::Muted),
                        ),
                    ]));
                    if let Some(t) = c.taken_out {
                        body.push(Line::styled(
                            format!(
                                "   ⚠ TAKEN OUT by a rollback on {} ({} ago)",
                                t.format("%Y-%m-%d %H:%M UTC"),
                                super::age(app.now, t)
                            ),
                            app.theme.get(Role::GateBlocked),
                        ));
                    }
                }
                body.push(Line::styled(
                    format!("The rollback is sealed and pins {a} in {env} until unpinned (u)."),
                    app.theme.get(Role::Muted),
                ));
                let hints = if *armed {
                    Line::styled(
                        "Taken out by a rollback: enter again to roll back to it · esc cancel",
                        app.theme.get(Role::GateBlocked),
                    )
                } else {
                    Line::styled(
                        "j/k choose · enter roll back · esc cancel",
                        app.theme.get(Role::Muted),
                    )
                };
                super::dialog(frame, area, block(app, " Roll back "), body, hints, 80);
            }
            Layer::Input { kind, text } => {
                let prompt = match kind {
                    InputKind::Command => ":",
                    InputKind::Filter => "/",
                    InputKind::Time => "at (+2h, -1d, RFC 3339): ",
                };
                let r = Rect {
                    x: area.x,
                    y: area.y + area.height.saturating_sub(1),
                    width: area.width,
                    height: 1,
                };
                frame.render_widget(Clear, r);
                frame.render_widget(
                    Paragraph::new(Line::from(vec![
                        Span::styled(prompt, app.theme.get(Role::Title)),
                        Span::raw(text.clone()),
                        Span::styled("█", app.theme.get(Role::Muted)),
                    ])),
                    r,
                );
            }
        }
    }
}

fn help(frame: &mut Frame, area: Rect, app: &App, scroll: u16) {
    let r = centered(area, 76, area.height.saturating_sub(4));
    let mut body = Vec::new();
    for section in SECTIONS {
        let bindings = app.keymap.section(section);
        if bindings.is_empty() {
            continue;
        }
        body.push(Line::styled(
            if *section == "global" {
                "Everywhere".to_owned()
            } else {
                format!("On {}", section)
            },
            app.theme.get(Role::Title),
        ));
        for b in bindings {
            body.push(Line::from(vec![
                Span::styled(
                    format!("  {:<11}", b.key.label()),
                    app.theme.get(Role::Digest),
                ),
                Span::raw(b.desc.clone()),
            ]));
        }
        body.push(Line::raw(""));
    }
    body.push(Line::styled(
        "Mouse: click a tab, scroll a list. Keys come from assets/keymap.toml, merged with your keymap.toml.",
        app.theme.get(Role::Muted),
    ));
    frame.render_widget(Clear, r);
    frame.render_widget(
        Paragraph::new(body).scroll((scroll, 0)).block(
            block(app, " Help — j/k scroll, esc close ")
                .border_style(app.theme.get(Role::BorderFocus)),
        ),
        r,
    );
}
