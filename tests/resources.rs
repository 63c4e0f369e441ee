//! The resource layer end to end, against a real `stead serve`: the `stead` CLI (apply, get,
//! watch, delete, describe), discovery, owner-reference garbage collection, namespace
//! lifecycle, and a watch that resumes across a server restart.

mod common;
#[path = "common/http.rs"]
mod http;
#[path = "common/rest.rs"]
mod rest;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, start_stead, stead_bin};
use http::LineStream;
use rest::{Api, CRDS, WIDGETS, rv, wait_for};
use serde_json::{Value, json};

/// Runs `stead <args>` against `api`, with `stdin` if given.
fn stead(api: &Api, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(stead_bin())
        .args(args)
        .env("STEAD_SERVER", format!("http://{}", api.endpoint))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stead");
    if let Some(text) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("stead output")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

fn ok(api: &Api, args: &[&str], stdin: Option<&str>) -> String {
    let out = stead(api, args, stdin);
    assert!(
        out.status.success(),
        "stead {args:?} failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

const MANIFEST: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.example.com
spec:
  group: example.com
  names: {kind: Gadget, plural: gadgets, singular: gadget, shortNames: [gd]}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Color, type: string, jsonPath: .spec.color, priority: 1}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, minimum: 0}
              color: {type: string}
          status: {type: object, x-kubernetes-preserve-unknown-fields: true}
---
apiVersion: example.com/v1
kind: Gadget
metadata: {name: g1, labels: {tier: front}}
spec: {size: 3, color: red}
---
apiVersion: example.com/v1
kind: Gadget
metadata: {name: g2, labels: {tier: back}}
spec: {size: 5}
"#;

fn write_manifest(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write manifest");
    path.display().to_string()
}

#[test]
fn apply_reports_created_unchanged_and_configured_and_unchanged_writes_nothing() {
    let api = rest::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_manifest(dir.path(), "m.yaml", MANIFEST);

    let out = ok(&api, &["apply", "-f", &file], None);
    assert_eq!(
        out,
        "customresourcedefinition.apiextensions.k8s.io/gadgets.example.com created\n\
         gadget.example.com/g1 created\ngadget.example.com/g2 created\n"
    );
    let before = api.revision();
    let out = ok(
        &api,
        &["apply", "-f", dir.path().to_str().expect("path")],
        None,
    );
    assert_eq!(
        out,
        "customresourcedefinition.apiextensions.k8s.io/gadgets.example.com unchanged\n\
         gadget.example.com/g1 unchanged\ngadget.example.com/g2 unchanged\n"
    );
    assert_eq!(api.revision(), before, "re-applying wrote a new revision");

    let changed = MANIFEST.replace("spec: {size: 5}", "spec: {size: 6}");
    let out = ok(&api, &["apply", "-f", "-"], Some(&changed));
    assert!(
        out.ends_with("gadget.example.com/g1 unchanged\ngadget.example.com/g2 configured\n"),
        "{out}"
    );
    assert_eq!(api.revision(), before + 1);

    // Tables: default columns, wide columns, all namespaces, label selectors, short names.
    let out = ok(&api, &["get", "gd"], None);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("NAME   SIZE   AGE"), "{out}");
    assert!(lines[2].starts_with("g2     6      "), "{out}");
    let out = ok(
        &api,
        &[
            "get",
            "gadgets.example.com",
            "-o",
            "wide",
            "-A",
            "-l",
            "tier=front",
        ],
        None,
    );
    assert!(
        out.starts_with(
            "NAMESPACE   NAME   SIZE   COLOR   AGE\ndefault     g1     3      red     "
        ),
        "{out}"
    );
    let out = ok(&api, &["get", "gadget", "g2", "-o", "json"], None);
    let object: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(object["spec"]["size"], 6);
    let out = ok(&api, &["get", "gadget", "g1", "-o", "yaml"], None);
    assert!(out.contains("\nspec:\n  color: red\n  size: 3\n"), "{out}");
    let out = ok(&api, &["get", "gd", "-o", "name"], None);
    assert_eq!(out, "gadget.example.com/g1\ngadget.example.com/g2\n");
}

#[test]
fn bad_manifests_are_refused_with_locations_and_change_nothing() {
    let api = rest::start();
    ok(&api, &["apply", "-f", "-"], Some(MANIFEST));
    let before = api.revision();

    // Malformed YAML: nothing at all is applied, even the valid first document.
    let broken = format!("{MANIFEST}---\napiVersion: example.com/v1\nkind: [Gadget\n");
    let out = stead(&api, &["apply", "-f", "-"], Some(&broken));
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("<stdin>:41:7: unclosed bracket"), "{err}");

    // Per object: a schema violation (field path), an unknown kind (known kinds listed), a
    // missing name. The valid object in between is applied; the exit status is non-zero.
    let mixed = "apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g3}\nspec: {size: -1}\n\
                 ---\napiVersion: example.com/v2\nkind: Gadget\nmetadata: {name: g4}\n\
                 ---\napiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g5}\nspec: {size: 1}\n\
                 ---\napiVersion: example.com/v1\nkind: Gadget\nmetadata: {labels: {a: b}}\n";
    let out = stead(&api, &["apply", "-f", "-"], Some(mixed));
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("<stdin>:1 (document 1)") && err.contains("spec.size"),
        "{err}"
    );
    assert!(
        err.contains("<stdin>:6 (document 2)")
            && err.contains("no kind \"Gadget\" is registered for version \"example.com/v2\"")
            && err.contains("example.com/v1/Gadget"),
        "{err}"
    );
    assert!(err.contains("metadata.name is required"), "{err}");
    assert!(err.contains("3 of 4 objects were not applied"), "{err}");
    assert_eq!(text(&out.stdout), "gadget.example.com/g5 created\n");
    assert_eq!(api.revision(), before + 1);

    let out = stead(&api, &["get", "gizmos"], None);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("doesn't have a resource type \"gizmos\""));
}

#[test]
fn watch_prints_every_change_with_its_revision_and_delete_waits_for_finalizers() {
    let api = rest::start();
    ok(&api, &["apply", "-f", "-"], Some(MANIFEST));
    let start = api.revision();
    let mut watch = Command::new(stead_bin())
        .args(["watch", "gadgets", "--since", &start.to_string()])
        .env("STEAD_SERVER", format!("http://{}", api.endpoint))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn watch");

    let path = "/apis/example.com/v1/namespaces/default/gadgets/g1";
    let resp = api.patch(
        path,
        "application/merge-patch+json",
        &json!({"metadata": {"finalizers": ["example.com/hold"]}, "spec": {"size": 4}}),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());

    // Deleting waits while the finalizer holds the object, and gives up after --timeout.
    let out = stead(&api, &["delete", "gadget", "g1", "--timeout", "1"], None);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("still waiting for finalizers [\"example.com/hold\"]"));
    let out = ok(&api, &["describe", "gadget", "g1"], None);
    assert!(
        out.starts_with("Name:         g1\nNamespace:    default\nLabels:       tier=front\n"),
        "{out}"
    );
    assert!(
        out.contains("  deletionTimestamp: ") && out.contains("Events:       <none>"),
        "{out}"
    );

    // Removing the finalizer lets a waiting delete finish.
    let waiting = Command::new(stead_bin())
        .args(["delete", "gadget", "g1"])
        .env("STEAD_SERVER", format!("http://{}", api.endpoint))
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn delete");
    std::thread::sleep(Duration::from_millis(300));
    let resp = api.patch(
        path,
        "application/json-patch+json",
        &json!([{"op": "remove", "path": "/metadata/finalizers"}]),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let out = waiting.wait_with_output().expect("delete output");
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "gadget.example.com \"g1\" deleted\n");

    std::thread::sleep(Duration::from_millis(300));
    let _ = watch.kill();
    let out = watch.wait_with_output().expect("watch output");
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    let want = [
        format!("{} MODIFIED default/g1 gen=2", start + 1),
        format!("{} MODIFIED default/g1 gen=3", start + 2),
        format!("{} DELETED default/g1 gen=3", start + 3),
    ];
    assert_eq!(lines, want);
}

#[test]
fn discovery_lists_groups_and_resources_and_tables_render_printer_columns() {
    let api = rest::start();
    api.register_widgets();
    let groups = api.get("/apis").json();
    let names: Vec<&str> = groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert!(
        names.contains(&"stead.dev") && names.contains(&"example.com"),
        "{groups}"
    );
    let list = api.get("/apis/example.com/v1").json();
    assert_eq!(list["kind"], "APIResourceList");
    assert_eq!(list["resources"][0]["name"], "widgets");
    assert_eq!(list["resources"][0]["shortNames"], json!(["wd"]));
    assert_eq!(list["resources"][1]["name"], "widgets/status");
    assert_eq!(api.get("/apis/example.com/v9").status, 404);
    let version = api.get("/version").json();
    assert_eq!(version["major"], "1");

    api.create_widget("a", 2);
    let table = http::send(
        &api.endpoint,
        "GET",
        &format!("{WIDGETS}?watch=false"),
        "application/json",
        None,
    );
    assert_eq!(table.json()["kind"], "WidgetList");
    let resp = rest_table(&api, WIDGETS);
    assert_eq!(resp["kind"], "Table");
    let columns: Vec<&str> = resp["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(columns, ["Name", "Age"]);
    assert_eq!(resp["rows"][0]["cells"][0], "a");
    assert_eq!(resp["rows"][0]["object"]["metadata"]["name"], "a");
}

fn rest_table(api: &Api, path: &str) -> Value {
    let resp = http::send_with_headers(
        &api.endpoint,
        "GET",
        path,
        &[("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")],
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.json()
}

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn dependents_are_collected_when_their_owner_goes_and_namespaces_take_their_objects_along() {
    let api = rest::start();
    api.register_widgets();
    let owner = api.create_widget("owner", 1);
    let mut child = rest::widget("child", 1);
    child["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "example.com/v1", "kind": "Widget", "name": "owner",
        "uid": owner["metadata"]["uid"], "controller": true}]);
    assert_eq!(api.post(WIDGETS, &child).status, 201);
    let mut stray = rest::widget("stray", 1);
    stray["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "example.com/v1", "kind": "Widget", "name": "gone",
        "uid": "00000000-0000-4000-8000-000000000000"}]);
    assert_eq!(api.post(WIDGETS, &stray).status, 201);
    let plain = api.create_widget("plain", 1);

    assert_eq!(api.delete(&format!("{WIDGETS}/owner")).status, 200);
    wait_until(
        "the dependents are collected",
        Duration::from_secs(10),
        || {
            api.get(&format!("{WIDGETS}/child")).status == 404
                && api.get(&format!("{WIDGETS}/stray")).status == 404
        },
    );
    let still = api.get(&format!("{WIDGETS}/plain"));
    assert_eq!(still.status, 200);
    assert_eq!(still.json()["metadata"]["uid"], plain["metadata"]["uid"]);

    // Namespaces: objects need theirs; deleting one deletes what it holds, then itself.
    let in_team = "/apis/example.com/v1/namespaces/team/widgets";
    let resp = api.post(in_team, &rest::widget("w", 1));
    assert_eq!(resp.status, 404, "{}", resp.text());
    assert_eq!(resp.json()["message"], "namespaces \"team\" not found");
    let namespaces = "/api/v1/namespaces";
    let resp = api.post(
        namespaces,
        &json!({"apiVersion": "v1", "kind": "Namespace",
                                            "metadata": {"name": "team"}}),
    );
    assert_eq!(resp.status, 201, "{}", resp.text());
    assert_eq!(api.post(in_team, &rest::widget("w", 1)).status, 201);
    let mut held = rest::widget("held", 1);
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    assert_eq!(api.post(in_team, &held).status, 201);

    let resp = api.delete(&format!("{namespaces}/team"));
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["status"]["phase"], "Terminating");
    let resp = api.post(in_team, &rest::widget("late", 1));
    assert_eq!(resp.status, 403, "{}", resp.text());
    wait_until(
        "the namespace's free objects are deleted",
        Duration::from_secs(10),
        || api.get(&format!("{in_team}/w")).status == 404,
    );
    // The namespace waits for the object its finalizer holds.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(api.get(&format!("{namespaces}/team")).status, 200);
    let resp = api.patch(
        &format!("{in_team}/held"),
        "application/merge-patch+json",
        &json!({"metadata": {"finalizers": null}}),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    wait_until("the namespace is gone", Duration::from_secs(10), || {
        api.get(&format!("{namespaces}/team")).status == 404
    });
    let resp = api.delete(&format!("{namespaces}/default"));
    assert_eq!(resp.status, 403, "{}", resp.text());
    assert!(api.get(CRDS).status == 200);
}

#[test]
fn a_watcher_resuming_from_its_last_resource_version_after_a_restart_misses_and_repeats_nothing() {
    let mut api = rest::start();
    api.register_widgets();
    let from = api.revision();
    let read = |stream: &mut LineStream, seen: &mut Vec<(i64, String)>, n: usize| {
        for _ in 0..n {
            let line = stream.next_line(Duration::from_secs(5), "watch event");
            let event: Value = serde_json::from_str(&line).expect("json event");
            let kind = event["type"].as_str().unwrap_or_default().to_owned();
            seen.push((rv(&event["object"]["metadata"]), kind));
        }
    };

    let mut seen = Vec::new();
    let mut stream = LineStream::get(
        &api.endpoint,
        &format!("{WIDGETS}?watch=true&resourceVersion={from}"),
    );
    for i in 0..5 {
        api.create_widget(&format!("w{i}"), i);
    }
    read(&mut stream, &mut seen, 5);
    drop(stream);

    // Writes while the watcher is away, a restart of the server, and more writes.
    for i in 5..8 {
        api.create_widget(&format!("w{i}"), i);
    }
    api.server.kill();
    let data = api.server.data_dir.clone();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    api.server = start_stead(&data, &["--listen-api-url", &url]);
    api.endpoint = format!("127.0.0.1:{port}");
    wait_for(&api.endpoint);
    for i in 8..10 {
        api.create_widget(&format!("w{i}"), i);
    }

    let last = seen.last().map(|(rev, _)| *rev).expect("events");
    let mut stream = LineStream::get(
        &api.endpoint,
        &format!("{WIDGETS}?watch=true&resourceVersion={last}"),
    );
    read(&mut stream, &mut seen, 5);
    let revisions: Vec<i64> = seen.iter().map(|(rev, _)| *rev).collect();
    let want: Vec<i64> = (from + 1..=from + 10).collect();
    assert_eq!(revisions, want, "events missed or repeated");
    assert!(seen.iter().all(|(_, kind)| kind == "ADDED"), "{seen:?}");
}

#[test]
fn bad_writes_get_kubernetes_status_errors_and_change_nothing() {
    let api = rest::start();
    api.register_widgets();
    let created = api.create_widget("w", 1);
    let before = api.revision();
    let path = format!("{WIDGETS}/w");
    let expect = |resp: http::HttpResponse, code: u16, reason: &str, needle: &str| {
        assert_eq!(resp.status, code, "{}", resp.text());
        let body = resp.json();
        assert_eq!(body["kind"], "Status", "{body}");
        assert_eq!(body["reason"], reason, "{body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    };

    // A missing name.
    let mut nameless = rest::widget("x", 1);
    nameless["metadata"] = json!({"labels": {"a": "b"}});
    expect(
        api.post(WIDGETS, &nameless),
        422,
        "Invalid",
        "name or generateName is required",
    );
    // A schema violation, with its field path.
    expect(
        api.post(WIDGETS, &rest::widget("neg", -1)),
        422,
        "Invalid",
        "spec.replicas",
    );
    // An immutable field changed.
    let mut moved = created.clone();
    moved["metadata"]["uid"] = json!("00000000-0000-4000-8000-000000000000");
    expect(api.put(&path, &moved), 422, "Invalid", "uid");
    // A stale resourceVersion.
    let mut stale = created.clone();
    stale["metadata"]["resourceVersion"] = json!("1");
    stale["spec"]["replicas"] = json!(7);
    expect(
        api.put(&path, &stale),
        409,
        "Conflict",
        "the object has been modified",
    );
    // An object too large for the store, and a body too large to read.
    let mut big = rest::widget("big", 1);
    big["spec"]["image"] = json!("x".repeat(2 << 20));
    let resp = api.post(WIDGETS, &big);
    assert_eq!(resp.status, 413, "a 2 MiB object was not refused");
    assert_eq!(resp.json()["reason"], "RequestEntityTooLarge");
    big["spec"]["image"] = json!("x".repeat(4 << 20));
    let resp = api.post(WIDGETS, &big);
    assert_eq!(resp.status, 413, "a 4 MiB body was not refused");
    assert_eq!(resp.json()["reason"], "RequestEntityTooLarge");
    // Not JSON at all, and a kind that does not match the URL.
    let resp = http::send(
        &api.endpoint,
        "POST",
        WIDGETS,
        "application/json",
        Some("{nope"),
    );
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert_eq!(resp.json()["kind"], "Status");
    let mut lease = rest::widget("l", 1);
    lease["kind"] = json!("Lease");
    lease["apiVersion"] = json!("stead.dev/v1");
    expect(
        api.post(WIDGETS, &lease),
        422,
        "Invalid",
        "kind: must be \"Widget\"",
    );
    // Unknown kinds are 404 with the resource named.
    expect(
        api.get("/apis/example.com/v1/namespaces/default/gizmos"),
        404,
        "NotFound",
        "gizmos",
    );

    assert_eq!(api.revision(), before, "a refused write changed the store");
    assert_eq!(api.get(&path).json()["spec"]["replicas"], 1);
}

#[test]
fn delete_options_orphan_or_delete_dependents_first_and_check_preconditions() {
    let api = rest::start();
    api.register_widgets();
    let child_of = |name: &str, owner: &Value, finalizers: Value| {
        let mut child = rest::widget(name, 1);
        child["metadata"]["finalizers"] = finalizers;
        child["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "example.com/v1", "kind": "Widget",
            "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
            "controller": true, "blockOwnerDeletion": true}]);
        let resp = api.post(WIDGETS, &child);
        assert_eq!(resp.status, 201, "{}", resp.text());
    };
    let delete_with = |name: &str, options: Value| {
        let resp = http::send(
            &api.endpoint,
            "DELETE",
            &format!("{WIDGETS}/{name}"),
            "application/json",
            Some(&options.to_string()),
        );
        assert!(resp.status == 200 || resp.status == 202, "{}", resp.text());
        resp.json()
    };
    let gone = |name: &str| api.get(&format!("{WIDGETS}/{name}")).status == 404;

    // Preconditions that do not hold: nothing is deleted.
    let owner = api.create_widget("orphaner", 1);
    let resp = http::send(
        &api.endpoint,
        "DELETE",
        &format!("{WIDGETS}/orphaner"),
        "application/json",
        Some(&json!({"preconditions": {"uid": "not-the-uid"}}).to_string()),
    );
    assert_eq!(resp.status, 409, "{}", resp.text());
    assert!(
        resp.text()
            .contains("Precondition failed: UID in precondition: not-the-uid")
    );

    // Orphan: the owner goes, its dependent stays without the owner reference.
    child_of("orphan", &owner, json!([]));
    delete_with(
        "orphaner",
        json!({"kind": "DeleteOptions", "apiVersion": "v1",
                                   "propagationPolicy": "Orphan"}),
    );
    wait_until(
        "the orphaning owner is gone",
        Duration::from_secs(10),
        || gone("orphaner"),
    );
    std::thread::sleep(Duration::from_millis(500));
    let orphan = api.get(&format!("{WIDGETS}/orphan"));
    assert_eq!(orphan.status, 200, "the dependent was collected");
    assert!(
        orphan.json()["metadata"].get("ownerReferences").is_none(),
        "{}",
        orphan.text()
    );

    // Foreground: the owner waits, marked, until its dependents are gone.
    let owner = api.create_widget("parent", 1);
    child_of("held-child", &owner, json!(["example.com/hold"]));
    let marked = delete_with("parent", json!({"propagationPolicy": "Foreground"}));
    assert_eq!(
        marked["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );
    wait_until(
        "the dependent is marked for deletion",
        Duration::from_secs(10),
        || {
            api.get(&format!("{WIDGETS}/held-child")).json()["metadata"]["deletionTimestamp"]
                .is_string()
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(!gone("parent"), "the owner went before its dependent");
    let resp = api.patch(
        &format!("{WIDGETS}/held-child"),
        "application/merge-patch+json",
        &json!({"metadata": {"finalizers": null}}),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    wait_until(
        "the owner follows its dependent",
        Duration::from_secs(10),
        || gone("held-child") && gone("parent"),
    );
}
