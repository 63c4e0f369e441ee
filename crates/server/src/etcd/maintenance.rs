//! `etcdserverpb.Maintenance`.

use std::pin::Pin;

use futures::Stream;
use stead_store::AlarmType;
use tonic::{Request, Response, Status};

use super::{ETCD_VERSION, EtcdApi};
use crate::pb;
use crate::status::to_status;

/// Snapshot stream chunk size (etcd's).
const SNAPSHOT_CHUNK: usize = 32 * 1024;

fn alarm_to_pb(alarm: AlarmType) -> i32 {
    match alarm {
        AlarmType::NoSpace => pb::AlarmType::Nospace as i32,
        AlarmType::Corrupt => pb::AlarmType::Corrupt as i32,
    }
}

fn alarm_from_pb(alarm: i32) -> Option<AlarmType> {
    match pb::AlarmType::try_from(alarm) {
        Ok(pb::AlarmType::Nospace) => Some(AlarmType::NoSpace),
        Ok(pb::AlarmType::Corrupt) => Some(AlarmType::Corrupt),
        _ => None,
    }
}

impl EtcdApi {
    pub async fn alarm_pb(&self, req: pb::AlarmRequest) -> Result<pb::AlarmResponse, Status> {
        use pb::alarm_request::AlarmAction;
        self.metrics().count("Alarm");
        let to_members = |alarms: Vec<(u64, AlarmType)>| -> Vec<pb::AlarmMember> {
            alarms
                .into_iter()
                .map(|(member_id, alarm)| pb::AlarmMember {
                    member_id,
                    alarm: alarm_to_pb(alarm),
                })
                .collect()
        };
        let store = self.store();
        let alarms = match AlarmAction::try_from(req.action) {
            Ok(AlarmAction::Get) => to_members(store.alarms().await.map_err(to_status)?),
            Ok(action @ (AlarmAction::Activate | AlarmAction::Deactivate)) => {
                let Some(alarm) = alarm_from_pb(req.alarm) else {
                    return Ok(pb::AlarmResponse::default());
                };
                let activate = action == AlarmAction::Activate;
                let before = store.alarms().await.map_err(to_status)?;
                let was_active = before.contains(&(req.member_id, alarm));
                store
                    .alarm(activate, req.member_id, alarm)
                    .await
                    .map_err(to_status)?;
                // etcd answers with the alarm that changed state.
                if activate != was_active {
                    to_members(vec![(req.member_id, alarm)])
                } else {
                    Vec::new()
                }
            }
            Err(_) => return Err(Status::invalid_argument("etcdserver: unknown alarm action")),
        };
        // etcd answers alarms straight from its applier, without a response header.
        Ok(pb::AlarmResponse {
            header: None,
            alarms,
        })
    }

    pub async fn status_pb(&self) -> Result<pb::StatusResponse, Status> {
        self.metrics().count("Status");
        let store = self.store();
        let (db_size, in_use) = store.size().await.map_err(to_status)?;
        let applied = store.applied_index().await.map_err(to_status)? as u64;
        let errors = store
            .alarms()
            .await
            .map_err(to_status)?
            .into_iter()
            .map(|(member, alarm)| match alarm {
                AlarmType::NoSpace => format!("memberID:{member} alarm:NOSPACE "),
                AlarmType::Corrupt => format!("memberID:{member} alarm:CORRUPT "),
            })
            .collect();
        let header = self.current_header();
        let (leader, raft_index, raft_applied_index, is_learner) = match self.raft_status() {
            Some(s) => (
                s.leader.unwrap_or(0),
                s.last_log_index,
                s.applied_index,
                s.learners.contains(&self.inner.member.id),
            ),
            None => (self.inner.member.id, applied, applied, false),
        };
        Ok(pb::StatusResponse {
            version: ETCD_VERSION.to_string(),
            db_size: db_size as i64,
            leader,
            raft_index,
            raft_term: header.raft_term,
            raft_applied_index,
            errors,
            db_size_in_use: in_use as i64,
            is_learner,
            header: Some(header),
        })
    }

    pub async fn defragment_pb(&self) -> Result<pb::DefragmentResponse, Status> {
        self.metrics().count("Defragment");
        self.store().defragment().await.map_err(to_status)?;
        // etcd's defragment response carries no header.
        Ok(pb::DefragmentResponse { header: None })
    }

    pub async fn hash_pb(&self) -> Result<pb::HashResponse, Status> {
        self.metrics().count("Hash");
        let hash = self.store().hash().await.map_err(to_status)?;
        Ok(pb::HashResponse {
            header: Some(self.current_header()),
            hash,
        })
    }

    pub async fn hash_kv_pb(&self, req: pb::HashKvRequest) -> Result<pb::HashKvResponse, Status> {
        self.metrics().count("HashKV");
        let (hash, compact_revision, current) = self
            .store()
            .hash_kv(req.revision)
            .await
            .map_err(to_status)?;
        Ok(pb::HashKvResponse {
            header: Some(self.header(current)),
            hash,
            // etcd's compaction revision starts at -1 ("never compacted"), and HashKV shows it.
            compact_revision: if compact_revision == 0 {
                -1
            } else {
                compact_revision
            },
        })
    }

    /// The snapshot as etcd streams it: 32 KiB blobs of the payload, then one message whose
    /// blob is the payload's SHA-256.
    pub async fn snapshot_pb(&self) -> Result<Vec<pb::SnapshotResponse>, Status> {
        self.metrics().count("Snapshot");
        let framed = self.store().snapshot().await.map_err(to_status)?;
        let (payload, digest) = framed.split_at(framed.len() - 32);
        let header = self.current_header();
        let mut remaining = framed.len() as u64;
        let mut parts = Vec::new();
        for chunk in payload
            .chunks(SNAPSHOT_CHUNK)
            .chain(std::iter::once(digest))
        {
            remaining -= chunk.len() as u64;
            parts.push(pb::SnapshotResponse {
                header: Some(header),
                remaining_bytes: remaining,
                blob: chunk.to_vec(),
            });
        }
        Ok(parts)
    }
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<pb::SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::maintenance_server::Maintenance for EtcdApi {
    async fn alarm(
        &self,
        request: Request<pb::AlarmRequest>,
    ) -> Result<Response<pb::AlarmResponse>, Status> {
        self.alarm_pb(request.into_inner()).await.map(Response::new)
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        self.status_pb().await.map(Response::new)
    }

    async fn defragment(
        &self,
        _request: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        self.defragment_pb().await.map(Response::new)
    }

    async fn hash(
        &self,
        _request: Request<pb::HashRequest>,
    ) -> Result<Response<pb::HashResponse>, Status> {
        self.hash_pb().await.map(Response::new)
    }

    async fn hash_kv(
        &self,
        request: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        self.hash_kv_pb(request.into_inner())
            .await
            .map(Response::new)
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(
        &self,
        _request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        let parts = self.snapshot_pb().await?;
        Ok(Response::new(Box::pin(futures::stream::iter(
            parts.into_iter().map(Ok),
        ))))
    }

    async fn move_leader(
        &self,
        request: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        let target = request.into_inner().target_id;
        match &self.inner.cluster {
            Some(member) => member.move_leader(target).await?,
            None if target == self.inner.member.id => {}
            None => {
                return Err(Status::failed_precondition(
                    "etcdserver: bad leader transferee",
                ));
            }
        }
        Ok(Response::new(pb::MoveLeaderResponse {
            header: Some(self.current_header()),
        }))
    }
}
