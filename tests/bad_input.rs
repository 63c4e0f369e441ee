//! Bad input gets etcd's error and changes nothing; the server never panics or hangs.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::start_stead;
use stead_server::pb;
use stead_server::pb::kv_client::KvClient;
use tonic::Code;
use tonic::transport::Channel;

fn put(key: &str, value: &str) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            ..Default::default()
        })),
    }
}

fn expect<T: std::fmt::Debug>(r: Result<T, tonic::Status>, code: Code, msg: &str) {
    let status = r.expect_err(msg);
    assert_eq!(status.code(), code, "{msg}");
    assert_eq!(status.message(), msg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_etcds_errors_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_stead(&dir.path().join("data"), &[]);
    let channel = Channel::from_shared(format!("http://{}", server.endpoint))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut kv = KvClient::new(channel.clone()).max_encoding_message_size(8 << 20);
    let mut lease = pb::lease_client::LeaseClient::new(channel.clone());

    for i in 0..5 {
        kv.put(pb::PutRequest {
            key: format!("k{i}").into_bytes(),
            value: b"v".to_vec(),
            ..Default::default()
        })
        .await
        .expect("seed put");
    }
    kv.compact(pb::CompactionRequest {
        revision: 4,
        physical: true,
    })
    .await
    .expect("compact");
    let before = kv
        .range(pb::RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();

    expect(
        kv.put(pb::PutRequest::default()).await,
        Code::InvalidArgument,
        "etcdserver: key is not provided",
    );
    expect(
        kv.range(pb::RangeRequest::default()).await,
        Code::InvalidArgument,
        "etcdserver: key is not provided",
    );
    expect(
        kv.range(pb::RangeRequest {
            key: b"k1".to_vec(),
            revision: 1000,
            ..Default::default()
        })
        .await,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision is a future revision",
    );
    expect(
        kv.range(pb::RangeRequest {
            key: b"k1".to_vec(),
            revision: 2,
            ..Default::default()
        })
        .await,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision has been compacted",
    );
    expect(
        kv.txn(pb::TxnRequest {
            success: (0..129).map(|i| put(&format!("t{i}"), "v")).collect(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "etcdserver: too many operations in txn request",
    );
    expect(
        kv.txn(pb::TxnRequest {
            success: vec![put("d", "1"), put("d", "2")],
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "etcdserver: duplicate key given in txn request",
    );
    expect(
        lease
            .lease_revoke(pb::LeaseRevokeRequest { id: 12345 })
            .await,
        Code::NotFound,
        "etcdserver: requested lease not found",
    );
    expect(
        kv.put(pb::PutRequest {
            key: b"x".to_vec(),
            value: b"y".to_vec(),
            lease: 999,
            ..Default::default()
        })
        .await,
        Code::NotFound,
        "etcdserver: requested lease not found",
    );
    expect(
        kv.put(pb::PutRequest {
            key: b"big".to_vec(),
            value: vec![b'v'; 1_600_000],
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "etcdserver: request is too large",
    );
    let huge = kv
        .put(pb::PutRequest {
            key: b"huge".to_vec(),
            value: vec![b'v'; 3 << 20],
            ..Default::default()
        })
        .await
        .expect_err("a 3 MiB request is refused by the transport");
    assert!(
        matches!(huge.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{huge:?}"
    );
    // range_end below key selects nothing (etcd answers an empty result, not an error).
    let empty = kv
        .range(pb::RangeRequest {
            key: b"k3".to_vec(),
            range_end: b"k1".to_vec(),
            ..Default::default()
        })
        .await
        .expect("inverted range")
        .into_inner();
    assert!(empty.kvs.is_empty());
    assert_eq!(empty.count, 0);

    // Garbage on the client port: the connection fails, the server does not.
    for garbage in [
        &b"\x00\x01\x02garbage\xff\xfe"[..],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff",
        b"GET / HTTP/1.1\r\n\r\n",
    ] {
        let mut tcp = TcpStream::connect(&server.endpoint).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        tcp.write_all(garbage).expect("write garbage");
        let mut sink = Vec::new();
        let _ = tcp.read_to_end(&mut sink);
    }
    // Malformed JSON on the gateway: a 400 with etcd's error shape.
    let mut tcp = TcpStream::connect(&server.endpoint).expect("connect");
    let body = "{not json";
    write!(
        tcp,
        "POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut resp = String::new();
    tcp.read_to_string(&mut resp).expect("read");
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(resp.contains("\"code\":3"), "{resp}");

    let after = kv
        .range(pb::RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        })
        .await
        .expect("the server still answers")
        .into_inner();
    assert_eq!(after.kvs, before.kvs, "bad requests changed data");
    assert_eq!(
        after.header.map(|h| h.revision),
        before.header.map(|h| h.revision),
        "bad requests took revisions"
    );
    assert!(
        !server.log_text().contains("panicked"),
        "server panicked:\n{}",
        server.log_text()
    );
}
