//! `etcdserverpb.Lease`.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::EtcdApi;
use crate::pb;
use crate::status::to_status;

impl EtcdApi {
    pub async fn lease_grant_pb(
        &self,
        req: pb::LeaseGrantRequest,
    ) -> Result<pb::LeaseGrantResponse, Status> {
        self.metrics().count("LeaseGrant");
        let (id, ttl, revision) = self
            .store()
            .lease_grant(req.id, req.ttl)
            .await
            .map_err(to_status)?;
        Ok(pb::LeaseGrantResponse {
            header: Some(self.header(revision)),
            id,
            ttl,
            error: String::new(),
        })
    }

    pub async fn lease_revoke_pb(
        &self,
        req: pb::LeaseRevokeRequest,
    ) -> Result<pb::LeaseRevokeResponse, Status> {
        self.metrics().count("LeaseRevoke");
        let revision = self.store().lease_revoke(req.id).await.map_err(to_status)?;
        Ok(pb::LeaseRevokeResponse {
            header: Some(self.header(revision)),
        })
    }

    pub async fn lease_keep_alive_pb(
        &self,
        req: pb::LeaseKeepAliveRequest,
    ) -> Result<pb::LeaseKeepAliveResponse, Status> {
        self.metrics().count("LeaseKeepAlive");
        let ttl = self
            .store()
            .lease_keep_alive(req.id)
            .await
            .map_err(to_status)?;
        Ok(pb::LeaseKeepAliveResponse {
            header: Some(self.current_header()),
            id: req.id,
            ttl,
        })
    }

    pub async fn lease_time_to_live_pb(
        &self,
        req: pb::LeaseTimeToLiveRequest,
    ) -> Result<pb::LeaseTimeToLiveResponse, Status> {
        self.metrics().count("LeaseTimeToLive");
        let found = self
            .store()
            .lease_time_to_live(req.id, req.keys)
            .await
            .map_err(to_status)?;
        let header = Some(self.current_header());
        Ok(match found {
            Some((remaining, info)) => pb::LeaseTimeToLiveResponse {
                header,
                id: req.id,
                ttl: remaining,
                granted_ttl: info.granted_ttl,
                keys: info.keys,
            },
            None => pb::LeaseTimeToLiveResponse {
                header,
                id: req.id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            },
        })
    }

    pub async fn lease_leases_pb(&self) -> Result<pb::LeaseLeasesResponse, Status> {
        self.metrics().count("LeaseLeases");
        let leases = self.store().leases().await.map_err(to_status)?;
        Ok(pb::LeaseLeasesResponse {
            header: Some(self.current_header()),
            leases: leases
                .into_iter()
                .map(|id| pb::LeaseStatus { id })
                .collect(),
        })
    }
}

type KeepAliveStream =
    Pin<Box<dyn Stream<Item = Result<pb::LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::lease_server::Lease for EtcdApi {
    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        self.lease_grant_pb(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn lease_revoke(
        &self,
        request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        self.lease_revoke_pb(request.into_inner())
            .await
            .map(Response::new)
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let api = self.clone();
        let out = request
            .into_inner()
            .take_while(|r| futures::future::ready(r.is_ok()))
            .filter_map(|r| futures::future::ready(r.ok()))
            .then(move |req| {
                let api = api.clone();
                async move { api.lease_keep_alive_pb(req).await }
            });
        Ok(Response::new(Box::pin(out)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        self.lease_time_to_live_pb(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn lease_leases(
        &self,
        _request: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        self.lease_leases_pb().await.map(Response::new)
    }
}
