//! The official Python `kubernetes` client (PyPI `kubernetes`) against a real `stead serve`:
//! `tests/python/custom_objects.py` drives `CustomObjectsApi` through a CRD's whole life
//! (create, get, list with a label selector, merge patch, replace and a stale replace,
//! `/status`, delete, and a watch from a resourceVersion).
//!
//! The test fails, never skips, when `python3` or the module is missing: `.ci/run` installs
//! it with `python3 -m pip install kubernetes`.

mod common;
#[path = "common/http.rs"]
mod http;
#[path = "common/rest.rs"]
mod rest;

use std::path::PathBuf;
use std::process::Command;

use common::require_tool_for;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/custom_objects.py")
}

/// `python3`, with the `kubernetes` module importable, or a failure saying how to get it.
fn python() -> PathBuf {
    let python = require_tool_for(
        "python3",
        "The Python client test needs python3 with `python3 -m pip install kubernetes`.",
    );
    let probe = Command::new(&python)
        .args(["-c", "import kubernetes; print(kubernetes.__version__)"])
        .output()
        .expect("run python3");
    assert!(
        probe.status.success(),
        "the Python `kubernetes` client is not installed for {}: run \
         `python3 -m pip install kubernetes` (.ci/run does this)\n{}",
        python.display(),
        String::from_utf8_lossy(&probe.stderr)
    );
    python
}

#[test]
fn the_python_kubernetes_client_drives_a_custom_resource_through_its_life() {
    let python = python();
    let api = rest::start();
    let out = Command::new(python)
        .arg(script())
        .arg(format!("http://{}", api.endpoint))
        .output()
        .expect("run custom_objects.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "custom_objects.py failed:\n{stdout}\n{stderr}\nserver log:\n{}",
        api.server.log_text()
    );
    assert!(stdout.starts_with("ok:"), "{stdout}");
}
