//! The demo controllers end to end: a real `stead serve`, a real `stead controller` process,
//! real `sleep` processes and real files. Drift is made by hand (kill -9, editing a file)
//! and must be repaired; a controller restarted mid-way must adopt, not duplicate.

mod common;
#[path = "common/http.rs"]
mod http;
#[path = "common/rest.rs"]
mod rest;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::stead_bin;
use rest::Api;
use serde_json::json;

const SETS: &str = "/apis/stead.dev/v1/namespaces/default/processsets";
const PROCESSES: &str = "/apis/stead.dev/v1/namespaces/default/processes";
const FILES: &str = "/apis/stead.dev/v1/managedfiles";

/// A `stead controller` process, killed (SIGKILL) when dropped.
struct ControllerProc(Child);

impl ControllerProc {
    fn start(api: &Api, identity: &str) -> ControllerProc {
        Self::start_with(api, identity, &[])
    }

    fn start_with(api: &Api, identity: &str, extra: &[&str]) -> ControllerProc {
        let child = Command::new(stead_bin())
            .args(["controller", "--identity", identity])
            .args(extra)
            .env("STEAD_SERVER", format!("http://{}", api.endpoint))
            .env("STEAD_LOG", "info,stead_controller=debug")
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(
                    std::env::temp_dir().join(format!("stead-controller-{identity}.log")),
                )
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
            )
            .spawn()
            .expect("spawn stead controller");
        ControllerProc(child)
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ControllerProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Kills the test's processes (command line exactly `.0`) when the test ends, passed or
/// failed, so a failing run leaves nothing behind.
struct Reaper(String);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .args(["-9", "-x", "-f", &self.0])
            .status();
    }
}

/// Pids of running processes whose command line is exactly `pattern`.
fn pids_of(pattern: &str) -> Vec<u32> {
    let out = Command::new("pgrep")
        .args(["-x", "-f", pattern])
        .output()
        .expect("pgrep (procps) is needed by this test");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn running_pids(api: &Api) -> Vec<u32> {
    let list = api.get(PROCESSES).json();
    list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|p| p["status"]["phase"] == "Running")
                .filter_map(|p| p["status"]["pid"].as_u64())
                .filter_map(|p| u32::try_from(p).ok())
                .collect()
        })
        .unwrap_or_default()
}

fn scale(api: &Api, name: &str, replicas: i64) {
    let resp = api.patch(
        &format!("{SETS}/{name}"),
        "application/merge-patch+json",
        &json!({"spec": {"replicas": replicas}}),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
}

#[test]
fn process_sets_heal_killed_processes_scale_survive_a_controller_restart_and_leave_no_orphans() {
    let api = rest::start();
    // A command line no other test or program uses, so pgrep counts only ours.
    let seconds = format!("{}", 3000 + std::process::id() % 1000);
    let pattern = format!("sleep {seconds}");
    let _reaper = Reaper(pattern.clone());
    let mut controller = ControllerProc::start(&api, "test-a");
    let set = json!({"apiVersion": "stead.dev/v1", "kind": "ProcessSet",
                     "metadata": {"name": "sleepers"},
                     "spec": {"command": "sleep", "args": [seconds], "replicas": 3}});
    let resp = api.post(SETS, &set);
    assert_eq!(resp.status, 201, "{}", resp.text());
    wait_until("3 processes run", Duration::from_secs(20), || {
        pids_of(&pattern).len() == 3 && running_pids(&api).len() == 3
    });
    wait_until("the set reports 3 ready", Duration::from_secs(10), || {
        let status = api.get(&format!("{SETS}/sleepers")).json()["status"].clone();
        status["readyReplicas"] == 3 && status["conditions"][0]["status"] == "True"
    });

    // Drift: kill -9 one process. Within 5 s there are 3 again, the killed one replaced.
    let victim = running_pids(&api)[0];
    let killed = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-9", &victim.to_string()])
            .status()
            .expect("kill")
            .success()
    );
    wait_until(
        "the killed process is replaced",
        Duration::from_secs(5),
        || {
            let pids = pids_of(&pattern);
            pids.len() == 3 && !pids.contains(&victim)
        },
    );
    eprintln!("killed process replaced after {:?}", killed.elapsed());

    // Scale up; restart the controller in the middle; then scale down.
    scale(&api, "sleepers", 5);
    controller.kill();
    controller = ControllerProc::start(&api, "test-b");
    wait_until("5 processes run", Duration::from_secs(30), || {
        pids_of(&pattern).len() == 5 && running_pids(&api).len() == 5
    });
    // No duplicates from the restart: exactly one OS process per Process object.
    std::thread::sleep(Duration::from_secs(2));
    let mut listed = running_pids(&api);
    let mut real = pids_of(&pattern);
    listed.sort_unstable();
    real.sort_unstable();
    assert_eq!(listed, real, "Process objects and real processes differ");
    scale(&api, "sleepers", 1);
    wait_until("1 process runs", Duration::from_secs(20), || {
        pids_of(&pattern).len() == 1
    });

    // Delete the set: its finalizer stops every process before it goes.
    let resp = api.delete(&format!("{SETS}/sleepers"));
    assert_eq!(resp.status, 200, "{}", resp.text());
    wait_until("the set is gone", Duration::from_secs(20), || {
        api.get(&format!("{SETS}/sleepers")).status == 404
    });
    assert!(pids_of(&pattern).is_empty(), "processes left behind");
    let left = api.get(PROCESSES).json();
    assert_eq!(left["items"].as_array().map(Vec::len), Some(0), "{left}");
    drop(controller);
}

#[test]
fn managed_files_are_restored_after_edits_and_removed_with_their_object() {
    let api = rest::start();
    let metrics_port = common::free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let _controller = ControllerProc::start_with(&api, "files", &["--metrics-addr", &metrics_addr]);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("conf/motd");
    let file = json!({"apiVersion": "stead.dev/v1", "kind": "ManagedFile",
                      "metadata": {"name": "motd"},
                      "spec": {"path": path.to_str().expect("path"), "content": "hello\n",
                               "mode": "0600"}});
    assert_eq!(api.post(FILES, &file).status, 201);
    let read = || std::fs::read_to_string(&path).unwrap_or_default();
    wait_until("the file is written", Duration::from_secs(20), || {
        read() == "hello\n"
    });

    std::fs::write(&path, "tampered\n").expect("edit");
    wait_until("an edit is reverted", Duration::from_secs(10), || {
        read() == "hello\n"
    });
    // File notifications repair at once, well before the 5 s safety-net poll.
    std::fs::remove_file(&path).expect("remove");
    wait_until(
        "a deleted file comes back",
        Duration::from_millis(1500),
        || read() == "hello\n",
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    wait_until("two repairs are counted", Duration::from_secs(5), || {
        api.get(&format!("{FILES}/motd")).json()["status"]["repairs"] == 2
    });
    let events = api.get("/api/v1/namespaces/default/events").json();
    let repaired = events["items"]
        .as_array()
        .map(|items| items.iter().filter(|e| e["reason"] == "Repaired").count());
    assert_eq!(repaired, Some(2), "{events}");
    let metrics = http::get(&metrics_addr, "/metrics").text();
    let ok = metrics
        .lines()
        .find(|l| {
            l.starts_with(
                "stead_controller_reconcile_total{controller=\"managedfile\",result=\"success\"}",
            )
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<u64>().ok());
    assert!(ok.is_some_and(|n| n >= 3), "{metrics}");
    assert!(
        metrics.contains("stead_controller_queue_depth{controller=\"managedfile\"}"),
        "{metrics}"
    );

    assert_eq!(api.delete(&format!("{FILES}/motd")).status, 200);
    wait_until("the object is gone", Duration::from_secs(10), || {
        api.get(&format!("{FILES}/motd")).status == 404
    });
    assert!(!path.exists(), "the file outlived its object");
}

/// Waits until the set's processes are exactly `n` real ones, one per Process object.
fn wait_for_replicas(api: &Api, pattern: &str, n: usize, within: Duration) {
    wait_until(
        &format!("{n} processes run, one per object"),
        within,
        || {
            let mut listed = running_pids(api);
            let mut real = pids_of(pattern);
            listed.sort_unstable();
            real.sort_unstable();
            real.len() == n && listed == real
        },
    );
}

fn sleepers(seconds: &str, replicas: i64) -> serde_json::Value {
    json!({"apiVersion": "stead.dev/v1", "kind": "ProcessSet",
           "metadata": {"name": "sleepers"},
           "spec": {"command": "sleep", "args": [seconds], "replicas": replicas}})
}

#[test]
fn controllers_ride_out_a_server_restart_without_losing_or_repeating_work() {
    let mut api = rest::start();
    let seconds = format!("{}", 5000 + std::process::id() % 1000);
    let pattern = format!("sleep {seconds}");
    let _reaper = Reaper(pattern.clone());
    let _controller = ControllerProc::start(&api, "restart");
    assert_eq!(api.post(SETS, &sleepers(&seconds, 2)).status, 201);
    wait_for_replicas(&api, &pattern, 2, Duration::from_secs(20));

    // The server goes away; while it is down a process dies.
    api.server.kill();
    let victim = pids_of(&pattern)[0];
    assert!(
        Command::new("kill")
            .args(["-9", &victim.to_string()])
            .status()
            .expect("kill")
            .success()
    );
    std::thread::sleep(Duration::from_secs(1));
    let data = api.server.data_dir.clone();
    let url = format!("http://{}", api.endpoint);
    api.server = common::start_stead(&data, &["--listen-api-url", &url]);
    rest::wait_for(&api.endpoint);

    // Back: the dead process is replaced and work continues, with no duplicates.
    wait_for_replicas(&api, &pattern, 2, Duration::from_secs(20));
    assert!(!pids_of(&pattern).contains(&victim));
    scale(&api, "sleepers", 3);
    wait_for_replicas(&api, &pattern, 3, Duration::from_secs(20));
    assert_eq!(api.delete(&format!("{SETS}/sleepers")).status, 200);
    wait_until("no process is left", Duration::from_secs(20), || {
        pids_of(&pattern).is_empty()
    });
}

#[test]
fn controllers_ride_out_a_store_leader_change() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut cluster = common::Cluster::start(root.path(), 3);
    let leader = raft_leader(&cluster);
    // The controller talks to a member that stays up; the Raft leader is killed under it.
    let other = (leader + 1) % 3;
    let api = Api {
        endpoint: format!("127.0.0.1:{}", cluster.api_ports[other]),
        server: common::start_stead(&root.path().join("unused"), &[]),
        _dir: tempfile::tempdir().expect("tempdir"),
    };
    rest::wait_for(&api.endpoint);
    let seconds = format!("{}", 6000 + std::process::id() % 1000);
    let pattern = format!("sleep {seconds}");
    let _reaper = Reaper(pattern.clone());
    let _controller = ControllerProc::start(&api, "failover");
    assert_eq!(api.post(SETS, &sleepers(&seconds, 2)).status, 201);
    wait_for_replicas(&api, &pattern, 2, Duration::from_secs(30));

    cluster.kill(leader);
    // A write that reaches the member while its forward to the dead leader fails is answered
    // 503 with its outcome unknown (a broken connection may have carried it); like any
    // client, ask again. Setting replicas is idempotent.
    wait_until("the scale is accepted", Duration::from_secs(15), || {
        let resp = api.patch(
            &format!("{SETS}/sleepers"),
            "application/merge-patch+json",
            &json!({"spec": {"replicas": 3}}),
        );
        assert!(
            resp.status == 200 || resp.status == 503,
            "{}: {}",
            resp.status,
            resp.text()
        );
        resp.status == 200
    });
    wait_for_replicas(&api, &pattern, 3, Duration::from_secs(30));
    let victim = pids_of(&pattern)[0];
    assert!(
        Command::new("kill")
            .args(["-9", &victim.to_string()])
            .status()
            .expect("kill")
            .success()
    );
    wait_for_replicas(&api, &pattern, 3, Duration::from_secs(15));
    assert!(!pids_of(&pattern).contains(&victim));
    assert_eq!(api.delete(&format!("{SETS}/sleepers")).status, 200);
    wait_until("no process is left", Duration::from_secs(30), || {
        pids_of(&pattern).is_empty()
    });
}

/// The member that every reachable member names as Raft leader (via `etcdctl endpoint status`).
fn raft_leader(cluster: &common::Cluster) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let endpoints: Vec<String> = (0..cluster.members.len())
            .map(|i| cluster.endpoint(i))
            .collect();
        let out = common::etcdctl(
            &endpoints.join(","),
            &["endpoint", "status", "--write-out=json"],
            None,
        );
        let statuses: Vec<serde_json::Value> =
            serde_json::from_slice(&out.stdout).unwrap_or_default();
        let leader = statuses
            .first()
            .and_then(|s| s["Status"]["leader"].as_u64())
            .filter(|l| *l != 0);
        let found = leader.and_then(|l| {
            statuses
                .iter()
                .position(|s| s["Status"]["header"]["member_id"].as_u64() == Some(l))
        });
        if let Some(i) = found {
            return i;
        }
        assert!(
            Instant::now() < deadline,
            "no leader: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
