//! Stock `kubectl` (v1.32) against a real `stead serve`, configured only with the kubeconfig
//! `stead kubeconfig` writes. Outputs are compared with what kubectl prints against
//! Kubernetes: `widget.example.com/w1 created`, `configured`, `unchanged`, table headers,
//! `api-resources` columns.
//!
//! The test fails, never skips, when `kubectl` is not on PATH.

mod common;
#[path = "common/http.rs"]
mod http;
#[path = "common/rest.rs"]
mod rest;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{require_tool_for, stead_bin};

const CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    shortNames: [wd]
    categories: [all]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
    additionalPrinterColumns:
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    - name: Image
      type: string
      jsonPath: .spec.image
      priority: 1
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
    schema:
      openAPIV3Schema:
        type: object
        description: A widget for tests.
        properties:
          spec:
            type: object
            description: What the widget should be.
            properties:
              replicas:
                type: integer
                minimum: 0
                description: How many copies.
              image:
                type: string
          status:
            type: object
            properties:
              replicas:
                type: integer
"#;

fn widget(name: &str, replicas: u32, app: &str) -> String {
    format!(
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: {name}\n  labels:\n    app: {app}\nspec:\n  replicas: {replicas}\n"
    )
}

/// A server and a kubeconfig for it.
struct Cluster {
    api: rest::Api,
    kubeconfig: PathBuf,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Cluster {
        Self::start_with(&[])
    }

    /// A server started with more `stead serve` flags.
    fn start_with(extra: &[&str]) -> Cluster {
        require_tool_for(
            "kubectl",
            "The kubectl test runs stock kubectl v1.32: install it from https://dl.k8s.io.",
        );
        let api = rest::start_with(extra);
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        let out = Command::new(stead_bin())
            .args(["kubeconfig", "--server"])
            .arg(format!("http://{}", api.endpoint))
            .arg("-o")
            .arg(&kubeconfig)
            .output()
            .expect("run stead kubeconfig");
        assert!(out.status.success(), "stead kubeconfig: {out:?}");
        Cluster {
            api,
            kubeconfig,
            dir,
        }
    }

    fn run(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &Path)]) -> Output {
        let mut cmd = Command::new("kubectl");
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            // A cache per test: discovery from another server must not leak in.
            .env("KUBECACHEDIR", self.dir.path().join("cache"))
            .env("HOME", self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn kubectl");
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
        child.wait_with_output().expect("kubectl output")
    }

    /// Runs kubectl, asserts success, returns stdout.
    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin, &[]);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\n{}{}\nserver log:\n{}",
            text(&out.stdout),
            text(&out.stderr),
            self.api.server.log_text()
        );
        text(&out.stdout)
    }

    /// Runs kubectl, asserts failure, returns stderr.
    fn fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin, &[]);
        assert!(
            !out.status.success(),
            "kubectl {args:?} succeeded:\n{}",
            text(&out.stdout)
        );
        text(&out.stderr)
    }
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut perms = std::fs::metadata(path).expect("stat").permissions();
    perms.set_mode(0o755);
    std::fs::set_permissions(path, perms).expect("chmod");
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// The words of each line (tables are column-aligned with varying spaces).
fn words(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

#[test]
fn kubectl_applies_gets_patches_scales_and_deletes_custom_resources() {
    let k = Cluster::start();
    assert_eq!(
        k.ok(&["apply", "-f", "-"], Some(CRD)),
        "customresourcedefinition.apiextensions.k8s.io/widgets.example.com created\n"
    );
    assert_eq!(
        k.ok(&["apply", "-f", "-"], Some(CRD)),
        "customresourcedefinition.apiextensions.k8s.io/widgets.example.com unchanged\n"
    );
    let crds = k.ok(&["get", "crd"], None);
    assert_eq!(words(&crds)[1][0], "widgets.example.com", "{crds}");

    // Client-side apply: created, unchanged, configured.
    let w1 = widget("w1", 1, "web");
    assert_eq!(
        k.ok(&["apply", "-f", "-"], Some(&w1)),
        "widget.example.com/w1 created\n"
    );
    assert_eq!(
        k.ok(&["apply", "-f", "-"], Some(&w1)),
        "widget.example.com/w1 unchanged\n"
    );
    assert_eq!(
        k.ok(&["apply", "-f", "-"], Some(&widget("w1", 2, "web"))),
        "widget.example.com/w1 configured\n"
    );
    // Strict field validation happens on the server.
    let typo = widget("w1", 2, "web").replace("replicas: 2", "replicaz: 2");
    let err = k.fails(&["apply", "-f", "-"], Some(&typo));
    assert!(err.contains("replicaz"), "{err}");

    assert_eq!(
        k.ok(&["create", "-f", "-"], Some(&widget("w2", 3, "db"))),
        "widget.example.com/w2 created\n"
    );
    let err = k.fails(&["create", "-f", "-"], Some(&widget("w2", 3, "db")));
    assert!(
        err.contains("AlreadyExists") || err.contains("already exists"),
        "{err}"
    );

    // Tables: server-side columns, wide, label selectors, all namespaces, short names.
    let table = words(&k.ok(&["get", "widgets"], None));
    assert_eq!(table[0], ["NAME", "REPLICAS", "AGE"]);
    assert_eq!(table[1][..2], ["w1", "2"]);
    assert_eq!(table[2][..2], ["w2", "3"]);
    let wide = words(&k.ok(&["get", "wd", "-o", "wide"], None));
    // Columns in the CRD's order, priority-1 ones only with -o wide.
    assert_eq!(wide[0], ["NAME", "REPLICAS", "IMAGE", "AGE"]);
    let selected = words(&k.ok(&["get", "widget", "-l", "app=db"], None));
    assert_eq!(selected.len(), 2);
    assert_eq!(selected[1][0], "w2");
    let all = words(&k.ok(&["get", "widgets", "-A"], None));
    assert_eq!(all[0], ["NAMESPACE", "NAME", "REPLICAS", "AGE"]);
    assert_eq!(all[1][..2], ["default", "w1"]);
    let yaml = k.ok(&["get", "widget", "w1", "-o", "yaml"], None);
    assert!(
        yaml.contains("kind: Widget") && yaml.contains("replicas: 2"),
        "{yaml}"
    );
    let name = k.ok(&["get", "widgets", "-o", "name"], None);
    assert_eq!(name, "widget.example.com/w1\nwidget.example.com/w2\n");

    // Patches: merge, JSON, status.
    assert_eq!(
        k.ok(
            &[
                "patch",
                "widget",
                "w1",
                "--type=merge",
                "-p",
                r#"{"spec":{"image":"nginx"}}"#
            ],
            None
        ),
        "widget.example.com/w1 patched\n"
    );
    assert_eq!(
        k.ok(
            &[
                "patch",
                "widget",
                "w1",
                "--type=json",
                "-p",
                r#"[{"op":"replace","path":"/spec/replicas","value":4}]"#
            ],
            None
        ),
        "widget.example.com/w1 patched\n"
    );
    assert_eq!(
        k.ok(
            &[
                "patch",
                "widget",
                "w1",
                "--subresource=status",
                "--type=merge",
                "-p",
                r#"{"status":{"replicas":4}}"#
            ],
            None
        ),
        "widget.example.com/w1 patched\n"
    );
    let got = k.ok(
        &[
            "get",
            "widget",
            "w1",
            "-o",
            "jsonpath={.spec.replicas} {.spec.image} {.status.replicas} {.metadata.generation}",
        ],
        None,
    );
    assert_eq!(got, "4 nginx 4 4");

    // Scale.
    assert_eq!(
        k.ok(&["scale", "widget", "w1", "--replicas=7"], None),
        "widget.example.com/w1 scaled\n"
    );
    let got = k.ok(
        &["get", "widget", "w1", "-o", "jsonpath={.spec.replicas}"],
        None,
    );
    assert_eq!(got, "7");

    // Replace.
    let mut replaced = widget("w2", 9, "db");
    replaced.push_str("  image: redis\n");
    assert_eq!(
        k.ok(&["replace", "-f", "-"], Some(&replaced)),
        "widget.example.com/w2 replaced\n"
    );

    // Server-side apply, with a conflict against kubectl's own manager and a forced apply.
    let ssa = widget("w3", 1, "ssa");
    assert_eq!(
        k.ok(&["apply", "--server-side", "-f", "-"], Some(&ssa)),
        "widget.example.com/w3 serverside-applied\n"
    );
    let other = widget("w3", 5, "ssa");
    let err = k.fails(
        &["apply", "--server-side", "--field-manager=other", "-f", "-"],
        Some(&other),
    );
    assert!(err.contains("conflict"), "{err}");
    assert_eq!(
        k.ok(
            &[
                "apply",
                "--server-side",
                "--field-manager=other",
                "--force-conflicts",
                "-f",
                "-"
            ],
            Some(&other)
        ),
        "widget.example.com/w3 serverside-applied\n"
    );

    // Edit, with an editor that changes the replicas.
    let editor = k.dir.path().join("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nsed -i 's/replicas: 7/replicas: 8/' \"$1\"\n",
    )
    .expect("write editor");
    make_executable(&editor);
    let out = k.run(&["edit", "widget", "w1"], None, &[("EDITOR", &editor)]);
    assert!(out.status.success(), "kubectl edit: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "widget.example.com/w1 edited\n");
    let got = k.ok(
        &["get", "widget", "w1", "-o", "jsonpath={.spec.replicas}"],
        None,
    );
    assert_eq!(got, "8");

    // A watch sees a new object.
    let mut watch = Command::new("kubectl")
        .args(["get", "widgets", "-w"])
        .env("KUBECONFIG", &k.kubeconfig)
        .env("KUBECACHEDIR", k.dir.path().join("cache"))
        .env("HOME", k.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn kubectl get -w");
    let stdout = watch.stdout.take().expect("stdout");
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = lines
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("kubectl get -w prints the table");
    assert_eq!(words(&first)[0], ["NAME", "REPLICAS", "AGE"]);
    k.ok(&["create", "-f", "-"], Some(&widget("w9", 2, "watched")));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.starts_with("w9 ")) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("kubectl get -w did not show w9: {seen:?}"),
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();

    // Delete waits for finalizers: the object stays until the last one is removed.
    let held =
        widget("held", 1, "x").replace("  labels:", "  finalizers: [example.com/hold]\n  labels:");
    k.ok(&["create", "-f", "-"], Some(&held));
    let out = k.run(&["delete", "widget", "held", "--wait=false"], None, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stamp = k.ok(
        &[
            "get",
            "widget",
            "held",
            "-o",
            "jsonpath={.metadata.deletionTimestamp}",
        ],
        None,
    );
    assert!(
        !stamp.is_empty(),
        "deletionTimestamp set while a finalizer holds the object"
    );
    k.ok(
        &[
            "patch",
            "widget",
            "held",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
        ],
        None,
    );
    let out = k.run(
        &["wait", "--for=delete", "widget/held", "--timeout=20s"],
        None,
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Delete.
    assert_eq!(
        k.ok(&["delete", "widget", "w3"], None),
        "widget.example.com \"w3\" deleted\n"
    );
    let err = k.fails(&["get", "widget", "w3"], None);
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );
}

#[test]
fn kubectl_discovers_namespaces_api_resources_and_schemas() {
    let k = Cluster::start();
    k.ok(&["apply", "-f", "-"], Some(CRD));
    assert_eq!(
        k.ok(&["create", "namespace", "team"], None),
        "namespace/team created\n"
    );
    // Client-side apply of a core kind: kubectl sends a strategic merge patch.
    let ops = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ops\n  labels:\n    a: b\n";
    assert_eq!(
        k.ok(&["apply", "-f", "-"], Some(ops)),
        "namespace/ops created\n"
    );
    assert_eq!(
        k.ok(&["apply", "-f", "-"], Some(ops)),
        "namespace/ops unchanged\n"
    );
    assert_eq!(
        k.ok(&["apply", "-f", "-"], Some(&ops.replace("a: b", "a: c"))),
        "namespace/ops configured\n"
    );
    assert_eq!(
        k.ok(
            &[
                "get",
                "ns",
                "ops",
                "-o",
                "jsonpath={.metadata.labels.a} {.status.phase}"
            ],
            None
        ),
        "c Active"
    );
    assert_eq!(
        k.ok(&["delete", "ns", "ops"], None),
        "namespace \"ops\" deleted\n"
    );
    let ns = words(&k.ok(&["get", "namespaces"], None));
    assert_eq!(ns[0], ["NAME", "STATUS", "AGE"]);
    let names: Vec<&str> = ns[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names, ["default", "team"]);
    assert_eq!(
        k.ok(
            &["apply", "-n", "team", "-f", "-"],
            Some(&widget("t1", 1, "x"))
        ),
        "widget.example.com/t1 created\n"
    );

    // Aggregated discovery: one request each for /api and /apis, none per group version.
    let out = k.run(&["api-resources", "-v=6"], None, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let log = text(&out.stderr);
    assert!(log.contains("/apis?timeout"), "{log}");
    assert!(!log.contains("/apis/example.com/v1?timeout"), "{log}");
    let resources = text(&out.stdout);

    // A built-in stead kind.
    let lease = "apiVersion: stead.dev/v1\nkind: Lease\nmetadata:\n  name: l1\nspec:\n  holderIdentity: me\n";
    assert_eq!(
        k.ok(&["create", "-f", "-"], Some(lease)),
        "lease.stead.dev/l1 created\n"
    );
    let leases = words(&k.ok(&["get", "leases"], None));
    assert_eq!(leases[0], ["NAME", "HOLDER", "AGE"]);
    assert_eq!(leases[1][..2], ["l1", "me"]);
    let rows = words(&resources);
    assert_eq!(
        rows[0],
        ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    );
    assert!(
        rows.contains(&vec![
            "namespaces".to_owned(),
            "ns".to_owned(),
            "v1".to_owned(),
            "false".to_owned(),
            "Namespace".to_owned()
        ]),
        "{resources}"
    );
    assert!(
        rows.contains(&vec![
            "widgets".to_owned(),
            "wd".to_owned(),
            "example.com/v1".to_owned(),
            "true".to_owned(),
            "Widget".to_owned()
        ]),
        "{resources}"
    );

    let explain = k.ok(&["explain", "widgets.spec"], None);
    assert!(explain.contains("KIND:       Widget"), "{explain}");
    assert!(explain.contains("replicas\t<integer>"), "{explain}");
    assert!(explain.contains("How many copies."), "{explain}");

    // describe finds the object and the core/v1 Events about it (by involvedObject fields).
    let uid = k.ok(
        &[
            "get",
            "widget",
            "t1",
            "-n",
            "team",
            "-o",
            "jsonpath={.metadata.uid}",
        ],
        None,
    );
    let event = format!(
        "apiVersion: v1\nkind: Event\nmetadata:\n  name: t1.1\n  namespace: team\n\
         involvedObject:\n  apiVersion: example.com/v1\n  kind: Widget\n  name: t1\n  \
         namespace: team\n  uid: {uid}\nreason: Resized\nmessage: grew to 3\ntype: Normal\n\
         source:\n  component: widget-controller\ncount: 1\n"
    );
    assert_eq!(
        k.ok(&["create", "-f", "-"], Some(&event)),
        "event/t1.1 created\n"
    );
    let described = k.ok(&["describe", "widget", "t1", "-n", "team"], None);
    assert!(described.contains("Name:         t1"), "{described}");
    let events = described
        .split("Events:")
        .nth(1)
        .unwrap_or_else(|| panic!("no Events section: {described}"));
    let rows: Vec<Vec<String>> = words(events)
        .into_iter()
        .filter(|r| !r.is_empty())
        .collect();
    assert_eq!(
        rows[0],
        ["Type", "Reason", "Age", "From", "Message"],
        "{events}"
    );
    assert_eq!(rows[2][0..2], ["Normal", "Resized"], "{events}");
    assert!(
        events.contains("widget-controller") && events.contains("grew to 3"),
        "{events}"
    );
    let listed = words(&k.ok(&["get", "events", "-n", "team"], None));
    assert_eq!(listed[0][..2], ["LAST", "SEEN"], "{listed:?}");
    assert!(listed[1].contains(&"Resized".to_owned()), "{listed:?}");

    assert_eq!(
        k.ok(&["delete", "namespace", "team"], None),
        "namespace \"team\" deleted\n"
    );
}

/// Polls `kubectl get ... -o jsonpath=...` until it prints `want`.
fn wait_for_jsonpath(
    k: &Cluster,
    args: &[&str],
    want: &str,
    within: std::time::Duration,
) -> String {
    let deadline = std::time::Instant::now() + within;
    loop {
        let out = k.run(args, None, &[]);
        let got = text(&out.stdout);
        if got == want {
            return got;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "kubectl {args:?} printed {got:?}, not {want:?}, within {within:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn the_demo_runs_end_to_end_with_kubectl_alone() {
    use std::time::Duration;
    let k = Cluster::start_with(&["--controllers"]);
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/demo");
    let applied = k.ok(&["apply", "-f", demo], None);
    assert_eq!(
        applied,
        "managedfile.stead.dev/motd created\nprocessset.stead.dev/sleepers created\n\
         processset.stead.dev/crasher created\n"
    );
    wait_for_jsonpath(
        &k,
        &[
            "get",
            "processset",
            "sleepers",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ],
        "3",
        Duration::from_secs(30),
    );
    let sets = words(&k.ok(&["get", "processsets"], None));
    assert_eq!(sets[0], ["NAME", "DESIRED", "READY", "RESTARTS", "AGE"]);
    let all = k.ok(&["get", "all"], None);
    assert!(
        all.contains("processset.stead.dev/sleepers")
            && all.contains("process.stead.dev/sleepers-0")
            && all.contains("managedfile.stead.dev/motd"),
        "{all}"
    );

    // Drift: a killed process comes back with another pid.
    let pid_of = |name: &str| {
        k.ok(
            &["get", "process", name, "-o", "jsonpath={.status.pid}"],
            None,
        )
    };
    let victim = pid_of("sleepers-0");
    let status = Command::new("kill")
        .args(["-9", &victim])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = pid_of("sleepers-0");
        if !now.is_empty() && now != victim {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sleepers-0 was not restarted"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // A crash-looping command: its back-off grows (1 s, then 2 s).
    wait_for_jsonpath(
        &k,
        &[
            "get",
            "process",
            "crasher-0",
            "-o",
            "jsonpath={.status.restarts}",
        ],
        "2",
        Duration::from_secs(30),
    );
    let described = k.ok(&["describe", "process", "crasher-0"], None);
    assert!(
        described.contains("starting again in 1s") && described.contains("starting again in 2s"),
        "{described}"
    );

    // Scale through the /scale subresource; describe shows the set's events.
    assert_eq!(
        k.ok(&["scale", "processset", "sleepers", "--replicas=1"], None),
        "processset.stead.dev/sleepers scaled\n"
    );
    wait_for_jsonpath(
        &k,
        &[
            "get",
            "processset",
            "sleepers",
            "-o",
            "jsonpath={.status.replicas}",
        ],
        "1",
        Duration::from_secs(30),
    );
    let described = k.ok(&["describe", "processset", "sleepers"], None);
    assert!(
        described.contains("created process sleepers-2")
            && described.contains("deleting process sleepers-2 (scaled down)"),
        "{described}"
    );

    // Delete: kubectl waits for the finalizers; every process is stopped.
    let pids: Vec<String> = ["sleepers-0", "crasher-0"]
        .iter()
        .map(|p| pid_of(p))
        .collect();
    let deleted = k.ok(&["delete", "-f", demo], None);
    assert!(
        deleted.contains("processset.stead.dev \"sleepers\" deleted"),
        "{deleted}"
    );
    for pid in pids.iter().filter(|p| !p.is_empty()) {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z ")),
            "process {pid} outlived its ProcessSet"
        );
    }
    assert!(!std::path::Path::new("/tmp/stead-demo/motd").exists());
}
