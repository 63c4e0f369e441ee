//! The HTTP/JSON gateway on the client port, compared with real etcd 3.4's grpc-gateway:
//! the same requests must get the same status and the same JSON, byte for byte once ids,
//! terms and sizes are normalised (field order, base64 bytes, int64 as strings, omitted
//! defaults, snake_case names, error bodies). Also `/version`, `/health`, `/metrics`, and
//! `/v3/watch` streaming newline-delimited `{"result":...}` lines.
//!
//! Regressions covered here (bugs this file found):
//! - error bodies were `{"code":..,"error":..,"message":..}` (serde_json's sorted map)
//!   where etcd sends `{"error":..,"message":..,"code":..}`; `/version` likewise;
//! - an unknown `/v3/...` path answered `200 OK` with an empty gRPC body (tonic's
//!   fallback) instead of `404 Not Found`;
//! - watches opened through the gateway were not counted in `/metrics`.

mod common;
#[path = "common/http.rs"]
mod http;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{Proc, start_etcd, start_stead};
use http::{HttpResponse, LineStream, get, post};
use serde_json::{Value, json};

/// Fields whose values legitimately differ between two servers.
const VOLATILE: &[&str] = &[
    "cluster_id",
    "member_id",
    "raft_term",
    "ID",
    "leader",
    "raftIndex",
    "raftTerm",
    "raftAppliedIndex",
    "dbSize",
    "dbSizeInUse",
    "hash",
    "peerURLs",
    "clientURLs",
];

fn b64(s: &str) -> String {
    STANDARD.encode(s)
}

/// Collects the `"name":value` texts of volatile fields anywhere in `v`.
fn volatile_pairs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, val) in map {
                if VOLATILE.contains(&k.as_str()) {
                    out.push(format!("{}:{}", Value::String(k.clone()), val));
                } else {
                    volatile_pairs(val, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| volatile_pairs(i, out)),
        _ => {}
    }
}

/// The body text with volatile values replaced, keeping everything else (field order,
/// spacing) as sent, so that the comparison is byte for byte.
fn normalize(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(body.trim()) else {
        return body.to_string();
    };
    let mut pairs = Vec::new();
    volatile_pairs(&v, &mut pairs);
    let mut out = body.trim().to_string();
    for pair in pairs {
        let name = pair.split(':').next().unwrap_or_default();
        out = out.replace(&pair, &format!("{name}:\"<norm>\""));
    }
    out
}

/// What a step compares.
#[derive(Clone, Copy, PartialEq)]
enum Cmp {
    /// Status and the whole normalised body, byte for byte.
    Body,
    /// Status and the `code` field: the message text comes from each JSON parser.
    StatusAndCode,
    /// Status only (plain-text bodies of non-API paths).
    Status,
}

struct Step {
    method: &'static str,
    path: &'static str,
    body: String,
    cmp: Cmp,
}

fn step(path: &'static str, body: Value) -> Step {
    Step {
        method: "POST",
        path,
        body: body.to_string(),
        cmp: Cmp::Body,
    }
}

fn raw(method: &'static str, path: &'static str, body: &str, cmp: Cmp) -> Step {
    Step {
        method,
        path,
        body: body.to_string(),
        cmp,
    }
}

fn put(key: &str, value: &str) -> Value {
    json!({"key": b64(key), "value": b64(value)})
}

fn script() -> Vec<Step> {
    let compare_absent =
        json!({"key": b64("k1"), "target": "MOD", "result": "EQUAL", "mod_revision": "0"});
    vec![
        // Puts and prev_kv.
        step("/v3/kv/put", put("foo", "bar")),
        step(
            "/v3/kv/put",
            json!({"key": b64("foo"), "value": b64("baz"), "prev_kv": true}),
        ),
        step("/v3/kv/put", put("foo2", "x")),
        step("/v3/kv/put", put("fop", "y")),
        // Ranges: one key, prefix with limit (more, count), count_only, keys_only with
        // sort enums by name, a missing key (defaults omitted), an old revision.
        step("/v3/kv/range", json!({"key": b64("foo")})),
        step(
            "/v3/kv/range",
            json!({"key": b64("fo"), "range_end": b64("fp"), "limit": "2"}),
        ),
        step(
            "/v3/kv/range",
            json!({"key": "AA==", "range_end": "AA==", "count_only": true}),
        ),
        step(
            "/v3/kv/range",
            json!({"key": b64("fo"), "range_end": b64("fp"), "keys_only": true,
                   "sort_order": "DESCEND", "sort_target": "MOD"}),
        ),
        step("/v3/kv/range", json!({"key": b64("missing")})),
        step("/v3/kv/range", json!({"key": b64("foo"), "revision": "2"})),
        // Errors: etcd's message and gRPC code in grpc-gateway's body, and its HTTP status.
        step("/v3/kv/range", json!({})),
        step("/v3/kv/put", json!({"value": b64("v")})),
        raw("POST", "/v3/kv/put", "", Cmp::Body),
        step(
            "/v3/kv/range",
            json!({"key": b64("foo"), "revision": "100"}),
        ),
        step(
            "/v3/kv/put",
            json!({"key": b64("x"), "value": b64("y"), "lease": "999"}),
        ),
        step("/v3/lease/revoke", json!({"ID": "999"})),
        // Txn: create-if-absent succeeds, then fails and reads; duplicate keys; a value compare.
        step(
            "/v3/kv/txn",
            json!({"compare": [compare_absent],
                   "success": [{"request_put": put("k1", "v1")}],
                   "failure": [{"request_range": {"key": b64("k1")}}]}),
        ),
        step(
            "/v3/kv/txn",
            json!({"compare": [compare_absent],
                   "success": [{"request_put": put("k1", "v1")}],
                   "failure": [{"request_range": {"key": b64("k1")}}]}),
        ),
        step(
            "/v3/kv/txn",
            json!({"success": [{"request_put": put("d", "1")}, {"request_put": put("d", "2")}]}),
        ),
        step(
            "/v3/kv/txn",
            json!({"compare": [{"key": b64("k1"), "target": "VALUE", "result": "EQUAL",
                                "value": b64("v1")}],
                   "success": [{"request_delete_range": {"key": b64("foo2"), "prev_kv": true}},
                               {"request_range": {"key": b64("k1")}}]}),
        ),
        // Deletes: with prev_kv, of nothing (deleted omitted), of a prefix.
        step(
            "/v3/kv/deleterange",
            json!({"key": b64("foo"), "prev_kv": true}),
        ),
        step("/v3/kv/deleterange", json!({"key": b64("nothing")})),
        step(
            "/v3/kv/deleterange",
            json!({"key": b64("fo"), "range_end": b64("fp")}),
        ),
        // Leases (the id is random, the TTL is not).
        step("/v3/lease/grant", json!({"TTL": "30"})),
        step("/v3/lease/grant", json!({"TTL": "1"})),
        // Compaction, then reading below it, compacting again, and into the future.
        step(
            "/v3/kv/compaction",
            json!({"revision": "6", "physical": true}),
        ),
        step("/v3/kv/range", json!({"key": b64("k1"), "revision": "5"})),
        step("/v3/kv/compaction", json!({"revision": "4"})),
        step("/v3/kv/compaction", json!({"revision": "1000"})),
        step("/v3/kv/range", json!({"key": "AA==", "range_end": "AA=="})),
        step("/v3/maintenance/status", json!({})),
        step("/v3/maintenance/alarm", json!({})),
        step(
            "/v3/maintenance/alarm",
            json!({"action": "DEACTIVATE", "memberID": "1", "alarm": "NOSPACE"}),
        ),
        step("/v3/maintenance/defragment", json!({})),
        step("/v3/maintenance/hash", json!({})),
        step("/v3/cluster/member/list", json!({})),
        step("/v3/lease/timetolive", json!({"ID": "5"})),
        step("/v3/lease/keepalive", json!({"ID": "5"})),
        // Malformed JSON: both refuse with InvalidArgument (the parser's text differs).
        raw("POST", "/v3/kv/put", "{not json", Cmp::StatusAndCode),
        // Paths that are not API calls.
        raw("POST", "/v3/kv/nothing", "{}", Cmp::Status),
        raw("GET", "/v3/kv/range", "", Cmp::Status),
    ]
}

fn run(server: &Proc, s: &Step) -> HttpResponse {
    let tcp = std::net::TcpStream::connect(&server.endpoint).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let body = (s.method == "POST").then_some(s.body.as_str());
    http::request_on(tcp, s.method, s.path, body)
}

fn describe(s: &Step, r: &HttpResponse) -> String {
    let body = match s.cmp {
        Cmp::Body => normalize(&r.text()),
        Cmp::StatusAndCode => format!("code={}", r.json()["code"]),
        Cmp::Status => String::new(),
    };
    format!("{} {}", r.status, body)
}

#[test]
fn kv_lease_and_maintenance_calls_answer_the_same_json_as_etcds_gateway() {
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = start_etcd(&dir.path().join("etcd"));
    let stead = start_stead(&dir.path().join("stead"), &[]);
    let steps = script();
    let mut diffs = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        let want = run(&etcd, s);
        let got = run(&stead, s);
        let (w, g) = (describe(s, &want), describe(s, &got));
        if w != g {
            diffs.push(format!(
                "step {i}: {} {} {}\n  etcd:  {w}\n  stead: {g}",
                s.method, s.path, s.body
            ));
        }
        if want.status == 200 && s.cmp == Cmp::Body {
            assert_eq!(
                got.header("content-type"),
                Some("application/json"),
                "step {i}"
            );
        }
    }
    println!("compared {} gateway calls", steps.len());
    assert!(
        diffs.is_empty(),
        "{} of {} gateway calls differ:\n{}",
        diffs.len(),
        steps.len(),
        diffs.join("\n")
    );
}

#[test]
fn error_bodies_list_error_message_code_in_etcds_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stead = start_stead(&dir.path().join("stead"), &[]);
    let resp = post(&stead.endpoint, "/v3/kv/put", "{}");
    assert_eq!(resp.status, 400);
    assert_eq!(
        resp.text(),
        r#"{"error":"etcdserver: key is not provided","message":"etcdserver: key is not provided","code":3}"#
    );
    let resp = post(&stead.endpoint, "/v3/lease/revoke", r#"{"ID":"5"}"#);
    assert_eq!(resp.status, 404);
    assert_eq!(
        resp.text(),
        r#"{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}"#
    );
}

#[test]
fn unknown_gateway_paths_are_404_not_an_empty_ok() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stead = start_stead(&dir.path().join("stead"), &[]);
    for path in ["/v3/kv/nothing", "/v3beta/kv/range", "/nope"] {
        let resp = post(&stead.endpoint, path, "{}");
        assert_eq!(resp.status, 404, "POST {path}: {resp:?}");
        let resp = get(&stead.endpoint, path);
        assert_eq!(resp.status, 404, "GET {path}: {resp:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_to_services_stead_does_not_serve_still_get_unimplemented() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stead = start_stead(&dir.path().join("stead"), &[]);
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", stead.endpoint))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let status = stead_server::pb::auth_client::AuthClient::new(channel)
        .user_list(stead_server::pb::AuthUserListRequest {})
        .await
        .expect_err("the auth service is not served");
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
}

#[test]
fn version_and_health_answer_exactly_what_etcd_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = start_etcd(&dir.path().join("etcd"));
    let stead = start_stead(&dir.path().join("stead"), &[]);
    for path in ["/version", "/health"] {
        let want = get(&etcd.endpoint, path);
        let got = get(&stead.endpoint, path);
        assert_eq!(got.status, 200, "{path}");
        assert_eq!(
            (got.status, got.text()),
            (want.status, want.text()),
            "{path}"
        );
    }
    assert_eq!(
        get(&stead.endpoint, "/health").text(),
        r#"{"health":"true"}"#
    );
    assert_eq!(
        get(&stead.endpoint, "/version").text(),
        r#"{"etcdserver":"3.4.23","etcdcluster":"3.4.0"}"#
    );
}

/// The sum of every sample of `name` whose labels include `label` (all samples if empty).
fn metric_sum(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| label.is_empty() || l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn scrape(server: &Proc) -> String {
    let resp = get(&server.endpoint, "/metrics");
    assert_eq!(resp.status, 200);
    let content_type = resp.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain"),
        "metrics content type {content_type:?}"
    );
    resp.text()
}

#[test]
fn metrics_count_requests_and_report_the_db_size_like_etcd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = start_etcd(&dir.path().join("etcd"));
    let stead = start_stead(&dir.path().join("stead"), &[]);
    for server in [&etcd, &stead] {
        let before = scrape(server);
        let puts_before = metric_sum(&before, "grpc_server_handled_total", "grpc_method=\"Put\"");
        for i in 0..3 {
            let r = post(
                &server.endpoint,
                "/v3/kv/put",
                &put(&format!("m{i}"), "v").to_string(),
            );
            assert_eq!(r.status, 200, "{}", r.text());
        }
        let after = scrape(server);
        let puts_after = metric_sum(&after, "grpc_server_handled_total", "grpc_method=\"Put\"");
        assert!(
            puts_after >= puts_before + 3.0,
            "{}: Put counter went from {puts_before} to {puts_after}",
            server.endpoint
        );
        let size = metric_sum(&after, "etcd_mvcc_db_total_size_in_bytes", "");
        assert!(
            size > 0.0,
            "{}: etcd_mvcc_db_total_size_in_bytes is {size}:\n{after}",
            server.endpoint
        );
    }

    // Watches opened through the gateway count as Watch calls (etcd's gateway goes
    // through gRPC, so they are counted there too, once the stream ends).
    let watches = |text: &str| metric_sum(text, "grpc_server_handled_total", "\"Watch\"");
    let before = watches(&scrape(&stead));
    let mut stream = LineStream::open(
        &stead.endpoint,
        "/v3/watch",
        &json!({"create_request": {"key": b64("m0")}}).to_string(),
    );
    stream.next_line(Duration::from_secs(10), "watch created");
    let after = watches(&scrape(&stead));
    assert_eq!(after, before + 1.0, "gateway watch not counted");
}

/// Watches through the gateway: live events with prev_kv, a delete, history from a past
/// revision, a progress request and a compacted start revision. Returns normalised lines.
fn watch_session(server: &Proc) -> Vec<String> {
    let ep = &server.endpoint;
    let within = Duration::from_secs(10);
    let mut lines = Vec::new();
    let mut live = LineStream::open(
        ep,
        "/v3/watch",
        &json!({"create_request": {"key": b64("w"), "range_end": b64("x"), "prev_kv": true}})
            .to_string(),
    );
    assert_eq!(live.status, 200);
    lines.push(live.next_line(within, "created"));
    for (key, value) in [("w1", "a"), ("w1", "b"), ("w2", "c")] {
        let r = post(ep, "/v3/kv/put", &put(key, value).to_string());
        assert_eq!(r.status, 200, "{}", r.text());
        lines.push(live.next_line(within, "put event"));
    }
    let r = post(
        ep,
        "/v3/kv/deleterange",
        &json!({"key": b64("w1")}).to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    lines.push(live.next_line(within, "delete event"));

    let mut history = LineStream::open(
        ep,
        "/v3/watch",
        &json!({"create_request": {"key": b64("w1"), "start_revision": "2"}}).to_string(),
    );
    lines.push(history.next_line(within, "created"));
    lines.push(history.next_line(within, "history events"));

    let mut progress = LineStream::open(
        ep,
        "/v3/watch",
        &json!({"progress_request": {}}).to_string(),
    );
    lines.push(progress.next_line(within, "progress"));

    let r = post(
        ep,
        "/v3/kv/compaction",
        &json!({"revision": "4"}).to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let mut compacted = LineStream::open(
        ep,
        "/v3/watch",
        &json!({"create_request": {"key": b64("w1"), "start_revision": "2"}}).to_string(),
    );
    lines.push(compacted.next_line(within, "created"));
    lines.push(compacted.next_line(within, "canceled"));
    lines.iter().map(|l| normalize(l)).collect()
}

#[test]
fn watch_streams_newline_delimited_results_like_etcds_gateway() {
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = start_etcd(&dir.path().join("etcd"));
    let stead = start_stead(&dir.path().join("stead"), &[]);
    let want = watch_session(&etcd);
    let got = watch_session(&stead);
    for line in &got {
        assert!(line.starts_with("{\"result\":{"), "{line}");
    }
    let diffs: Vec<String> = want
        .iter()
        .zip(&got)
        .enumerate()
        .filter(|(_, (w, g))| w != g)
        .map(|(i, (w, g))| format!("line {i}:\n  etcd:  {w}\n  stead: {g}"))
        .collect();
    assert!(
        diffs.is_empty(),
        "watch lines differ:\n{}",
        diffs.join("\n")
    );
}
