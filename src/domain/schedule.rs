//! Parsing the calendar parts of freeze windows: 5-field cron expressions
//! and IANA time zones.

use chrono_tz::Tz;
use croner::Cron;

pub fn parse_cron(expr: &str) -> Result<Cron, String> {
    if expr.split_whitespace().count() != 5 {
        return Err(format!(
            "`{expr}` is not a 5-field cron expression (minute hour day-of-month month day-of-week), e.g. \"0 18 * * FRI\""
        ));
    }
    expr.parse::<Cron>()
        .map_err(|e| format!("`{expr}` is not a valid cron expression: {e}"))
}

pub fn parse_tz(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>().map_err(|_| {
        format!("`{name}` is not an IANA time zone name like \"Europe/Madrid\" or \"UTC\"")
    })
}
