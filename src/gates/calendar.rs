//! A month of freeze windows, day by day, in a time zone of the viewer's:
//! what `stella freeze list` prints and the workbench's calendar shades.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};

use super::freeze::{Period, Window};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frozen {
    None,
    Partial,
    Full,
}

impl Frozen {
    pub fn as_str(self) -> &'static str {
        match self {
            Frozen::None => "none",
            Frozen::Partial => "partial",
            Frozen::Full => "full",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Day {
    pub date: NaiveDate,
    pub frozen: Frozen,
    /// The windows that freeze some of it.
    pub by: Vec<String>,
}

/// Midnight of `d` in `zone` (the earliest one, across a DST change).
pub fn midnight<Z: TimeZone>(d: NaiveDate, zone: &Z) -> DateTime<Utc> {
    let naive = d.and_hms_opt(0, 0, 0).expect("midnight exists");
    zone.from_local_datetime(&naive)
        .earliest()
        .unwrap_or_else(|| zone.from_utc_datetime(&naive))
        .with_timezone(&Utc)
}

fn overlap(p: &Period, from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
    let start = p.start.max(from);
    let end = p.end.unwrap_or(DateTime::<Utc>::MAX_UTC).min(to);
    (end - start).max(Duration::zero())
}

/// The first day of the month after `first`'s.
pub fn next_month(first: NaiveDate) -> NaiveDate {
    first
        .checked_add_months(chrono::Months::new(1))
        .expect("a month later")
}

/// The periods of each window within the month starting `first`, in `zone`.
pub fn periods<'w, Z: TimeZone>(
    windows: &'w [Window],
    first: NaiveDate,
    zone: &Z,
) -> Vec<(&'w Window, Vec<Period>)> {
    let (from, to) = (midnight(first, zone), midnight(next_month(first), zone));
    windows.iter().map(|w| (w, w.periods(from, to))).collect()
}

/// Every day of the month starting `first` (days as `zone` counts them):
/// frozen all day, part of it, or not at all, and by which windows.
pub fn month<Z: TimeZone>(windows: &[Window], first: NaiveDate, zone: &Z) -> Vec<Day> {
    let periods = periods(windows, first, zone);
    let next = next_month(first);
    let mut days = Vec::new();
    let mut d = first;
    while d < next {
        let after = d.succ_opt().expect("a next day");
        let (s, e) = (midnight(d, zone), midnight(after, zone));
        let mut frozen = Duration::zero();
        let mut by = Vec::new();
        for (w, ps) in &periods {
            let o = ps
                .iter()
                .map(|p| overlap(p, s, e))
                .fold(Duration::zero(), |a, b| a + b);
            if o > Duration::zero() {
                by.push(w.name.clone());
                frozen = frozen.max(o);
            }
        }
        let frozen = if frozen >= e - s {
            Frozen::Full
        } else if frozen > Duration::zero() {
            Frozen::Partial
        } else {
            Frozen::None
        };
        days.push(Day {
            date: d,
            frozen,
            by,
        });
        d = after;
    }
    days
}

/// The first day of the month `t` falls in, in `zone`.
pub fn month_of<Z: TimeZone>(t: DateTime<Utc>, zone: &Z) -> NaiveDate {
    let l = t.with_timezone(zone).date_naive();
    NaiveDate::from_ymd_opt(l.year(), l.month(), 1).expect("first of a month")
}
