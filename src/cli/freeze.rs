//! `stella freeze list`: a month calendar of frozen periods, in the
//! window's zone and the user's, and when the current freeze ends.

use chrono::{DateTime, Datelike, Duration, Local, NaiveDate, SecondsFormat, TimeZone, Utc};
use clap::{Args, Subcommand};
use serde_json::json;

use super::{Context, Failure, exit, load_config, parse_at, print_json, unknown_environment};
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
    #[arg(long)]
    pub json: bool,
}

fn local(t: DateTime<Utc>) -> DateTime<Local> {
    t.with_timezone(&Local)
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    let naive = d.and_hms_opt(0, 0, 0).expect("midnight exists");
    Local
        .from_local_datetime(&naive)
        .earliest()
        .unwrap_or_else(|| Local.from_utc_datetime(&naive))
        .with_timezone(&Utc)
}

fn overlap(p: &Period, from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
    let start = p.start.max(from);
    let end = p.end.unwrap_or(DateTime::<Utc>::MAX_UTC).min(to);
    (end - start).max(Duration::zero())
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
        None => {
            let l = local(now).date_naive();
            NaiveDate::from_ymd_opt(l.year(), l.month(), 1).expect("first of a month")
        }
    };
    let next = first
        .checked_add_months(chrono::Months::new(1))
        .expect("a month later");
    let (from, to) = (midnight(first), midnight(next));
    let periods: Vec<(&Window, Vec<Period>)> =
        windows.iter().map(|w| (w, w.periods(from, to))).collect();

    let mut days = Vec::new();
    let mut d = first;
    while d < next {
        let (s, e) = (midnight(d), midnight(d.succ_opt().expect("a next day")));
        let mut frozen = Duration::zero();
        let mut by = Vec::new();
        for (w, ps) in &periods {
            let o: Duration = ps
                .iter()
                .map(|p| overlap(p, s, e))
                .fold(Duration::zero(), |a, b| a + b);
            if o > Duration::zero() {
                by.push(w.name.clone());
                frozen = frozen.max(o);
            }
        }
        let state = if frozen >= e - s {
            "full"
        } else if frozen > Duration::zero() {
            "partial"
        } else {
            "none"
        };
        days.push((d, state, by));
        d = d.succ_opt().expect("a next day");
    }
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
            .map(|(d, s, by)| json!({"date": d.to_string(), "frozen": s, "windows": by}))
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
    for (d, state, _) in &days {
        let mark = match *state {
            "full" => '*',
            "partial" => '+',
            _ => ' ',
        };
        line.push_str(&format!("{:>3}{mark}", d.day()));
        if d.weekday() == chrono::Weekday::Sun {
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
