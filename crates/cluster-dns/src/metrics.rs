//! Response counts by rcode and a latency histogram, readable as a snapshot.

use std::{
    fmt::Write as _,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use hickory_proto::op::ResponseCode;

/// Upper bounds of the latency buckets in seconds: 0.25 ms doubling to 8.192 s, as
/// CoreDNS's `coredns_dns_request_duration_seconds`.
const BUCKETS: [f64; 16] = [
    0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024,
    2.048, 4.096, 8.192,
];

/// The rcodes counted by name; anything else counts as `OTHER`.
const RCODES: [(ResponseCode, &str); 6] = [
    (ResponseCode::NoError, "NOERROR"),
    (ResponseCode::NXDomain, "NXDOMAIN"),
    (ResponseCode::ServFail, "SERVFAIL"),
    (ResponseCode::Refused, "REFUSED"),
    (ResponseCode::FormErr, "FORMERR"),
    (ResponseCode::NotImp, "NOTIMP"),
];

/// Counters the server updates on every response; cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    inner: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    /// One per [`RCODES`] entry, then `OTHER`.
    responses: [AtomicU64; RCODES.len() + 1],
    /// Non-cumulative counts per bucket, then the overflow (+Inf) bucket.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    latency_nanos: AtomicU64,
    forwarded: AtomicU64,
}

impl Metrics {
    /// Counts one response with its rcode and the time from request to response.
    pub(crate) fn record(&self, rcode: ResponseCode, elapsed: Duration) {
        let c = &self.inner;
        let i = RCODES
            .iter()
            .position(|(r, _)| *r == rcode)
            .unwrap_or(RCODES.len());
        c.responses[i].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        let b = BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(BUCKETS.len());
        c.buckets[b].fetch_add(1, Ordering::Relaxed);
        c.latency_nanos.fetch_add(
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Counts one question sent upstream.
    pub(crate) fn record_forwarded(&self) {
        self.inner.forwarded.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let c = &self.inner;
        let mut responses: Vec<(String, u64)> = RCODES
            .iter()
            .map(|(_, name)| name.to_string())
            .chain(std::iter::once("OTHER".to_string()))
            .zip(c.responses.iter().map(|n| n.load(Ordering::Relaxed)))
            .collect();
        responses.retain(|(name, n)| *n > 0 || name == "NOERROR" || name == "NXDOMAIN");
        let mut cumulative = 0;
        let mut counts = Vec::with_capacity(BUCKETS.len());
        for bucket in &c.buckets[..BUCKETS.len()] {
            cumulative += bucket.load(Ordering::Relaxed);
            counts.push(cumulative);
        }
        let count = cumulative + c.buckets[BUCKETS.len()].load(Ordering::Relaxed);
        MetricsSnapshot {
            responses,
            forwarded: c.forwarded.load(Ordering::Relaxed),
            latency: LatencyHistogram {
                bounds_seconds: BUCKETS.to_vec(),
                cumulative_counts: counts,
                count,
                sum_seconds: c.latency_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            },
        }
    }
}

/// The metrics at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSnapshot {
    /// Responses sent by rcode name (`NOERROR`, `NXDOMAIN`, `SERVFAIL`, `REFUSED`,
    /// `FORMERR`, `NOTIMP`, `OTHER`); rcodes never sent are left out except NOERROR
    /// and NXDOMAIN.
    pub responses: Vec<(String, u64)>,
    /// Questions sent upstream (outside the cluster domain, or ExternalName targets).
    pub forwarded: u64,
    /// Time from request to response.
    pub latency: LatencyHistogram,
}

/// A Prometheus-style histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyHistogram {
    /// Bucket upper bounds, seconds.
    pub bounds_seconds: Vec<f64>,
    /// Observations at or below each bound (cumulative).
    pub cumulative_counts: Vec<u64>,
    /// All observations.
    pub count: u64,
    /// Their sum, seconds.
    pub sum_seconds: f64,
}

impl MetricsSnapshot {
    /// The responses of one rcode name (0 when none).
    pub fn responses_with(&self, rcode: &str) -> u64 {
        self.responses
            .iter()
            .find(|(name, _)| name == rcode)
            .map_or(0, |(_, n)| *n)
    }

    /// Prometheus text exposition format (version 0.0.4):
    /// `skiff_dns_responses_total{rcode}`, `skiff_dns_forwarded_requests_total` and
    /// `skiff_dns_request_duration_seconds` (histogram).
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP skiff_dns_responses_total DNS responses sent, by rcode.\n");
        out.push_str("# TYPE skiff_dns_responses_total counter\n");
        for (rcode, n) in &self.responses {
            let _ = writeln!(out, "skiff_dns_responses_total{{rcode=\"{rcode}\"}} {n}");
        }
        out.push_str(
            "# HELP skiff_dns_forwarded_requests_total DNS questions sent to upstream servers.\n",
        );
        out.push_str("# TYPE skiff_dns_forwarded_requests_total counter\n");
        let _ = writeln!(out, "skiff_dns_forwarded_requests_total {}", self.forwarded);
        out.push_str(
            "# HELP skiff_dns_request_duration_seconds Time from DNS request to response.\n",
        );
        out.push_str("# TYPE skiff_dns_request_duration_seconds histogram\n");
        let h = &self.latency;
        for (le, n) in h.bounds_seconds.iter().zip(&h.cumulative_counts) {
            let _ = writeln!(
                out,
                "skiff_dns_request_duration_seconds_bucket{{le=\"{le}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "skiff_dns_request_duration_seconds_bucket{{le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(
            out,
            "skiff_dns_request_duration_seconds_sum {}",
            h.sum_seconds
        );
        let _ = writeln!(out, "skiff_dns_request_duration_seconds_count {}", h.count);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_and_latencies_show_in_the_prometheus_text() {
        let metrics = Metrics::default();
        metrics.record(ResponseCode::NoError, Duration::from_micros(100));
        metrics.record(ResponseCode::NoError, Duration::from_millis(3));
        metrics.record(ResponseCode::NXDomain, Duration::from_micros(200));
        metrics.record(ResponseCode::ServFail, Duration::from_secs(20));
        metrics.record_forwarded();
        let snap = metrics.snapshot();
        assert_eq!(snap.responses_with("NOERROR"), 2);
        assert_eq!(snap.responses_with("NXDOMAIN"), 1);
        assert_eq!(snap.responses_with("SERVFAIL"), 1);
        assert_eq!(snap.responses_with("REFUSED"), 0);
        assert_eq!(snap.latency.count, 4);
        assert_eq!(snap.latency.cumulative_counts[0], 2); // <= 0.25 ms
        assert_eq!(snap.latency.cumulative_counts[4], 3); // <= 4 ms
        assert_eq!(*snap.latency.cumulative_counts.last().unwrap(), 3); // 20 s is over
        let text = snap.render_prometheus();
        assert!(text.contains("skiff_dns_responses_total{rcode=\"NOERROR\"} 2\n"));
        assert!(text.contains("skiff_dns_responses_total{rcode=\"SERVFAIL\"} 1\n"));
        assert!(!text.contains("REFUSED"));
        assert!(text.contains("skiff_dns_request_duration_seconds_bucket{le=\"0.00025\"} 2\n"));
        assert!(text.contains("skiff_dns_request_duration_seconds_bucket{le=\"+Inf\"} 4\n"));
        assert!(text.contains("skiff_dns_request_duration_seconds_count 4\n"));
        assert!(text.contains("skiff_dns_forwarded_requests_total 1\n"));
    }
}
