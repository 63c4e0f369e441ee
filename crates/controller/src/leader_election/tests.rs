//! Leader election among candidates sharing a fake server, each with its own network path.

use std::time::Duration;

use super::*;
use crate::testing::FakeClient;

const LEASE: Duration = Duration::from_secs(15);
const RETRY: Duration = Duration::from_secs(5);

fn candidates(server: &FakeClient, n: usize) -> Vec<(FakeClient, LeaderHandle)> {
    (0..n)
        .map(|i| {
            let client = server.with_own_faults();
            let config = LeaderElectionConfig::new("ns", "controller", format!("candidate-{i}"));
            let handle = LeaderElector::new(client.clone(), config).spawn();
            (client, handle)
        })
        .collect()
}

fn leaders(candidates: &[(FakeClient, LeaderHandle)]) -> Vec<usize> {
    candidates
        .iter()
        .enumerate()
        .filter(|(_, (_, h))| h.is_leader())
        .map(|(i, _)| i)
        .collect()
}

fn holder(server: &FakeClient) -> Option<String> {
    let lease = server.peek(&lease_resource(), Some("ns"), "controller")?;
    lease.to_resource::<Lease>().ok()?.spec.holder_identity
}

async fn tick() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[tokio::test(start_paused = true)]
async fn exactly_one_of_three_candidates_leads_and_keeps_leading() {
    let server = FakeClient::new();
    let all = candidates(&server, 3);
    tick().await;
    let first = leaders(&all);
    assert_eq!(first.len(), 1, "{first:?}");
    for _ in 0..600 {
        tick().await;
        assert_eq!(
            leaders(&all),
            first,
            "leadership is stable while the leader renews"
        );
    }
    assert_eq!(holder(&server), Some(format!("candidate-{}", first[0])));
}

#[tokio::test(start_paused = true)]
async fn a_transient_renew_failure_keeps_leadership_but_a_long_outage_hands_it_over() {
    let server = FakeClient::new();
    let all = candidates(&server, 2);
    tick().await;
    let leader = leaders(&all)[0];
    let follower = 1 - leader;

    // One failed renew: the lease is still valid, and nobody else may take it.
    all[leader].0.fail_next(1);
    for _ in 0..100 {
        tick().await;
        assert_eq!(leaders(&all), [leader]);
    }

    // Renewals fail for good: the leader steps down by its deadline, the other takes over.
    all[leader].0.fail_next(usize::MAX);
    let cut = Instant::now();
    let mut stepped_down = None;
    let mut taken_over = None;
    while taken_over.is_none() && cut.elapsed() < LEASE * 3 {
        tick().await;
        let now = leaders(&all);
        assert!(now.len() <= 1, "never two leaders: {now:?}");
        if stepped_down.is_none() && !now.contains(&leader) {
            stepped_down = Some(cut.elapsed());
        }
        if now == [follower] {
            taken_over = Some(cut.elapsed());
        }
    }
    assert!(stepped_down.is_some_and(|d| d <= LEASE), "{stepped_down:?}");
    assert!(
        taken_over.is_some_and(|d| d <= LEASE + RETRY),
        "{taken_over:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_dead_leader_is_replaced_within_the_lease_duration_and_one_retry_period() {
    let server = FakeClient::new();
    let mut all = candidates(&server, 3);
    tick().await;
    // Let a few renewals pass so the failure lands mid-period.
    tokio::time::sleep(Duration::from_millis(7_300)).await;
    let dead = leaders(&all)[0];
    let (_, handle) = all.remove(dead);
    drop(handle);
    let died = Instant::now();
    while leaders(&all).is_empty() {
        tick().await;
        assert!(
            died.elapsed() <= LEASE + RETRY,
            "no new leader after {:?}",
            died.elapsed()
        );
    }
    assert_eq!(leaders(&all).len(), 1);
    let lease = server
        .peek(&lease_resource(), Some("ns"), "controller")
        .and_then(|o| o.to_resource::<Lease>().ok());
    assert_eq!(lease.and_then(|l| l.spec.lease_transitions), Some(1));
}

#[tokio::test(start_paused = true)]
async fn work_run_while_leader_is_cancelled_when_leadership_is_lost() {
    let server = FakeClient::new();
    let mut all = candidates(&server, 1);
    let (client, handle) = all.remove(0);
    let work = async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        "finished"
    };
    let outage = async {
        handle.wait_for_leadership().await;
        client.fail_next(usize::MAX);
        futures::future::pending::<()>().await;
    };
    let started = Instant::now();
    let result = tokio::select! {
        result = handle.run_while_leader(work) => result,
        () = outage => None,
    };
    assert_eq!(result, None);
    assert!(
        started.elapsed() <= LEASE + RETRY,
        "cancelled after {:?}",
        started.elapsed()
    );
    assert!(!handle.is_leader());

    let quick = handle.run_while_leader(async { 7 });
    client.fail_next(0);
    assert_eq!(
        quick.await,
        Some(7),
        "leadership regained, the work runs to completion"
    );
}
