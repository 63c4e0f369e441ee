#!/usr/bin/env python3
"""The official Python `kubernetes` client against a real `stead serve`.

Usage: custom_objects.py http://127.0.0.1:PORT

Drives CustomObjectsApi through a CRD's whole life: register the CRD, create, get, list with
a label selector, merge patch, replace (and a replace with a stale resourceVersion: 409),
the status subresource (generation unchanged), delete (then 404), and a watch from a
resourceVersion that sees ADDED, MODIFIED and DELETED in order. Exits non-zero with a
message on the first mismatch.
"""

import sys
import threading
import time

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

GROUP, VERSION, PLURAL, NS = "example.com", "v1", "widgets", "default"

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
        "versions": [{
            "name": VERSION, "served": True, "storage": True,
            "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "properties": {
                    "replicas": {"type": "integer", "minimum": 0},
                    "image": {"type": "string"}}},
                "status": {"type": "object", "properties": {
                    "ready": {"type": "integer"}}}}}},
        }],
    },
}


def widget(name, replicas, app):
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Widget",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"replicas": replicas},
    }


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def expect_status(code, call, what):
    try:
        call()
    except ApiException as e:
        check(e.status == code, f"{what}: expected HTTP {code}, got {e.status}: {e.body}")
        return
    raise AssertionError(f"{what}: expected HTTP {code}, the call succeeded")


def eventually(what, call, timeout=20):
    deadline = time.time() + timeout
    while True:
        try:
            return call()
        except ApiException as e:
            if time.time() > deadline:
                raise AssertionError(f"{what}: still failing: {e.status} {e.body}")
            time.sleep(0.1)


def main(endpoint):
    conf = client.Configuration()
    conf.host = endpoint
    api_client = client.ApiClient(conf)
    co = client.CustomObjectsApi(api_client)

    # Register the kind.
    crd = co.create_cluster_custom_object(
        "apiextensions.k8s.io", "v1", "customresourcedefinitions", CRD)
    check(crd["metadata"]["name"] == "widgets.example.com", f"crd created: {crd}")
    eventually("CRD served", lambda: co.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL))

    # A watch from the current resourceVersion, in the background.
    start = co.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)
    start_rv = start["metadata"]["resourceVersion"]
    seen = []
    watch_error = []

    def follow():
        try:
            w = watch.Watch()
            for event in w.stream(co.list_namespaced_custom_object, GROUP, VERSION, NS, PLURAL,
                                  resource_version=start_rv, timeout_seconds=20):
                obj = event["object"]
                seen.append((event["type"], obj["metadata"]["name"]))
                if event["type"] == "DELETED" and obj["metadata"]["name"] == "w1":
                    w.stop()
        except Exception as e:  # reported by the main thread
            watch_error.append(repr(e))

    watcher = threading.Thread(target=follow)
    watcher.start()

    # Create and get.
    created = co.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, widget("w1", 1, "web"))
    check(created["metadata"]["generation"] == 1, f"generation 1 on create: {created}")
    check(created["metadata"].get("uid"), "uid set")
    co.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, widget("w2", 2, "db"))
    expect_status(409, lambda: co.create_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, widget("w1", 1, "web")), "create twice")
    got = co.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "w1")
    check(got["spec"] == {"replicas": 1}, f"get: {got}")

    # List with a label selector.
    listed = co.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, label_selector="app=web")
    names = [i["metadata"]["name"] for i in listed["items"]]
    check(names == ["w1"], f"label_selector app=web lists {names}")
    check(listed["kind"] == "WidgetList", f"list kind: {listed['kind']}")
    every = co.list_cluster_custom_object(GROUP, VERSION, PLURAL)
    check(len(every["items"]) == 2, f"cluster-wide list: {every}")

    # Merge patch.
    patched = co.patch_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "w1", {"spec": {"image": "nginx"}})
    check(patched["spec"] == {"replicas": 1, "image": "nginx"}, f"merge patch: {patched}")
    check(patched["metadata"]["generation"] == 2, f"generation after patch: {patched}")

    # Replace, then a replace with the stale resourceVersion.
    stale = dict(patched)
    body = dict(patched)
    body["spec"] = {"replicas": 3, "image": "nginx"}
    replaced = co.replace_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "w1", body)
    check(replaced["spec"]["replicas"] == 3, f"replace: {replaced}")
    check(replaced["metadata"]["generation"] == 3, f"generation after replace: {replaced}")
    check(int(replaced["metadata"]["resourceVersion"]) > int(patched["metadata"]["resourceVersion"]),
          "replace moves resourceVersion")
    stale["spec"] = {"replicas": 9}
    expect_status(409, lambda: co.replace_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "w1", stale), "replace with a stale resourceVersion")

    # Status subresource: written there, generation unchanged.
    status = co.patch_namespaced_custom_object_status(
        GROUP, VERSION, NS, PLURAL, "w1", {"status": {"ready": 3}})
    check(status["status"] == {"ready": 3}, f"patch status: {status}")
    check(status["metadata"]["generation"] == 3, f"status keeps generation: {status}")
    got = co.get_namespaced_custom_object_status(GROUP, VERSION, NS, PLURAL, "w1")
    check(got["status"] == {"ready": 3} and got["spec"]["replicas"] == 3, f"get status: {got}")
    # The main resource ignores status.
    ignored = co.patch_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "w1", {"status": {"ready": 0}})
    check(ignored["status"] == {"ready": 3}, f"main resource ignores status: {ignored}")

    # Delete; then it is gone.
    deleted = co.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "w1")
    check(deleted is not None, "delete answers")
    expect_status(404, lambda: co.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "w1"),
                  "get after delete")
    expect_status(404, lambda: co.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "w1"),
                  "delete twice")

    watcher.join(30)
    check(not watcher.is_alive(), f"watch did not end after DELETED; saw {seen}")
    check(not watch_error, f"watch failed: {watch_error}")
    w1 = [t for (t, n) in seen if n == "w1"]
    check(w1[0] == "ADDED" and w1[-1] == "DELETED" and set(w1[1:-1]) == {"MODIFIED"},
          f"watch events for w1 in order: {seen}")
    check(len(w1) == 5, f"ADDED, 3 x MODIFIED (patch, replace, status), DELETED for w1: {seen}")
    check(("ADDED", "w2") in seen, f"w2 seen: {seen}")
    print("ok:", " ".join(f"{t}/{n}" for (t, n) in seen))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: custom_objects.py http://127.0.0.1:PORT")
    main(sys.argv[1])
