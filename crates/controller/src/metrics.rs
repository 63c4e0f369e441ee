//! [`Metrics`]: reconcile counters, queue depth and a duration histogram per controller,
//! rendered in the Prometheus text exposition format (version 0.0.4).
//!
//! ```text
//!  stead_controller_reconcile_total{controller="widgets",result="success"} 12
//!  stead_controller_reconcile_errors_total{controller="widgets"} 1
//!  stead_controller_queue_depth{controller="widgets"} 0
//!  stead_controller_reconcile_duration_seconds_bucket{controller="widgets",le="0.005"} 9
//!  ...
//! ```
//!
//! One registry may serve several controllers (each labels its series with its name); the
//! server's `/metrics` handler appends [`Metrics::render`] to its own output.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Upper bounds of the duration histogram, in seconds.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Cumulative counts per bucket in `BUCKETS`.
    buckets: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, count) in BUCKETS.iter().zip(self.buckets.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }
}

#[derive(Debug, Default)]
struct Inner {
    reconciles: BTreeMap<(String, &'static str), u64>,
    errors: BTreeMap<String, u64>,
    queue_depth: BTreeMap<String, u64>,
    durations: BTreeMap<String, Histogram>,
}

/// A small metrics registry for controllers; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    inner: Arc<Mutex<Inner>>,
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Self {
        Metrics::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Counts one finished reconcile of `controller` and observes its duration.
    pub fn reconcile_finished(&self, controller: &str, success: bool, duration: Duration) {
        self.with(|inner| {
            let result = if success { "success" } else { "error" };
            *inner
                .reconciles
                .entry((controller.to_owned(), result))
                .or_default() += 1;
            if !success {
                *inner.errors.entry(controller.to_owned()).or_default() += 1;
            }
            inner
                .durations
                .entry(controller.to_owned())
                .or_default()
                .observe(duration.as_secs_f64());
        });
    }

    /// Sets how many keys of `controller` wait in its queue.
    pub fn set_queue_depth(&self, controller: &str, depth: usize) {
        self.with(|inner| {
            inner.queue_depth.insert(
                controller.to_owned(),
                u64::try_from(depth).unwrap_or(u64::MAX),
            );
        });
    }

    /// Reconciles of `controller` with `result` (`success` or `error`) so far.
    pub fn reconciles(&self, controller: &str, result: &str) -> u64 {
        self.with(|inner| {
            inner
                .reconciles
                .iter()
                .filter(|((c, r), _)| c == controller && *r == result)
                .map(|(_, n)| *n)
                .sum()
        })
    }

    /// Everything, in the Prometheus text format.
    pub fn render(&self) -> String {
        self.with(|inner| {
            let mut out = String::new();
            header(
                &mut out,
                "stead_controller_reconcile_total",
                "counter",
                "Reconciles by result.",
            );
            for ((controller, result), n) in &inner.reconciles {
                let _ = writeln!(
                    out,
                    "stead_controller_reconcile_total{{controller=\"{}\",result=\"{result}\"}} {n}",
                    escape(controller)
                );
            }
            header(
                &mut out,
                "stead_controller_reconcile_errors_total",
                "counter",
                "Reconciles that failed.",
            );
            for (controller, n) in &inner.errors {
                let _ = writeln!(
                    out,
                    "stead_controller_reconcile_errors_total{{controller=\"{}\"}} {n}",
                    escape(controller)
                );
            }
            header(
                &mut out,
                "stead_controller_queue_depth",
                "gauge",
                "Keys waiting to be reconciled.",
            );
            for (controller, n) in &inner.queue_depth {
                let _ = writeln!(
                    out,
                    "stead_controller_queue_depth{{controller=\"{}\"}} {n}",
                    escape(controller)
                );
            }
            let name = "stead_controller_reconcile_duration_seconds";
            header(&mut out, name, "histogram", "How long reconciles took.");
            for (controller, histogram) in &inner.durations {
                let controller = escape(controller);
                for (bound, count) in BUCKETS.iter().zip(histogram.buckets) {
                    let _ = writeln!(
                        out,
                        "{name}_bucket{{controller=\"{controller}\",le=\"{bound}\"}} {count}"
                    );
                }
                let count = histogram.count;
                let _ = writeln!(
                    out,
                    "{name}_bucket{{controller=\"{controller}\",le=\"+Inf\"}} {count}"
                );
                let _ = writeln!(
                    out,
                    "{name}_sum{{controller=\"{controller}\"}} {}",
                    histogram.sum
                );
                let _ = writeln!(out, "{name}_count{{controller=\"{controller}\"}} {count}");
            }
            out
        })
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value as the text format requires: backslash, quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_text_contains_counters_gauges_and_histograms() {
        let metrics = Metrics::new();
        metrics.reconcile_finished("widgets", true, Duration::from_millis(3));
        metrics.reconcile_finished("widgets", true, Duration::from_millis(30));
        metrics.reconcile_finished("widgets", false, Duration::from_secs(20));
        metrics.set_queue_depth("widgets", 4);
        let text = metrics.render();
        let expected = [
            "# TYPE stead_controller_reconcile_total counter",
            "stead_controller_reconcile_total{controller=\"widgets\",result=\"success\"} 2",
            "stead_controller_reconcile_total{controller=\"widgets\",result=\"error\"} 1",
            "stead_controller_reconcile_errors_total{controller=\"widgets\"} 1",
            "stead_controller_queue_depth{controller=\"widgets\"} 4",
            "stead_controller_reconcile_duration_seconds_bucket{controller=\"widgets\",le=\"0.005\"} 1",
            "stead_controller_reconcile_duration_seconds_bucket{controller=\"widgets\",le=\"0.05\"} 2",
            "stead_controller_reconcile_duration_seconds_bucket{controller=\"widgets\",le=\"10\"} 2",
            "stead_controller_reconcile_duration_seconds_bucket{controller=\"widgets\",le=\"+Inf\"} 3",
            "stead_controller_reconcile_duration_seconds_count{controller=\"widgets\"} 3",
        ];
        for line in expected {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert_eq!(metrics.reconciles("widgets", "success"), 2);
    }

    #[test]
    fn label_values_are_escaped() {
        let cases = [
            ("plain", "plain"),
            ("a\"b", "a\\\"b"),
            ("a\\b", "a\\\\b"),
            ("a\nb", "a\\nb"),
        ];
        for (input, want) in cases {
            assert_eq!(escape(input), want, "{input:?}");
        }
    }
}
