//! Answering one question from the [`Index`], as CoreDNS's `kubernetes` plugin does.

use std::net::IpAddr;

use hickory_proto::{
    op::ResponseCode,
    rr::{
        Name, RData, Record, RecordType,
        rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT},
    },
};
use rustc_hash::FxHashSet;

use crate::index::{Index, objects::ServiceKind};

mod parse;

use parse::{NotFound, Place, Request, SvcRequest, parse, place, pod_ip};

/// The schema version CoreDNS publishes at `dns-version.<domain>` (TXT).
const DNS_SCHEMA_VERSION: &str = "1.1.0";
/// TTL of the `dns-version` record, as CoreDNS sets it.
const DNS_VERSION_TTL: u32 = 28800;
/// How many CNAMEs a chain inside the zone may hold (CoreDNS's `maxCnameChainLength`).
const MAX_CNAME_CHAIN: usize = 10;

/// What the index answers to one question.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// A name in the cluster domain, or a reverse name of a known service or endpoint
    /// IP: send this response.
    Authoritative(Response),
    /// Not the index's to answer (outside the cluster domain, or a reverse name it does
    /// not know): forward it upstream, or answer SERVFAIL without one.
    NotAuthoritative,
}

/// An authoritative response.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// NOERROR (with answers, or empty = NODATA), NXDOMAIN, SERVFAIL (not synced yet)
    /// or REFUSED (zone transfers).
    pub rcode: ResponseCode,
    /// The answer section.
    pub answers: Vec<Record>,
    /// The authority section: the zone's SOA on NODATA and NXDOMAIN (negative caching).
    pub authorities: Vec<Record>,
    /// The additional section: addresses of SRV targets, NS glue.
    pub additionals: Vec<Record>,
    /// Set when the answers end in a CNAME to a name outside the cluster domain (an
    /// ExternalName service): a server with an upstream resolves this name for the same
    /// type and appends the records, as CoreDNS does.
    pub external_target: Option<Name>,
}

impl Response {
    fn new(rcode: ResponseCode) -> Self {
        Self {
            rcode,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
            external_target: None,
        }
    }
}

/// Records found for a name that exists.
#[derive(Debug, Default)]
struct Found {
    answers: Vec<Record>,
    additionals: Vec<Record>,
    external_target: Option<Name>,
}

/// One match of a name (CoreDNS's `msg.Service`).
#[derive(Debug, Clone, Copy)]
struct Hit<'a> {
    target: Target<'a>,
    /// `None`: a port-less sentinel, which yields no SRV record.
    port: Option<u16>,
    name: HitName<'a>,
}

#[derive(Debug, Clone, Copy)]
enum Target<'a> {
    Ip(IpAddr),
    Cname(&'a Name),
}

/// The name an SRV record points at for a hit.
#[derive(Debug, Clone, Copy)]
enum HitName<'a> {
    /// `<svc>.<ns>.svc.<domain>`
    Service {
        namespace: &'a str,
        service: &'a str,
    },
    /// `<label>.<svc>.<ns>.svc.<domain>`
    Endpoint {
        label: &'a str,
        namespace: &'a str,
        service: &'a str,
    },
    /// `<pod>.<ns>.pod.<domain>`
    Pod { pod: &'a str, namespace: &'a str },
    /// `ns.dns.<domain>`
    Nameserver,
}

impl Index {
    /// Answers one question. `name` may be in any case; records are owned by `name`
    /// as asked.
    ///
    /// Inside the cluster domain, CoreDNS's rules: a name that exists but holds no
    /// record of the type is NOERROR with no answer (NODATA) and a name that does not
    /// exist is NXDOMAIN, both with the zone's SOA (TTL and minimum = the configured
    /// TTL, capped at 300 s for the SOA itself). Existing names are the apex,
    /// `svc.`/`pod.`, namespaces that exist, services, endpoints by label, their
    /// `_port._proto` names, valid pod names in existing namespaces, `ns.dns.` and
    /// `dns-version.`. Headless services without ready endpoints do not exist, as in
    /// CoreDNS. Before [`Index::set_synced`], SERVFAIL.
    pub fn answer(&self, name: &Name, qtype: RecordType) -> Answer {
        let lower = name.to_lowercase();
        let labels = labels_of(&lower);
        match place(&labels, &self.zone.labels) {
            Place::Cluster(rest) => {
                if !self.synced {
                    return Answer::Authoritative(Response::new(ResponseCode::ServFail));
                }
                Answer::Authoritative(self.cluster_answer(name, &rest, qtype))
            }
            Place::Reverse(ip) if qtype == RecordType::PTR && self.synced => {
                match self.reverse_answer(name, ip) {
                    Some(response) => Answer::Authoritative(response),
                    None => Answer::NotAuthoritative,
                }
            }
            Place::Reverse(_) | Place::Elsewhere => Answer::NotAuthoritative,
        }
    }

    fn cluster_answer(&self, owner: &Name, rest: &[&str], qtype: RecordType) -> Response {
        let found = match qtype {
            RecordType::A | RecordType::AAAA => {
                let mut found = Found::default();
                let mut chain = Vec::new();
                self.addresses(owner, rest, qtype, &mut chain, &mut found)
                    .map(|()| found)
            }
            RecordType::SRV => self.srv(owner, rest),
            RecordType::CNAME => self.cname(owner, rest),
            RecordType::TXT if rest == ["dns-version"] => Ok(Found {
                answers: vec![Record::from_rdata(
                    owner.clone(),
                    DNS_VERSION_TTL,
                    RData::TXT(TXT::new(vec![DNS_SCHEMA_VERSION.to_string()])),
                )],
                ..Found::default()
            }),
            RecordType::SOA if rest.is_empty() => Ok(Found {
                answers: vec![self.soa()],
                ..Found::default()
            }),
            RecordType::NS if rest.is_empty() => Ok(self.ns(owner)),
            RecordType::AXFR | RecordType::IXFR => {
                return Response::new(ResponseCode::Refused);
            }
            // Every other type: does the name exist (CoreDNS's "fake A lookup")?
            _ => self.hits(rest, RecordType::A).map(|_| Found::default()),
        };
        match found {
            Ok(found) if !found.answers.is_empty() => Response {
                rcode: ResponseCode::NoError,
                answers: found.answers,
                authorities: Vec::new(),
                additionals: found.additionals,
                external_target: found.external_target,
            },
            Ok(_) => self.negative(ResponseCode::NoError),
            Err(NotFound) => self.negative(ResponseCode::NXDomain),
        }
    }

    /// NODATA or NXDOMAIN with the SOA for negative caching.
    fn negative(&self, rcode: ResponseCode) -> Response {
        let mut response = Response::new(rcode);
        response.authorities.push(self.soa());
        response
    }

    fn soa(&self) -> Record {
        let ttl = self.zone.ttl;
        Record::from_rdata(
            self.zone.domain.clone(),
            ttl.min(300),
            RData::SOA(SOA::new(
                self.zone.ns_name.clone(),
                self.zone.hostmaster.clone(),
                self.serial,
                7200,
                1800,
                86400,
                ttl,
            )),
        )
    }

    /// The apex NS: `ns.dns.<domain>` with the configured nameserver IPs as glue.
    fn ns(&self, owner: &Name) -> Found {
        let mut found = Found::default();
        for ip in &self.zone.nameservers {
            found.additionals.push(address_record(
                self.zone.ns_name.clone(),
                *ip,
                self.zone.ttl,
            ));
        }
        if !found.additionals.is_empty() {
            found.answers.push(Record::from_rdata(
                owner.clone(),
                self.zone.ttl,
                RData::NS(NS(self.zone.ns_name.clone())),
            ));
        }
        found
    }

    /// A/AAAA (CoreDNS's `plugin.A`/`plugin.AAAA`), following CNAMEs inside the zone.
    fn addresses(
        &self,
        owner: &Name,
        rest: &[&str],
        qtype: RecordType,
        chain: &mut Vec<Name>,
        found: &mut Found,
    ) -> Result<(), NotFound> {
        let hits = self.hits(rest, qtype)?;
        let mut seen = FxHashSet::default();
        let owner_lower = owner.to_lowercase();
        for hit in hits {
            match hit.target {
                Target::Ip(ip) => {
                    if ip.is_ipv4() == (qtype == RecordType::A) && seen.insert(ip) {
                        found
                            .answers
                            .push(address_record(owner.clone(), ip, self.zone.ttl));
                    }
                }
                Target::Cname(target) => {
                    let target_lower = target.to_lowercase();
                    if owner_lower.zone_of(&target_lower)
                        || chain.len() > MAX_CNAME_CHAIN
                        || chain.contains(&target_lower)
                    {
                        continue;
                    }
                    let cname = Record::from_rdata(
                        owner.clone(),
                        self.zone.ttl,
                        RData::CNAME(CNAME(target.clone())),
                    );
                    if !self.zone.domain.zone_of(&target_lower) {
                        found.answers.push(cname);
                        found.external_target = Some(target.clone());
                        continue;
                    }
                    let labels = labels_of(&target_lower);
                    let rest = &labels[..labels.len() - self.zone.labels.len()];
                    let mut next = Found::default();
                    chain.push(target_lower.clone());
                    let result = self.addresses(target, rest, qtype, chain, &mut next);
                    chain.pop();
                    if result.is_ok() && !next.answers.is_empty() {
                        found.answers.push(cname);
                        found.answers.append(&mut next.answers);
                        if next.external_target.is_some() {
                            found.external_target = next.external_target;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// SRV (CoreDNS's `plugin.SRV`): priority 0, the weight split evenly, targets'
    /// addresses in the additional section.
    fn srv(&self, owner: &Name, rest: &[&str]) -> Result<Found, NotFound> {
        let hits = self.hits(rest, RecordType::SRV)?;
        let mut found = Found::default();
        if hits.is_empty() {
            return Ok(found);
        }
        let weight = u16::try_from(100 / hits.len()).unwrap_or(1).max(1);
        let mut records = FxHashSet::default();
        let mut addresses = FxHashSet::default();
        for hit in &hits {
            let (Some(port), Target::Ip(ip)) = (hit.port, hit.target) else {
                continue;
            };
            let Some(target) = self.hit_name(hit.name) else {
                continue;
            };
            if records.insert((target.clone(), port)) {
                found.answers.push(Record::from_rdata(
                    owner.clone(),
                    self.zone.ttl,
                    RData::SRV(SRV::new(0, weight, port, target.clone())),
                ));
            }
            if addresses.insert((target.clone(), ip)) {
                found
                    .additionals
                    .push(address_record(target, ip, self.zone.ttl));
            }
        }
        Ok(found)
    }

    /// CNAME (CoreDNS's `plugin.CNAME`): only ExternalName services have one.
    fn cname(&self, owner: &Name, rest: &[&str]) -> Result<Found, NotFound> {
        let hits = self.hits(rest, RecordType::CNAME)?;
        let mut found = Found::default();
        if let Some(Hit {
            target: Target::Cname(target),
            ..
        }) = hits.first()
        {
            found.answers.push(Record::from_rdata(
                owner.clone(),
                self.zone.ttl,
                RData::CNAME(CNAME((*target).clone())),
            ));
        }
        Ok(found)
    }

    /// PTR for a cluster IP (the first service holding it) or else for every ready
    /// endpoint holding it; `None` when the index does not know the address.
    fn reverse_answer(&self, owner: &Name, ip: IpAddr) -> Option<Response> {
        let mut targets: Vec<Name> = Vec::new();
        if let Some((ns, svc)) = self.cluster_ips.get(&ip).and_then(|refs| refs.first()) {
            targets.extend(self.hit_name(HitName::Service {
                namespace: ns,
                service: svc,
            }));
        } else {
            for (ns, slice) in self.endpoint_ips.get(&ip).into_iter().flatten() {
                let Some(slice) = self.namespaces.get(ns).and_then(|e| e.slices.get(slice)) else {
                    continue;
                };
                for ep in slice.endpoints.iter().filter(|e| e.ip == ip) {
                    let name = self.hit_name(HitName::Endpoint {
                        label: &ep.label,
                        namespace: ns,
                        service: &slice.service,
                    });
                    if let Some(name) = name.filter(|n| !targets.contains(n)) {
                        targets.push(name);
                    }
                }
            }
        }
        if targets.is_empty() {
            return None;
        }
        let mut response = Response::new(ResponseCode::NoError);
        response.answers = targets
            .into_iter()
            .map(|t| Record::from_rdata(owner.clone(), self.zone.ttl, RData::PTR(PTR(t))))
            .collect();
        Some(response)
    }

    /// What a name matches (CoreDNS's `Services`): `Err` when it does not exist.
    fn hits<'a>(&'a self, rest: &[&'a str], qtype: RecordType) -> Result<Vec<Hit<'a>>, NotFound> {
        if rest == ["ns", "dns"] {
            let want_v4 = qtype == RecordType::A;
            let want_v6 = qtype == RecordType::AAAA;
            return Ok(self
                .zone
                .nameservers
                .iter()
                .filter(|ip| (ip.is_ipv4() && want_v4) || (ip.is_ipv6() && want_v6))
                .map(|ip| Hit {
                    target: Target::Ip(*ip),
                    port: None,
                    name: HitName::Nameserver,
                })
                .collect());
        }
        let mut hits = match parse(rest)? {
            Request::Apex => Vec::new(),
            Request::Svc(request) => self.service_hits(request)?,
            Request::Pod { namespace, pod } => self.pod_hits(namespace, pod)?,
        };
        if qtype == RecordType::SRV {
            hits.retain(|h| matches!(h.target, Target::Ip(_)));
        }
        Ok(hits)
    }

    /// CoreDNS's `findServices`.
    fn service_hits<'a>(&'a self, r: SvcRequest<'a>) -> Result<Vec<Hit<'a>>, NotFound> {
        let ns = self
            .namespaces
            .get(r.namespace)
            .filter(|e| e.exists)
            .ok_or(NotFound)?;
        let Some(service) = r.service else {
            return Ok(Vec::new());
        };
        let (service, entry) = ns.services.get_key_value(service).ok_or(NotFound)?;
        let namespace = r.namespace;
        let mut hits = Vec::new();
        let mut matched = false;
        match &entry.kind {
            ServiceKind::ExternalName(target) => {
                if r.endpoint.is_some() || r.port.is_some() || r.protocol.is_some() {
                    return Err(NotFound);
                }
                let target = target.as_ref().ok_or(NotFound)?;
                hits.push(Hit {
                    target: Target::Cname(target),
                    port: None,
                    name: HitName::Service { namespace, service },
                });
                matched = true;
            }
            kind if matches!(kind, ServiceKind::Headless) || r.endpoint.is_some() => {
                for slice in ns.slices_of(service) {
                    for ep in &slice.endpoints {
                        if r.endpoint
                            .is_some_and(|e| !e.eq_ignore_ascii_case(&ep.label))
                        {
                            continue;
                        }
                        for port in slice.ports.iter().filter(|p| p.matches(r.port, r.protocol)) {
                            matched = true;
                            hits.push(Hit {
                                target: Target::Ip(ep.ip),
                                port: port.port,
                                name: HitName::Endpoint {
                                    label: &ep.label,
                                    namespace,
                                    service,
                                },
                            });
                        }
                    }
                }
            }
            ServiceKind::ClusterIp(ips) => {
                for port in entry.ports.iter().filter(|p| p.matches(r.port, r.protocol)) {
                    matched = true;
                    for ip in ips {
                        hits.push(Hit {
                            target: Target::Ip(*ip),
                            port: port.port,
                            name: HitName::Service { namespace, service },
                        });
                    }
                }
            }
            ServiceKind::Headless => {}
        }
        if matched { Ok(hits) } else { Err(NotFound) }
    }

    /// CoreDNS's `findPods` in `pods insecure` mode: the address is the name.
    fn pod_hits<'a>(
        &'a self,
        namespace: &'a str,
        pod: Option<&'a str>,
    ) -> Result<Vec<Hit<'a>>, NotFound> {
        if !self.namespaces.get(namespace).is_some_and(|e| e.exists) {
            return Err(NotFound);
        }
        let Some(pod) = pod else {
            return Ok(Vec::new());
        };
        let ip = pod_ip(pod).ok_or(NotFound)?;
        Ok(vec![Hit {
            target: Target::Ip(ip),
            port: Some(0),
            name: HitName::Pod { pod, namespace },
        }])
    }

    fn hit_name(&self, name: HitName<'_>) -> Option<Name> {
        let relative = match name {
            HitName::Nameserver => return Some(self.zone.ns_name.clone()),
            HitName::Service { namespace, service } => {
                Name::from_labels([service, namespace, "svc"])
            }
            HitName::Endpoint {
                label,
                namespace,
                service,
            } => Name::from_labels([label, service, namespace, "svc"]),
            HitName::Pod { pod, namespace } => Name::from_labels([pod, namespace, "pod"]),
        };
        relative
            .and_then(|n| n.append_domain(&self.zone.domain))
            .ok()
    }
}

fn address_record(owner: Name, ip: IpAddr, ttl: u32) -> Record {
    let data = match ip {
        IpAddr::V4(ip) => RData::A(A(ip)),
        IpAddr::V6(ip) => RData::AAAA(AAAA(ip)),
    };
    Record::from_rdata(owner, ttl, data)
}

/// A name's labels as text; a label that is not UTF-8 becomes one that matches nothing.
fn labels_of(name: &Name) -> Vec<&str> {
    name.iter()
        .map(|l| std::str::from_utf8(l).unwrap_or("\u{0}"))
        .collect()
}

#[cfg(test)]
mod tests;
