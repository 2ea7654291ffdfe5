//! Cron schedules as CronJobs accept them (robfig/cron's standard parser): five
//! fields `minute hour day-of-month month day-of-week` with `*`, `?`, lists, ranges,
//! steps and month/weekday names, the macros `@yearly` `@annually` `@monthly`
//! `@weekly` `@daily` `@midnight` `@hourly`, and `@every <duration>`. A leading
//! `TZ=<zone>` or `CRON_TZ=<zone>` picks the time zone.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// A parsed schedule.
#[derive(Debug, Clone)]
pub(crate) enum Schedule {
    /// Five cron fields.
    Cron(Fields),
    /// `@every <duration>`: a fixed interval, in whole seconds.
    Every(i64),
}

/// The five cron fields as bit sets.
#[derive(Debug, Clone)]
pub(crate) struct Fields {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Day-of-month was `*`/`?`: days match when weekdays match (and vice versa).
    days_star: bool,
    weekdays_star: bool,
}

/// A schedule with the time zone named in it, if any.
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    /// The schedule.
    pub schedule: Schedule,
    /// `TZ=`/`CRON_TZ=` zone given in the schedule string.
    pub zone: Option<String>,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// Parses a schedule string; errors read like robfig/cron's.
pub(crate) fn parse(spec: &str) -> Result<Parsed, String> {
    let spec = spec.trim();
    let mut zone = None;
    let mut rest = spec;
    for prefix in ["CRON_TZ=", "TZ="] {
        if let Some(r) = spec.strip_prefix(prefix) {
            let (z, after) = r.split_once(char::is_whitespace).unwrap_or((r, ""));
            zone = Some(z.to_string());
            rest = after.trim();
        }
    }
    if let Some(macro_) = rest.strip_prefix('@') {
        let fields = match macro_ {
            "yearly" | "annually" => "0 0 1 1 *",
            "monthly" => "0 0 1 * *",
            "weekly" => "0 0 * * 0",
            "daily" | "midnight" => "0 0 * * *",
            "hourly" => "0 * * * *",
            m if m.starts_with("every ") => {
                let secs = parse_duration(m["every ".len()..].trim())
                    .ok_or_else(|| format!("failed to parse duration {spec}"))?;
                return Ok(Parsed {
                    schedule: Schedule::Every(secs.max(1)),
                    zone,
                });
            }
            _ => return Err(format!("unrecognized descriptor: {rest}")),
        };
        return Ok(Parsed {
            schedule: Schedule::Cron(fields_of(fields)?),
            zone,
        });
    }
    Ok(Parsed {
        schedule: Schedule::Cron(fields_of(rest)?),
        zone,
    })
}

fn fields_of(spec: &str) -> Result<Fields, String> {
    let f: Vec<&str> = spec.split_whitespace().collect();
    if f.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: {spec}",
            f.len()
        ));
    }
    let (days, days_star) = field(f[2], 1, 31, &[])?;
    let (weekdays, weekdays_star) = field(f[4], 0, 7, &DAYS)?;
    // 7 is Sunday too.
    let weekdays = (weekdays | (weekdays >> 7)) & 0x7f;
    Ok(Fields {
        minutes: field(f[0], 0, 59, &[])?.0,
        hours: field(f[1], 0, 23, &[])?.0,
        days,
        months: field(f[3], 1, 12, &MONTHS)?.0,
        weekdays,
        days_star,
        weekdays_star,
    })
}

/// One field: a bit per allowed value, and whether it started with `*` or `?`.
fn field(spec: &str, min: u32, max: u32, names: &[&str]) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let star = spec.starts_with('*') || spec.starts_with('?');
    for part in spec.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                Some(
                    s.parse::<u32>()
                        .map_err(|_| format!("failed to parse int from {s}"))?,
                ),
            ),
            None => (part, None),
        };
        let (lo, hi) = if range == "*" || range == "?" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, names, min)?, value(b, names, min)?)
        } else {
            let v = value(range, names, min)?;
            (v, if step.is_some() { max } else { v })
        };
        if lo < min || hi > max {
            return Err(format!("end of range ({hi}) above maximum ({max}): {part}"));
        }
        if lo > hi {
            return Err(format!(
                "beginning of range ({lo}) beyond end of range ({hi}): {part}"
            ));
        }
        let step = step.unwrap_or(1);
        if step == 0 {
            return Err(format!("step of range should be a positive number: {part}"));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, star))
}

fn value(s: &str, names: &[&str], offset: u32) -> Result<u32, String> {
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        return Ok(i as u32 + offset);
    }
    s.parse::<u32>()
        .map_err(|_| format!("failed to parse int from {s}"))
}

/// A Go duration (`1h30m`, `90s`, `5m`) in whole seconds.
fn parse_duration(s: &str) -> Option<i64> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    if s.is_empty() {
        return None;
    }
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_digit() || n == '.' {
                break;
            }
            unit.push(n);
            chars.next();
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        total += n * match unit.as_str() {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            "ns" => 0.000_000_001,
            _ => return None,
        };
    }
    if !num.is_empty() {
        return None;
    }
    Some(total as i64)
}

impl Fields {
    fn day_matches(&self, dt: DateTime) -> bool {
        let d = self.days & (1 << dt.day()) != 0;
        let w = self.weekdays & (1 << dt.weekday().to_sunday_zero_offset()) != 0;
        if self.days_star || self.weekdays_star {
            d && w
        } else {
            d || w
        }
    }
}

impl Schedule {
    /// The first activation strictly after `after`, in zone `tz`; `None` when the
    /// schedule never fires within five years (e.g. `0 0 30 2 *`).
    pub(crate) fn next(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let f = match self {
            Schedule::Every(secs) => {
                let t = Timestamp::from_second(after.as_second() + secs).ok()?;
                return Some(t);
            }
            Schedule::Cron(f) => f,
        };
        let start = after.to_zoned(tz.clone()).datetime();
        let mut t = start
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(1.minute())
            .ok()?;
        let limit = start.year() + 5;
        loop {
            if t.year() > limit {
                return None;
            }
            if f.months & (1 << t.month()) == 0 {
                t = t
                    .date()
                    .first_of_month()
                    .checked_add(1.month())
                    .ok()?
                    .at(0, 0, 0, 0);
                continue;
            }
            if !f.day_matches(t) {
                t = t.date().tomorrow().ok()?.at(0, 0, 0, 0);
                continue;
            }
            if f.hours & (1 << t.hour()) == 0 {
                t = t
                    .with()
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(1.hour())
                    .ok()?;
                continue;
            }
            if f.minutes & (1 << t.minute()) == 0 {
                t = t.checked_add(1.minute()).ok()?;
                continue;
            }
            let ts = tz.to_ambiguous_timestamp(t).compatible().ok()?;
            if ts > after {
                return Some(ts);
            }
            t = t.checked_add(1.minute()).ok()?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn next(spec: &str, after: &str) -> String {
        let p = parse(spec).expect("parse");
        p.schedule
            .next(ts(after), &TimeZone::UTC)
            .expect("next")
            .to_string()
    }

    #[test]
    fn every_minute_fires_on_the_next_whole_minute() {
        assert_eq!(
            next("* * * * *", "2024-01-01T10:00:30Z"),
            "2024-01-01T10:01:00Z"
        );
        assert_eq!(
            next("* * * * *", "2024-01-01T10:01:00Z"),
            "2024-01-01T10:02:00Z"
        );
    }

    #[test]
    fn fields_lists_ranges_steps_and_names() {
        assert_eq!(
            next("*/15 * * * *", "2024-01-01T10:16:00Z"),
            "2024-01-01T10:30:00Z"
        );
        assert_eq!(
            next("0 9-17/4 * * *", "2024-01-01T13:00:00Z"),
            "2024-01-01T17:00:00Z"
        );
        assert_eq!(
            next("30 2 * * MON", "2024-01-01T03:00:00Z"),
            "2024-01-08T02:30:00Z"
        );
        assert_eq!(
            next("0 0 1 jan,jul *", "2024-02-01T00:00:00Z"),
            "2024-07-01T00:00:00Z"
        );
        assert_eq!(
            next("0 0 * * 7", "2024-01-01T00:00:00Z"),
            "2024-01-07T00:00:00Z"
        );
    }

    #[test]
    fn day_of_month_and_weekday_are_ored_when_both_restricted() {
        // The 15th, or any Friday.
        assert_eq!(
            next("0 0 15 * FRI", "2024-01-01T00:00:00Z"),
            "2024-01-05T00:00:00Z"
        );
        assert_eq!(
            next("0 0 15 * FRI", "2024-01-12T00:00:00Z"),
            "2024-01-15T00:00:00Z"
        );
    }

    #[test]
    fn macros_and_every() {
        assert_eq!(
            next("@hourly", "2024-01-01T10:00:00Z"),
            "2024-01-01T11:00:00Z"
        );
        assert_eq!(
            next("@daily", "2024-01-01T10:00:00Z"),
            "2024-01-02T00:00:00Z"
        );
        assert_eq!(
            next("@weekly", "2024-01-01T10:00:00Z"),
            "2024-01-07T00:00:00Z"
        );
        assert_eq!(
            next("@monthly", "2024-01-01T10:00:00Z"),
            "2024-02-01T00:00:00Z"
        );
        assert_eq!(
            next("@yearly", "2024-01-01T10:00:00Z"),
            "2025-01-01T00:00:00Z"
        );
        assert_eq!(
            next("@every 1h30m", "2024-01-01T10:00:00Z"),
            "2024-01-01T11:30:00Z"
        );
    }

    #[test]
    fn invalid_schedules_are_rejected() {
        assert!(parse("* * * *").is_err());
        assert!(parse("61 * * * *").is_err());
        assert!(parse("@fortnightly").is_err());
        assert!(parse("*/0 * * * *").is_err());
        assert!(
            parse("0 0 30 2 *")
                .expect("parses")
                .schedule
                .next(ts("2024-01-01T00:00:00Z"), &TimeZone::UTC)
                .is_none()
        );
    }

    #[test]
    fn time_zones_shift_the_wall_clock() {
        let p = parse("CRON_TZ=America/New_York 0 9 * * *").expect("parse");
        assert_eq!(p.zone.as_deref(), Some("America/New_York"));
        let tz = TimeZone::get("America/New_York").expect("tz database");
        let n = p
            .schedule
            .next(ts("2024-07-01T00:00:00Z"), &tz)
            .expect("next");
        assert_eq!(n.to_string(), "2024-07-01T13:00:00Z");
    }
}
