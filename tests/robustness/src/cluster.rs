//! Real `stead serve` processes on 127.0.0.1: start, kill -9, pause, restart, add and
//! remove members. Each member's peer traffic goes through its [`proxy`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use stead_server::pb;
use tonic::transport::Channel;

use crate::proxy::{self, Network};

/// The path of the `stead` binary: `$STEAD_BIN`, else `stead` next to this executable's
/// profile directory (`target/<profile>/`), else `target/debug/stead`.
pub fn stead_bin() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("STEAD_BIN") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!("STEAD_BIN={} is not a file", p.display());
    }
    let exe = std::env::current_exe().context("finding the current executable")?;
    let mut candidates = Vec::new();
    for dir in exe.ancestors().skip(1).take(3) {
        candidates.push(dir.join("stead"));
        if let Some(target) = dir.parent() {
            candidates.push(target.join("debug").join("stead"));
        }
    }
    for c in &candidates {
        if c.is_file() {
            return Ok(c.clone());
        }
    }
    bail!(
        "the stead binary was not found (looked at {candidates:?}): build it with \
         `cargo build -p stead` (or `--release`), or point STEAD_BIN at it"
    )
}

/// A port that was free a moment ago and was not handed out before in this process.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let Ok(listener) = std::net::TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(addr) = listener.local_addr() else {
            continue;
        };
        if GIVEN
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(addr.port())
        {
            return addr.port();
        }
    }
}

/// A lazily connecting channel to a client endpoint (`127.0.0.1:port`).
pub fn channel(endpoint: &str, timeout: Option<Duration>) -> Channel {
    let mut e = match Channel::from_shared(format!("http://{endpoint}")) {
        Ok(e) => e,
        // Endpoints are built from ports; this cannot fail, but never panic on it.
        Err(_) => Channel::from_static("http://127.0.0.1:1"),
    }
    .connect_timeout(Duration::from_secs(1))
    .tcp_nodelay(true);
    if let Some(t) = timeout {
        e = e.timeout(t);
    }
    e.connect_lazy()
}

/// The client endpoints of the current members, shared with the clients.
#[derive(Clone, Default)]
pub struct Endpoints(Arc<RwLock<Vec<String>>>);

impl Endpoints {
    pub fn pick(&self, i: usize) -> String {
        let list = self.0.read().unwrap_or_else(|e| e.into_inner());
        if list.is_empty() {
            return "127.0.0.1:1".to_string();
        }
        list[i % list.len()].clone()
    }

    pub fn all(&self) -> Vec<String> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, list: Vec<String>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = list;
    }
}

pub struct Member {
    pub name: String,
    pub client_port: u16,
    peer_port: u16,
    pub proxy_port: u16,
    pub dir: PathBuf,
    initial_cluster: String,
    existing: bool,
    pub removed: bool,
    pub paused: bool,
    child: Option<Child>,
}

impl Member {
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.proxy_port)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

pub struct Cluster {
    bin: PathBuf,
    root: PathBuf,
    extra: Vec<String>,
    pub members: Vec<Member>,
    pub net: Network,
    pub endpoints: Endpoints,
}

impl Cluster {
    /// Starts `n` members (with `extra` flags each) under `root`, and waits for a leader.
    pub async fn start(
        bin: &Path,
        root: &Path,
        n: usize,
        extra: &[String],
    ) -> anyhow::Result<Cluster> {
        let mut c = Cluster {
            bin: bin.to_path_buf(),
            root: root.to_path_buf(),
            extra: extra.to_vec(),
            members: Vec::new(),
            net: Network::default(),
            endpoints: Endpoints::default(),
        };
        for _ in 0..n {
            c.reserve().await?;
        }
        let initial = c.initial_cluster(&c.active());
        for i in 0..n {
            c.members[i].initial_cluster = initial.clone();
            c.spawn(i)?;
        }
        c.update_endpoints();
        c.wait_healthy(Duration::from_secs(30)).await?;
        Ok(c)
    }

    /// Ports, proxy and directory for one more member (not started).
    async fn reserve(&mut self) -> anyhow::Result<usize> {
        let i = self.members.len();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding a peer proxy")?;
        let proxy_port = listener.local_addr().context("proxy address")?.port();
        let peer_port = free_port();
        tokio::spawn(proxy::serve(listener, i, peer_port, self.net.clone()));
        self.members.push(Member {
            name: format!("m{i}"),
            client_port: free_port(),
            peer_port,
            proxy_port,
            dir: self.root.join(format!("m{i}")),
            initial_cluster: String::new(),
            existing: false,
            removed: false,
            paused: false,
            child: None,
        });
        Ok(i)
    }

    fn initial_cluster(&self, members: &[usize]) -> String {
        members
            .iter()
            .map(|&i| format!("{}={}", self.members[i].name, self.members[i].peer_url()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Members not removed from the cluster.
    pub fn active(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| !self.members[i].removed)
            .collect()
    }

    fn update_endpoints(&self) {
        self.endpoints.set(
            self.active()
                .iter()
                .map(|&i| self.members[i].endpoint())
                .collect(),
        );
    }

    /// Starts (or restarts, on its data) member `i`.
    pub fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let m = &self.members[i];
        if m.child.is_some() {
            return Ok(());
        }
        let log_path = self.root.join(format!("{}.log", m.name));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let client = format!("http://{}", m.endpoint());
        let child = Command::new(&self.bin)
            .arg("serve")
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.dir)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args([
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{}", m.peer_port),
            ])
            .args(["--initial-advertise-peer-urls", &m.peer_url()])
            .args(["--initial-cluster", &m.initial_cluster])
            .args([
                "--initial-cluster-state",
                if m.existing { "existing" } else { "new" },
            ])
            .args(["--listen-api-url", ""])
            .args(&self.extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        self.net.set_pid(i, Some(child.id()));
        self.members[i].child = Some(child);
        self.members[i].paused = false;
        Ok(())
    }

    /// `kill -9`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.members[i].paused = false;
        self.net.set_pid(i, None);
    }

    fn signal(&self, i: usize, sig: &str) -> anyhow::Result<()> {
        let Some(pid) = self.members[i].pid() else {
            bail!("{} is not running", self.members[i].name);
        };
        let status = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill {sig} {pid} failed: {status}");
        }
        Ok(())
    }

    /// SIGSTOP.
    pub fn pause(&mut self, i: usize) -> anyhow::Result<()> {
        self.signal(i, "-STOP")?;
        self.members[i].paused = true;
        Ok(())
    }

    /// SIGCONT.
    pub fn resume(&mut self, i: usize) -> anyhow::Result<()> {
        if self.members[i].paused {
            self.signal(i, "-CONT")?;
            self.members[i].paused = false;
        }
        Ok(())
    }

    /// Whether any member process died on its own (not killed by the harness).
    pub fn crashed(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        for m in &mut self.members {
            if let Some(child) = m.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                out.push(format!("{} exited by itself: {status}", m.name));
                m.child = None;
            }
        }
        out
    }

    pub async fn status(&self, i: usize) -> Option<pb::StatusResponse> {
        let ch = channel(&self.members[i].endpoint(), Some(Duration::from_secs(2)));
        pb::maintenance_client::MaintenanceClient::new(ch)
            .status(pb::StatusRequest {})
            .await
            .ok()
            .map(|r| r.into_inner())
    }

    /// The member that all running, unpaused active members agree is the leader.
    pub async fn leader(&self) -> Option<usize> {
        let mut ids = Vec::new();
        let mut leaders = BTreeSet::new();
        for i in self.active() {
            let m = &self.members[i];
            if !m.is_running() || m.paused {
                continue;
            }
            let s = self.status(i).await?;
            ids.push((s.header.map_or(0, |h| h.member_id), i));
            leaders.insert(s.leader);
        }
        let leader = *leaders.iter().next()?;
        if leaders.len() != 1 || leader == 0 {
            return None;
        }
        ids.iter().find(|(id, _)| *id == leader).map(|&(_, i)| i)
    }

    /// The member id of `i`, from the member list.
    pub async fn member_id(&self, i: usize) -> anyhow::Result<u64> {
        let url = self.members[i].peer_url();
        for j in self.active() {
            let ch = channel(&self.members[j].endpoint(), Some(Duration::from_secs(2)));
            if let Ok(list) = pb::cluster_client::ClusterClient::new(ch)
                .member_list(pb::MemberListRequest {})
                .await
                && let Some(m) = list
                    .into_inner()
                    .members
                    .iter()
                    .find(|m| m.peer_ur_ls.contains(&url))
            {
                return Ok(m.id);
            }
        }
        bail!("{} ({url}) is in no member list", self.members[i].name)
    }

    /// Waits until the active members agree on a leader and a linearizable read works.
    pub async fn wait_healthy(&self, within: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + within;
        loop {
            if self.leader().await.is_some() {
                let mut ok = true;
                for i in self.active() {
                    let ch = channel(&self.members[i].endpoint(), Some(Duration::from_secs(3)));
                    let r = pb::kv_client::KvClient::new(ch)
                        .range(pb::RangeRequest {
                            key: b"health".to_vec(),
                            ..Default::default()
                        })
                        .await;
                    ok &= r.is_ok();
                }
                if ok {
                    return Ok(());
                }
            }
            if Instant::now() > until {
                bail!("the cluster did not become healthy within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Adds a member through `via` (MemberAdd, then a process started with
    /// `--initial-cluster-state existing`); returns its index.
    pub async fn add_member(&mut self, via: usize) -> anyhow::Result<usize> {
        let i = self.reserve().await?;
        let url = self.members[i].peer_url();
        let ch = channel(&self.members[via].endpoint(), Some(Duration::from_secs(10)));
        let added = pb::cluster_client::ClusterClient::new(ch)
            .member_add(pb::MemberAddRequest {
                peer_ur_ls: vec![url.clone()],
                is_learner: false,
            })
            .await;
        if let Err(e) = added {
            // The slot stays reserved but unused.
            self.members[i].removed = true;
            bail!("MemberAdd {url} via {}: {e}", self.members[via].name);
        }
        // The current members and the new one.
        self.members[i].initial_cluster = self.initial_cluster(&self.active());
        self.members[i].existing = true;
        self.spawn(i)?;
        self.update_endpoints();
        Ok(i)
    }

    /// Removes member `i` through `via` (MemberRemove), then stops it. Returns a note when
    /// MemberRemove failed but the member was removed all the same.
    pub async fn remove_member(&mut self, i: usize, via: usize) -> anyhow::Result<Option<String>> {
        let id = self.member_id(i).await?;
        let ch = channel(&self.members[via].endpoint(), Some(Duration::from_secs(10)));
        let removed = pb::cluster_client::ClusterClient::new(ch)
            .member_remove(pb::MemberRemoveRequest { id })
            .await;
        let mut refused_but_done = None;
        if let Err(e) = removed {
            // An error need not mean that nothing happened: look at the member list.
            tokio::time::sleep(Duration::from_secs(1)).await;
            if self.listed_by_others(i).await? {
                bail!("MemberRemove {id} via {}: {e}", self.members[via].name);
            }
            refused_but_done = Some(format!(
                "MemberRemove of {} via {} answered {:?} {:?}, yet the member was removed",
                self.members[i].name,
                self.members[via].name,
                e.code(),
                e.message()
            ));
        }
        self.members[i].removed = true;
        self.kill(i);
        self.update_endpoints();
        Ok(refused_but_done)
    }

    /// Whether the other members' member list still holds member `i`.
    async fn listed_by_others(&self, i: usize) -> anyhow::Result<bool> {
        let url = self.members[i].peer_url();
        for j in self.active().into_iter().filter(|&j| j != i) {
            let ch = channel(&self.members[j].endpoint(), Some(Duration::from_secs(3)));
            if let Ok(list) = pb::cluster_client::ClusterClient::new(ch)
                .member_list(pb::MemberListRequest {})
                .await
            {
                return Ok(list
                    .into_inner()
                    .members
                    .iter()
                    .any(|m| m.peer_ur_ls.contains(&url)));
            }
        }
        bail!("no other member answered MemberList")
    }

    /// Everything back to normal: links healed, paused members resumed, dead ones restarted.
    pub fn heal(&mut self) -> anyhow::Result<()> {
        self.net.heal();
        for i in self.active() {
            self.resume(i)?;
            self.spawn(i)?;
        }
        Ok(())
    }

    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let path = self.root.join(format!("{}.log", self.members[i].name));
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            let _ = self.resume(i);
            self.kill(i);
        }
    }
}
