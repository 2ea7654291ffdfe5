//! Resource quantities in canonical form, as apimachinery's `Quantity.String()` prints them
//! (`1024Mi` is `1Gi`, `1.5` is `1500m`, `1000` is `1k`).

use serde_json::Value;

use super::fields;

/// How a quantity was written, which decides how it prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// `n`, `u`, `m`, no suffix, `k`, `M`, `G`, `T`, `P`, `E`.
    DecimalSi,
    /// `Ki` ... `Ei`.
    BinarySi,
    /// `e3`, `E-2`, ...
    DecimalExponent,
}

/// A parsed quantity: its value in billionths (rounded away from zero, as apimachinery rounds
/// anything below `1n` up) and its format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Quantity {
    nanos: i128,
    format: Format,
}

const NANOS_PER_UNIT: i128 = 1_000_000_000;

/// The canonical text of the quantity at `path`; missing prints `0`, as a zero `Quantity`.
pub(super) fn at(v: &Value, path: &[&str]) -> String {
    opt_at(v, path).unwrap_or_else(|| "0".to_owned())
}

/// The canonical text of the quantity at `path`, if there is one (`<nil>`-free).
pub(super) fn opt_at(v: &Value, path: &[&str]) -> Option<String> {
    match fields::at(v, path)? {
        Value::String(s) => Some(canonical(s)),
        Value::Number(n) => Some(canonical(&n.to_string())),
        _ => None,
    }
}

/// `raw` in canonical form; text apimachinery would reject comes back unchanged.
pub(super) fn canonical(raw: &str) -> String {
    parse(raw.trim()).map_or_else(|| raw.to_owned(), |q| q.to_string())
}

/// Parses a quantity the way `resource.ParseQuantity` does.
fn parse(s: &str) -> Option<Quantity> {
    if s.is_empty() {
        return None;
    }
    let bytes = s.as_bytes();
    let mut pos = 0;
    let negative = match bytes.first() {
        Some(b'-') => {
            pos += 1;
            true
        }
        Some(b'+') => {
            pos += 1;
            false
        }
        _ => false,
    };
    let digits_end = |from: usize| {
        from + bytes[from..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let num_end = digits_end(pos);
    let num = &s[pos..num_end];
    pos = num_end;
    let mut denom = "";
    if bytes.get(pos) == Some(&b'.') {
        let denom_end = digits_end(pos + 1);
        denom = &s[pos + 1..denom_end];
        pos = denom_end;
    }
    let suffix_start = pos;
    pos += bytes[pos..]
        .iter()
        .take_while(|b| b"eEinumkKMGTP".contains(b))
        .count();
    if matches!(bytes.get(pos), Some(b'-' | b'+')) {
        pos += 1;
    }
    if digits_end(pos) != bytes.len() {
        return None;
    }
    let (base, exponent, format) = interpret_suffix(&s[suffix_start..])?;

    let digits: i128 = format!("{num}{denom}0").parse::<i128>().ok()? / 10;
    let frac_digits = i32::try_from(denom.len()).ok()?;
    let magnitude = if base == 10 {
        scale_by_ten(digits, exponent.checked_add(9)?.checked_sub(frac_digits)?)?
    } else {
        let shifted = digits.checked_mul(1i128.checked_shl(u32::try_from(exponent).ok()?)?)?;
        let scaled = scale_by_ten(shifted, 9 - frac_digits)?;
        // apimachinery caps binary quantities at the largest int64.
        scaled.min(i128::from(i64::MAX) * NANOS_PER_UNIT)
    };
    let nanos = if negative { -magnitude } else { magnitude };
    Some(Quantity { nanos, format })
}

/// `value * 10^exponent`, rounding a fractional result up (away from zero).
fn scale_by_ten(value: i128, exponent: i32) -> Option<i128> {
    if exponent >= 0 {
        return value.checked_mul(10i128.checked_pow(exponent.unsigned_abs())?);
    }
    let Some(divisor) = 10i128.checked_pow(exponent.unsigned_abs()) else {
        return Some(i128::from(value != 0));
    };
    let quotient = value / divisor;
    Some(if value % divisor == 0 {
        quotient
    } else {
        quotient + 1
    })
}

/// Base, exponent and format of a suffix.
fn interpret_suffix(suffix: &str) -> Option<(u32, i32, Format)> {
    let decimal = |exponent| Some((10, exponent, Format::DecimalSi));
    let binary = |exponent| Some((2, exponent, Format::BinarySi));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        _ if suffix.len() > 1 && suffix.starts_with(['e', 'E']) => {
            let exponent = suffix[1..].parse::<i32>().ok()?;
            Some((10, exponent, Format::DecimalExponent))
        }
        _ => None,
    }
}

impl std::fmt::Display for Quantity {
    /// `Quantity.CanonicalizeBytes`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        let whole_units = self.nanos % NANOS_PER_UNIT == 0;
        let small = self.nanos.abs() < 1024 * NANOS_PER_UNIT;
        if self.format == Format::BinarySi && whole_units && !small {
            let mut amount = self.nanos / NANOS_PER_UNIT;
            let mut exponent = 0;
            while amount % 1024 == 0 {
                amount /= 1024;
                exponent += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
                .get(exponent)
                .copied()
                .unwrap_or("");
            return write!(f, "{amount}{suffix}");
        }
        let mut amount = self.nanos;
        let mut exponent: i32 = -9;
        while amount % 10 == 0 {
            amount /= 10;
            exponent += 1;
        }
        while exponent % 3 != 0 {
            amount *= 10;
            exponent -= 1;
        }
        if self.format == Format::DecimalExponent {
            return match exponent {
                0 => write!(f, "{amount}"),
                e => write!(f, "{amount}e{e}"),
            };
        }
        let suffix = match exponent {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            18 => "E",
            // apimachinery has no suffix for other exponents and prints none.
            _ => "",
        };
        write!(f, "{amount}{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::canonical;

    #[test]
    fn quantities_print_in_canonical_form() {
        for (raw, want) in [
            ("0", "0"),
            ("0Gi", "0"),
            ("1Gi", "1Gi"),
            ("1024Mi", "1Gi"),
            ("1000Mi", "1000Mi"),
            ("1.5Gi", "1536Mi"),
            ("0.5Ki", "512"),
            ("1023", "1023"),
            ("100m", "100m"),
            ("1.5", "1500m"),
            ("1000m", "1"),
            ("1000", "1k"),
            ("100", "100"),
            ("1e3", "1e3"),
            ("1.5e3", "1500"),
            ("12e6", "12e6"),
            ("5G", "5G"),
            ("10Gi", "10Gi"),
            ("0.1n", "1n"),
            ("-1.5", "-1500m"),
            ("+2k", "2k"),
            ("1.", "1"),
            ("abc", "abc"),
            ("1K", "1K"),
            // Found by fuzzing: exponents near i32::MAX overflowed; unprintable, so unchanged.
            ("1e2147483647", "1e2147483647"),
        ] {
            assert_eq!(canonical(raw), want, "canonical({raw:?})");
        }
    }
}
