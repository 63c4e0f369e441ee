//! `stead-robustness`: runs the fault-injection harness against real `stead serve`
//! processes. `run` is one checked run, `soak` chains runs for a total duration,
//! `disk-full` runs the quota scenario. Exits non-zero when any check fails.

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::{Parser, Subcommand, ValueEnum};
use stead_robustness::cluster::stead_bin;
use stead_robustness::run::{RunConfig, RunReport, run};
use stead_robustness::traffic::Profile;

#[derive(Parser)]
#[command(about = "Fault-injection robustness harness for stead")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum ProfileArg {
    Kv,
    Kubernetes,
}

#[derive(Subcommand)]
enum Cmd {
    /// One run: traffic and faults for --duration, then every check.
    Run {
        #[arg(long, default_value_t = 3)]
        members: usize,
        #[arg(long, value_enum, default_value = "kv")]
        profile: ProfileArg,
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        duration: Duration,
        /// Seed of the fault schedule and the traffic (default: from the clock, printed).
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long, default_value_t = 6)]
        clients: usize,
        /// Traffic only, no faults.
        #[arg(long)]
        no_faults: bool,
    },
    /// Runs of 3 minutes (3-member KV, 3-member Kubernetes, 1-member KV, in turn) until
    /// --duration has passed; every run is checked.
    Soak {
        #[arg(long, default_value = "30m", value_parser = parse_duration)]
        duration: Duration,
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long, default_value = "3m", value_parser = parse_duration)]
        segment: Duration,
    },
    /// Runs the linearizability check alone on a history a run kept (its history.json).
    Check {
        history: std::path::PathBuf,
        #[arg(long, default_value_t = 50_000_000)]
        budget: u64,
    },
    /// The NOSPACE scenario on a cluster of --members.
    DiskFull {
        #[arg(long, default_value_t = 3)]
        members: usize,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("duration {s:?} needs a unit (ms, s, m, h)"))?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!(
            "duration {s:?}: unknown unit {unit:?} (ms, s, m, h)"
        )),
    }
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64 % 1_000_000_007)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async_main(cli))
}

async fn async_main(cli: Cli) -> anyhow::Result<()> {
    let bin = || -> anyhow::Result<std::path::PathBuf> {
        let bin = stead_bin()?;
        println!("stead binary: {}", bin.display());
        Ok(bin)
    };
    match cli.command {
        Cmd::Run {
            members,
            profile,
            duration,
            seed,
            clients,
            no_faults,
        } => {
            let bin = bin()?;
            let seed = seed.unwrap_or_else(clock_seed);
            let profile = match profile {
                ProfileArg::Kv => Profile::Kv,
                ProfileArg::Kubernetes => Profile::Kubernetes,
            };
            let mut cfg = RunConfig::new(
                &format!("{members}-member {profile:?}"),
                members,
                profile,
                duration,
                seed,
            );
            cfg.clients = clients;
            cfg.faults = !no_faults;
            println!("seed {seed}");
            let report = run(&bin, &cfg).await?;
            println!("{}", report.summary());
            if !report.anomalies.is_empty() {
                bail!("{} anomalies (seed {seed})", report.anomalies.len());
            }
        }
        Cmd::Soak {
            duration,
            seed,
            segment,
        } => {
            let bin = bin()?;
            let seed = seed.unwrap_or_else(clock_seed);
            println!("soak for {duration:?} in runs of {segment:?}, seed {seed}");
            let start = Instant::now();
            let kinds = [(3, Profile::Kv), (3, Profile::Kubernetes), (1, Profile::Kv)];
            let mut reports: Vec<RunReport> = Vec::new();
            let mut k = 0u64;
            while start.elapsed() < duration {
                let (members, profile) = kinds[k as usize % kinds.len()];
                let left = duration.saturating_sub(start.elapsed());
                let len = segment.min(left).max(Duration::from_secs(10));
                let cfg = RunConfig::new(
                    &format!("soak #{k} {members}-member {profile:?}"),
                    members,
                    profile,
                    len,
                    seed.wrapping_add(k),
                );
                let report = run(&bin, &cfg).await?;
                println!("{}", report.summary());
                reports.push(report);
                k += 1;
            }
            let ops: usize = reports.iter().map(|r| r.operations).sum();
            let ok: usize = reports.iter().map(|r| r.succeeded).sum();
            let unknown: usize = reports.iter().map(|r| r.unknown).sum();
            let faults: u64 = reports.iter().map(RunReport::faults_injected).sum();
            let events: usize = reports.iter().map(|r| r.watch_events).sum();
            let anomalies: usize = reports.iter().map(|r| r.anomalies.len()).sum();
            let mut by_kind = std::collections::BTreeMap::<String, u64>::new();
            for r in &reports {
                for (f, n) in &r.faults {
                    *by_kind.entry(f.clone()).or_default() += n;
                }
            }
            println!(
                "SOAK TOTAL: {:?}, {} runs, {ops} operations ({ok} ok, {unknown} unknown), \
                 {events} watch events, {faults} faults {by_kind:?}, {anomalies} anomalies",
                start.elapsed(),
                reports.len()
            );
            if anomalies > 0 {
                bail!("{anomalies} anomalies during the soak (seed {seed})");
            }
        }
        Cmd::Check { history, budget } => check_history(&history, budget)?,
        Cmd::DiskFull { members } => {
            let r = stead_robustness::diskfull::run(&bin()?, members).await?;
            println!(
                "disk full on {members} member(s): NOSPACE after {} writes, {} alarm(s), \
                 recovered",
                r.writes_before_full, r.alarms
            );
        }
    }
    Ok(())
}

fn check_history(path: &std::path::Path, budget: u64) -> anyhow::Result<()> {
    use stead_robustness::history::Operation;
    use stead_robustness::linearizability::{Verdict, check};
    use stead_robustness::model::State;
    let text = std::fs::read(path)?;
    let ops: Vec<Operation> = serde_json::from_slice(&text)?;
    let start = Instant::now();
    let verdict = check(&ops, State::default(), budget);
    let elapsed = start.elapsed();
    match verdict {
        Verdict::Linearizable { steps } => {
            println!(
                "{} operations: linearizable ({steps} steps, {elapsed:?})",
                ops.len()
            );
            Ok(())
        }
        Verdict::Violation { excerpt, .. } => bail!("not linearizable:\n{excerpt}"),
        Verdict::Inconclusive { steps, excerpt, .. } => {
            bail!("gave up after {steps} steps ({elapsed:?}):\n{excerpt}")
        }
    }
}
