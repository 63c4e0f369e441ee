//! `etcdserverpb.KV`.

use tonic::{Request, Response, Status};

use super::EtcdApi;
use crate::convert::{self, Responder};
use crate::pb;
use crate::status::{check_size, to_status};

impl EtcdApi {
    fn responder(&self) -> Responder {
        Responder {
            template: self.header(0),
        }
    }

    pub async fn kv_range(&self, req: pb::RangeRequest) -> Result<pb::RangeResponse, Status> {
        self.metrics().count("Range");
        let req = convert::range_from_pb(req)?;
        let resp = self.store().range(req).await.map_err(to_status)?;
        Ok(self.responder().range(resp))
    }

    pub async fn kv_put(&self, req: pb::PutRequest) -> Result<pb::PutResponse, Status> {
        self.metrics().count("Put");
        check_size(&req)?;
        let resp = self
            .store()
            .put(convert::put_from_pb(req))
            .await
            .map_err(to_status)?;
        Ok(self.responder().put(resp))
    }

    pub async fn kv_delete_range(
        &self,
        req: pb::DeleteRangeRequest,
    ) -> Result<pb::DeleteRangeResponse, Status> {
        self.metrics().count("DeleteRange");
        check_size(&req)?;
        let resp = self
            .store()
            .delete_range(convert::delete_from_pb(req))
            .await
            .map_err(to_status)?;
        Ok(self.responder().delete(resp))
    }

    pub async fn kv_txn(&self, req: pb::TxnRequest) -> Result<pb::TxnResponse, Status> {
        self.metrics().count("Txn");
        check_size(&req)?;
        let req = convert::txn_from_pb(req)?;
        let resp = self.store().txn(req).await.map_err(to_status)?;
        Ok(self.responder().txn(resp))
    }

    pub async fn kv_compact(
        &self,
        req: pb::CompactionRequest,
    ) -> Result<pb::CompactionResponse, Status> {
        self.metrics().count("Compact");
        let revision = self
            .store()
            .compact(req.revision)
            .await
            .map_err(to_status)?;
        Ok(pb::CompactionResponse {
            header: Some(self.header(revision)),
        })
    }
}

#[tonic::async_trait]
impl pb::kv_server::Kv for EtcdApi {
    async fn range(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        self.kv_range(request.into_inner()).await.map(Response::new)
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        self.kv_put(request.into_inner()).await.map(Response::new)
    }

    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        self.kv_delete_range(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn txn(
        &self,
        request: Request<pb::TxnRequest>,
    ) -> Result<Response<pb::TxnResponse>, Status> {
        self.kv_txn(request.into_inner()).await.map(Response::new)
    }

    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        self.kv_compact(request.into_inner())
            .await
            .map(Response::new)
    }
}
