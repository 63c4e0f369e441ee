//! The controller against the fake server, under paused time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::*;
use crate::backoff::BackoffConfig;
use crate::testing::{FakeClient, gadgets, object, owned_by, widgets};

/// What the reconciler saw: (name, when, generation).
#[derive(Default)]
struct Seen {
    runs: Mutex<Vec<(String, Instant, i64)>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Seen {
    fn record(&self, object: &DynamicObject) {
        let mut runs = self
            .runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        runs.push((
            object.name().to_owned(),
            Instant::now(),
            object.generation(),
        ));
    }

    fn runs_of(&self, name: &str) -> Vec<(Instant, i64)> {
        let runs = self
            .runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        runs.iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, t, g)| (*t, *g))
            .collect()
    }

    fn count(&self, name: &str) -> usize {
        self.runs_of(name).len()
    }
}

fn widget(name: &str, size: i64) -> DynamicObject {
    object(&widgets(), Some("ns"), name, json!({ "size": size }))
}

fn quick_config() -> Config {
    Config {
        name: Some("widgets".into()),
        scheduler: SchedulerConfig {
            concurrency: 0,
            backoff: BackoffConfig {
                base: Duration::from_millis(100),
                factor: 2.0,
                max: Duration::from_secs(300),
            },
            rate_limit: None,
        },
        resync: None,
        generation_predicate: true,
    }
}

#[derive(Debug, thiserror::Error)]
#[error("reconcile failed on purpose")]
struct Failed;

/// Spawns a controller; answers its store and a sender that shuts it down.
fn spawn<R, Fut>(
    client: &FakeClient,
    config: Config,
    owns: Option<crate::client::ApiResource>,
    seen: Arc<Seen>,
    reconcile: R,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
)
where
    R: Fn(Arc<DynamicObject>, Arc<Seen>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, Failed>> + Send + 'static,
{
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut controller = Controller::new(client.clone(), widgets())
        .with_config(config)
        .graceful_shutdown_on(async move {
            let _ = stopped.await;
        });
    if let Some(child) = owns {
        controller = controller.owns(child);
    }
    let task = tokio::spawn(controller.run(reconcile, default_error_policy, seen));
    (stop, task)
}

async fn settle(seconds: u64) {
    tokio::time::sleep(Duration::from_secs(seconds)).await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_reconcile_backs_off_exponentially_and_the_backoff_resets_on_success() {
    let client = FakeClient::new();
    client.put(&widgets(), widget("a", 1));
    let seen = Arc::new(Seen::default());
    let (_stop, _task) = spawn(
        &client,
        quick_config(),
        None,
        Arc::clone(&seen),
        |obj, seen| async move {
            seen.record(&obj);
            // Generation 1 fails four times then succeeds; generation 2 fails once.
            let failures_wanted = if obj.generation() == 1 { 4 } else { 1 };
            let runs = seen
                .runs_of(obj.name())
                .iter()
                .filter(|(_, g)| *g == obj.generation())
                .count();
            if runs <= failures_wanted {
                Err(Failed)
            } else {
                Ok(Action::await_change())
            }
        },
    );
    settle(5).await;
    client.put(&widgets(), widget("a", 2));
    settle(5).await;
    let runs = seen.runs_of("a");
    let gaps: Vec<(u128, i64)> = runs
        .windows(2)
        .map(|w| (w[1].0.duration_since(w[0].0).as_millis(), w[1].1))
        .collect();
    // Gaps within generation 1: 100, 200, 400, 800 ms; then generation 2 retries after 100 ms.
    assert_eq!(&gaps[..4], &[(100, 1), (200, 1), (400, 1), (800, 1)]);
    assert_eq!(gaps[5], (100, 2), "the success reset the backoff: {gaps:?}");
    assert_eq!(runs.len(), 7);
}

#[tokio::test(start_paused = true)]
async fn triggers_for_a_waiting_key_are_deduplicated() {
    let client = FakeClient::new();
    client.put(&widgets(), widget("blocker", 1));
    let seen = Arc::new(Seen::default());
    let config = Config {
        scheduler: SchedulerConfig {
            concurrency: 1,
            ..quick_config().scheduler
        },
        ..quick_config()
    };
    let (_stop, _task) = spawn(
        &client,
        config,
        None,
        Arc::clone(&seen),
        |obj, seen| async move {
            seen.record(&obj);
            if obj.name() == "blocker" {
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
            Ok(Action::await_change())
        },
    );
    settle(1).await;
    for size in 1..=5 {
        client.put(&widgets(), widget("a", size));
        settle(1).await;
    }
    assert_eq!(seen.count("a"), 0, "the only slot is busy");
    settle(10).await;
    assert_eq!(
        seen.runs_of("a")
            .iter()
            .map(|(_, g)| *g)
            .collect::<Vec<_>>(),
        [5]
    );
}

#[tokio::test(start_paused = true)]
async fn one_key_is_never_reconciled_twice_at_once_and_runs_again_after_a_retrigger() {
    let client = FakeClient::new();
    client.put(&widgets(), widget("a", 0));
    let seen = Arc::new(Seen::default());
    let (_stop, _task) = spawn(
        &client,
        quick_config(),
        None,
        Arc::clone(&seen),
        |obj, seen| async move {
            let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            seen.max_in_flight.fetch_max(now, Ordering::SeqCst);
            seen.record(&obj);
            tokio::time::sleep(Duration::from_secs(1)).await;
            seen.in_flight.fetch_sub(1, Ordering::SeqCst);
            Ok(Action::await_change())
        },
    );
    for size in 1..=20 {
        client.put(&widgets(), widget("a", size));
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    settle(5).await;
    assert_eq!(seen.max_in_flight.load(Ordering::SeqCst), 1);
    let runs = seen.runs_of("a");
    assert!(runs.len() > 2 && runs.len() < 21, "{} runs", runs.len());
    assert_eq!(
        runs.last().map(|(_, g)| *g),
        Some(21),
        "the last run saw the last change"
    );
}

#[tokio::test(start_paused = true)]
async fn requeue_after_reconciles_again_after_the_delay() {
    let client = FakeClient::new();
    client.put(&widgets(), widget("a", 1));
    let seen = Arc::new(Seen::default());
    let (_stop, _task) = spawn(
        &client,
        quick_config(),
        None,
        Arc::clone(&seen),
        |obj, seen| async move {
            seen.record(&obj);
            Ok(Action::requeue_after(Duration::from_secs(30)))
        },
    );
    settle(100).await;
    let runs = seen.runs_of("a");
    let gaps: Vec<u64> = runs
        .windows(2)
        .map(|w| w[1].0.duration_since(w[0].0).as_secs())
        .collect();
    assert_eq!(gaps, [30, 30, 30]);
}

#[tokio::test(start_paused = true)]
async fn periodic_resync_reconciles_unchanged_objects() {
    let client = FakeClient::new();
    client.put(&widgets(), widget("a", 1));
    client.put(&widgets(), widget("b", 1));
    let seen = Arc::new(Seen::default());
    let config = Config {
        resync: Some(Duration::from_secs(60)),
        ..quick_config()
    };
    let (_stop, _task) = spawn(
        &client,
        config,
        None,
        Arc::clone(&seen),
        |obj, seen| async move {
            seen.record(&obj);
            Ok(Action::await_change())
        },
    );
    settle(190).await;
    assert_eq!(
        (seen.count("a"), seen.count("b")),
        (4, 4),
        "start, 60 s, 120 s, 180 s"
    );
}

#[tokio::test(start_paused = true)]
async fn a_change_to_an_owned_object_reconciles_its_owner() {
    let client = FakeClient::new();
    let owner = client.put(&widgets(), widget("a", 1));
    client.put(&widgets(), widget("other", 1));
    let child = owned_by(
        object(&gadgets(), Some("ns"), "a-1", json!({"v": 1})),
        &owner,
    );
    client.put(&gadgets(), child.clone());
    let mut not_controller = owned_by(
        object(&gadgets(), Some("ns"), "loose", json!({"v": 1})),
        &owner,
    );
    not_controller.metadata_map_mut()["ownerReferences"][0]["controller"] = json!(false);
    client.put(&gadgets(), not_controller.clone());
    let seen = Arc::new(Seen::default());
    let (_stop, _task) = spawn(
        &client,
        quick_config(),
        Some(gadgets()),
        Arc::clone(&seen),
        |obj, seen| async move {
            seen.record(&obj);
            Ok(Action::await_change())
        },
    );
    settle(5).await;
    let before = seen.count("a");
    let mut changed = child;
    changed.as_map_mut().insert("spec".into(), json!({"v": 2}));
    client.put(&gadgets(), changed);
    settle(5).await;
    assert_eq!(
        seen.count("a"),
        before + 1,
        "the controlled child woke its owner"
    );
    not_controller
        .as_map_mut()
        .insert("spec".into(), json!({"v": 2}));
    client.put(&gadgets(), not_controller);
    settle(5).await;
    assert_eq!(
        seen.count("a"),
        before + 1,
        "a non-controller reference does not"
    );
    assert_eq!(seen.count("other"), 1);
}

#[tokio::test(start_paused = true)]
async fn status_only_writes_do_not_retrigger_the_reconciler_under_the_generation_predicate() {
    // (predicate on, runs after the first reconcile writes status, then after a spec change)
    let cases = [(true, 1, 2), (false, 11, 12)];
    for (predicate, first, after_spec) in cases {
        let client = FakeClient::new();
        client.put(&widgets(), widget("a", 1));
        let seen = Arc::new(Seen::default());
        let config = Config {
            generation_predicate: predicate,
            ..quick_config()
        };
        let writer = client.clone();
        let (_stop, _task) = spawn(
            &client,
            config,
            None,
            Arc::clone(&seen),
            move |obj, seen| {
                let client = writer.clone();
                async move {
                    seen.record(&obj);
                    // Each run writes a new status (a counter), at most ten times in all.
                    let runs = seen.runs_of(obj.name()).len();
                    if runs <= 10 {
                        let mut updated = (*obj).clone();
                        updated.set_status(Some(
                            json!({"observedGeneration": obj.generation(), "runs": runs}),
                        ));
                        client
                            .replace_status(&widgets(), &updated)
                            .await
                            .map_err(|_| Failed)?;
                    }
                    Ok(Action::await_change())
                }
            },
        );
        settle(10).await;
        assert_eq!(seen.count("a"), first, "predicate {predicate}");
        let mut spec_change = client.peek(&widgets(), Some("ns"), "a").unwrap_or_default();
        spec_change
            .as_map_mut()
            .insert("spec".into(), json!({"size": 2}));
        client.put(&widgets(), spec_change);
        settle(10).await;
        assert_eq!(seen.count("a"), after_spec, "predicate {predicate}");
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_running_reconciles_finish_and_starts_no_more() {
    let client = FakeClient::new();
    client.put(&widgets(), widget("a", 1));
    let seen = Arc::new(Seen::default());
    let finished = Arc::new(AtomicUsize::new(0));
    let done = Arc::clone(&finished);
    let (stop, task) = spawn(
        &client,
        quick_config(),
        None,
        Arc::clone(&seen),
        move |obj, seen| {
            let done = Arc::clone(&done);
            async move {
                seen.record(&obj);
                tokio::time::sleep(Duration::from_secs(5)).await;
                done.fetch_add(1, Ordering::SeqCst);
                Ok(Action::requeue_after(Duration::from_millis(1)))
            }
        },
    );
    settle(1).await;
    let _ = stop.send(());
    let started = Instant::now();
    let _ = task.await;
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(4),
        "the run in progress finished"
    );
    assert_eq!((seen.count("a"), finished.load(Ordering::SeqCst)), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn deleted_objects_are_not_reconciled_and_metrics_count_reconciles() {
    let client = FakeClient::new();
    client.put(&widgets(), widget("a", 1));
    let seen = Arc::new(Seen::default());
    let metrics = Metrics::new();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = Controller::new(client.clone(), widgets())
        .with_config(quick_config())
        .with_metrics(metrics.clone())
        .graceful_shutdown_on(async move {
            let _ = stopped.await;
        });
    let task = tokio::spawn(controller.run(
        |obj, seen: Arc<Seen>| async move {
            seen.record(&obj);
            if obj.name() == "bad" {
                Err(Failed)
            } else {
                Ok(Action::requeue_after(Duration::from_secs(10)))
            }
        },
        |_, _, _| Some(Action::await_change()),
        Arc::clone(&seen),
    ));
    settle(1).await;
    client.put(&widgets(), widget("bad", 1));
    settle(1).await;
    let deleted = client.delete(&widgets(), Some("ns"), "a").await;
    assert!(deleted.is_ok());
    settle(30).await;
    assert_eq!(
        (seen.count("a"), seen.count("bad")),
        (1, 1),
        "no requeue of a deleted key; the error policy waits"
    );
    let _ = stop.send(());
    let _ = task.await;
    let text = metrics.render();
    for line in [
        "stead_controller_reconcile_total{controller=\"widgets\",result=\"success\"} 1",
        "stead_controller_reconcile_total{controller=\"widgets\",result=\"error\"} 1",
        "stead_controller_queue_depth{controller=\"widgets\"} 0",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}

use crate::client::Client;
use crate::metrics::Metrics;

#[tokio::test(start_paused = true)]
async fn an_owner_woken_by_a_child_change_reads_that_change_from_the_owned_cache() {
    let client = FakeClient::new();
    let owner = client.put(&widgets(), widget("a", 1));
    let child = owned_by(
        object(&gadgets(), Some("ns"), "a-1", json!({"v": 1})),
        &owner,
    );
    client.put(&gadgets(), child.clone());
    let controller = Controller::new(client.clone(), widgets())
        .owns(gadgets())
        .with_config(quick_config());
    assert!(controller.owned_store(&widgets()).is_none(), "not owned");
    let children = controller.owned_store(&gadgets());
    assert!(children.is_some(), "owned");
    // Each reconcile records the `v` of every child it finds in the owned cache.
    type Reads = Arc<Mutex<Vec<Vec<i64>>>>;
    let read: Reads = Arc::default();
    let ctx = Arc::new((children, Arc::clone(&read)));
    let _task = tokio::spawn(controller.run(
        |_, ctx: Arc<(Option<crate::reflector::Store>, Reads)>| async move {
            let (children, read) = &*ctx;
            let seen = children
                .iter()
                .flat_map(|store| store.state())
                .filter_map(|c| c.as_map().get("spec")?.get("v")?.as_i64())
                .collect();
            read.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(seen);
            Ok::<_, Failed>(Action::await_change())
        },
        default_error_policy,
        ctx,
    ));
    let reads = || {
        read.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    };
    settle(5).await;
    // The primary's list and the child's list each wake the owner; neither reconcile ran
    // before the owned cache had its list.
    assert!(
        !reads().is_empty() && reads().iter().all(|r| r == &[1]),
        "{:?}",
        reads()
    );
    for v in 2..=5 {
        let mut changed = child.clone();
        changed
            .as_map_mut()
            .insert("spec".into(), json!({ "v": v }));
        client.put(&gadgets(), changed);
        settle(1).await;
        assert_eq!(
            reads().last(),
            Some(&vec![v]),
            "the reconcile the change woke saw it: {:?}",
            reads()
        );
    }
}
