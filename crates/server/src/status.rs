//! The one place where domain errors become gRPC statuses (and, through them, HTTP
//! errors). etcd clients match the message text, so every message is etcd's, byte for byte.

use stead_store::Error;
use tonic::{Code, Status};

/// Requests whose encoding exceeds this are refused (etcd's `--max-request-bytes` default).
pub const MAX_REQUEST_BYTES: usize = 1536 * 1024;

/// gRPC frames above this are refused by the transport (etcd allows 512 KiB of overhead).
pub const MAX_GRPC_RECV_BYTES: usize = MAX_REQUEST_BYTES + 512 * 1024;

pub fn to_status(err: Error) -> Status {
    let (code, msg): (Code, &str) = match &err {
        Error::KeyNotProvided => (Code::InvalidArgument, "etcdserver: key is not provided"),
        Error::Compacted { .. } => (
            Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted",
        ),
        Error::FutureRevision { .. } => (
            Code::OutOfRange,
            "etcdserver: mvcc: required revision is a future revision",
        ),
        Error::KeyNotFound => (Code::InvalidArgument, "etcdserver: key not found"),
        Error::ValueProvided => (Code::InvalidArgument, "etcdserver: value is provided"),
        Error::LeaseProvided => (Code::InvalidArgument, "etcdserver: lease is provided"),
        Error::TooManyTxnOps { .. } => (
            Code::InvalidArgument,
            "etcdserver: too many operations in txn request",
        ),
        Error::DuplicateKey => (
            Code::InvalidArgument,
            "etcdserver: duplicate key given in txn request",
        ),
        Error::LeaseNotFound { .. } => (Code::NotFound, "etcdserver: requested lease not found"),
        Error::LeaseExists { .. } => (Code::FailedPrecondition, "etcdserver: lease already exists"),
        Error::LeaseTtlTooLarge { .. } => (Code::OutOfRange, "etcdserver: too large lease TTL"),
        Error::RequestTooLarge { .. } => {
            (Code::InvalidArgument, "etcdserver: request is too large")
        }
        Error::NoSpace => (
            Code::ResourceExhausted,
            "etcdserver: mvcc: database space exceeded",
        ),
        Error::Stopped => (Code::Unavailable, "etcdserver: server stopped"),
        Error::NoLeader => (Code::Unavailable, "etcdserver: no leader"),
        Error::Replication { .. } => {
            tracing::warn!(error = %err, "replication failed");
            (Code::Unavailable, "etcdserver: request timed out")
        }
        Error::Corrupt { .. }
        | Error::InvalidSnapshot { .. }
        | Error::Storage { .. }
        | Error::Io { .. } => {
            tracing::error!(error = %err, "storage failure");
            return Status::internal(format!("etcdserver: {err}"));
        }
    };
    Status::new(code, msg)
}

/// Refuses requests whose encoding is over [`MAX_REQUEST_BYTES`].
pub fn check_size(message: &impl prost::Message) -> Result<(), Status> {
    let size = message.encoded_len();
    if size > MAX_REQUEST_BYTES {
        return Err(to_status(Error::RequestTooLarge {
            size,
            limit: MAX_REQUEST_BYTES,
        }));
    }
    Ok(())
}

/// The HTTP status grpc-gateway uses for a gRPC code.
pub fn http_status(code: Code) -> http::StatusCode {
    use http::StatusCode as S;
    match code {
        Code::Ok => S::OK,
        Code::Cancelled => S::REQUEST_TIMEOUT,
        Code::InvalidArgument | Code::OutOfRange => S::BAD_REQUEST,
        Code::DeadlineExceeded => S::GATEWAY_TIMEOUT,
        Code::NotFound => S::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => S::CONFLICT,
        Code::PermissionDenied => S::FORBIDDEN,
        Code::Unauthenticated => S::UNAUTHORIZED,
        Code::ResourceExhausted => S::TOO_MANY_REQUESTS,
        Code::FailedPrecondition => S::PRECONDITION_FAILED,
        Code::Unimplemented => S::NOT_IMPLEMENTED,
        Code::Unavailable => S::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => S::INTERNAL_SERVER_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_errors_keep_etcds_codes_and_messages() {
        let cases = [
            (
                Error::Compacted {
                    requested: 1,
                    compacted: 5,
                },
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
            ),
            (
                Error::DuplicateKey,
                Code::InvalidArgument,
                "etcdserver: duplicate key given in txn request",
            ),
            (
                Error::LeaseNotFound { id: 3 },
                Code::NotFound,
                "etcdserver: requested lease not found",
            ),
            (
                Error::NoSpace,
                Code::ResourceExhausted,
                "etcdserver: mvcc: database space exceeded",
            ),
        ];
        for (err, code, msg) in cases {
            let status = to_status(err);
            assert_eq!(status.code(), code);
            assert_eq!(status.message(), msg);
        }
    }
}
