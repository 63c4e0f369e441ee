//! TCP proxies on the peer links, to partition members on loopback.
//!
//! ```text
//!   member a ──► proxy of b (advertised peer URL of b) ──► b's real peer listener
//! ```
//!
//! Every member advertises its proxy's address as its peer URL, so every connection to a
//! member goes through that member's proxy. The proxy finds out which member opened a
//! connection by looking the socket up in `/proc/net/tcp` and the members' `/proc/<pid>/fd`
//! (Linux only), so faults apply to directed links: a connection opened by `a` to `b`
//! carries a's requests and b's answers, and a fault on the link a→b affects exactly those.
//!
//! Faults, per directed link:
//! - [`LinkFault::Blackhole`]: bytes stop flowing both ways (RPCs hang until their
//!   timeouts); when the fault clears the connection is closed, as a stalled TCP connection
//!   eventually would be, and the member reconnects;
//! - [`LinkFault::Delay`]: every chunk waits before it is forwarded;
//! - [`LinkFault::Drop`]: each chunk resets the connection with a probability (TCP cannot
//!   lose bytes without breaking the stream, so a loss is a reset).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LinkFault {
    Blackhole,
    Delay(Duration),
    Drop(f64),
}

/// Which member is which process (for the `/proc` lookup) and the faults in force.
#[derive(Clone, Default)]
pub struct Network {
    inner: Arc<Mutex<NetState>>,
    changed: Arc<Mutex<Option<watch::Sender<u64>>>>,
    pub unidentified: Arc<AtomicU64>,
    pub connections: Arc<AtomicU64>,
}

#[derive(Default)]
struct NetState {
    pids: HashMap<usize, u32>,
    faults: HashMap<(usize, usize), LinkFault>,
    epoch: u64,
}

impl Network {
    fn lock(&self) -> std::sync::MutexGuard<'_, NetState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        let mut guard = self.changed.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(0);
                *guard = Some(tx);
                rx
            }
        }
    }

    fn notify(&self) {
        let epoch = {
            let mut s = self.lock();
            s.epoch += 1;
            s.epoch
        };
        if let Some(tx) = self
            .changed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let _ = tx.send(epoch);
        }
    }

    pub fn set_pid(&self, member: usize, pid: Option<u32>) {
        let mut s = self.lock();
        match pid {
            Some(p) => s.pids.insert(member, p),
            None => s.pids.remove(&member),
        };
    }

    pub fn set(&self, from: usize, to: usize, fault: LinkFault) {
        self.lock().faults.insert((from, to), fault);
        self.notify();
    }

    /// Faults every link into and out of `member`.
    pub fn isolate(&self, member: usize, others: &[usize], fault: LinkFault) {
        {
            let mut s = self.lock();
            for &o in others.iter().filter(|&&o| o != member) {
                s.faults.insert((member, o), fault);
                s.faults.insert((o, member), fault);
            }
        }
        self.notify();
    }

    pub fn heal(&self) {
        self.lock().faults.clear();
        self.notify();
    }

    /// The fault on a connection from `from` (None: not identified) to `to`. An unidentified
    /// source gets the fault only if every link into `to` has the same one.
    fn fault(&self, from: Option<usize>, to: usize) -> Option<LinkFault> {
        let s = self.lock();
        match from {
            Some(f) => s.faults.get(&(f, to)).copied(),
            None => {
                let mut into = s
                    .pids
                    .keys()
                    .filter(|&&m| m != to)
                    .map(|&m| s.faults.get(&(m, to)).copied());
                let first = into.next().flatten();
                if into.all(|f| f == first) {
                    first
                } else {
                    None
                }
            }
        }
    }

    /// The member whose process owns the client end of a connection from `peer` to
    /// `local` (loopback addresses as seen by the proxy).
    fn identify(&self, peer: std::net::SocketAddr, local_port: u16) -> Option<usize> {
        let inode = socket_inode(peer.port(), local_port)?;
        let needle = format!("socket:[{inode}]");
        let pids: Vec<(usize, u32)> = self.lock().pids.iter().map(|(&m, &p)| (m, p)).collect();
        for (member, pid) in pids {
            let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
                continue;
            };
            for fd in dir.flatten() {
                if std::fs::read_link(fd.path())
                    .is_ok_and(|l| l.to_string_lossy() == needle.as_str())
                {
                    return Some(member);
                }
            }
        }
        None
    }
}

/// The inode of the socket whose local port is `local` and remote port is `remote`.
fn socket_inode(local: u16, remote: u16) -> Option<u64> {
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 10 {
                continue;
            }
            let port = |addr: &str| {
                addr.rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
            };
            if port(cols[1]) == Some(local) && port(cols[2]) == Some(remote) {
                return cols[9].parse().ok();
            }
        }
    }
    None
}

/// Accepts on `listener` forever, forwarding to `target` (member `to`'s real peer port).
pub async fn serve(listener: TcpListener, to: usize, target: u16, net: Network) {
    let local_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    loop {
        let Ok((inbound, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let net = net.clone();
        tokio::spawn(async move {
            net.connections.fetch_add(1, Ordering::Relaxed);
            let from = net.identify(peer, local_port);
            if from.is_none() {
                net.unidentified.fetch_add(1, Ordering::Relaxed);
            }
            let _ = inbound.set_nodelay(true);
            let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)).await else {
                return;
            };
            let _ = outbound.set_nodelay(true);
            let (ri, wi) = inbound.into_split();
            let (ro, wo) = outbound.into_split();
            let link = Link { net, from, to };
            tokio::select! {
                _ = link.pump(ri, wo) => {}
                _ = link.pump(ro, wi) => {}
            }
        });
    }
}

struct Link {
    net: Network,
    from: Option<usize>,
    to: usize,
}

impl Link {
    /// Waits while the link is blackholed; returns when it clears.
    async fn hold(&self) {
        let mut changes = self.net.subscribe();
        while self.net.fault(self.from, self.to) == Some(LinkFault::Blackhole) {
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    /// Copies one direction until EOF, an error, or a fault that ends the connection.
    async fn pump(
        &self,
        mut r: tokio::net::tcp::OwnedReadHalf,
        mut w: tokio::net::tcp::OwnedWriteHalf,
    ) {
        let mut buf = vec![0u8; 64 * 1024];
        let mut changes = self.net.subscribe();
        loop {
            if self.net.fault(self.from, self.to) == Some(LinkFault::Blackhole) {
                self.hold().await;
                return;
            }
            let n = tokio::select! {
                n = r.read(&mut buf) => match n {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                },
                c = changes.changed() => {
                    if c.is_err() {
                        return;
                    }
                    continue;
                }
            };
            match self.net.fault(self.from, self.to) {
                Some(LinkFault::Blackhole) => {
                    self.hold().await;
                    return;
                }
                Some(LinkFault::Delay(d)) => tokio::time::sleep(d).await,
                Some(LinkFault::Drop(p)) if rand::rng().random_bool(p.clamp(0.0, 1.0)) => return,
                Some(LinkFault::Drop(_)) | None => {}
            }
            if w.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }
}
