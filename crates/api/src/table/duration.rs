//! Ages and durations as kubectl shows them (apimachinery's `duration.HumanDuration`).

use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use super::fields;

/// A duration of `seconds` with two or three significant figures, as apimachinery's
/// `HumanDuration`: `45s`, `119s`, `2m3s`, `10m`, `179m`, `3h5m`, `47h`, `2d3h`, `45d`,
/// `2y20d`, `8y`. Up to one second in the future reads `0s`; further is `<invalid>`.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".to_owned();
    }
    if seconds < 0 {
        return "0s".to_owned();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        return match days % 365 {
            0 => format!("{years}y"),
            d => format!("{years}y{d}d"),
        };
    }
    format!("{years}y")
}

/// The timestamp at `path`, or `None` when it is missing, unparsable or Go's zero time
/// (`0001-01-01T00:00:00Z`), which `metav1.Time.IsZero` treats as unset.
pub(super) fn timestamp_at(v: &Value, path: &[&str]) -> Option<Timestamp> {
    let text = fields::opt_str_at(v, path)?;
    let ts: Timestamp = text.parse().ok()?;
    (ts != go_zero_time()).then_some(ts)
}

/// Go's zero `time.Time`.
fn go_zero_time() -> Timestamp {
    // 0001-01-01T00:00:00Z in Unix seconds.
    Timestamp::from_second(-62_135_596_800).expect("year 1 is within jiff's range")
}

/// Whole seconds from `from` to `to`, truncated toward zero like Go's `int(d.Seconds())`.
fn seconds_between(from: Timestamp, to: Timestamp) -> i64 {
    let nanos = to.as_nanosecond() - from.as_nanosecond();
    i64::try_from(nanos / 1_000_000_000).unwrap_or(i64::MAX)
}

/// `HumanDuration` of the time between two instants.
pub(super) fn between(from: Timestamp, to: Timestamp) -> String {
    human_duration(seconds_between(from, to))
}

/// How long ago `t` was (`translateTimestampSince`): `<unknown>` when unset.
pub(super) fn since(t: Option<Timestamp>, now: Timestamp) -> String {
    match t {
        Some(t) => between(t, now),
        None => "<unknown>".to_owned(),
    }
}

/// The AGE cell: time since `metadata.creationTimestamp`.
pub(super) fn age(obj: &Value, now: Timestamp) -> String {
    since(timestamp_at(obj, &["metadata", "creationTimestamp"]), now)
}

/// RFC 3339 in UTC with whole seconds, as Go's `time.RFC3339`; unset is Go's zero time.
pub(super) fn rfc3339(t: Option<Timestamp>) -> String {
    t.unwrap_or_else(go_zero_time)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
