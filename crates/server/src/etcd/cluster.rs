//! `etcdserverpb.Cluster`. A single-node server reports itself; membership changes need a
//! replicated cluster and are refused with etcd's errors.

use tonic::{Request, Response, Status};

use super::EtcdApi;
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
    Status::unimplemented("etcdserver: membership changes need a cluster started with peers")
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for EtcdApi {
    async fn member_add(
        &self,
        _request: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        Err(single_node())
    }

    async fn member_remove(
        &self,
        request: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        Err(self.unknown_member(request.into_inner().id))
    }

    async fn member_update(
        &self,
        request: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        let id = request.into_inner().id;
        if id != self.inner.member.id {
            return Err(Status::not_found("etcdserver: member not found"));
        }
        Err(single_node())
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
        if id == self.inner.member.id {
            return Err(Status::failed_precondition(
                "etcdserver: can only promote a learner member",
            ));
        }
        Err(Status::not_found("etcdserver: member not found"))
    }
}
