//! Kubernetes-style watches on the REST API (`?watch=true`): events from a resourceVersion
//! in order with DELETED carrying the object, the initial list without one, selectors,
//! `timeoutSeconds`, bookmarks, and 410 Expired (watch and paged list) after a compaction.

mod common;
#[path = "common/http.rs"]
mod http;
#[path = "common/rest.rs"]
mod rest;

use std::time::Duration;

use common::{free_port, start_stead};
use http::LineStream;
use rest::*;
use serde_json::{Value, json};

#[test]
fn a_watch_from_a_resource_version_streams_every_change_in_order() {
    let api = start();
    api.register_widgets();
    let start_rv = api.revision();
    api.create_widget("a", 1);
    api.patch(
        &format!("{WIDGETS}/a"),
        "application/merge-patch+json",
        &json!({"spec": {"replicas": 2}}),
    );
    api.create_widget("other", 1);
    api.delete(&format!("{WIDGETS}/a"));

    let path = format!("{WIDGETS}?watch=true&resourceVersion={start_rv}&labelSelector=app%3Da");
    let mut stream = LineStream::get(&api.endpoint, &path);
    assert_eq!(stream.status, 200);
    let mut next = |what: &str| -> Value {
        let line = stream.next_line(Duration::from_secs(10), what);
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    };
    let added = next("ADDED");
    assert_eq!(added["type"], "ADDED");
    let modified = next("MODIFIED");
    assert_eq!(modified["type"], "MODIFIED");
    assert_eq!(modified["object"]["spec"]["replicas"], 2);
    let deleted = next("DELETED");
    assert_eq!(deleted["type"], "DELETED");
    assert_eq!(deleted["object"]["metadata"]["name"], "a");
    assert_eq!(deleted["object"]["spec"]["replicas"], 2);
    assert!(rv(&added["object"]["metadata"]) < rv(&modified["object"]["metadata"]));
    assert!(rv(&modified["object"]["metadata"]) < rv(&deleted["object"]["metadata"]));

    // Without a resourceVersion: the current objects first, then live changes.
    let mut live = LineStream::get(&api.endpoint, &format!("{WIDGETS}?watch=true"));
    let first: Value =
        serde_json::from_str(&live.next_line(Duration::from_secs(10), "ADDED other"))
            .unwrap_or_default();
    assert_eq!(
        (
            first["type"].as_str(),
            first["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("other"))
    );
    api.create_widget("b", 1);
    let later: Value = serde_json::from_str(&live.next_line(Duration::from_secs(10), "ADDED b"))
        .unwrap_or_default();
    assert_eq!(later["object"]["metadata"]["name"], "b");
}

#[test]
fn a_watch_with_timeout_seconds_ends_after_listing_current_objects() {
    let api = start();
    api.post(LEASES, &lease("a", "alice"));
    let started = std::time::Instant::now();
    let resp = api.get(&format!("{LEASES}?watch=true&timeoutSeconds=1"));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(resp.status, 200);
    let lines: Vec<Value> = resp
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_default())
        .collect();
    assert_eq!(lines.len(), 1, "{}", resp.text());
    assert_eq!(lines[0]["type"], "ADDED");
    assert_eq!(lines[0]["object"]["metadata"]["name"], "a");
}

#[test]
fn watches_that_allow_bookmarks_receive_them_with_the_current_revision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let _server = start_stead(
        &dir.path().join("data"),
        &[
            "--listen-api-url",
            &url,
            "--experimental-watch-progress-notify-interval",
            "200ms",
        ],
    );
    let endpoint = format!("127.0.0.1:{port}");
    wait_for(&endpoint);
    let path = format!("{LEASES}?watch=true&resourceVersion=1&allowWatchBookmarks=true");
    let mut stream = LineStream::get(&endpoint, &path);
    let line = stream.next_line(Duration::from_secs(10), "BOOKMARK");
    let event: Value = serde_json::from_str(&line).unwrap_or_default();
    assert_eq!(event["type"], "BOOKMARK", "{line}");
    assert_eq!(event["object"]["kind"], "Lease");
    assert!(event["object"]["metadata"]["resourceVersion"].is_string());
}

#[test]
fn a_watch_from_a_compacted_resource_version_is_one_410_expired_error() {
    let api = start();
    api.register_widgets();
    let old = api.revision();
    api.create_widget("a", 1);
    api.create_widget("b", 1);
    let now = api.revision();
    let compact = http::post(
        &api.server.endpoint,
        "/v3/kv/compaction",
        &json!({"revision": now.to_string(), "physical": true}).to_string(),
    );
    assert_eq!(compact.status, 200, "{}", compact.text());

    let path = format!("{WIDGETS}?watch=true&resourceVersion={}", old - 1);
    let mut stream = LineStream::get(&api.endpoint, &path);
    let line = stream.next_line(Duration::from_secs(10), "ERROR");
    let event: Value = serde_json::from_str(&line).unwrap_or_default();
    assert_eq!(event["type"], "ERROR", "{line}");
    assert_eq!(event["object"]["code"], 410);
    assert_eq!(event["object"]["reason"], "Expired");

    let paged = api.get(&format!("{WIDGETS}?limit=1"));
    let token = paged.json()["metadata"]["continue"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    api.create_widget("c", 1);
    http::post(
        &api.server.endpoint,
        "/v3/kv/compaction",
        &json!({"revision": api.revision().to_string()}).to_string(),
    );
    let expired = api.get(&format!("{WIDGETS}?limit=1&continue={token}"));
    assert_eq!(expired.status, 410, "{}", expired.text());
    assert_eq!(expired.json()["reason"], "Expired");
}

#[test]
fn out_of_range_watch_parameters_are_bad_requests_or_harmless() {
    let api = start();
    for rv in ["9223372036854775807", "-3", "abc"] {
        let resp = api.get(&format!("{LEASES}?watch=true&resourceVersion={rv}"));
        assert_eq!(resp.status, 400, "{rv}: {}", resp.text());
        assert_eq!(resp.json()["reason"], "BadRequest");
    }
    let path = format!("{LEASES}?watch=true&timeoutSeconds=18446744073709551615");
    let mut stream = LineStream::get(&api.endpoint, &path);
    assert_eq!(stream.status, 200);
    api.post(LEASES, &lease("a", "alice"));
    let line = stream.next_line(Duration::from_secs(10), "ADDED");
    assert!(line.contains("\"ADDED\""), "{line}");
}
