//! Reading a question's name the way CoreDNS's `parseRequest` does.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The name does not exist (CoreDNS's `errNoItems` / `errInvalidRequest`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotFound;

/// What a name inside the cluster domain asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request<'a> {
    /// The apex, `svc.<domain>` or `pod.<domain>`: they exist and hold nothing.
    Apex,
    /// `[_port._proto. | endpoint.][service.]namespace.svc.<domain>`.
    Svc(SvcRequest<'a>),
    /// `[pod.]namespace.pod.<domain>` (labels further left are ignored, as CoreDNS does).
    Pod {
        namespace: &'a str,
        pod: Option<&'a str>,
    },
}

/// The parts of a `svc` name; `None` port/protocol match any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SvcRequest<'a> {
    pub(crate) namespace: &'a str,
    pub(crate) service: Option<&'a str>,
    pub(crate) endpoint: Option<&'a str>,
    pub(crate) port: Option<&'a str>,
    pub(crate) protocol: Option<&'a str>,
}

/// Parses the labels left of the cluster domain (lowercase, left to right).
pub(crate) fn parse<'a>(rest: &[&'a str]) -> Result<Request<'a>, NotFound> {
    match rest {
        [] | ["svc"] | ["pod"] => return Ok(Request::Apex),
        _ => {}
    }
    let (kind, rest) = rest.split_last().ok_or(NotFound)?;
    let (namespace, rest) = rest.split_last().ok_or(NotFound)?;
    let (service, rest) = match rest.split_last() {
        Some((s, r)) => (Some(*s), r),
        None => (None, rest),
    };
    let (endpoint, port, protocol) = match rest {
        [] => (None, None, None),
        [endpoint] => (Some(*endpoint), None, None),
        [port, protocol] => (None, strip_underscore(port), strip_underscore(protocol)),
        _ => return Err(NotFound),
    };
    match *kind {
        "svc" => Ok(Request::Svc(SvcRequest {
            namespace,
            service,
            endpoint,
            port,
            protocol,
        })),
        "pod" => Ok(Request::Pod {
            namespace,
            pod: service,
        }),
        _ => Err(NotFound),
    }
}

/// `_http` → `http`; an empty result means "any".
fn strip_underscore(label: &str) -> Option<&str> {
    let label = label.strip_prefix('_').unwrap_or(label);
    (!label.is_empty()).then_some(label)
}

/// The address a pod name spells in `pods insecure` mode: `10-42-0-5` → 10.42.0.5,
/// `fd00--5` → fd00::5.
pub(crate) fn pod_ip(label: &str) -> Option<IpAddr> {
    if label.matches('-').count() == 3 && !label.contains("--") {
        label
            .replace('-', ".")
            .parse::<Ipv4Addr>()
            .ok()
            .map(IpAddr::V4)
    } else {
        label.replace('-', ":").parse::<IpAddr>().ok()
    }
}

/// Where a name falls, from its lowercase labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Place<'a> {
    /// Inside the cluster domain: the labels left of it.
    Cluster(Vec<&'a str>),
    /// A full address under `in-addr.arpa` / `ip6.arpa`.
    Reverse(IpAddr),
    /// Anything else, partial reverse names included.
    Elsewhere,
}

/// Places `labels` (lowercase, left to right) relative to the cluster `zone` labels.
pub(crate) fn place<'a>(labels: &[&'a str], zone: &[Box<str>]) -> Place<'a> {
    if labels.len() >= zone.len()
        && labels[labels.len() - zone.len()..]
            .iter()
            .zip(zone)
            .all(|(a, b)| *a == &**b)
    {
        return Place::Cluster(labels[..labels.len() - zone.len()].to_vec());
    }
    match labels {
        [a, b, c, d, "in-addr", "arpa"] => {
            let text = format!("{d}.{c}.{b}.{a}");
            text.parse::<Ipv4Addr>()
                .map(|ip| Place::Reverse(IpAddr::V4(ip)))
                .unwrap_or(Place::Elsewhere)
        }
        [nibbles @ .., "ip6", "arpa"] if nibbles.len() == 32 => {
            let mut value: u128 = 0;
            for nibble in nibbles.iter().rev() {
                let Some(digit) = single_hex_digit(nibble) else {
                    return Place::Elsewhere;
                };
                value = (value << 4) | u128::from(digit);
            }
            Place::Reverse(IpAddr::V6(Ipv6Addr::from(value)))
        }
        _ => Place::Elsewhere,
    }
}

fn single_hex_digit(label: &str) -> Option<u8> {
    let mut chars = label.chars();
    let c = chars.next()?;
    if chars.next().is_some() {
        return None;
    }
    c.to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc<'a>(
        namespace: &'a str,
        service: Option<&'a str>,
        endpoint: Option<&'a str>,
        port: Option<&'a str>,
        protocol: Option<&'a str>,
    ) -> Request<'a> {
        Request::Svc(SvcRequest {
            namespace,
            service,
            endpoint,
            port,
            protocol,
        })
    }

    #[test]
    fn names_are_read_like_coredns_parse_request() {
        assert_eq!(parse(&[]), Ok(Request::Apex));
        assert_eq!(parse(&["svc"]), Ok(Request::Apex));
        assert_eq!(parse(&["pod"]), Ok(Request::Apex));
        assert_eq!(
            parse(&["default", "svc"]),
            Ok(svc("default", None, None, None, None))
        );
        assert_eq!(
            parse(&["web", "default", "svc"]),
            Ok(svc("default", Some("web"), None, None, None))
        );
        assert_eq!(
            parse(&["web-0", "web", "default", "svc"]),
            Ok(svc("default", Some("web"), Some("web-0"), None, None))
        );
        assert_eq!(
            parse(&["_http", "_tcp", "web", "default", "svc"]),
            Ok(svc("default", Some("web"), None, Some("http"), Some("tcp")))
        );
        assert_eq!(
            parse(&["_", "_tcp", "web", "default", "svc"]),
            Ok(svc("default", Some("web"), None, None, Some("tcp")))
        );
        assert_eq!(
            parse(&["10-42-0-5", "default", "pod"]),
            Ok(Request::Pod {
                namespace: "default",
                pod: Some("10-42-0-5")
            })
        );
        assert_eq!(
            parse(&["a", "b", "c", "d", "default", "svc"]),
            Err(NotFound)
        );
        assert_eq!(parse(&["web", "default", "nodes"]), Err(NotFound));
        assert_eq!(parse(&["dns"]), Err(NotFound));
    }

    #[test]
    fn pod_names_spell_ipv4_and_ipv6_addresses() {
        assert_eq!(pod_ip("10-42-0-5"), Some("10.42.0.5".parse().unwrap()));
        assert_eq!(pod_ip("fd00--5"), Some("fd00::5".parse().unwrap()));
        assert_eq!(pod_ip("10-42-0"), None);
        assert_eq!(pod_ip("web"), None);
        assert_eq!(pod_ip("10-42-0-300"), None);
    }

    #[test]
    fn reverse_names_are_full_addresses_only() {
        let zone: Vec<Box<str>> = vec!["cluster".into(), "local".into()];
        assert_eq!(
            place(&["10", "0", "43", "10", "in-addr", "arpa"], &zone),
            Place::Reverse("10.43.0.10".parse().unwrap())
        );
        assert_eq!(
            place(&["0", "43", "10", "in-addr", "arpa"], &zone),
            Place::Elsewhere
        );
        let mut v6: Vec<&str> = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f"
            .split('.')
            .collect();
        v6.extend(["ip6", "arpa"]);
        assert_eq!(
            place(&v6, &zone),
            Place::Reverse("fd00::1".parse().unwrap())
        );
        assert_eq!(
            place(&["web", "default", "svc", "cluster", "local"], &zone),
            Place::Cluster(vec!["web", "default", "svc"])
        );
        assert_eq!(place(&["example", "com"], &zone), Place::Elsewhere);
        assert_eq!(place(&["local"], &zone), Place::Elsewhere);
    }
}
