//! String formats of custom resource schemas (`format: date-time`, `uuid`, ...), the
//! ones Kubernetes checks (apiextensions-apiserver's `validation/formats.go`).
//! Unknown formats, and those Kubernetes only documents (`password`, `isbn`, ...),
//! accept any string.

use base64::Engine as _;

/// Whether `s` is a valid value of `format`.
pub(crate) fn valid(format: &str, s: &str) -> bool {
    match format {
        "date-time" | "datetime" => date_time(s),
        "date" => date(s),
        "byte" => base64::engine::general_purpose::STANDARD.decode(s).is_ok(),
        "uuid" => uuid(s, None),
        "uuid3" => uuid(s, Some('3')),
        "uuid4" => uuid(s, Some('4')),
        "uuid5" => uuid(s, Some('5')),
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
        "cidr" => cidr(s),
        "mac" => mac(s),
        "hostname" => hostname(s),
        "email" => email(s),
        "uri" => uri(s),
        "duration" => duration(s),
        "bsonobjectid" => s.len() == 24 && s.chars().all(|c| c.is_ascii_hexdigit()),
        "hexcolor" => hexcolor(s),
        "rgbcolor" => rgbcolor(s),
        _ => true,
    }
}

fn date_time(s: &str) -> bool {
    s.parse::<jiff::Timestamp>().is_ok()
}

fn date(s: &str) -> bool {
    s.len() == 10 && s.parse::<jiff::civil::Date>().is_ok()
}

fn uuid(s: &str, version: Option<char>) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    if groups.len() != 5
        || groups
            .iter()
            .zip(lens)
            .any(|(g, l)| g.len() != l || !g.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return false;
    }
    match version {
        None => true,
        Some(v) => {
            groups[2].starts_with(v)
                && matches!(
                    groups[3].chars().next(),
                    Some('8' | '9' | 'a' | 'b' | 'A' | 'B')
                )
        }
    }
}

fn cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(bits) = bits.parse::<u8>() else {
        return false;
    };
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => bits <= 32,
        Ok(std::net::IpAddr::V6(_)) => bits <= 128,
        Err(_) => false,
    }
}

fn mac(s: &str) -> bool {
    let sep = if s.contains(':') { ':' } else { '-' };
    let parts: Vec<&str> = s.split(sep).collect();
    matches!(parts.len(), 6 | 8 | 20)
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

fn hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.trim_end_matches('.').split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn email(s: &str) -> bool {
    match s.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && !local.contains(char::is_whitespace) && hostname(domain)
        }
        None => false,
    }
}

fn uri(s: &str) -> bool {
    if s.starts_with('/') {
        return !s.contains(char::is_whitespace);
    }
    match s.split_once(':') {
        Some((scheme, rest)) => {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && !rest.contains(char::is_whitespace)
        }
        None => false,
    }
}

/// Go's `time.ParseDuration` grammar: `[-+]?(number unit)+`, or `0`.
fn duration(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    if s == "0" {
        return true;
    }
    if s.is_empty() {
        return false;
    }
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..digits];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return false;
        }
        rest = &rest[digits..];
        let unit = ["ns", "us", "µs", "μs", "ms", "s", "m", "h"]
            .iter()
            .filter(|u| rest.starts_with(**u))
            .max_by_key(|u| u.len());
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

fn hexcolor(s: &str) -> bool {
    s.strip_prefix('#')
        .is_some_and(|h| matches!(h.len(), 3 | 6) && h.chars().all(|c| c.is_ascii_hexdigit()))
}

fn rgbcolor(s: &str) -> bool {
    let Some(inner) = s.strip_prefix("rgb(").and_then(|r| r.strip_suffix(')')) else {
        return false;
    };
    let parts: Vec<&str> = inner.split(',').map(str::trim).collect();
    parts.len() == 3 && parts.iter().all(|p| p.parse::<u8>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_kubernetes_checks_accept_good_and_refuse_bad_values() {
        assert!(valid("date-time", "2024-01-02T03:04:05Z"));
        assert!(!valid("date-time", "yesterday"));
        assert!(valid("date", "2024-01-02"));
        assert!(!valid("date", "2024-13-02"));
        assert!(valid("uuid", "123e4567-e89b-12d3-a456-426614174000"));
        assert!(!valid("uuid", "123e4567"));
        assert!(valid("ipv4", "10.0.0.1") && !valid("ipv4", "10.0.0.300"));
        assert!(valid("cidr", "10.0.0.0/8") && !valid("cidr", "10.0.0.0/33"));
        assert!(valid("byte", "aGVsbG8=") && !valid("byte", "!!"));
        assert!(valid("duration", "1h30m") && valid("duration", "300ms"));
        assert!(!valid("duration", "1x"));
        assert!(valid("hostname", "web-1.example.com") && !valid("hostname", "-bad"));
        assert!(valid("email", "a@example.com") && !valid("email", "nobody"));
        assert!(valid("mac", "00:1a:2b:3c:4d:5e") && !valid("mac", "00:1a"));
        assert!(valid("password", "anything"));
        assert!(valid("no-such-format", "anything"));
    }
}
