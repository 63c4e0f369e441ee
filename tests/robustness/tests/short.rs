//! The short robustness profile CI runs on every change: a few minutes of traffic with
//! faults on 3-member and 1-member clusters, each run fully checked (linearizability,
//! watch guarantees, lost writes, member agreement), plus the disk-full scenario.
//! The runs go one at a time: they share two cores with everything else.

use std::sync::Mutex;
use std::time::Duration;

use stead_robustness::cluster::stead_bin;
use stead_robustness::run::{RunConfig, run};
use stead_robustness::traffic::Profile;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Seed from `ROBUSTNESS_SEED` (to replay a CI failure), else fixed per test.
fn seed(default: u64) -> u64 {
    std::env::var("ROBUSTNESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn check(name: &str, members: usize, profile: Profile, secs: u64, default_seed: u64) {
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let bin = stead_bin().expect("the stead binary (cargo build -p stead)");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let cfg = RunConfig::new(
        name,
        members,
        profile,
        Duration::from_secs(secs),
        seed(default_seed),
    );
    let report = rt.block_on(run(&bin, &cfg)).expect("run");
    println!("{}", report.summary());
    assert!(report.anomalies.is_empty(), "{}", report.summary());
    assert!(report.succeeded > 100, "too little traffic got through");
    if members > 1 {
        assert!(report.faults_injected() > 5, "too few faults injected");
    }
}

#[test]
fn three_members_under_kv_traffic_and_faults_stay_linearizable_and_agree() {
    check("3-member KV", 3, Profile::Kv, 50, 7);
}

#[test]
fn three_members_under_kubernetes_traffic_and_faults_stay_linearizable_and_agree() {
    check("3-member Kubernetes", 3, Profile::Kubernetes, 30, 11);
}

#[test]
fn one_member_under_kv_traffic_and_crashes_stays_linearizable() {
    check("1-member KV", 1, Profile::Kv, 20, 13);
}

#[test]
fn a_full_backend_refuses_writes_until_compacted_defragmented_and_disarmed() {
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let bin = stead_bin().expect("the stead binary (cargo build -p stead)");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    for members in [1, 3] {
        let r = rt
            .block_on(stead_robustness::diskfull::run(&bin, members))
            .expect("disk-full scenario");
        println!("{members} member(s): {r:?}");
    }
}
