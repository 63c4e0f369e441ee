//! `etcdserverpb.Watch`: a bidirectional stream multiplexing many watchers.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use prost::Message;
use stead_store::watch::{WatchOutput, WatchRequest, WatchSpec, serve_watch};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::EtcdApi;
use crate::convert::event_to_pb;
use crate::pb;
use crate::status::MAX_REQUEST_BYTES;

/// Watch responses queued per stream before the stream lags and catches up from history.
const OUT_BUFFER: usize = 128;

fn request_from_pb(req: pb::WatchRequest) -> Option<WatchRequest> {
    use pb::watch_create_request::FilterType;
    use pb::watch_request::RequestUnion;
    Some(match req.request_union? {
        RequestUnion::CreateRequest(c) => {
            let has = |f: FilterType| c.filters.contains(&(f as i32));
            WatchRequest::Create(WatchSpec {
                no_put: has(FilterType::Noput),
                no_delete: has(FilterType::Nodelete),
                key: c.key,
                range_end: c.range_end,
                start_revision: c.start_revision,
                progress_notify: c.progress_notify,
                prev_kv: c.prev_kv,
                watch_id: c.watch_id,
                fragment: c.fragment,
            })
        }
        RequestUnion::CancelRequest(c) => WatchRequest::Cancel(c.watch_id),
        RequestUnion::ProgressRequest(_) => WatchRequest::Progress,
    })
}

impl EtcdApi {
    fn watch_output_to_pb(&self, out: WatchOutput) -> Vec<pb::WatchResponse> {
        match out {
            WatchOutput::Created { watch_id, revision } => vec![pb::WatchResponse {
                header: Some(self.header(revision)),
                watch_id,
                created: true,
                ..Default::default()
            }],
            WatchOutput::Canceled {
                watch_id,
                revision,
                compact_revision,
                reason,
            } => vec![pb::WatchResponse {
                // etcd's mvcc layer reports a compacted watcher with revision 0, and its
                // header keeps that 0.
                header: Some(self.header(if compact_revision != 0 { 0 } else { revision })),
                watch_id,
                canceled: true,
                compact_revision,
                cancel_reason: reason,
                ..Default::default()
            }],
            WatchOutput::Progress { watch_id, revision } => vec![pb::WatchResponse {
                header: Some(self.header(revision)),
                watch_id,
                ..Default::default()
            }],
            WatchOutput::Events {
                watch_id,
                revision,
                events,
                fragment,
            } => {
                self.metrics().add_watch_events(events.len() as u64);
                let events: Vec<_> = events.into_iter().map(event_to_pb).collect();
                let whole = pb::WatchResponse {
                    header: Some(self.header(revision)),
                    watch_id,
                    events,
                    ..Default::default()
                };
                if fragment && whole.encoded_len() > MAX_REQUEST_BYTES {
                    fragment_response(whole)
                } else {
                    vec![whole]
                }
            }
        }
    }
}

/// Splits a response into parts of at most [`MAX_REQUEST_BYTES`] (a single larger event
/// travels alone); every part but the last has `fragment` set, as etcd's clients expect.
fn fragment_response(whole: pb::WatchResponse) -> Vec<pb::WatchResponse> {
    let empty = pb::WatchResponse {
        header: whole.header,
        watch_id: whole.watch_id,
        ..Default::default()
    };
    let mut parts = Vec::new();
    let mut current = empty.clone();
    let mut size = current.encoded_len();
    for ev in whole.events {
        // Field tag and length prefix of the event inside the response.
        let ev_size = ev.encoded_len() + 8;
        if !current.events.is_empty() && size + ev_size > MAX_REQUEST_BYTES {
            let mut done = std::mem::replace(&mut current, empty.clone());
            done.fragment = true;
            parts.push(done);
            size = current.encoded_len();
        }
        size += ev_size;
        current.events.push(ev);
    }
    parts.push(current);
    parts
}

/// Runs one watch stream: client requests in, responses out.
pub fn watch_responses(
    api: EtcdApi,
    inbound: impl Stream<Item = pb::WatchRequest> + Send + 'static,
) -> impl Stream<Item = pb::WatchResponse> + Send + 'static {
    let (req_tx, req_rx) = mpsc::channel(64);
    let (out_tx, out_rx) = mpsc::channel(OUT_BUFFER);
    tokio::spawn(serve_watch(
        api.store().clone(),
        req_rx,
        out_tx,
        api.inner.progress_interval,
    ));
    tokio::spawn(async move {
        let mut inbound = std::pin::pin!(inbound);
        while let Some(req) = inbound.next().await {
            if let Some(req) = request_from_pb(req)
                && req_tx.send(req).await.is_err()
            {
                break;
            }
        }
    });
    ReceiverStream::new(out_rx)
        .flat_map(move |out| futures::stream::iter(api.watch_output_to_pb(out)))
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::watch_server::Watch for EtcdApi {
    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        self.metrics().count("Watch");
        // A broken inbound stream ends the requests; responses continue until the client
        // goes away.
        let inbound = request
            .into_inner()
            .take_while(|r| futures::future::ready(r.is_ok()))
            .filter_map(|r| futures::future::ready(r.ok()));
        let out = watch_responses(self.clone(), inbound).map(Ok);
        Ok(Response::new(Box::pin(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_responses_fragment_into_bounded_parts_that_keep_every_event() {
        let ev = |i: usize| pb::mvccpb::Event {
            kv: Some(pb::mvccpb::KeyValue {
                key: format!("k{i}").into_bytes(),
                value: vec![b'x'; 300 * 1024],
                ..Default::default()
            }),
            ..Default::default()
        };
        let whole = pb::WatchResponse {
            watch_id: 3,
            events: (0..12).map(ev).collect(),
            ..Default::default()
        };
        let parts = fragment_response(whole.clone());
        assert!(parts.len() > 1);
        for (i, p) in parts.iter().enumerate() {
            assert!(p.encoded_len() <= MAX_REQUEST_BYTES);
            assert_eq!(p.fragment, i + 1 < parts.len());
            assert_eq!(p.watch_id, 3);
        }
        let all: Vec<_> = parts.into_iter().flat_map(|p| p.events).collect();
        assert_eq!(all, whole.events);
    }
}
