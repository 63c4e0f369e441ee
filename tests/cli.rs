//! The `stead` binary as a user meets it: `stead serve` refuses bad flags, unusable data
//! directories and busy ports with a clear message and a non-zero exit, and `stead kv`
//! prints what etcdctl 3.4 prints (its "simple" format) against a running server.
//!
//! Regressions covered here: `stead kv get --keys-only` printed only the keys, where
//! etcdctl prints each key followed by an empty value line; and "cannot listen on ADDR"
//! printed its cause twice (in the message and again as the error's source).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Proc, etcdctl, free_port, start_stead, stead_bin};

/// Runs `stead args...` to completion (with `stdin` if given), failing the test if it
/// does not exit within 20 s.
fn stead(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(stead_bin())
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stead");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "stead {args:?} did not exit within 20 s; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `stead serve` with a fresh data dir (unless `args` names one) on an ephemeral
/// port, expecting it to exit with an error; returns its stderr.
fn serve_fails(dir: &Path, args: &[&str]) -> String {
    let data = dir.join("data");
    let mut argv = vec!["serve"];
    if !args.contains(&"--data-dir") {
        argv.extend(["--data-dir", data.to_str().expect("utf-8")]);
    }
    if !args.contains(&"--listen-client-urls") {
        argv.extend(["--listen-client-urls", "http://127.0.0.1:0"]);
    }
    if !args.contains(&"--listen-api-url") {
        argv.extend(["--listen-api-url", "http://127.0.0.1:0"]);
    }
    argv.extend(args);
    let out = stead(&argv, None);
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "stead {argv:?} exited successfully:\n{stderr}"
    );
    assert!(
        !stderr.contains("panicked"),
        "stead {argv:?} panicked:\n{stderr}"
    );
    stderr
}

fn assert_mentions(stderr: &str, words: &[&str]) {
    for w in words {
        assert!(
            stderr.contains(w),
            "error does not mention {w:?}:\n{stderr}"
        );
    }
}

#[test]
fn serve_with_an_unknown_flag_exits_nonzero_naming_the_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stderr = serve_fails(dir.path(), &["--no-such-flag", "1"]);
    assert_mentions(&stderr, &["--no-such-flag"]);
}

#[test]
fn serve_with_a_bad_url_exits_nonzero_naming_the_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stderr = serve_fails(dir.path(), &["--listen-client-urls", "not a url"]);
    assert_mentions(&stderr, &["not a url", "--listen-client-urls"]);
    let stderr = serve_fails(dir.path(), &["--listen-client-urls", "ftp://127.0.0.1:0"]);
    assert_mentions(&stderr, &["ftp://127.0.0.1:0", "http or https"]);
    let stderr = serve_fails(
        dir.path(),
        &["--listen-client-urls", "http://some.host.name:0"],
    );
    assert_mentions(&stderr, &["http://some.host.name:0", "IP address"]);
    let stderr = serve_fails(dir.path(), &["--initial-cluster", "default"]);
    assert_mentions(&stderr, &["--initial-cluster", "default"]);
}

#[test]
fn serve_with_a_bogus_initial_cluster_state_lists_the_accepted_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stderr = serve_fails(dir.path(), &["--initial-cluster-state", "bogus"]);
    assert_mentions(
        &stderr,
        &["bogus", "--initial-cluster-state", "new", "existing"],
    );
}

#[test]
fn serve_with_a_cert_file_but_no_key_file_says_both_are_needed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = dir.path().join("cert.pem");
    std::fs::write(&cert, "").expect("write");
    let stderr = serve_fails(dir.path(), &["--cert-file", cert.to_str().expect("utf-8")]);
    assert_mentions(&stderr, &["--cert-file", "--key-file"]);
    let stderr = serve_fails(dir.path(), &["--client-cert-auth"]);
    assert_mentions(&stderr, &["--client-cert-auth", "--trusted-ca-file"]);
}

#[test]
fn serve_on_a_data_dir_under_a_regular_file_names_the_data_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "not a directory").expect("write");
    let data = file.join("data");
    let data = data.to_str().expect("utf-8");
    let stderr = serve_fails(dir.path(), &["--data-dir", data]);
    assert_mentions(&stderr, &[data]);
}

#[test]
fn serve_on_a_port_in_use_says_it_cannot_listen_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port();
    let url = format!("http://127.0.0.1:{port}");
    let stderr = serve_fails(dir.path(), &["--listen-client-urls", &url]);
    assert_mentions(
        &stderr,
        &[&format!(
            "cannot listen on 127.0.0.1:{port}: Address already in use"
        )],
    );
    assert_eq!(
        stderr.matches("Address already in use").count(),
        1,
        "the cause is repeated:\n{stderr}"
    );
    drop(busy);
}

/// `stead kv ARGS --endpoints http://ENDPOINT`.
fn kv(server: &Proc, args: &[&str], stdin: Option<&str>) -> Output {
    let endpoint = format!("http://{}", server.endpoint);
    let mut argv = vec!["kv"];
    argv.extend(args);
    argv.extend(["--endpoints", &endpoint]);
    stead(&argv, stdin)
}

/// stdout of a `stead kv` call that must succeed.
fn kv_ok(server: &Proc, args: &[&str], stdin: Option<&str>) -> String {
    let out = kv(server, args, stdin);
    assert!(
        out.status.success(),
        "stead kv {args:?} failed:\n{}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn ctl_ok(server: &Proc, args: &[&str], stdin: Option<&str>) -> String {
    let out = etcdctl(&server.endpoint, args, stdin);
    assert!(
        out.status.success(),
        "etcdctl {args:?} failed:\n{}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[test]
fn kv_put_get_and_del_print_what_etcdctl_prints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_stead(&dir.path().join("data"), &[]);
    assert_eq!(kv_ok(&server, &["put", "fruit/apple", "red"], None), "OK\n");
    assert_eq!(
        kv_ok(&server, &["put", "fruit/kiwi", "green"], None),
        "OK\n"
    );
    assert_eq!(
        kv_ok(&server, &["put", "fruit/apple", "green", "--prev-kv"], None),
        "OK\nfruit/apple\nred\n"
    );
    assert_eq!(
        kv_ok(&server, &["get", "fruit/apple"], None),
        "fruit/apple\ngreen\n"
    );
    // Reads print the same as etcdctl's on the same data.
    for args in [
        &["get", "fruit/apple"][..],
        &["get", "fruit/", "--prefix"],
        &["get", "fruit/", "--prefix", "--keys-only"],
        &["get", "fruit/", "--prefix", "--print-value-only"],
        &["get", "fruit/", "--prefix", "--limit", "1"],
        &["get", "fruit/apple", "fruit/zzz"],
        &["get", "fruit/apple", "--rev", "2"],
        &["get", "a", "--from-key"],
        &["get", "missing"],
    ] {
        assert_eq!(
            kv_ok(&server, args, None),
            ctl_ok(&server, args, None),
            "stead kv {args:?} vs etcdctl"
        );
    }
    assert_eq!(kv_ok(&server, &["del", "missing"], None), "0\n");
    assert_eq!(
        kv_ok(&server, &["del", "fruit/kiwi", "--prev-kv"], None),
        "1\nfruit/kiwi\ngreen\n"
    );
    assert_eq!(kv_ok(&server, &["del", "fruit/", "--prefix"], None), "1\n");
    assert_eq!(kv_ok(&server, &["get", "fruit/", "--prefix"], None), "");
}

#[test]
fn kv_txn_reads_etcdctls_stdin_format_and_prints_its_result() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_stead(&dir.path().join("data"), &[]);
    let create =
        |key: &str| format!("mod(\"{key}\") = \"0\"\n\nput {key} \"v 1\"\n\nget {key}\n\n");
    // The same txn through stead kv (key a) and etcdctl (key b) on the same server.
    let first = kv_ok(&server, &["txn"], Some(&create("a")));
    assert_eq!(first, "SUCCESS\n\nOK\n");
    assert_eq!(first, ctl_ok(&server, &["txn"], Some(&create("b"))));
    let again = kv_ok(&server, &["txn"], Some(&create("a")));
    assert_eq!(again, "FAILURE\n\na\nv 1\n");
    assert_eq!(
        ctl_ok(&server, &["txn"], Some(&create("b"))),
        "FAILURE\n\nb\nv 1\n"
    );
    let compares = "value(\"a\") = \"v 1\"\nversion(\"b\") > \"0\"\n\ndel b\nget a\n\nput x y\n\n";
    assert_eq!(
        kv_ok(&server, &["txn"], Some(compares)),
        "SUCCESS\n\n1\n\na\nv 1\n"
    );
    let bad = kv(&server, &["txn"], Some("nonsense(\"a\") = \"1\"\n\n\n\n"));
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("nonsense"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn kv_compact_removes_history_below_the_revision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_stead(&dir.path().join("data"), &[]);
    for v in ["1", "2", "3"] {
        kv_ok(&server, &["put", "c", v], None);
    }
    assert_eq!(kv_ok(&server, &["get", "c", "--rev", "2"], None), "c\n1\n");
    assert_eq!(
        kv_ok(&server, &["compact", "3"], None),
        "compacted revision 3\n"
    );
    assert_eq!(kv_ok(&server, &["get", "c", "--rev", "3"], None), "c\n2\n");
    let old = kv(&server, &["get", "c", "--rev", "2"], None);
    assert!(!old.status.success());
    assert!(
        text(&old.stderr).contains("etcdserver: mvcc: required revision has been compacted"),
        "{}",
        text(&old.stderr)
    );
    let again = kv(&server, &["compact", "2"], None);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("required revision has been compacted"),
        "{}",
        text(&again.stderr)
    );
}

/// Collects stdout lines of a long-running child until `want` lines arrived or the
/// deadline passed, then kills it.
fn watch_lines(mut cmd: Command, want: usize, within: Duration) -> Vec<String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn watcher");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + within;
    let mut lines = Vec::new();
    while lines.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    lines
}

#[test]
fn kv_watch_prints_each_change_like_etcdctl_watch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_stead(&dir.path().join("data"), &[]);
    // Watch from the next revision, so no change is missed while the watchers connect.
    let from = "2";
    kv_ok(&server, &["put", "w/a", "1"], None);
    kv_ok(&server, &["put", "other", "x"], None);
    kv_ok(&server, &["put", "w/a", "2"], None);
    kv_ok(&server, &["del", "w/a"], None);
    kv_ok(&server, &["put", "w/b", "3"], None);
    let want = "PUT w/a 1 PUT w/a 2 DELETE w/a  PUT w/b 3";
    let lines = want.split(' ').count();

    let mut stead_watch = Command::new(stead_bin());
    stead_watch.args([
        "kv",
        "watch",
        "w/",
        "--prefix",
        "--rev",
        from,
        "--endpoints",
        &format!("http://{}", server.endpoint),
    ]);
    let got = watch_lines(stead_watch, lines, Duration::from_secs(10));
    assert_eq!(got.join(" "), want);

    let mut etcdctl_watch = Command::new(common::require_tool("etcdctl"));
    etcdctl_watch.env("ETCDCTL_API", "3").args([
        &format!("--endpoints={}", server.endpoint),
        "watch",
        "w/",
        "--prefix",
        &format!("--rev={from}"),
    ]);
    let reference = watch_lines(etcdctl_watch, lines, Duration::from_secs(10));
    assert_eq!(got, reference, "stead kv watch vs etcdctl watch");

    // A live change reaches a watch started from now on.
    let mut live = Command::new(stead_bin());
    live.args([
        "kv",
        "watch",
        "live",
        "--rev",
        "7",
        "--endpoints",
        &format!("http://{}", server.endpoint),
    ]);
    let writer = {
        let endpoint = format!("http://{}", server.endpoint);
        std::thread::spawn(move || {
            stead(
                &["kv", "put", "live", "now", "--endpoints", &endpoint],
                None,
            )
        })
    };
    let got = watch_lines(live, 3, Duration::from_secs(10));
    assert!(writer.join().expect("writer").status.success());
    assert_eq!(got, ["PUT", "live", "now"]);
}

#[test]
fn kv_against_a_closed_port_says_it_cannot_connect() {
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let out = stead(&["kv", "get", "k", "--endpoints", &endpoint], None);
    assert!(!out.status.success());
    assert_mentions(&text(&out.stderr), &["cannot connect", &endpoint]);
}

/// A member runs with transparent huge pages off (the allocator's arenas would otherwise be
/// backed and zeroed 2 MiB at a time: more RSS, and CPU spent zeroing under write load).
#[cfg(target_os = "linux")]
#[test]
fn serve_runs_with_transparent_huge_pages_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_stead(&dir.path().join("data"), &[]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id()))
        .expect("read the member's /proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with("THP_enabled:"))
        .unwrap_or_else(|| {
            panic!("no THP_enabled line in /proc/PID/status (Linux >= 5.0):\n{status}")
        });
    assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
}
