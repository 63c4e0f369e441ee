//! Conversions between the wire (etcd v3 protobuf) and the store's types.

use stead_store as st;
use tonic::Status;

use crate::pb;
use crate::pb::mvccpb;

pub fn kv_to_pb(kv: st::KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

pub fn event_to_pb(ev: st::Event) -> mvccpb::Event {
    mvccpb::Event {
        r#type: match ev.kind {
            st::EventType::Put => mvccpb::event::EventType::Put as i32,
            st::EventType::Delete => mvccpb::event::EventType::Delete as i32,
        },
        kv: Some(kv_to_pb(ev.kv)),
        prev_kv: ev.prev_kv.map(kv_to_pb),
    }
}

pub fn range_from_pb(r: pb::RangeRequest) -> Result<st::RangeRequest, Status> {
    use pb::range_request::{SortOrder, SortTarget};
    let sort_order = match SortOrder::try_from(r.sort_order) {
        Ok(SortOrder::None) => st::SortOrder::None,
        Ok(SortOrder::Ascend) => st::SortOrder::Ascend,
        Ok(SortOrder::Descend) => st::SortOrder::Descend,
        Err(_) => return Err(Status::invalid_argument("etcdserver: invalid sort option")),
    };
    let sort_target = match SortTarget::try_from(r.sort_target) {
        Ok(SortTarget::Key) => st::SortTarget::Key,
        Ok(SortTarget::Version) => st::SortTarget::Version,
        Ok(SortTarget::Create) => st::SortTarget::Create,
        Ok(SortTarget::Mod) => st::SortTarget::Mod,
        Ok(SortTarget::Value) => st::SortTarget::Value,
        Err(_) => return Err(Status::invalid_argument("etcdserver: invalid sort option")),
    };
    Ok(st::RangeRequest {
        key: r.key,
        range_end: r.range_end,
        limit: r.limit,
        revision: r.revision,
        sort_order,
        sort_target,
        serializable: r.serializable,
        keys_only: r.keys_only,
        count_only: r.count_only,
        min_mod_revision: r.min_mod_revision,
        max_mod_revision: r.max_mod_revision,
        min_create_revision: r.min_create_revision,
        max_create_revision: r.max_create_revision,
    })
}

pub fn put_from_pb(r: pb::PutRequest) -> st::PutRequest {
    st::PutRequest {
        key: r.key,
        value: r.value,
        lease: r.lease,
        prev_kv: r.prev_kv,
        ignore_value: r.ignore_value,
        ignore_lease: r.ignore_lease,
    }
}

pub fn delete_from_pb(r: pb::DeleteRangeRequest) -> st::DeleteRangeRequest {
    st::DeleteRangeRequest {
        key: r.key,
        range_end: r.range_end,
        prev_kv: r.prev_kv,
    }
}

pub fn txn_from_pb(r: pb::TxnRequest) -> Result<st::TxnRequest, Status> {
    let ops = |ops: Vec<pb::RequestOp>| -> Result<Vec<st::RequestOp>, Status> {
        ops.into_iter().map(op_from_pb).collect()
    };
    Ok(st::TxnRequest {
        compare: r
            .compare
            .into_iter()
            .map(compare_from_pb)
            .collect::<Result<_, _>>()?,
        success: ops(r.success)?,
        failure: ops(r.failure)?,
    })
}

fn op_from_pb(op: pb::RequestOp) -> Result<st::RequestOp, Status> {
    use pb::request_op::Request;
    Ok(match op.request {
        Some(Request::RequestRange(r)) => st::RequestOp::Range(range_from_pb(r)?),
        Some(Request::RequestPut(r)) => st::RequestOp::Put(put_from_pb(r)),
        Some(Request::RequestDeleteRange(r)) => st::RequestOp::DeleteRange(delete_from_pb(r)),
        Some(Request::RequestTxn(r)) => st::RequestOp::Txn(txn_from_pb(r)?),
        None => return Err(Status::invalid_argument("etcdserver: request op is empty")),
    })
}

fn compare_from_pb(c: pb::Compare) -> Result<st::Compare, Status> {
    use pb::compare::{CompareResult, CompareTarget, TargetUnion};
    let result = match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => st::CompareResult::Equal,
        Ok(CompareResult::Greater) => st::CompareResult::Greater,
        Ok(CompareResult::Less) => st::CompareResult::Less,
        Ok(CompareResult::NotEqual) => st::CompareResult::NotEqual,
        Err(_) => {
            return Err(Status::invalid_argument(
                "etcdserver: invalid compare result",
            ));
        }
    };
    // The target enum decides what is compared; the union carries the operand (absent = 0).
    let int = |u: &Option<TargetUnion>| match u {
        Some(
            TargetUnion::Version(v)
            | TargetUnion::CreateRevision(v)
            | TargetUnion::ModRevision(v)
            | TargetUnion::Lease(v),
        ) => *v,
        _ => 0,
    };
    let target = match CompareTarget::try_from(c.target) {
        Ok(CompareTarget::Version) => st::CompareTarget::Version(int(&c.target_union)),
        Ok(CompareTarget::Create) => st::CompareTarget::Create(int(&c.target_union)),
        Ok(CompareTarget::Mod) => st::CompareTarget::Mod(int(&c.target_union)),
        Ok(CompareTarget::Lease) => st::CompareTarget::Lease(int(&c.target_union)),
        Ok(CompareTarget::Value) => st::CompareTarget::Value(match c.target_union {
            Some(TargetUnion::Value(v)) => v,
            _ => Vec::new(),
        }),
        Err(_) => {
            return Err(Status::invalid_argument(
                "etcdserver: invalid compare target",
            ));
        }
    };
    Ok(st::Compare {
        result,
        target,
        key: c.key,
        range_end: c.range_end,
    })
}

/// Converts store responses to the wire, stamping `template` (with the response's
/// revision) as the header.
pub struct Responder {
    pub template: pb::ResponseHeader,
}

impl Responder {
    fn header(&self, revision: i64) -> Option<pb::ResponseHeader> {
        Some(pb::ResponseHeader {
            revision,
            ..self.template
        })
    }

    pub fn range(&self, r: st::RangeResponse) -> pb::RangeResponse {
        pb::RangeResponse {
            header: self.header(r.revision),
            kvs: r.kvs.into_iter().map(kv_to_pb).collect(),
            more: r.more,
            count: r.count,
        }
    }

    pub fn put(&self, r: st::PutResponse) -> pb::PutResponse {
        pb::PutResponse {
            header: self.header(r.revision),
            prev_kv: r.prev_kv.map(kv_to_pb),
        }
    }

    pub fn delete(&self, r: st::DeleteRangeResponse) -> pb::DeleteRangeResponse {
        pb::DeleteRangeResponse {
            header: self.header(r.revision),
            deleted: r.deleted,
            prev_kvs: r.prev_kvs.into_iter().map(kv_to_pb).collect(),
        }
    }

    pub fn txn(&self, r: st::TxnResponse) -> pb::TxnResponse {
        use pb::response_op::Response;
        // Inner responses carry a bare header with just the revision, as etcd's do.
        let inner = Responder {
            template: pb::ResponseHeader::default(),
        };
        pb::TxnResponse {
            header: self.header(r.revision),
            succeeded: r.succeeded,
            responses: r
                .responses
                .into_iter()
                .map(|op| pb::ResponseOp {
                    response: Some(match op {
                        st::ResponseOp::Range(r) => Response::ResponseRange(inner.range(r)),
                        st::ResponseOp::Put(r) => Response::ResponsePut(inner.put(r)),
                        st::ResponseOp::DeleteRange(r) => {
                            Response::ResponseDeleteRange(inner.delete(r))
                        }
                        st::ResponseOp::Txn(r) => Response::ResponseTxn(inner.txn(r)),
                    }),
                })
                .collect(),
        }
    }
}
