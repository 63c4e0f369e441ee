//! `etcdserverpb.Cluster`. A single-node server reports itself; membership changes need a
//! replicated cluster and are refused with etcd's errors.

use tonic::{Request, Response, Status};

use stead_store::raft::NodeInfo;

use super::EtcdApi;
use crate::cluster::MemberChange;
use crate::pb;

impl EtcdApi {
    pub fn member_list_pb(&self) -> pb::MemberListResponse {
        self.metrics().count("MemberList");
        let members = match self.raft_status() {
            None => vec![self.inner.member.to_pb()],
            Some(status) => status
                .members
                .iter()
                .map(|(id, node)| {
                    if *id == self.inner.member.id {
                        return self.inner.member.to_pb();
                    }
                    pb::Member {
                        id: *id,
                        name: node.name.clone(),
                        peer_ur_ls: vec![node.peer_url.clone()],
                        client_ur_ls: node.client_urls.clone(),
                        is_learner: status.learners.contains(id),
                    }
                })
                .collect(),
        };
        pb::MemberListResponse {
            // etcd's cluster responses carry no revision.
            header: Some(self.header(0)),
            members,
        }
    }

    fn unknown_member(&self, id: u64) -> Status {
        if id == self.inner.member.id {
            Status::failed_precondition(
                "etcdserver: re-configuration failed due to not enough started members",
            )
        } else {
            Status::not_found("etcdserver: member not found")
        }
    }
}

fn single_node() -> Status {
    Status::unimplemented(
        "etcdserver: membership changes need a member started with --initial-cluster peers",
    )
}

impl EtcdApi {
    async fn change(&self, change: MemberChange) -> Result<Vec<pb::Member>, Status> {
        let Some(member) = &self.inner.cluster else {
            return Err(single_node());
        };
        member.change_members(change).await?;
        Ok(self.member_list_pb().members)
    }

    fn peer_member_id(&self, peer_url: &str) -> u64 {
        crate::serve::member_id(&[peer_url.to_string()], &self.inner.cluster_token)
    }
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for EtcdApi {
    async fn member_add(
        &self,
        request: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        let req = request.into_inner();
        let Some(peer_url) = req
            .peer_ur_ls
            .first()
            .map(|u| u.trim_end_matches('/').to_string())
        else {
            return Err(Status::invalid_argument(
                "etcdserver: member peer URLs are required",
            ));
        };
        let id = self.peer_member_id(&peer_url);
        let node = NodeInfo {
            name: String::new(),
            peer_url: peer_url.clone(),
            client_urls: Vec::new(),
        };
        let members = self
            .change(MemberChange::Add {
                id,
                node,
                learner: req.is_learner,
            })
            .await?;
        Ok(Response::new(pb::MemberAddResponse {
            header: Some(self.header(0)),
            member: Some(pb::Member {
                id,
                name: String::new(),
                peer_ur_ls: vec![peer_url],
                client_ur_ls: Vec::new(),
                is_learner: req.is_learner,
            }),
            members,
        }))
    }

    async fn member_remove(
        &self,
        request: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        let id = request.into_inner().id;
        if self.inner.cluster.is_none() {
            return Err(self.unknown_member(id));
        }
        let members = self.change(MemberChange::Remove { id }).await?;
        Ok(Response::new(pb::MemberRemoveResponse {
            header: Some(self.header(0)),
            members,
        }))
    }

    async fn member_update(
        &self,
        request: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        let req = request.into_inner();
        if self.inner.cluster.is_none() {
            if req.id != self.inner.member.id {
                return Err(Status::not_found("etcdserver: member not found"));
            }
            return Err(single_node());
        }
        let Some(peer_url) = req
            .peer_ur_ls
            .first()
            .map(|u| u.trim_end_matches('/').to_string())
        else {
            return Err(Status::invalid_argument(
                "etcdserver: member peer URLs are required",
            ));
        };
        let members = self
            .change(MemberChange::Update {
                id: req.id,
                peer_url,
            })
            .await?;
        Ok(Response::new(pb::MemberUpdateResponse {
            header: Some(self.header(0)),
            members,
        }))
    }

    async fn member_list(
        &self,
        _request: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        Ok(Response::new(self.member_list_pb()))
    }

    async fn member_promote(
        &self,
        request: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        let id = request.into_inner().id;
        if self.inner.cluster.is_none() {
            if id == self.inner.member.id {
                return Err(Status::failed_precondition(
                    "etcdserver: can only promote a learner member",
                ));
            }
            return Err(Status::not_found("etcdserver: member not found"));
        }
        let members = self.change(MemberChange::Promote { id }).await?;
        Ok(Response::new(pb::MemberPromoteResponse {
            header: Some(self.header(0)),
            members,
        }))
    }
}
