//! Helpers for end-to-end tests: real `stead serve` and `etcd` processes on loopback ports,
//! and `etcdctl` invocations against them.

#![allow(dead_code)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Finds a tool on PATH or fails the test with a message saying how to get it.
pub(crate) fn require_tool(name: &str) -> PathBuf {
    require_tool_for(
        name,
        "The differential tests compare stead with the real etcd 3.4: install Debian's \
         packages with `apt-get install -y etcd-server etcd-client` (.ci/run does this).",
    )
}

/// Finds a tool on PATH or fails the test with `how_to_get_it`.
pub(crate) fn require_tool_for(name: &str, how_to_get_it: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("`{name}` is not on PATH. {how_to_get_it}");
}

/// A port that was free a moment ago and has not been handed out before in this process:
/// tests run in parallel threads, and two of them must never be given the same port.
pub(crate) fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = listener.local_addr().expect("local addr").port();
        if GIVEN.lock().unwrap_or_else(|e| e.into_inner()).insert(port) {
            return port;
        }
    }
}

/// A server process killed (SIGKILL) when dropped.
pub(crate) struct Proc {
    pub(crate) child: Child,
    pub(crate) endpoint: String,
    pub(crate) port: u16,
    pub(crate) data_dir: PathBuf,
    pub(crate) log: PathBuf,
}

impl Proc {
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub(crate) fn stead_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_stead"))
}

/// Waits until something accepts connections on `port`, or panics with the log.
fn wait_for_port(port: u16, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            // Something listens; make sure it is our child and not a stranger on the port.
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "server exited with {status} while port {port} answered:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "server exited with {status} before listening:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "server did not listen on {port} within 20 s:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// Starts `stead serve` with a fresh (or given) data directory on a free client port.
pub(crate) fn start_stead(data_dir: &Path, extra: &[&str]) -> Proc {
    let port = free_port();
    let peer = free_port();
    start_stead_on(data_dir, port, peer, extra)
}

pub(crate) fn start_stead_on(data_dir: &Path, port: u16, peer: u16, extra: &[&str]) -> Proc {
    let log = data_dir.with_extension("log");
    let log_file = std::fs::File::create(&log).expect("create log");
    let scheme = if extra.contains(&"--cert-file") {
        "https"
    } else {
        "http"
    };
    let client = format!("{scheme}://127.0.0.1:{port}");
    let peer_scheme = if extra.contains(&"--peer-cert-file") {
        "https"
    } else {
        "http"
    };
    let peer_url = format!("{peer_scheme}://127.0.0.1:{peer}");
    let mut child = Command::new(stead_bin())
        .arg("serve")
        .args(["--data-dir", data_dir.to_str().expect("utf-8 path")])
        .args(["--listen-client-urls", &client])
        .args(["--advertise-client-urls", &client])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(if extra.contains(&"--initial-cluster") {
            Vec::new()
        } else {
            vec![
                "--initial-cluster".to_string(),
                format!("default={peer_url}"),
            ]
        })
        .args(if extra.contains(&"--listen-api-url") {
            Vec::new()
        } else {
            // Never the default port 6443: tests run side by side.
            vec![
                "--listen-api-url".to_string(),
                format!("http://127.0.0.1:{}", free_port()),
            ]
        })
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("spawn stead");
    wait_for_port(port, &mut child, &log);
    Proc {
        child,
        endpoint: format!("127.0.0.1:{port}"),
        port,
        data_dir: data_dir.to_path_buf(),
        log,
    }
}

/// Starts a real etcd 3.4 single member.
pub(crate) fn start_etcd(data_dir: &Path) -> Proc {
    start_etcd_with(data_dir, &[])
}

/// Starts a real etcd 3.4 single member with extra flags (e.g. `--quota-backend-bytes`).
pub(crate) fn start_etcd_with(data_dir: &Path, extra: &[&str]) -> Proc {
    let etcd = require_tool("etcd");
    let port = free_port();
    let peer = free_port();
    let log = data_dir.with_extension("log");
    let log_file = std::fs::File::create(&log).expect("create log");
    let client = format!("http://127.0.0.1:{port}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let mut child = Command::new(etcd)
        .args(["--data-dir", data_dir.to_str().expect("utf-8 path")])
        .args(["--listen-client-urls", &client])
        .args(["--advertise-client-urls", &client])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("default={peer_url}")])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("spawn etcd");
    wait_for_port(port, &mut child, &log);
    let proc = Proc {
        child,
        endpoint: format!("127.0.0.1:{port}"),
        port,
        data_dir: data_dir.to_path_buf(),
        log,
    };
    // etcd accepts connections before it has elected itself; wait for a committed proposal.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = etcdctl(&proc.endpoint, &["endpoint", "health"], None);
        if out.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "etcd did not become healthy");
        std::thread::sleep(Duration::from_millis(100));
    }
    proc
}

/// Runs etcdctl (API v3) against `endpoint`.
pub(crate) fn etcdctl(endpoint: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(require_tool("etcdctl"));
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg("--command-timeout=5s")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn etcdctl");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write etcdctl stdin");
    }
    child.wait_with_output().expect("etcdctl output")
}

/// Runs a long-lived etcdctl command (e.g. `watch`) for `dur`, then kills it and returns
/// what it printed.
pub(crate) fn etcdctl_for(endpoint: &str, args: &[&str], dur: Duration) -> String {
    let mut child = Command::new(require_tool("etcdctl"))
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn etcdctl");
    std::thread::sleep(dur);
    let _ = child.kill();
    let out = child.wait_with_output().expect("etcdctl output");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A cluster of `stead serve` members on loopback, all started with the same
/// `--initial-cluster`.
pub(crate) struct Cluster {
    pub(crate) members: Vec<Option<Proc>>,
    pub(crate) dirs: Vec<PathBuf>,
    pub(crate) ports: Vec<(u16, u16)>,
    initial_cluster: String,
    extra: Vec<String>,
}

impl Cluster {
    pub(crate) fn start(root: &Path, n: usize) -> Cluster {
        Cluster::start_with(root, n, &[])
    }

    /// A cluster whose members all get `extra` flags (peer URLs are https when they
    /// include `--peer-cert-file`).
    pub(crate) fn start_with(root: &Path, n: usize, extra: &[&str]) -> Cluster {
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let scheme = if extra.contains(&"--peer-cert-file") {
            "https"
        } else {
            "http"
        };
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}={scheme}://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let dirs: Vec<PathBuf> = (0..n).map(|i| root.join(format!("m{i}"))).collect();
        let mut cluster = Cluster {
            members: (0..n).map(|_| None).collect(),
            dirs,
            ports,
            initial_cluster,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        for i in 0..n {
            cluster.restart(i);
        }
        cluster
    }

    /// Starts (or restarts, with its data) member `i`.
    pub(crate) fn restart(&mut self, i: usize) {
        let (client, peer) = self.ports[i];
        let name = format!("m{i}");
        let mut args = vec!["--name", &name, "--initial-cluster", &self.initial_cluster];
        args.extend(self.extra.iter().map(String::as_str));
        let proc = start_stead_on(&self.dirs[i], client, peer, &args);
        self.members[i] = Some(proc);
    }

    pub(crate) fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.members[i].take() {
            p.kill();
        }
    }

    /// Reserves ports and a data directory for a new member (not started; announce it
    /// with `member add`, then start it with [`Cluster::start_joining`]); returns its index.
    pub(crate) fn reserve(&mut self, root: &Path) -> usize {
        let i = self.members.len();
        let (client, peer) = (free_port(), free_port());
        self.ports.push((client, peer));
        self.dirs.push(root.join(format!("m{i}")));
        self.members.push(None);
        self.initial_cluster
            .push_str(&format!(",m{i}=http://127.0.0.1:{peer}"));
        i
    }

    /// Starts a reserved member with `--initial-cluster-state existing`.
    pub(crate) fn start_joining(&mut self, i: usize) {
        let (client, peer) = self.ports[i];
        let name = format!("m{i}");
        let mut args = vec![
            "--name",
            &name,
            "--initial-cluster",
            &self.initial_cluster,
            "--initial-cluster-state",
            "existing",
        ];
        args.extend(self.extra.iter().map(String::as_str));
        self.members[i] = Some(start_stead_on(&self.dirs[i], client, peer, &args));
    }

    pub(crate) fn peer_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[i].1)
    }

    pub(crate) fn endpoint(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.ports[i].0)
    }
}
