//! Sync counters, durations and rule counts, rendered in Prometheus' text format with
//! kube-proxy's metric names where one exists.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Upper bounds of the sync duration histogram, in seconds (kube-proxy's buckets,
/// 1 ms doubling up to ~16 s).
const BUCKETS: [f64; 15] = [
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192, 16.384,
];

/// A cheap handle the proxy records into and a metrics server reads from.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    inner: Arc<Mutex<MetricsSnapshot>>,
}

/// The proxy's metrics at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsSnapshot {
    /// Successful full syncs.
    pub full_syncs: u64,
    /// Successful incremental syncs.
    pub partial_syncs: u64,
    /// Syncs that failed (iptables-restore or a hook command).
    pub sync_failures: u64,
    /// Counts of sync durations per bucket of [`BUCKETS`] (not cumulative).
    pub duration_buckets: [u64; 15],
    /// Syncs longer than the last bucket.
    pub duration_overflow: u64,
    /// Sum of all sync durations.
    pub duration_sum: Duration,
    /// The last sync's duration.
    pub last_duration: Duration,
    /// When the last successful sync ended.
    pub last_sync: Option<SystemTime>,
    /// Rules in our nat chains after the last sync.
    pub nat_rules: usize,
    /// Rules in our filter chains after the last sync.
    pub filter_rules: usize,
    /// Service ports with rules.
    pub service_ports: usize,
    /// Endpoints rules can send to (iptables: endpoint chains).
    pub endpoint_chains: usize,
    /// nftables: elements of our maps and sets after the last sync.
    pub elements: usize,
    /// Chains written by the last sync.
    pub last_chains_written: usize,
}

impl Metrics {
    /// A copy of the current values.
    pub fn snapshot(&self) -> MetricsSnapshot {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MetricsSnapshot> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a sync that succeeded.
    pub(crate) fn synced(&self, took: Duration, report: &crate::SyncReport) {
        let mut m = self.lock();
        if report.full {
            m.full_syncs += 1;
        } else {
            m.partial_syncs += 1;
        }
        m.observe(took);
        m.last_sync = Some(SystemTime::now());
        m.nat_rules = report.counts.nat_rules;
        m.filter_rules = report.counts.filter_rules;
        m.elements = report.counts.elements;
        m.service_ports = report.counts.service_ports;
        m.endpoint_chains = report.counts.endpoints;
        m.last_chains_written = report.chains_written;
    }

    /// Records a sync that failed.
    pub(crate) fn failed(&self, took: Duration) {
        let mut m = self.lock();
        m.sync_failures += 1;
        m.observe(took);
    }
}

impl MetricsSnapshot {
    fn observe(&mut self, took: Duration) {
        let seconds = took.as_secs_f64();
        match BUCKETS.iter().position(|b| seconds <= *b) {
            Some(i) => self.duration_buckets[i] += 1,
            None => self.duration_overflow += 1,
        }
        self.duration_sum += took;
        self.last_duration = took;
    }

    /// The metrics in Prometheus' text exposition format.
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let count = self.full_syncs + self.partial_syncs + self.sync_failures;
        out.push_str("# HELP kubeproxy_sync_proxy_rules_duration_seconds SyncProxyRules latency in seconds\n");
        out.push_str("# TYPE kubeproxy_sync_proxy_rules_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(self.duration_buckets) {
            cumulative += n;
            let _ = writeln!(
                out,
                "kubeproxy_sync_proxy_rules_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "kubeproxy_sync_proxy_rules_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "kubeproxy_sync_proxy_rules_duration_seconds_sum {}",
            self.duration_sum.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "kubeproxy_sync_proxy_rules_duration_seconds_count {count}"
        );

        out.push_str("# HELP skiff_proxy_syncs_total Successful rule syncs by kind\n");
        out.push_str("# TYPE skiff_proxy_syncs_total counter\n");
        let _ = writeln!(
            out,
            "skiff_proxy_syncs_total{{kind=\"full\"}} {}",
            self.full_syncs
        );
        let _ = writeln!(
            out,
            "skiff_proxy_syncs_total{{kind=\"partial\"}} {}",
            self.partial_syncs
        );

        out.push_str(
            "# HELP kubeproxy_sync_proxy_rules_iptables_restore_failures_total Failed syncs\n",
        );
        out.push_str("# TYPE kubeproxy_sync_proxy_rules_iptables_restore_failures_total counter\n");
        let _ = writeln!(
            out,
            "kubeproxy_sync_proxy_rules_iptables_restore_failures_total {}",
            self.sync_failures
        );

        out.push_str("# HELP kubeproxy_sync_proxy_rules_last_timestamp_seconds The last time rules were successfully synced\n");
        out.push_str("# TYPE kubeproxy_sync_proxy_rules_last_timestamp_seconds gauge\n");
        let last = self
            .last_sync
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0.0, |d| d.as_secs_f64());
        let _ = writeln!(
            out,
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds {last}"
        );

        out.push_str(
            "# HELP kubeproxy_sync_proxy_rules_iptables_total Rules in our chains by table\n",
        );
        out.push_str("# TYPE kubeproxy_sync_proxy_rules_iptables_total gauge\n");
        let _ = writeln!(
            out,
            "kubeproxy_sync_proxy_rules_iptables_total{{table=\"filter\"}} {}",
            self.filter_rules
        );
        let _ = writeln!(
            out,
            "kubeproxy_sync_proxy_rules_iptables_total{{table=\"nat\"}} {}",
            self.nat_rules
        );

        out.push_str("# HELP skiff_proxy_service_ports Service ports with rules\n");
        out.push_str("# TYPE skiff_proxy_service_ports gauge\n");
        let _ = writeln!(out, "skiff_proxy_service_ports {}", self.service_ports);
        out.push_str("# HELP skiff_proxy_endpoint_chains Endpoint (SEP) chains\n");
        out.push_str("# TYPE skiff_proxy_endpoint_chains gauge\n");
        let _ = writeln!(out, "skiff_proxy_endpoint_chains {}", self.endpoint_chains);
        out.push_str(
            "# HELP skiff_proxy_nftables_elements Elements of our nftables maps and sets\n",
        );
        out.push_str("# TYPE skiff_proxy_nftables_elements gauge\n");
        let _ = writeln!(out, "skiff_proxy_nftables_elements {}", self.elements);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_is_cumulative_and_counts_every_sync() {
        let metrics = Metrics::default();
        let full = crate::SyncReport {
            full: true,
            ..crate::SyncReport::default()
        };
        metrics.synced(Duration::from_millis(3), &full);
        metrics.synced(Duration::from_millis(20), &crate::SyncReport::default());
        metrics.failed(Duration::from_secs(30));
        let text = metrics.snapshot().to_prometheus();
        assert!(
            text.contains("kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"0.004\"} 1\n")
        );
        assert!(
            text.contains("kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"0.032\"} 2\n")
        );
        assert!(
            text.contains("kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"+Inf\"} 3\n")
        );
        assert!(text.contains("kubeproxy_sync_proxy_rules_duration_seconds_count 3\n"));
        assert!(text.contains("skiff_proxy_syncs_total{kind=\"full\"} 1\n"));
        assert!(text.contains("kubeproxy_sync_proxy_rules_iptables_restore_failures_total 1\n"));
    }
}
