//! `stella gate check --all [--env ENV]`: every release waiting to come
//! into each lane from upstream, what blocks it and when each blocker
//! clears. Reads only; exit 0 whenever the picture could be drawn.

use chrono::{DateTime, SecondsFormat, Utc};

use super::gate::CheckCommand;
use super::{Context, Failure, exit, print_json};
use crate::engine::waiting::{Freezes, Overview, When, overview};

pub fn print(
    ctx: &Context,
    config: &crate::config::Config,
    c: &CheckCommand,
    now: DateTime<Utc>,
) -> Result<u8, Failure> {
    let ws = ctx.workspace()?;
    let store = ws.read_store()?;
    let requester = match (&c.requester, &c.key) {
        (None, None) => None,
        (given, key) => Some(super::gate::what_if_requester(
            ws,
            given.clone(),
            key.clone(),
        )?),
    };
    let o = overview(ws, &store, config, c.env.as_deref(), requester, now)?;
    if c.json {
        print_json(&o)?;
    } else {
        text(&o);
    }
    Ok(exit::OK)
}

fn when(w: &When) -> String {
    format!("{} — yours {}", w.written, w.yours)
}

fn freeze_lines(f: &Freezes) -> Vec<String> {
    let mut out = Vec::new();
    for a in &f.active {
        out.push(match &a.ends {
            Some(e) => format!("frozen by {} until {}", a.window, when(e)),
            None => format!("frozen by {}, with no end in sight", a.window),
        });
    }
    if let Some(n) = &f.next {
        out.push(format!(
            "next freeze: {} from {}",
            n.window,
            when(&n.starts)
        ));
    }
    out
}

fn text(o: &Overview) {
    println!(
        "Waiting to come in, at {} (asked as {})",
        o.now.to_rfc3339_opts(SecondsFormat::Secs, true),
        o.requested_as
    );
    if o.lanes.is_empty() {
        println!("No lane is promoted from another: nothing waits upstream");
        return;
    }
    for lane in &o.lanes {
        println!();
        println!("{} ← {}", lane.environment, lane.from);
        for l in freeze_lines(&lane.freeze) {
            println!("  {l}");
        }
        if lane.waiting.is_empty() {
            println!(
                "  nothing waiting: every app live in {} runs here",
                lane.from
            );
            continue;
        }
        for w in &lane.waiting {
            let here = w
                .live_here
                .as_ref()
                .map_or("nothing".to_owned(), |d| format!("sha256:{}", d.short()));
            println!(
                "  {} sha256:{} (here: {here}) — {}",
                w.app,
                w.digest.short(),
                if w.ready {
                    "ready".to_owned()
                } else {
                    format!(
                        "blocked by {}",
                        w.blockers
                            .iter()
                            .map(|b| b.gate.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            );
            for b in &w.blockers {
                println!(
                    "    {:<9} {}",
                    b.gate,
                    b.summary.trim_start_matches("FAIL — ")
                );
                if let Some(c) = &b.clears {
                    println!("    {:<9} clears {}", "", when(c));
                }
                if let Some(n) = b.approvals_needed {
                    println!(
                        "    {:<9} {n} more from: {}",
                        "",
                        if b.missing_approvers.is_empty() {
                            "nobody left on the list".to_owned()
                        } else {
                            b.missing_approvers.join(", ")
                        }
                    );
                } else if b.clears.is_none() {
                    for u in b.unblock.iter().take(2) {
                        println!("    {:<9} {u}", "");
                    }
                }
            }
        }
    }
}
