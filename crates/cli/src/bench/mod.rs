//! `stead bench`: a load generator. The KV workloads speak the etcd v3 API, so the same run
//! can be pointed at stead and at etcd; `apply` and `resource-watch` drive stead's REST API;
//! `fsync` measures the disk under a data directory.
//!
//! ```text
//!  clients (closed loop, one request in flight each) ─► op(client, seq) ─► latency
//!     budget: --total requests or --duration; --rate caps requests/s across clients
//!  progress on stderr (a terminal only) ─► Report: throughput, p50/p90/p99/p99.9, errors
//! ```

mod driver;
mod fsync;
mod kv;
mod resources;

use std::time::Duration;

use clap::{Args, ValueEnum};
use serde_json::{Value, json};

pub(crate) use driver::{Budget, Driver, Outcome};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Workload {
    /// Put keys (random from the key space, or `--sequential`).
    Put,
    /// Linearizable get of one random key (or a `--prefix` range with `--limit`).
    Range,
    /// Serializable get of one random key (or a `--prefix` range with `--limit`).
    RangeSerializable,
    /// Txn: compare-and-swap on one random key.
    TxnPut,
    /// Txns that read or write one random key, `--read-ratio` of them reads.
    TxnMixed,
    /// `--watchers` watch the key space while the clients put: delivery latency, events/s.
    Watch,
    /// Lease keep-alives on one lease per client, over keep-alive streams.
    LeaseKeepalive,
    /// Server-side apply of Lease objects through the REST API (`--api-server`).
    Apply,
    /// `--watchers` REST watches on Leases while the clients apply them: fan-out of
    /// resource events, delivery latency.
    ResourceWatch,
    /// 4 KiB write + fdatasync in `--data-dir`: the disk's commit latency, no server.
    Fsync,
}

#[derive(Args)]
pub(crate) struct BenchArgs {
    #[arg(value_enum)]
    pub(crate) workload: Workload,
    /// Comma-separated etcd v3 endpoints (clients are spread over them).
    #[arg(long, default_value = "http://127.0.0.1:2379")]
    pub(crate) endpoints: String,
    /// REST API URL for `apply` and `resource-watch`.
    #[arg(long, default_value = "http://127.0.0.1:6443")]
    pub(crate) api_server: String,
    /// gRPC connections (clients share them round-robin).
    #[arg(long, default_value_t = 1)]
    pub(crate) conns: usize,
    /// Concurrent clients, each with one request in flight.
    #[arg(long, default_value_t = 1)]
    pub(crate) clients: usize,
    /// Threads that drive the clients (default: one per gRPC connection, at most one per
    /// CPU; the REST workloads, one per CPU). Every request on a connection passes through
    /// its one HTTP/2 connection task, so more threads than connections only add
    /// hand-offs between threads to each request's round trip.
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// Requests in total (default 10000 unless --duration is given).
    #[arg(long)]
    pub(crate) total: Option<u64>,
    /// Run for this long instead of a number of requests (e.g. `30s`, `2m`).
    #[arg(long, value_parser = parse_duration)]
    pub(crate) duration: Option<Duration>,
    /// Cap on requests per second, over all clients (default: as fast as possible).
    #[arg(long)]
    pub(crate) rate: Option<f64>,
    /// Key size in bytes.
    #[arg(long, default_value_t = 16)]
    pub(crate) key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    pub(crate) val_size: usize,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) key_space: u64,
    /// Keys in order instead of at random.
    #[arg(long)]
    pub(crate) sequential: bool,
    /// `range`: read the whole key-space prefix instead of one key.
    #[arg(long)]
    pub(crate) prefix: bool,
    /// `range --prefix`: at most this many keys per read.
    #[arg(long, default_value_t = 100)]
    pub(crate) limit: i64,
    /// `txn-mixed`: the fraction of txns that only read.
    #[arg(long, default_value_t = 0.5)]
    pub(crate) read_ratio: f64,
    /// Watch streams for `watch` and `resource-watch`.
    #[arg(long, default_value_t = 1)]
    pub(crate) watchers: usize,
    /// Directory `fsync` writes in (its disk is measured).
    #[arg(long, default_value = ".")]
    pub(crate) data_dir: std::path::PathBuf,
    /// No progress line on stderr.
    #[arg(long)]
    pub(crate) no_progress: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

impl BenchArgs {
    pub(crate) fn budget(&self) -> Budget {
        match (self.total, self.duration) {
            (Some(total), _) => Budget::Requests(total),
            (None, Some(duration)) => Budget::Time(duration),
            (None, None) => Budget::Requests(10_000),
        }
    }

    /// How many threads the load generator runs on (see `--threads`).
    pub(crate) fn threads(&self) -> usize {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let default = match self.workload {
            Workload::Apply | Workload::ResourceWatch => cpus,
            Workload::Fsync => 1,
            _ => self.conns.clamp(1, cpus),
        };
        self.threads.unwrap_or(default).max(1)
    }

    pub(crate) fn driver(&self) -> Driver {
        Driver {
            clients: self.clients.max(1),
            budget: self.budget(),
            rate: self.rate.filter(|r| *r > 0.0),
            progress: !self.no_progress && !self.json,
        }
    }
}

/// `10s`, `250ms`, `2m`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((text, ""), |i| text.split_at(i));
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s, 500ms or 2m"))?;
    let seconds = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{text:?} is not a duration like 30s, 500ms or 2m")),
    };
    Ok(Duration::from_secs_f64(seconds))
}

/// What a run measured.
pub(crate) struct Report {
    pub(crate) workload: Workload,
    pub(crate) clients: usize,
    pub(crate) outcome: Outcome,
    /// Workload-specific figures (events delivered, ...), printed after the common ones.
    pub(crate) extra: Vec<(&'static str, Value)>,
}

impl Report {
    fn print(&self, as_json: bool) {
        let o = &self.outcome;
        let [p50, p90, p99, p999] = o.percentiles_ms();
        let name = format!("{:?}", self.workload);
        if as_json {
            let mut value = json!({
                "workload": name, "clients": self.clients, "requests": o.latencies.len(),
                "errors": o.errors, "seconds": o.elapsed.as_secs_f64(),
                "throughput": o.throughput(), "p50_ms": p50, "p90_ms": p90, "p99_ms": p99,
                "p999_ms": p999,
            });
            for (k, v) in &self.extra {
                value[*k] = v.clone();
            }
            println!("{value}");
            return;
        }
        println!(
            "{name}: {} requests, {} clients, {:.2} s, {:.0} req/s, errors {}\n\
             latency ms: p50 {p50:.3}  p90 {p90:.3}  p99 {p99:.3}  p99.9 {p999:.3}",
            o.latencies.len(),
            self.clients,
            o.elapsed.as_secs_f64(),
            o.throughput(),
            o.errors,
        );
        for (k, v) in &self.extra {
            println!("{k}: {v}");
        }
    }
}

pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let report = match args.workload {
        Workload::Fsync => fsync::run(&args).await?,
        Workload::Apply | Workload::ResourceWatch => resources::run(&args).await?,
        _ => kv::run(&args).await?,
    };
    report.print(args.json);
    if report.outcome.errors > 0 && report.outcome.latencies.is_empty() {
        anyhow::bail!("every request failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_go_durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn the_generator_runs_a_thread_per_connection_up_to_the_cpus() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            bench: BenchArgs,
        }
        let threads = |args: &str| {
            <Cli as clap::Parser>::try_parse_from(["bench"].into_iter().chain(args.split(' ')))
                .expect("arguments")
                .bench
                .threads()
        };
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(threads("put"), 1);
        assert_eq!(threads("range --conns 2"), 2.min(cpus));
        assert_eq!(threads("txn-put --conns 10000"), cpus);
        assert_eq!(threads("put --conns 8 --threads 3"), 3);
        assert_eq!(threads("put --threads 0"), 1);
        assert_eq!(threads("apply"), cpus);
    }
}
