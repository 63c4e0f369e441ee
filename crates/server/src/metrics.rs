//! Prometheus metrics, rendered in the text exposition format at `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// The gRPC methods counted, by name.
const METHODS: &[&str] = &[
    "Range",
    "Put",
    "DeleteRange",
    "Txn",
    "Compact",
    "Watch",
    "LeaseGrant",
    "LeaseRevoke",
    "LeaseKeepAlive",
    "LeaseTimeToLive",
    "LeaseLeases",
    "MemberList",
    "Alarm",
    "Status",
    "Defragment",
    "Hash",
    "HashKV",
    "Snapshot",
];

/// What vouched for a read index this member named as leader.
#[derive(Debug, Clone, Copy)]
pub enum ReadIndexVouch {
    /// A quorum acknowledged a heartbeat round.
    Heartbeat,
    /// The asking follower, with the leader a quorum (see `cluster::ReadIndexGrant`).
    Asker,
}

/// Counters shared by every service.
#[derive(Debug)]
pub struct Metrics {
    requests: Vec<AtomicU64>,
    watch_events: AtomicU64,
    /// By [`ReadIndexVouch`]: heartbeat, asker.
    read_indexes: [AtomicU64; 2],
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: METHODS.iter().map(|_| AtomicU64::new(0)).collect(),
            watch_events: AtomicU64::new(0),
            read_indexes: Default::default(),
        }
    }
}

/// Gauges read from the store when metrics are scraped.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreGauges {
    pub revision: i64,
    pub compacted: i64,
    pub db_size: u64,
    pub db_size_in_use: u64,
    pub keys: u64,
    pub commits: u64,
    pub proposals: u64,
    pub commit_nanos: u64,
}

impl Metrics {
    pub fn count(&self, method: &str) {
        if let Some(i) = METHODS.iter().position(|m| *m == method) {
            self.requests[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn add_watch_events(&self, n: u64) {
        self.watch_events.fetch_add(n, Ordering::Relaxed);
    }

    pub fn count_read_index(&self, vouch: ReadIndexVouch) {
        self.read_indexes[vouch as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self, gauges: StoreGauges) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP grpc_server_handled_total Requests handled, by gRPC method.\n\
             # TYPE grpc_server_handled_total counter"
        );
        for (name, count) in METHODS.iter().zip(&self.requests) {
            let _ = writeln!(
                out,
                "grpc_server_handled_total{{grpc_method=\"{name}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP stead_read_index_total Read indexes named by this member as leader, by what \
             vouched for its leadership.\n\
             # TYPE stead_read_index_total counter"
        );
        for (vouch, count) in ["heartbeat", "asker"].iter().zip(&self.read_indexes) {
            let _ = writeln!(
                out,
                "stead_read_index_total{{vouched_by=\"{vouch}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        let gauge = |out: &mut String, name: &str, help: &str, kind: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        gauge(
            &mut out,
            "etcd_debugging_mvcc_events_total",
            "Events sent to watchers.",
            "counter",
            self.watch_events.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            &mut out,
            "etcd_mvcc_db_total_size_in_bytes",
            "Size of the backend file.",
            "gauge",
            gauges.db_size.to_string(),
        );
        gauge(
            &mut out,
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            "Bytes of the backend file holding data.",
            "gauge",
            gauges.db_size_in_use.to_string(),
        );
        gauge(
            &mut out,
            "etcd_debugging_mvcc_current_revision",
            "The current revision.",
            "gauge",
            gauges.revision.to_string(),
        );
        gauge(
            &mut out,
            "etcd_debugging_mvcc_compact_revision",
            "The last compaction revision.",
            "gauge",
            gauges.compacted.to_string(),
        );
        gauge(
            &mut out,
            "etcd_debugging_mvcc_keys_total",
            "Live keys.",
            "gauge",
            gauges.keys.to_string(),
        );
        gauge(
            &mut out,
            "stead_backend_commits_total",
            "Durable backend commits (one fsync each).",
            "counter",
            gauges.commits.to_string(),
        );
        gauge(
            &mut out,
            "stead_backend_commit_seconds_total",
            "Time spent applying and committing batches.",
            "counter",
            format!("{:.6}", gauges.commit_nanos as f64 / 1e9),
        );
        gauge(
            &mut out,
            "etcd_server_proposals_applied_total",
            "Proposals applied; divided by commits, the writes sharing each fsync.",
            "counter",
            gauges.proposals.to_string(),
        );
        gauge(
            &mut out,
            "etcd_server_has_leader",
            "Whether a leader exists (1) or not (0).",
            "gauge",
            "1".to_string(),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_metrics_count_requests_per_method() {
        let m = Metrics::default();
        m.count("Put");
        m.count("Put");
        m.count("Range");
        m.count_read_index(ReadIndexVouch::Asker);
        let text = m.render(StoreGauges {
            revision: 9,
            ..Default::default()
        });
        assert!(text.contains("grpc_server_handled_total{grpc_method=\"Put\"} 2"));
        assert!(text.contains("grpc_server_handled_total{grpc_method=\"Range\"} 1"));
        assert!(text.contains("etcd_debugging_mvcc_current_revision 9"));
        assert!(text.contains("stead_read_index_total{vouched_by=\"asker\"} 1"));
        assert!(text.contains("stead_read_index_total{vouched_by=\"heartbeat\"} 0"));
    }
}
