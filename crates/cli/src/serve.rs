//! `stead serve`: flags named after etcd's, so etcd deploy scripts port over.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use stead_server::{Server, ServerConfig, TlsFiles};
use url::Url;

/// Applied entries between Raft snapshots unless told otherwise: etcd's default. Every
/// snapshot writes out the whole keyspace, so taking them often costs writes their speed.
pub(crate) const SNAPSHOT_COUNT: u64 = 100_000;

#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// Human-readable name of this member.
    #[arg(long, default_value = "default")]
    name: String,
    /// Also run the demo controllers (ProcessSet, Process, ManagedFile) against this
    /// member's REST API; with several members, one runs them at a time (leader election).
    #[arg(long)]
    controllers: bool,
    /// Directory holding the data.
    #[arg(long, default_value = "stead.data")]
    data_dir: PathBuf,
    /// Comma-separated URLs to serve clients on.
    #[arg(long, default_value = "http://127.0.0.1:2379", value_delimiter = ',')]
    listen_client_urls: Vec<Url>,
    /// Comma-separated client URLs advertised to the cluster (default: the listen URLs).
    #[arg(long, value_delimiter = ',')]
    advertise_client_urls: Vec<Url>,
    /// Comma-separated URLs to serve peers on.
    #[arg(long, default_value = "http://127.0.0.1:2380", value_delimiter = ',')]
    listen_peer_urls: Vec<Url>,
    /// Comma-separated peer URLs advertised to the cluster (default: the listen peer URLs).
    #[arg(long, value_delimiter = ',')]
    initial_advertise_peer_urls: Vec<Url>,
    /// Initial cluster: name=peerURL,name=peerURL,... (default: this member alone).
    #[arg(long)]
    initial_cluster: Option<String>,
    /// `new` to form a cluster, `existing` to join one.
    #[arg(long, default_value = "new", value_parser = ["new", "existing"])]
    initial_cluster_state: String,
    /// Token that distinguishes clusters started from the same configuration.
    #[arg(long, default_value = "etcd-cluster")]
    initial_cluster_token: String,
    /// Client TLS certificate.
    #[arg(long)]
    cert_file: Option<PathBuf>,
    /// Client TLS key.
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// CA that signs client certificates.
    #[arg(long)]
    trusted_ca_file: Option<PathBuf>,
    /// Refuse clients without a certificate signed by --trusted-ca-file.
    #[arg(long)]
    client_cert_auth: bool,
    /// Peer TLS certificate.
    #[arg(long)]
    peer_cert_file: Option<PathBuf>,
    /// Peer TLS key.
    #[arg(long)]
    peer_key_file: Option<PathBuf>,
    /// CA that signs peer certificates.
    #[arg(long)]
    peer_trusted_ca_file: Option<PathBuf>,
    /// Refuse peers without a certificate signed by --peer-trusted-ca-file.
    #[arg(long)]
    peer_client_cert_auth: bool,
    /// Backend size (bytes) above which writes are refused with the NOSPACE alarm.
    #[arg(long, default_value_t = 2 << 30)]
    quota_backend_bytes: u64,
    /// Page cache of the backend (bytes). Reads beyond it come from the OS page cache.
    #[arg(long, default_value_t = 16 << 20)]
    backend_cache_bytes: usize,
    /// Applied entries between Raft snapshots; the log behind a snapshot is then purged.
    #[arg(long, default_value_t = SNAPSHOT_COUNT)]
    snapshot_count: u64,
    /// Log entries kept behind a snapshot so that slow followers catch up from the log.
    #[arg(long = "experimental-snapshot-catchup-entries", default_value_t = 1000)]
    snapshot_catchup_entries: u64,
    /// Interval of watch progress notifications (e.g. 10m, 30s, 500ms).
    #[arg(long = "experimental-watch-progress-notify-interval", default_value = "10m", value_parser = parse_duration)]
    progress_notify_interval: Duration,
    /// URL of the Kubernetes-shaped REST API (`/apis/...`); empty to serve none.
    #[arg(long, default_value = "http://127.0.0.1:6443")]
    listen_api_url: String,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("duration {s:?} needs a unit (ms, s, m, h)"))?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => {
            return Err(format!(
                "duration {s:?}: unknown unit {unit:?} (ms, s, m, h)"
            ));
        }
    })
}

fn parse_initial_cluster(s: &str) -> anyhow::Result<Vec<(String, Url)>> {
    s.split(',')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (name, url) = part
                .split_once('=')
                .with_context(|| format!("--initial-cluster entry {part:?} is not name=URL"))?;
            let url = Url::parse(url)
                .with_context(|| format!("--initial-cluster entry {part:?} has a bad URL"))?;
            Ok((name.to_string(), url))
        })
        .collect()
}

impl ServeArgs {
    fn into_config(self) -> anyhow::Result<ServerConfig> {
        let advertise_peer = if self.initial_advertise_peer_urls.is_empty() {
            self.listen_peer_urls.clone()
        } else {
            self.initial_advertise_peer_urls
        };
        let initial_cluster = match &self.initial_cluster {
            Some(s) => parse_initial_cluster(s)?,
            None => advertise_peer
                .iter()
                .map(|u| (self.name.clone(), u.clone()))
                .collect(),
        };
        if !initial_cluster.iter().any(|(n, _)| *n == self.name) {
            bail!(
                "--initial-cluster does not list this member's name {:?}",
                self.name
            );
        }
        let client_tls = match (self.cert_file, self.key_file) {
            (Some(cert_file), Some(key_file)) => Some(TlsFiles {
                cert_file,
                key_file,
                trusted_ca_file: self.trusted_ca_file,
                client_cert_auth: self.client_cert_auth,
            }),
            (None, None) if self.client_cert_auth => {
                bail!("--client-cert-auth needs --cert-file, --key-file and --trusted-ca-file")
            }
            (None, None) => None,
            _ => bail!("--cert-file and --key-file must be given together"),
        };
        let peer_tls = match (self.peer_cert_file, self.peer_key_file) {
            (Some(cert_file), Some(key_file)) => Some(TlsFiles {
                cert_file,
                key_file,
                trusted_ca_file: self.peer_trusted_ca_file,
                client_cert_auth: self.peer_client_cert_auth,
            }),
            (None, None) if self.peer_client_cert_auth => {
                bail!(
                    "--peer-client-cert-auth needs --peer-cert-file, --peer-key-file and \
                     --peer-trusted-ca-file"
                )
            }
            (None, None) => None,
            _ => bail!("--peer-cert-file and --peer-key-file must be given together"),
        };
        let listen_api_url = match self.listen_api_url.as_str() {
            "" => None,
            url => Some(Url::parse(url).with_context(|| format!("--listen-api-url {url:?}"))?),
        };
        Ok(ServerConfig {
            listen_api_url,
            name: self.name,
            data_dir: self.data_dir,
            advertise_client_urls: if self.advertise_client_urls.is_empty() {
                self.listen_client_urls.clone()
            } else {
                self.advertise_client_urls
            },
            listen_client_urls: self.listen_client_urls,
            listen_peer_urls: self.listen_peer_urls,
            initial_advertise_peer_urls: advertise_peer,
            initial_cluster,
            initial_cluster_state_new: self.initial_cluster_state == "new",
            initial_cluster_token: self.initial_cluster_token,
            client_tls,
            peer_tls,
            quota_backend_bytes: self.quota_backend_bytes,
            backend_cache_bytes: self.backend_cache_bytes,
            snapshot_count: self.snapshot_count,
            snapshot_catchup_entries: self.snapshot_catchup_entries,
            progress_notify_interval: self.progress_notify_interval,
        })
    }
}

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let controllers = args.controllers;
    let config = args.into_config()?;
    let data_dir = config.data_dir.clone();
    let server = Server::start(config)
        .await
        .with_context(|| format!("cannot start (data dir {})", data_dir.display()))?;
    for addr in &server.client_addrs {
        tracing::info!(%addr, "ready to serve client requests");
    }
    if let Some(addr) = server.api_addr {
        tracing::info!(%addr, "ready to serve the REST API");
    }
    let controllers = match (controllers, server.api_addr) {
        (false, _) => None,
        (true, Some(addr)) => {
            let client = stead_controller::HttpClient::new(&format!("http://{addr}"))?;
            let identity = crate::controllers::default_identity();
            Some(tokio::spawn(crate::controllers::run_elected(
                client,
                identity,
                "default".into(),
                crate::controllers::LEASE_NAME.into(),
                stead_controller::Metrics::new(),
                shutdown_signal(),
            )))
        }
        (true, None) => bail!("--controllers needs the REST API (--listen-api-url)"),
    };
    server
        .run_until(async {
            shutdown_signal().await;
            tracing::info!("shutting down");
        })
        .await;
    if let Some(task) = controllers {
        task.abort();
    }
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending().await,
            }
        } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_etcd_style_units() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn initial_cluster_entries_must_be_name_equals_url() {
        let parsed = parse_initial_cluster("a=http://127.0.0.1:2380,b=http://127.0.0.1:2381");
        assert_eq!(parsed.map(|v| v.len()).ok(), Some(2));
        assert!(parse_initial_cluster("a").is_err());
        assert!(parse_initial_cluster("a=not a url").is_err());
    }
}
