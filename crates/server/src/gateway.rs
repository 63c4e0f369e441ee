//! The HTTP/JSON gateway on the client port: etcd's `/v3/...` endpoints in proto3 JSON
//! (snake_case names, base64 bytes, int64 as strings), plus `/version`, `/health` and
//! `/metrics`. Each endpoint calls the same [`EtcdApi`] method as its gRPC twin.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::Status;

use crate::etcd::{ETCD_CLUSTER_VERSION, ETCD_VERSION, EtcdApi, watch_responses};
use crate::metrics::StoreGauges;
use crate::pb;
use crate::status::http_status;

/// A POST endpoint that decodes the JSON body, calls `$method(&api, request)` and encodes
/// the result.
macro_rules! unary {
    ($method:path) => {
        post(|State(api): State<EtcdApi>, body: Bytes| async move {
            match parse(&body) {
                Ok(req) => respond($method(&api, req).await),
                Err(status) => error_response(&status),
            }
        })
    };
}

pub fn router(api: EtcdApi) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v3/kv/range", unary!(EtcdApi::kv_range))
        .route("/v3/kv/put", unary!(EtcdApi::kv_put))
        .route("/v3/kv/deleterange", unary!(EtcdApi::kv_delete_range))
        .route("/v3/kv/txn", unary!(EtcdApi::kv_txn))
        .route("/v3/kv/compaction", unary!(EtcdApi::kv_compact))
        .route("/v3/lease/grant", unary!(EtcdApi::lease_grant_pb))
        .route("/v3/lease/revoke", unary!(EtcdApi::lease_revoke_pb))
        .route("/v3/kv/lease/revoke", unary!(EtcdApi::lease_revoke_pb))
        .route(
            "/v3/lease/timetolive",
            unary!(EtcdApi::lease_time_to_live_pb),
        )
        .route(
            "/v3/kv/lease/timetolive",
            unary!(EtcdApi::lease_time_to_live_pb),
        )
        .route("/v3/lease/leases", unary!(leases))
        .route("/v3/kv/lease/leases", unary!(leases))
        .route("/v3/lease/keepalive", post(keep_alive))
        .route("/v3/cluster/member/list", unary!(member_list))
        .route("/v3/maintenance/alarm", unary!(EtcdApi::alarm_pb))
        .route("/v3/maintenance/status", unary!(status))
        .route("/v3/maintenance/defragment", unary!(defragment))
        .route("/v3/maintenance/hash", unary!(hash))
        .route("/v3/maintenance/hashkv", unary!(EtcdApi::hash_kv_pb))
        .route("/v3/maintenance/snapshot", post(snapshot))
        .route("/v3/watch", post(watch))
        .with_state(api)
}

/// A gRPC error in grpc-gateway's JSON shape, fields in its order.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
    code: i32,
}

fn error_response(status: &Status) -> Response {
    let body = ErrorBody {
        error: status.message(),
        message: status.message(),
        code: status.code() as i32,
    };
    (http_status(status.code()), axum::Json(body)).into_response()
}

/// The fallback for paths that are neither gRPC methods nor gateway endpoints: gRPC
/// clients get `Unimplemented`, everyone else grpc-gateway's plain 404 (not tonic's
/// empty `200 OK`).
pub async fn not_found(req: axum::extract::Request) -> Response {
    let grpc = req
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        let (parts, ()) = Status::unimplemented("").into_http::<()>().into_parts();
        Response::from_parts(parts, Body::empty())
    } else {
        (StatusCode::NOT_FOUND, "Not Found\n").into_response()
    }
}

fn json_response(value: &impl Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => error_response(&Status::internal(e.to_string())),
    }
}

fn parse<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, Status> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| Status::invalid_argument(e.to_string()))
}

fn respond<T: Serialize>(result: Result<T, Status>) -> Response {
    match result {
        Ok(resp) => json_response(&resp),
        Err(status) => error_response(&status),
    }
}

async fn leases(
    api: &EtcdApi,
    _: pb::LeaseLeasesRequest,
) -> Result<pb::LeaseLeasesResponse, Status> {
    api.lease_leases_pb().await
}

async fn member_list(
    api: &EtcdApi,
    _: pb::MemberListRequest,
) -> Result<pb::MemberListResponse, Status> {
    Ok(api.member_list_pb())
}

async fn status(api: &EtcdApi, _: pb::StatusRequest) -> Result<pb::StatusResponse, Status> {
    api.status_pb().await
}

async fn defragment(
    api: &EtcdApi,
    _: pb::DefragmentRequest,
) -> Result<pb::DefragmentResponse, Status> {
    api.defragment_pb().await
}

async fn hash(api: &EtcdApi, _: pb::HashRequest) -> Result<pb::HashResponse, Status> {
    api.hash_pb().await
}

#[derive(Serialize)]
struct StreamItem<T> {
    result: T,
}

fn ndjson_line(value: &impl Serialize) -> Bytes {
    let mut line = serde_json::to_vec(value).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

async fn keep_alive(State(api): State<EtcdApi>, body: Bytes) -> Response {
    let req = match parse::<pb::LeaseKeepAliveRequest>(&body) {
        Ok(req) => req,
        Err(status) => return error_response(&status),
    };
    match api.lease_keep_alive_pb(req).await {
        Ok(result) => json_response(&StreamItem { result }),
        Err(status) => error_response(&status),
    }
}

async fn snapshot(State(api): State<EtcdApi>) -> Response {
    match api.snapshot_pb().await {
        Ok(parts) => {
            let body: Vec<u8> = parts
                .iter()
                .flat_map(|p| ndjson_line(&StreamItem { result: p }))
                .collect();
            ([(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Err(status) => error_response(&status),
    }
}

async fn watch(State(api): State<EtcdApi>, body: Bytes) -> Response {
    let req = match parse::<pb::WatchRequest>(&body) {
        Ok(req) => req,
        Err(status) => return error_response(&status),
    };
    api.metrics().count("Watch");
    let lines = watch_responses(api, futures::stream::iter([req]))
        .map(|resp| Ok::<_, std::convert::Infallible>(ndjson_line(&StreamItem { result: resp })));
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(lines))
        .unwrap_or_else(|e| error_response(&Status::internal(e.to_string())))
}

/// `/version`, fields in etcd's order.
#[derive(Serialize)]
struct Versions {
    etcdserver: &'static str,
    etcdcluster: &'static str,
}

async fn version() -> Response {
    json_response(&Versions {
        etcdserver: ETCD_VERSION,
        etcdcluster: ETCD_CLUSTER_VERSION,
    })
}

async fn health(State(api): State<EtcdApi>) -> Response {
    let alarms = api.store().alarms().await;
    let healthy = matches!(&alarms, Ok(a) if a.is_empty());
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({ "health": if healthy { "true" } else { "false" } });
    (code, axum::Json(body)).into_response()
}

async fn metrics(State(api): State<EtcdApi>) -> Response {
    let store = api.store();
    let (db_size, db_size_in_use) = store.size().await.unwrap_or_default();
    let engine = store.engine().clone();
    let keys = tokio::task::spawn_blocking(move || engine.key_count())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let writes = store.write_stats();
    let text = api.metrics().render(StoreGauges {
        commits: writes.commits,
        commit_nanos: writes.commit_nanos,
        proposals: writes.proposals,
        revision: store.hub().revision(),
        compacted: store.hub().compacted(),
        db_size,
        db_size_in_use,
        keys,
    });
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
