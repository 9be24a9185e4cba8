//! `stella freeze list`: a month calendar of frozen periods, in the
//! window's zone and the user's, and when the current freeze ends.

use chrono::{DateTime, Datelike, Local, NaiveDate, SecondsFormat, Utc};
use clap::{Args, Subcommand};
use serde_json::json;

use super::{Context, Failure, exit, load_config, parse_at, print_json, unknown_environment};
use crate::gates::calendar;
use crate::gates::freeze::{Kind, Period, Window, when};

#[derive(Debug, Subcommand)]
pub enum FreezeCommand {
    /// Show a month of freeze windows
    List(ListArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only the windows this environment uses
    #[arg(long)]
    pub env: Option<String>,
    /// The month to show, YYYY-MM (default: the month of --at or now)
    #[arg(long)]
    pub month: Option<String>,
    /// The clock for "frozen now?" (RFC 3339; default now)
    #[arg(long)]
    pub at: Option<String>,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

fn local(t: DateTime<Utc>) -> DateTime<Local> {
    t.with_timezone(&Local)
}

pub fn run(ctx: &Context, cmd: FreezeCommand) -> Result<u8, Failure> {
    let FreezeCommand::List(a) = cmd;
    let ws = ctx.workspace()?;
    let config = load_config(ctx, ws)?;
    let now = parse_at(a.at.as_deref())?;
    let names: Vec<String> = match &a.env {
        Some(e) => {
            let env = config
                .environment(e)
                .ok_or_else(|| unknown_environment(e, &config))?;
            env.gates
                .freeze
                .iter()
                .flat_map(|f| &f.windows)
                .map(|w| w.get_ref().clone())
                .collect()
        }
        None => config.freeze.keys().cloned().collect(),
    };
    let windows: Vec<Window> = names
        .iter()
        .filter_map(|n| config.freeze.get(n).map(|c| Window::from_config(n, c)))
        .collect::<Result<_, _>>()
        .map_err(Failure::error)?;

    let first = match &a.month {
        Some(m) => NaiveDate::parse_from_str(&format!("{m}-01"), "%Y-%m-%d").map_err(|_| {
            Failure::usage(format!("--month `{m}` is not a month"))
                .hint("write it as YYYY-MM, e.g. 2026-12")
        })?,
        None => calendar::month_of(now, &Local),
    };
    let periods = calendar::periods(&windows, first, &Local);
    let days = calendar::month(&windows, first, &Local);
    let active: Vec<(&Window, Period)> = windows
        .iter()
        .filter_map(|w| w.active_at(now).map(|p| (w, p)))
        .collect();

    if a.json {
        let ws_json: Vec<serde_json::Value> = periods
            .iter()
            .map(|(w, ps)| {
                let now_p = w.active_at(now);
                json!({
                    "name": w.name,
                    "kind": match w.kind { Kind::Recurring { .. } => "recurring", Kind::OneOff { .. } => "one-off" },
                    "zone": w.zone().name(),
                    "active": now_p.is_some(),
                    "active_until": now_p.and_then(|p| p.end).map(rfc),
                    "periods": ps.iter().map(|p| json!({"start": rfc(p.start), "end": p.end.map(rfc)})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let days_json: Vec<serde_json::Value> = days
            .iter()
            .map(|d| json!({"date": d.date.to_string(), "frozen": d.frozen.as_str(), "windows": d.by}))
            .collect();
        print_json(&json!({
            "month": first.format("%Y-%m").to_string(),
            "now": rfc(now),
            "frozen_now": !active.is_empty(),
            "windows": ws_json,
            "days": days_json,
        }))?;
        return Ok(exit::OK);
    }

    println!(
        "Freeze calendar — {} (days in your time zone, UTC{})",
        first.format("%B %Y"),
        local(now).format("%:z")
    );
    println!(" Mo  Tu  We  Th  Fr  Sa  Su");
    let mut line = "    ".repeat(first.weekday().num_days_from_monday() as usize);
    for day in &days {
        let mark = match day.frozen {
            calendar::Frozen::Full => '*',
            calendar::Frozen::Partial => '+',
            calendar::Frozen::None => ' ',
        };
        line.push_str(&format!("{:>3}{mark}", day.date.day()));
        if day.date.weekday() == chrono::Weekday::Sun {
            println!("{}", line.trim_end());
            line.clear();
        }
    }
    if !line.is_empty() {
        println!("{}", line.trim_end());
    }
    println!("* frozen all day   + frozen part of the day");
    for (w, ps) in &periods {
        println!();
        println!("{} ({})", w.name, w.described);
        if ps.is_empty() {
            println!("  not frozen this month");
        }
        for p in ps {
            let end = p
                .end
                .map_or_else(|| "no end".to_owned(), |e| when(e, w.zone()));
            println!("  {} → {}", when(p.start, w.zone()), end);
        }
    }
    println!();
    let now_local = local(now).format("%Y-%m-%d %H:%M %:z");
    if active.is_empty() {
        println!("Now ({now_local}): not frozen");
    } else {
        for (w, p) in &active {
            match p.end {
                Some(e) => println!(
                    "Now ({now_local}): frozen by {} until {}; your time {}",
                    w.name,
                    when(e, w.zone()),
                    local(e).format("%a %Y-%m-%d %H:%M %:z")
                ),
                None => println!(
                    "Now ({now_local}): frozen by {} with no end in sight",
                    w.name
                ),
            }
        }
    }
    Ok(exit::OK)
}

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}
