//! Resource quantities (`500m`, `128Mi`, `1e3`), as pods, quotas and volume
//! claims carry them: parsing ends quickly, never overflows, and formatting
//! parses back to the same value.

use api::quantity::{format_milli, milli_value, value};

/// Parse, and the value/milli-value/format round trips.
pub fn quantity(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let milli = milli_value(&text);
    let units = value(&text);
    assert_eq!(
        milli.is_some(),
        units.is_some(),
        "{text:?}: {milli:?} vs {units:?}"
    );
    if let (Some(m), Some(u)) = (milli, units) {
        // Saturated values (beyond ±i64::MAX) do not round-trip by design.
        if m.unsigned_abs() < i64::MAX.unsigned_abs() {
            round_trips(m);
            // Both round up, away from zero: units are the millis divided by 1000, rounded up.
            let want = m.signum() * i64::try_from(m.unsigned_abs().div_ceil(1000)).unwrap_or(0);
            assert_eq!(u, want, "{text:?}: {m} millis but {u} units");
        }
    }
    if let Some(bytes) = data.get(..8) {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(bytes);
        let m = i64::from_le_bytes(raw);
        if m != i64::MIN {
            round_trips(m);
        }
    }
}

fn round_trips(milli: i64) {
    for binary in [false, true] {
        let text = format_milli(milli, binary);
        assert_eq!(
            milli_value(&text),
            Some(milli),
            "{milli} formatted (binary: {binary}) as {text:?}"
        );
    }
}
