//! Client traffic, recorded into a [`Recorder`]: etcd's KV mix and a Kubernetes-style
//! profile. Every written value is unique (`c<client>-<seq>`), so the watch can tell which
//! request made which revision.

use std::collections::HashMap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use stead_server::pb;
use tonic::transport::Channel;

use crate::cluster::{Endpoints, channel};
use crate::history::{Kv, Operation, Outcome, Recorder, Request, Response, TxnWrite};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// get, range, put, delete, txn CAS on mod_revision, put with lease, lease grant/revoke.
    Kv,
    /// create (txn mod_revision == 0), update and delete if mod_revision matches, get, list,
    /// all under `/registry/`.
    Kubernetes,
}

impl Profile {
    pub fn prefix(self) -> &'static str {
        match self {
            Profile::Kv => "/kv/",
            Profile::Kubernetes => "/registry/",
        }
    }

    fn keys(self) -> Vec<String> {
        match self {
            Profile::Kv => (0..8).map(|i| format!("/kv/k{i}")).collect(),
            Profile::Kubernetes => (0..12)
                .map(|i| format!("/registry/pods/default/pod-{i}"))
                .collect(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct TrafficConfig {
    pub profile: Profile,
    pub seed: u64,
    /// Pause between two requests of one client.
    pub pause: Duration,
    pub request_timeout: Duration,
    /// TTL of granted leases: longer than the run, so that no lease expires on its own.
    pub lease_ttl: i64,
}

struct Client {
    id: usize,
    cfg: TrafficConfig,
    rng: StdRng,
    seq: u64,
    keys: Vec<String>,
    /// The mod_revision this client last saw per key (what a Kubernetes client caches).
    known: HashMap<String, i64>,
    leases: Vec<i64>,
    revoked: Vec<i64>,
}

impl Client {
    fn value(&mut self) -> String {
        self.seq += 1;
        format!("c{}-{}", self.id, self.seq)
    }

    fn key(&mut self) -> String {
        let i = self.rng.random_range(0..self.keys.len());
        self.keys[i].clone()
    }

    fn known_rev(&mut self, key: &str) -> i64 {
        self.known.get(key).copied().unwrap_or(0)
    }

    fn next_kv(&mut self) -> Request {
        let roll = self.rng.random_range(0..100);
        let key = self.key();
        match roll {
            0..25 => Request::Get { key },
            25..35 => Request::Range {
                prefix: self.cfg.profile.prefix().to_string(),
            },
            35..60 => Request::Put {
                key,
                value: self.value(),
                lease: 0,
            },
            60..68 => Request::Delete { key },
            68..83 => Request::Txn {
                expected: self.known_rev(&key),
                key,
                write: TxnWrite::Put {
                    value: self.value(),
                },
            },
            83..91 if !self.leases.is_empty() => {
                let lease = self.leases[self.rng.random_range(0..self.leases.len())];
                Request::Put {
                    key,
                    value: self.value(),
                    lease,
                }
            }
            96..100 if !self.leases.is_empty() => {
                // Now and then a lease that is gone already: refused with NotFound.
                let id = if !self.revoked.is_empty() && self.rng.random_bool(0.2) {
                    self.revoked[self.rng.random_range(0..self.revoked.len())]
                } else {
                    let i = self.rng.random_range(0..self.leases.len());
                    let id = self.leases.swap_remove(i);
                    self.revoked.push(id);
                    id
                };
                Request::LeaseRevoke { id }
            }
            _ if self.leases.len() < 3 => {
                self.seq += 1;
                let id = ((self.id as i64 + 1) << 40) + self.seq as i64;
                self.leases.push(id);
                Request::LeaseGrant { id }
            }
            _ => Request::Get { key },
        }
    }

    fn next_kubernetes(&mut self) -> Request {
        let roll = self.rng.random_range(0..100);
        let key = self.key();
        match roll {
            0..25 => Request::Txn {
                key,
                expected: 0,
                write: TxnWrite::Put {
                    value: self.value(),
                },
            },
            25..60 => Request::Txn {
                expected: self.known_rev(&key),
                key,
                write: TxnWrite::Put {
                    value: self.value(),
                },
            },
            // Kubernetes deletes what it has seen: a known resource version.
            60..70 if self.known_rev(&key) != 0 => Request::Txn {
                expected: self.known_rev(&key),
                key,
                write: TxnWrite::Delete,
            },
            60..70 => Request::Get { key },
            70..80 => Request::Get { key },
            _ => Request::Range {
                prefix: self.cfg.profile.prefix().to_string(),
            },
        }
    }

    /// Remembers the mod_revisions a response reveals.
    fn learn(&mut self, req: &Request, resp: &Response) {
        let mut saw = |key: &str, kv: Option<&Kv>| {
            self.known
                .insert(key.to_string(), kv.map_or(0, |kv| kv.mod_revision));
        };
        match (req, resp) {
            (Request::Get { key }, Response::Get { kv, .. }) => saw(key, kv.as_ref()),
            (Request::Range { .. }, Response::Range { kvs, .. }) => {
                for key in self.keys.clone() {
                    self.known.insert(
                        key.clone(),
                        kvs.iter()
                            .find(|kv| kv.key == key)
                            .map_or(0, |kv| kv.mod_revision),
                    );
                }
            }
            (Request::Put { key, .. }, Response::Put { revision, .. }) => {
                self.known.insert(key.clone(), *revision);
            }
            (Request::Delete { key }, _) => saw(key, None),
            (
                Request::Txn { key, write, .. },
                Response::Txn {
                    revision,
                    succeeded,
                    kv,
                },
            ) => {
                if !*succeeded {
                    saw(key, kv.as_ref());
                } else if matches!(write, TxnWrite::Put { .. }) {
                    self.known.insert(key.clone(), *revision);
                } else {
                    saw(key, None);
                }
            }
            _ => {}
        }
    }
}

fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

fn revision(h: Option<&pb::ResponseHeader>) -> i64 {
    h.map_or(0, |h| h.revision)
}

/// Sends one request; the error is the gRPC status.
async fn execute(
    kv: &mut pb::kv_client::KvClient<Channel>,
    lease: &mut pb::lease_client::LeaseClient<Channel>,
    req: &Request,
    ttl: i64,
) -> Result<Response, tonic::Status> {
    use pb::request_op::Request as Op;
    Ok(match req {
        Request::Get { key } => {
            let r = kv
                .range(pb::RangeRequest {
                    key: key.as_bytes().to_vec(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            Response::Get {
                revision: revision(r.header.as_ref()),
                kv: r.kvs.first().map(Kv::from_pb),
            }
        }
        Request::Range { prefix } => {
            let r = kv
                .range(pb::RangeRequest {
                    key: prefix.as_bytes().to_vec(),
                    range_end: prefix_end(prefix),
                    ..Default::default()
                })
                .await?
                .into_inner();
            Response::Range {
                revision: revision(r.header.as_ref()),
                kvs: r.kvs.iter().map(Kv::from_pb).collect(),
            }
        }
        Request::Put { key, value, lease } => {
            let r = kv
                .put(pb::PutRequest {
                    key: key.as_bytes().to_vec(),
                    value: value.as_bytes().to_vec(),
                    lease: *lease,
                    prev_kv: true,
                    ..Default::default()
                })
                .await?
                .into_inner();
            Response::Put {
                revision: revision(r.header.as_ref()),
                prev: r.prev_kv.as_ref().map(Kv::from_pb),
            }
        }
        Request::Delete { key } => {
            let r = kv
                .delete_range(pb::DeleteRangeRequest {
                    key: key.as_bytes().to_vec(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            Response::Delete {
                revision: revision(r.header.as_ref()),
                deleted: r.deleted,
            }
        }
        Request::Txn {
            key,
            expected,
            write,
        } => {
            let k = key.as_bytes().to_vec();
            let success = match write {
                TxnWrite::Put { value } => Op::RequestPut(pb::PutRequest {
                    key: k.clone(),
                    value: value.as_bytes().to_vec(),
                    ..Default::default()
                }),
                TxnWrite::Delete => Op::RequestDeleteRange(pb::DeleteRangeRequest {
                    key: k.clone(),
                    ..Default::default()
                }),
            };
            let r = kv
                .txn(pb::TxnRequest {
                    compare: vec![pb::Compare {
                        result: pb::compare::CompareResult::Equal as i32,
                        target: pb::compare::CompareTarget::Mod as i32,
                        key: k.clone(),
                        target_union: Some(pb::compare::TargetUnion::ModRevision(*expected)),
                        ..Default::default()
                    }],
                    success: vec![pb::RequestOp {
                        request: Some(success),
                    }],
                    failure: vec![pb::RequestOp {
                        request: Some(Op::RequestRange(pb::RangeRequest {
                            key: k,
                            ..Default::default()
                        })),
                    }],
                })
                .await?
                .into_inner();
            let kv = if r.succeeded {
                None
            } else {
                match r.responses.first().and_then(|o| o.response.as_ref()) {
                    Some(pb::response_op::Response::ResponseRange(rr)) => {
                        rr.kvs.first().map(Kv::from_pb)
                    }
                    other => {
                        return Err(tonic::Status::internal(format!(
                            "harness: txn failure branch answered {other:?}"
                        )));
                    }
                }
            };
            Response::Txn {
                revision: revision(r.header.as_ref()),
                succeeded: r.succeeded,
                kv,
            }
        }
        Request::LeaseGrant { id } => {
            let r = lease
                .lease_grant(pb::LeaseGrantRequest { ttl, id: *id })
                .await?
                .into_inner();
            if !r.error.is_empty() {
                return Err(tonic::Status::unknown(r.error));
            }
            Response::LeaseGrant {
                revision: revision(r.header.as_ref()),
            }
        }
        Request::LeaseRevoke { id } => {
            let r = lease
                .lease_revoke(pb::LeaseRevokeRequest { id: *id })
                .await?
                .into_inner();
            Response::LeaseRevoke {
                revision: revision(r.header.as_ref()),
            }
        }
    })
}

/// Runs one client until `stop`, recording every request.
pub async fn run(
    id: usize,
    cfg: TrafficConfig,
    endpoints: Endpoints,
    recorder: Recorder,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let profile = cfg.profile;
    let mut c = Client {
        id,
        rng: StdRng::seed_from_u64(cfg.seed ^ (0xC11E_0000 + id as u64)),
        seq: 0,
        keys: profile.keys(),
        known: HashMap::new(),
        leases: Vec::new(),
        revoked: Vec::new(),
        cfg,
    };
    let mut target = id;
    let timeout = c.cfg.request_timeout;
    let connect = |target: usize| {
        let ch = channel(&endpoints.pick(target), Some(timeout));
        (
            pb::kv_client::KvClient::new(ch.clone()),
            pb::lease_client::LeaseClient::new(ch),
        )
    };
    let (mut kv, mut lease) = connect(target);
    // A lease grant or revoke without an answer is sent again (with the same id) until one
    // gets a definite answer, as a client library would: that bounds when the first one
    // could have taken effect.
    let mut resend: Option<(Request, u32)> = None;
    while !*stop.borrow() {
        let (request, attempt) = match resend.take() {
            Some(again) => again,
            None => match profile {
                Profile::Kv => (c.next_kv(), 0),
                Profile::Kubernetes => (c.next_kubernetes(), 0),
            },
        };
        let call = recorder.now();
        let sent = tokio::time::timeout(
            c.cfg.request_timeout + Duration::from_secs(1),
            execute(&mut kv, &mut lease, &request, c.cfg.lease_ttl),
        )
        .await;
        let ret = recorder.now();
        let (outcome, ret) = match sent {
            Ok(Ok(resp)) => {
                c.learn(&request, &resp);
                (Outcome::Ok(resp), ret)
            }
            Ok(Err(status))
                if status.code() == tonic::Code::NotFound
                    && status.message() == "etcdserver: requested lease not found" =>
            {
                (Outcome::LeaseNotFound, ret)
            }
            Ok(Err(status))
                if status.code() == tonic::Code::FailedPrecondition
                    && status.message() == "etcdserver: lease already exists" =>
            {
                (Outcome::LeaseExists, ret)
            }
            Ok(Err(status)) => (
                Outcome::Unknown {
                    error: format!("{:?}: {}", status.code(), status.message()),
                    applied_at: None,
                },
                Operation::NEVER,
            ),
            Err(_) => (
                Outcome::Unknown {
                    error: "client timeout".to_string(),
                    applied_at: None,
                },
                Operation::NEVER,
            ),
        };
        let failed = matches!(outcome, Outcome::Unknown { .. });
        if failed
            && attempt < 20
            && matches!(
                request,
                Request::LeaseGrant { .. } | Request::LeaseRevoke { .. }
            )
        {
            resend = Some((request.clone(), attempt + 1));
        }
        recorder.record(Operation {
            client: id,
            call,
            ret,
            request,
            outcome,
        });
        if failed {
            // Like a client library: try another member after a short back-off.
            target += 1;
            (kv, lease) = connect(target);
            tokio::time::sleep(Duration::from_millis(50)).await;
        } else if !c.cfg.pause.is_zero() {
            let jitter = c.rng.random_range(0..=c.cfg.pause.as_millis() as u64);
            tokio::time::sleep(Duration::from_millis(jitter)).await;
        }
    }
}
