//! Resource quantities (`resource.Quantity`): `500m`, `1.5`, `128Mi`, `1G`, `1e3`,
//! plain integers. Values are exact integers: cpu in millicores (rounded up, as
//! `MilliValue`), everything else in units (rounded up, as `Value`).

/// A parsed quantity as `mantissa * 10^exp10 * 2^exp2`, negative when `negative`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parsed {
    negative: bool,
    mantissa: u128,
    exp10: i32,
    exp2: u32,
}

fn parse(s: &str) -> Option<Parsed> {
    let s = s.trim();
    let (negative, rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let num_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(num_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return None;
    }
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    let mut mantissa: u128 = 0;
    for c in int.chars().chain(frac.chars()) {
        mantissa = mantissa
            .checked_mul(10)?
            .checked_add(u128::from(c as u8 - b'0'))?;
    }
    let mut exp10 = -i32::try_from(frac.len()).ok()?;
    let mut exp2 = 0;
    match suffix {
        "" => {}
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        "Ki" => exp2 = 10,
        "Mi" => exp2 = 20,
        "Gi" => exp2 = 30,
        "Ti" => exp2 = 40,
        "Pi" => exp2 = 50,
        "Ei" => exp2 = 60,
        e if e.starts_with(['e', 'E']) => exp10 = exp10.saturating_add(e[1..].parse::<i32>().ok()?),
        _ => return None,
    }
    Some(Parsed {
        negative,
        mantissa,
        exp10,
        exp2,
    })
}

/// `value * 10^scale`, rounded up (away from zero for positives), saturating at i64.
/// Constant time whatever the exponent: `0e2000000000` is zero at once.
fn scaled(p: Parsed, scale: i32) -> i64 {
    let exp10 = p.exp10.saturating_add(scale);
    let pow10 = 10u128.checked_pow(exp10.unsigned_abs());
    let v = p
        .mantissa
        .checked_mul(1u128 << p.exp2)
        .and_then(|v| match (exp10 >= 0, pow10) {
            _ if v == 0 => Some(0),
            (true, Some(f)) => v.checked_mul(f),
            (true, None) => None,
            (false, Some(div)) => Some(v.div_ceil(div)),
            // Dividing by more than u128 holds leaves a fraction, rounded up.
            (false, None) => Some(1),
        })
        .unwrap_or(u128::MAX);
    let v = i64::try_from(v).unwrap_or(i64::MAX);
    if p.negative { -v } else { v }
}

/// The quantity in thousandths of a unit, rounded up (`MilliValue`): `"500m"` -> 500,
/// `"1.5"` -> 1500. `None` when it does not parse.
pub fn milli_value(s: &str) -> Option<i64> {
    parse(s).map(|p| scaled(p, 3))
}

/// The quantity in units, rounded up (`Value`): `"128Mi"` -> 134217728, `"1G"` ->
/// 1000000000, `"1e3"` -> 1000. `None` when it does not parse.
pub fn value(s: &str) -> Option<i64> {
    parse(s).map(|p| scaled(p, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities_become_millicores() {
        assert_eq!(milli_value("500m"), Some(500));
        assert_eq!(milli_value("1.5"), Some(1500));
        assert_eq!(milli_value("2"), Some(2000));
        assert_eq!(milli_value("0.1"), Some(100));
        assert_eq!(milli_value("100u"), Some(1), "rounded up like MilliValue");
        assert_eq!(milli_value("1e-3"), Some(1));
    }

    #[test]
    fn memory_quantities_become_bytes() {
        assert_eq!(value("128Mi"), Some(128 * 1024 * 1024));
        assert_eq!(value("1G"), Some(1_000_000_000));
        assert_eq!(value("1e3"), Some(1000));
        assert_eq!(value("1E3"), Some(1000));
        assert_eq!(value("12345"), Some(12345));
        assert_eq!(value("1.5Gi"), Some(1_610_612_736));
        assert_eq!(value("1k"), Some(1000));
        assert_eq!(value("1Ki"), Some(1024));
        assert_eq!(value("500m"), Some(1), "fractions round up");
        assert_eq!(value("8Ei"), Some(i64::MAX), "saturates");
    }

    #[test]
    fn huge_exponents_end_at_once_and_saturate() {
        // Found by fuzzing: a zero mantissa looped once per power of ten (seconds),
        // and exponents near i32::MAX overflowed the exponent arithmetic.
        let start = std::time::Instant::now();
        assert_eq!(value("0E1551551556"), Some(0));
        assert_eq!(milli_value("0e2147483647"), Some(0));
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(milli_value("1e2147483647"), Some(i64::MAX));
        assert_eq!(value("-1e2147483647"), Some(-i64::MAX));
        assert_eq!(
            milli_value("1.5e-2147483648"),
            Some(1),
            "a fraction rounds up"
        );
        assert_eq!(value("1e-2147483648"), Some(1));
    }

    #[test]
    fn malformed_quantities_are_rejected() {
        for bad in ["", "abc", "1.2.3", "1Xi", "m", "."] {
            assert_eq!(value(bad), None, "{bad}");
        }
    }
}

/// Formats millis back into a quantity string: `500m`, `2`; whole multiples of
/// 1024-powers as `Ki`/`Mi`/`Gi` when `binary`.
pub fn format_milli(milli: i64, binary: bool) -> String {
    if milli % 1000 != 0 {
        return format!("{milli}m");
    }
    let v = milli / 1000;
    if binary && v != 0 {
        for (suffix, unit) in [
            ("Ti", 1i64 << 40),
            ("Gi", 1 << 30),
            ("Mi", 1 << 20),
            ("Ki", 1 << 10),
        ] {
            if v % unit == 0 {
                return format!("{}{suffix}", v / unit);
            }
        }
    }
    v.to_string()
}

#[cfg(test)]
mod format_tests {
    use super::*;

    #[test]
    fn millis_format_back_to_familiar_quantities() {
        assert_eq!(format_milli(500, false), "500m");
        assert_eq!(format_milli(2000, false), "2");
        assert_eq!(format_milli(256 * 1024 * 1024 * 1000, true), "256Mi");
        assert_eq!(format_milli(0, true), "0");
        assert_eq!(
            milli_value(&format_milli(1_536_000, false)),
            Some(1_536_000)
        );
    }
}
