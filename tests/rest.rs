//! The Kubernetes-shaped REST API on `--listen-api-url`, against a real `stead serve`:
//! built-in kinds (Lease, Namespace) and a kind added by POSTing a
//! CustomResourceDefinition; create/get/list/update/patch/apply/delete, the `/status`
//! subresource, optimistic concurrency, validation errors as 422 `Status` bodies, and CRDs
//! across a three-member cluster. Watches are in `rest_watch.rs`.

mod common;
#[path = "common/http.rs"]
mod http;
#[path = "common/rest.rs"]
mod rest;

use common::{free_port, start_stead, start_stead_on};
use rest::*;
use serde_json::{Value, json};

#[test]
fn built_in_leases_are_created_read_listed_and_updated_with_resource_versions() {
    let api = start();
    let created = api.post(LEASES, &lease("a", "alice"));
    assert_eq!(created.status, 201, "{}", created.text());
    let created = created.json();
    assert_eq!(created["metadata"]["generation"], 1);
    assert!(
        created["metadata"]["uid"]
            .as_str()
            .is_some_and(|u| u.len() == 36)
    );
    let got = api.get(&format!("{LEASES}/a")).json();
    assert_eq!(got, created);

    api.post(LEASES, &lease("b", "bob"));
    let list = api.get(LEASES).json();
    assert_eq!(list["kind"], "LeaseList");
    let names: Vec<&str> = list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i["metadata"]["name"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(names, ["a", "b"]);
    assert!(rv(&list["metadata"]) > rv(&created["metadata"]));

    let mut update = got.clone();
    update["spec"]["holderIdentity"] = json!("carol");
    let updated = api.put(&format!("{LEASES}/a"), &update);
    assert_eq!(updated.status, 200, "{}", updated.text());
    let updated = updated.json();
    assert_eq!(updated["metadata"]["generation"], 2);
    assert!(rv(&updated["metadata"]) > rv(&got["metadata"]));
}

#[test]
fn creating_an_existing_object_is_409_already_exists() {
    let api = start();
    assert_eq!(api.post(LEASES, &lease("a", "alice")).status, 201);
    let again = api.post(LEASES, &lease("a", "alice"));
    assert_eq!(again.status, 409);
    let status = again.json();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "AlreadyExists");
    assert_eq!(status["code"], 409);
    assert_eq!(status["details"]["name"], "a");
}

#[test]
fn an_update_with_a_stale_resource_version_is_409_conflict() {
    let api = start();
    let first = api.post(LEASES, &lease("a", "alice")).json();
    let mut second = first.clone();
    second["spec"]["holderIdentity"] = json!("bob");
    assert_eq!(api.put(&format!("{LEASES}/a"), &second).status, 200);
    let mut stale = first.clone();
    stale["spec"]["holderIdentity"] = json!("carol");
    let resp = api.put(&format!("{LEASES}/a"), &stale);
    assert_eq!(resp.status, 409, "{}", resp.text());
    assert_eq!(resp.json()["reason"], "Conflict");
    assert_eq!(
        api.get(&format!("{LEASES}/a")).json()["spec"]["holderIdentity"],
        "bob"
    );
}

#[test]
fn an_update_that_changes_nothing_writes_no_new_revision() {
    let api = start();
    let created = api.post(LEASES, &lease("a", "alice")).json();
    let before = api.revision();
    let resp = api.put(&format!("{LEASES}/a"), &created);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.json()["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
    let merge = api.patch(
        &format!("{LEASES}/a"),
        "application/merge-patch+json",
        &json!({"spec": {"holderIdentity": "alice"}}),
    );
    assert_eq!(merge.status, 200, "{}", merge.text());
    assert_eq!(api.revision(), before);
}

#[test]
fn merge_and_json_patches_change_the_object_and_strategic_merge_is_415() {
    let api = start();
    api.register_widgets();
    api.create_widget("w", 1);
    let path = format!("{WIDGETS}/w");
    let merged = api.patch(
        &path,
        "application/merge-patch+json",
        &json!({"spec": {"image": "nginx"}}),
    );
    assert_eq!(merged.status, 200, "{}", merged.text());
    let merged = merged.json();
    assert_eq!(merged["spec"], json!({"replicas": 1, "image": "nginx"}));
    assert_eq!(merged["metadata"]["generation"], 2);

    let ops = json!([{"op": "test", "path": "/spec/replicas", "value": 1},
                     {"op": "replace", "path": "/spec/replicas", "value": 3}]);
    let patched = api.patch(&path, "application/json-patch+json", &ops);
    assert_eq!(patched.status, 200, "{}", patched.text());
    assert_eq!(patched.json()["spec"]["replicas"], 3);

    let failed_test = json!([{"op": "test", "path": "/spec/replicas", "value": 1}]);
    let failed = api.patch(&path, "application/json-patch+json", &failed_test);
    assert_eq!(failed.status, 422, "{}", failed.text());

    let strategic = api.patch(&path, "application/strategic-merge-patch+json", &json!({}));
    assert_eq!(strategic.status, 415);
    assert_eq!(strategic.json()["reason"], "UnsupportedMediaType");
}

#[test]
fn server_side_apply_creates_then_reports_conflicts_between_managers() {
    let api = start();
    api.register_widgets();
    let path = format!("{WIDGETS}/w?fieldManager=alice");
    let created = api.patch(&path, "application/apply-patch+yaml", &widget("w", 2));
    assert_eq!(created.status, 201, "{}", created.text());
    let before = api.revision();
    let again = api.patch(&path, "application/apply-patch+yaml", &widget("w", 2));
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(
        api.revision(),
        before,
        "re-applying the same configuration wrote"
    );

    let bob = format!("{WIDGETS}/w?fieldManager=bob");
    let conflict = api.patch(&bob, "application/apply-patch+yaml", &widget("w", 5));
    assert_eq!(conflict.status, 409, "{}", conflict.text());
    assert_eq!(conflict.json()["reason"], "Conflict");
    let forced = api.patch(
        &format!("{bob}&force=true"),
        "application/apply-patch+yaml",
        &widget("w", 5),
    );
    assert_eq!(forced.status, 200, "{}", forced.text());
    assert_eq!(forced.json()["spec"]["replicas"], 5);
}

#[test]
fn the_status_subresource_writes_only_status_and_keeps_the_generation() {
    let api = start();
    api.register_widgets();
    let created = api.create_widget("w", 1);
    let mut with_status = created.clone();
    with_status["status"] = json!({"ready": 1});
    with_status["spec"]["replicas"] = json!(9);
    let resp = api.put(&format!("{WIDGETS}/w/status"), &with_status);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let stored = api.get(&format!("{WIDGETS}/w/status")).json();
    assert_eq!(stored["status"], json!({"ready": 1}));
    assert_eq!(
        stored["spec"]["replicas"], 1,
        "a status write changed the spec"
    );
    assert_eq!(stored["metadata"]["generation"], 1);

    let patched = api.patch(
        &format!("{WIDGETS}/w/status"),
        "application/merge-patch+json",
        &json!({"status": {"ready": 2}}),
    );
    assert_eq!(patched.status, 200, "{}", patched.text());
    assert_eq!(patched.json()["status"]["ready"], 2);

    // The main resource ignores status changes.
    let mut main = api.get(&format!("{WIDGETS}/w")).json();
    main["status"] = json!({"ready": 7});
    let put = api.put(&format!("{WIDGETS}/w"), &main);
    assert_eq!(put.json()["status"]["ready"], 2);
}

#[test]
fn deleting_an_object_with_finalizers_marks_it_until_the_last_finalizer_is_removed() {
    let api = start();
    api.register_widgets();
    let mut w = widget("w", 1);
    w["metadata"]["finalizers"] = json!(["example.com/cleanup"]);
    assert_eq!(api.post(WIDGETS, &w).status, 201);
    let path = format!("{WIDGETS}/w");
    let marked = api.delete(&path);
    assert_eq!(marked.status, 200, "{}", marked.text());
    assert!(marked.json()["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(
        api.get(&path).status,
        200,
        "the object went away with a finalizer"
    );

    let released = api.patch(
        &path,
        "application/merge-patch+json",
        &json!({"metadata": {"finalizers": null}}),
    );
    assert_eq!(released.status, 200, "{}", released.text());
    let gone = api.get(&path);
    assert_eq!(gone.status, 404);
    assert_eq!(gone.json()["reason"], "NotFound");

    api.create_widget("plain", 1);
    assert_eq!(api.delete(&format!("{WIDGETS}/plain")).status, 200);
    assert_eq!(api.get(&format!("{WIDGETS}/plain")).status, 404);
}

#[test]
fn a_registered_crd_serves_its_kind_and_survives_a_restart() {
    let mut api = start();
    let unknown = api.get(WIDGETS);
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["reason"], "NotFound");
    api.register_widgets();
    let crd = api.get(&format!("{CRDS}/widgets.example.com")).json();
    assert!(crd["status"]["conditions"].is_array(), "{crd}");
    api.create_widget("w", 1);

    // Restart on the same data directory: the CRD is loaded from the store.
    api.server.kill();
    let data = api.server.data_dir.clone();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    api.server = start_stead(&data, &["--listen-api-url", &url]);
    api.endpoint = format!("127.0.0.1:{port}");
    wait_for(&api.endpoint);
    let got = api.get(&format!("{WIDGETS}/w"));
    assert_eq!(got.status, 200, "{}", got.text());
}

#[test]
fn schema_violations_are_422_invalid_with_the_field_path() {
    let api = start();
    api.register_widgets();
    let resp = api.post(WIDGETS, &widget("w", -1));
    assert_eq!(resp.status, 422, "{}", resp.text());
    let status = resp.json();
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(status["details"]["causes"][0]["field"], "spec.replicas");
    assert_eq!(api.get(&format!("{WIDGETS}/w")).status, 404);
}

#[test]
fn undeclared_fields_are_pruned_or_422_under_strict_field_validation() {
    let api = start();
    api.register_widgets();
    let mut w = widget("w", 1);
    w["spec"]["colour"] = json!("red");
    let created = api.post(WIDGETS, &w);
    assert_eq!(created.status, 201, "{}", created.text());
    let created = created.json();
    assert_eq!(created["spec"], json!({"replicas": 1}));

    // Sending the same undeclared field again changes nothing.
    let before = api.revision();
    let mut again = created.clone();
    again["spec"]["colour"] = json!("red");
    assert_eq!(api.put(&format!("{WIDGETS}/w"), &again).status, 200);
    assert_eq!(api.revision(), before);

    w["metadata"]["name"] = json!("strict");
    let strict = api.post(&format!("{WIDGETS}?fieldValidation=Strict"), &w);
    assert_eq!(strict.status, 422, "{}", strict.text());
    assert_eq!(
        strict.json()["details"]["causes"][0]["field"],
        "spec.colour"
    );
}

#[test]
fn lists_filter_by_labels_and_fields_and_page_at_one_revision() {
    let api = start();
    api.register_widgets();
    for name in ["a", "b", "c"] {
        api.create_widget(name, 1);
    }
    let names = |list: &Value| -> Vec<String> {
        list["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        names(&api.get(&format!("{WIDGETS}?labelSelector=app%3Db")).json()),
        ["b"]
    );
    assert_eq!(
        names(
            &api.get(&format!("{WIDGETS}?fieldSelector=metadata.name%21%3Db"))
                .json()
        ),
        ["a", "c"]
    );
    let first = api.get(&format!("{WIDGETS}?limit=2")).json();
    assert_eq!(names(&first), ["a", "b"]);
    let token = first["metadata"]["continue"]
        .as_str()
        .expect("a continue token")
        .to_owned();
    // A change after the first page is not seen by the next page.
    api.create_widget("d", 1);
    let second = api
        .get(&format!("{WIDGETS}?limit=2&continue={token}"))
        .json();
    assert_eq!(names(&second), ["c"]);
    assert_eq!(
        second["metadata"]["resourceVersion"],
        first["metadata"]["resourceVersion"]
    );
    assert!(second["metadata"].get("continue").is_none());
}

#[test]
fn a_crd_registered_or_changed_through_one_member_is_served_by_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports: Vec<(u16, u16, u16)> = (0..3)
        .map(|_| (free_port(), free_port(), free_port()))
        .collect();
    let initial = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer, _))| format!("m{i}=http://127.0.0.1:{peer}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut members = Vec::new();
    for (i, (client, peer, api_port)) in ports.iter().enumerate() {
        let name = format!("m{i}");
        let url = format!("http://127.0.0.1:{api_port}");
        let data = dir.path().join(&name);
        let args = [
            "--name",
            &name,
            "--initial-cluster",
            &initial,
            "--listen-api-url",
            &url,
        ];
        let server = start_stead_on(&data, *client, *peer, &args);
        let endpoint = format!("127.0.0.1:{api_port}");
        wait_for(&endpoint);
        members.push(Api {
            endpoint,
            server,
            _dir: tempfile::tempdir().expect("tempdir"),
        });
    }
    eventually("CRD on m0", 201, || members[0].post(CRDS, &widget_crd()));
    eventually("widget on m1", 201, || {
        members[1].post(WIDGETS, &widget("w", 5))
    });
    eventually("widget read on m2", 200, || {
        members[2].get(&format!("{WIDGETS}/w"))
    });

    // A schema change through m2 reaches m1's registry through its CRD watch.
    let mut crd = widget_crd();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["replicas"]
        ["maximum"] = json!(3);
    let path = format!("{CRDS}/widgets.example.com");
    let changed = members[2].put(&path, &crd);
    assert_eq!(changed.status, 200, "{}", changed.text());
    // Until m1 has the change, each attempt creates an object: a fresh name each time.
    let attempt = std::cell::Cell::new(0);
    let rejected = eventually("the new maximum on m1", 422, || {
        attempt.set(attempt.get() + 1);
        members[1].post(WIDGETS, &widget(&format!("big-{}", attempt.get()), 5))
    });
    assert_eq!(
        rejected.json()["details"]["causes"][0]["field"],
        "spec.replicas"
    );
}
