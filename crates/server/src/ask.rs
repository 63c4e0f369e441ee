//! What a follower asks of the leader (forwarded writes, read indexes, lease renewals)
//! travels on one long-lived `Ask` stream per leader, as appends travel on `StreamAppend`: a
//! request is a message tagged with an id, and the leader answers each as soon as it is ready,
//! tagged with the same id, so answers may pass each other. A message on an open stream skips
//! what a call of its own takes: headers, a new HTTP/2 stream, routing at the leader.
//!
//! A request the leader answers with an error gets that error, as from a call. When the
//! stream fails, every request still waiting on it fails with `Unavailable`, and its outcome
//! is unknown, as for a call cut off in flight; but when the leader could not be reached at
//! all, the requests get the connect error, which says that nothing was sent. The next
//! request opens a new stream.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Status};

pub use crate::pb::steadpeer::AskKind;
use crate::pb::steadpeer::peer_client::PeerClient;
use crate::pb::steadpeer::{AskAnswer, AskRequest, Blob};
use crate::peer::{Channels, LeaderService};

/// Requests queued towards one leader before the asker waits.
const REQUESTS_BUFFER: usize = 1024;

/// Answers queued towards one follower before the leader's request tasks wait.
const ANSWERS_BUFFER: usize = 1024;

/// How many times a request looks for an open stream before it gives up: a stream fails
/// between the lookup and the request only when the leader just went away.
const OPEN_ATTEMPTS: usize = 3;

type Answer = Result<Vec<u8>, Status>;

/// True when a request failed because the leader could not be reached at all: it was never
/// sent, so asking again (a new leader, once one is elected) cannot do anything twice.
pub fn never_sent(status: &Status) -> bool {
    status.code() == Code::Unavailable && status.message().contains("tcp connect")
}

/// The follower's streams to the leaders it asked, one per peer URL; cheap to clone.
#[derive(Clone)]
pub struct Asks {
    channels: Channels,
    by_url: Arc<Mutex<HashMap<String, Arc<Link>>>>,
    deadline: Duration,
}

impl Asks {
    /// Streams over `channels`; a request not answered within `deadline` fails with
    /// `DeadlineExceeded` (a hung leader must not hang its callers).
    pub fn new(channels: Channels, deadline: Duration) -> Self {
        Asks {
            channels,
            by_url: Arc::default(),
            deadline,
        }
    }

    /// Asks the member at `url` `kind` about `data` and waits for its answer.
    pub async fn ask(&self, url: &str, kind: AskKind, data: Vec<u8>) -> Answer {
        let (link, id, answer) = self.register(url)?;
        let request = AskRequest {
            id,
            kind: kind.into(),
            data,
        };
        let waiting = Waiting { link: &link, id };
        let exchange = async {
            // Sending fails only when the stream is going; its failure answers this request.
            let _ = link.requests.send(request).await;
            answer
                .await
                .unwrap_or_else(|_| Err(Status::unavailable("the ask stream was dropped")))
        };
        let outcome = tokio::time::timeout(self.deadline, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(Status::deadline_exceeded(
                    "the leader did not answer in time",
                ))
            });
        drop(waiting);
        outcome
    }

    /// A request's id and where its answer will come, on the open stream to `url` (opened
    /// now if there is none).
    fn register(&self, url: &str) -> Result<(Arc<Link>, u64, oneshot::Receiver<Answer>), Status> {
        let mut last = None;
        for _ in 0..OPEN_ATTEMPTS {
            let link = self.link(url)?;
            match link.register() {
                Ok((id, answer)) => return Ok((link, id, answer)),
                Err(status) => last = Some(status),
            }
        }
        Err(last.unwrap_or_else(|| Status::unavailable("no ask stream")))
    }

    fn link(&self, url: &str) -> Result<Arc<Link>, Status> {
        let mut by_url = crate::lock(&self.by_url);
        if let Some(link) = by_url.get(url)
            && !link.failed()
        {
            return Ok(link.clone());
        }
        let link = Link::open(self.channels.get(url)?);
        by_url.insert(url.to_string(), link.clone());
        Ok(link)
    }
}

/// One `Ask` stream: requests go in through `requests`; a task reads the answers and hands
/// each to the request waiting for it.
struct Link {
    requests: mpsc::Sender<AskRequest>,
    state: Mutex<LinkState>,
}

#[derive(Default)]
struct LinkState {
    next_id: u64,
    waiting: HashMap<u64, oneshot::Sender<Answer>>,
    /// Why the stream ended; no request is registered after this is set.
    failed: Option<Status>,
}

/// Takes a request off its stream's waiting list when it is answered, times out or is
/// dropped.
struct Waiting<'l> {
    link: &'l Link,
    id: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        crate::lock(&self.link.state).waiting.remove(&self.id);
    }
}

impl Link {
    /// Opens a stream through `client`. The stream lives as long as the link: dropping the
    /// link ends its requests, and the leader ends its answers once each has one.
    fn open(client: PeerClient<Channel>) -> Arc<Link> {
        let (requests, queue) = mpsc::channel(REQUESTS_BUFFER);
        let link = Arc::new(Link {
            requests,
            state: Mutex::default(),
        });
        tokio::spawn(read_answers(Arc::downgrade(&link), client, queue));
        link
    }

    fn failed(&self) -> bool {
        crate::lock(&self.state).failed.is_some()
    }

    fn register(&self) -> Result<(u64, oneshot::Receiver<Answer>), Status> {
        let mut state = crate::lock(&self.state);
        if let Some(status) = &state.failed {
            return Err(status.clone());
        }
        let id = state.next_id;
        state.next_id += 1;
        let (tx, rx) = oneshot::channel();
        state.waiting.insert(id, tx);
        Ok((id, rx))
    }

    fn answer(&self, answer: AskAnswer) {
        let Some(waiting) = crate::lock(&self.state).waiting.remove(&answer.id) else {
            // Its asker timed out or went away.
            return;
        };
        let result = match Code::from_i32(answer.code) {
            Code::Ok => Ok(answer.data),
            code => Err(Status::new(code, answer.message)),
        };
        let _ = waiting.send(result);
    }

    /// Ends the link: every waiting request gets `status`, and later ones a new stream.
    fn fail(&self, status: Status) {
        let waiting = {
            let mut state = crate::lock(&self.state);
            state.failed = Some(status.clone());
            std::mem::take(&mut state.waiting)
        };
        for (_, answer) in waiting {
            let _ = answer.send(Err(status.clone()));
        }
    }
}

/// Opens the stream and hands out its answers until it ends.
async fn read_answers(
    link: Weak<Link>,
    mut client: PeerClient<Channel>,
    queue: mpsc::Receiver<AskRequest>,
) {
    let status = match client.ask(ReceiverStream::new(queue)).await {
        // Not reached at all: nothing was sent, and the connect error says so.
        Err(status) if never_sent(&status) => status,
        // Refused or cut off before the leader's answer began: requests may have gone out.
        Err(status) => {
            tracing::debug!(%status, "the ask stream to the leader did not open");
            Status::unavailable(format!(
                "the ask stream to the leader did not open ({:?})",
                status.code()
            ))
        }
        Ok(answers) => {
            let mut answers = answers.into_inner();
            loop {
                match answers.message().await {
                    Ok(Some(answer)) => match link.upgrade() {
                        Some(link) => link.answer(answer),
                        None => return,
                    },
                    Ok(None) => break Status::unavailable("the leader ended the ask stream"),
                    Err(status) => {
                        // Not the cause's message: requests sent on an open stream may have
                        // been done, and must not pass for never sent.
                        tracing::debug!(%status, "the ask stream to the leader failed");
                        break Status::unavailable(format!(
                            "the ask stream to the leader failed ({:?})",
                            status.code()
                        ));
                    }
                }
            }
        }
    };
    if let Some(link) = link.upgrade() {
        link.fail(status);
    }
}

/// The leader's answers on one stream.
pub type AnswerStream = Pin<Box<dyn Stream<Item = Result<AskAnswer, Status>> + Send>>;

/// The leader's end of the stream: each request runs on a task of its own, and its answer
/// goes back as soon as it is ready. The answers end when the requests have and each has its
/// answer; a request that does not decode ends them with its error.
pub fn answer(
    leader: Arc<dyn LeaderService>,
    mut requests: impl Stream<Item = Result<AskRequest, Status>> + Send + Unpin + 'static,
) -> AnswerStream {
    let (answers, queue) = mpsc::channel(ANSWERS_BUFFER);
    tokio::spawn(async move {
        while let Some(request) = requests.next().await {
            let request = match request {
                Ok(request) => request,
                Err(status) => {
                    // Undecodable input, or the follower went away.
                    let _ = answers.send(Err(status)).await;
                    return;
                }
            };
            let leader = leader.clone();
            let answers = answers.clone();
            tokio::spawn(async move {
                let _ = answers.send(Ok(answer_one(&*leader, request).await)).await;
            });
        }
    });
    Box::pin(ReceiverStream::new(queue))
}

async fn answer_one(leader: &dyn LeaderService, request: AskRequest) -> AskAnswer {
    let body = Blob { data: request.data };
    let result = match AskKind::try_from(request.kind) {
        Ok(AskKind::Propose) => leader.propose(body).await,
        Ok(AskKind::ReadIndex) => leader.read_index(body).await,
        Ok(AskKind::KeepAlive) => leader.keep_alive(body).await,
        Ok(AskKind::Unspecified) | Err(_) => Err(Status::invalid_argument(format!(
            "unknown ask kind {}",
            request.kind
        ))),
    };
    match result {
        Ok(blob) => AskAnswer {
            id: request.id,
            code: Code::Ok as i32,
            message: String::new(),
            data: blob.data,
        },
        Err(status) => AskAnswer {
            id: request.id,
            code: status.code() as i32,
            message: status.message().to_string(),
            data: Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use tokio_stream::wrappers::TcpListenerStream;
    use tonic::{Request, Response, Streaming};

    use super::*;
    use crate::pb::steadpeer::peer_server::{Peer, PeerServer};
    use crate::peer::BlobStream;

    type Reply = Pin<Box<dyn std::future::Future<Output = Result<Blob, Status>> + Send>>;

    /// A leader that answers a write with its data after as many milliseconds as its first
    /// byte says, refuses read indexes as a follower would, and fails lease renewals.
    struct Leader;

    impl LeaderService for Leader {
        fn propose(&self, cmd: Blob) -> Reply {
            Box::pin(async move {
                let delay = cmd.data.first().copied().unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(u64::from(delay) * 10)).await;
                Ok(cmd)
            })
        }

        fn read_index(&self, _: Blob) -> Reply {
            Box::pin(async { Err(Status::failed_precondition("etcdserver: not leader")) })
        }

        fn keep_alive(&self, _: Blob) -> Reply {
            Box::pin(async { Err(Status::internal("no leases here")) })
        }

        fn change_members(&self, _: Blob) -> Reply {
            Box::pin(async { Err(Status::unimplemented("change_members")) })
        }
    }

    /// The peer service around [`Leader`]: counts the ask streams opened, and breaks the
    /// next one (after 100 ms) or refuses it when told to.
    #[derive(Clone, Default)]
    struct Peers {
        streams: Arc<AtomicUsize>,
        break_next: Arc<AtomicBool>,
        refuse_next: Arc<AtomicBool>,
    }

    #[tonic::async_trait]
    impl Peer for Peers {
        type StreamAppendStream = BlobStream;
        type AskStream = AnswerStream;

        async fn ask(
            &self,
            req: Request<Streaming<AskRequest>>,
        ) -> Result<Response<AnswerStream>, Status> {
            self.streams.fetch_add(1, Ordering::SeqCst);
            if self.refuse_next.swap(false, Ordering::SeqCst) {
                return Err(Status::internal("refused on purpose"));
            }
            if self.break_next.swap(false, Ordering::SeqCst) {
                let broken = futures::stream::once(async {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Err(Status::internal("broken on purpose"))
                });
                return Ok(Response::new(Box::pin(broken)));
            }
            Ok(Response::new(answer(Arc::new(Leader), req.into_inner())))
        }

        async fn stream_append(
            &self,
            _: Request<Streaming<Blob>>,
        ) -> Result<Response<BlobStream>, Status> {
            Err(Status::unimplemented("stream_append"))
        }

        async fn vote(&self, _: Request<Blob>) -> Result<Response<Blob>, Status> {
            Err(Status::unimplemented("vote"))
        }

        async fn install_snapshot(&self, _: Request<Blob>) -> Result<Response<Blob>, Status> {
            Err(Status::unimplemented("install_snapshot"))
        }

        async fn transfer_leader(&self, _: Request<Blob>) -> Result<Response<Blob>, Status> {
            Err(Status::unimplemented("transfer_leader"))
        }

        async fn change_members(&self, _: Request<Blob>) -> Result<Response<Blob>, Status> {
            Err(Status::unimplemented("change_members"))
        }
    }

    async fn serve(peers: Peers) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(PeerServer::new(peers))
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        format!("http://{addr}")
    }

    fn asks(deadline_ms: u64) -> Asks {
        Asks::new(Channels::default(), Duration::from_millis(deadline_ms))
    }

    /// Asks a write of `data` and checks that the leader's answer is `data` back.
    async fn assert_echoed(asks: &Asks, url: &str, data: Vec<u8>) {
        let answer = asks.ask(url, AskKind::Propose, data.clone()).await;
        assert_eq!(answer.expect("an answer"), data);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_reach_their_askers_out_of_order_over_one_stream() {
        let peers = Peers::default();
        let url = serve(peers.clone()).await;
        let asks = asks(5_000);
        // Asked in this order, answered in the reverse one.
        let slow = asks.ask(&url, AskKind::Propose, vec![20, 1]);
        let middle = asks.ask(&url, AskKind::Propose, vec![10, 2]);
        let fast = asks.ask(&url, AskKind::Propose, vec![0, 3]);
        let (slow, middle, fast) = tokio::join!(slow, middle, fast);
        assert_eq!(slow.expect("answer"), [20, 1]);
        assert_eq!(middle.expect("answer"), [10, 2]);
        assert_eq!(fast.expect("answer"), [0, 3]);
        for i in 0..5 {
            assert_echoed(&asks, &url, vec![0, i]).await;
        }
        assert_eq!(peers.streams.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_error_answer_keeps_its_code_and_message() {
        let url = serve(Peers::default()).await;
        let asks = asks(5_000);
        let refused = asks
            .ask(&url, AskKind::ReadIndex, Vec::new())
            .await
            .expect_err("refused");
        assert_eq!(refused.code(), Code::FailedPrecondition);
        assert_eq!(refused.message(), "etcdserver: not leader");
        let failed = asks
            .ask(&url, AskKind::KeepAlive, Vec::new())
            .await
            .expect_err("failed");
        assert_eq!(failed.code(), Code::Internal);
        assert_eq!(failed.message(), "no leases here");
        // The stream goes on after error answers.
        assert_echoed(&asks, &url, vec![0]).await;
    }

    #[tokio::test]
    async fn an_unknown_kind_is_refused_with_its_id() {
        let request = AskRequest {
            id: 7,
            kind: 99,
            data: Vec::new(),
        };
        let answer = answer_one(&Leader, request).await;
        assert_eq!(answer.id, 7);
        assert_eq!(Code::from_i32(answer.code), Code::InvalidArgument);
        assert_eq!(answer.message, "unknown ask kind 99");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_broken_stream_fails_its_waiting_requests_as_sent_and_the_next_opens_anew() {
        let peers = Peers::default();
        let url = serve(peers.clone()).await;
        let asks = asks(5_000);
        peers.break_next.store(true, Ordering::SeqCst);
        let (first, second) = tokio::join!(
            asks.ask(&url, AskKind::Propose, vec![0]),
            asks.ask(&url, AskKind::Propose, vec![0]),
        );
        for broken in [first, second] {
            let status = broken.expect_err("the stream broke");
            assert_eq!(status.code(), Code::Unavailable);
            // Sent on an open stream: the outcome is unknown, so it must not be asked again.
            assert!(!never_sent(&status), "{status:?}");
        }
        assert_echoed(&asks, &url, vec![0, 9]).await;
        assert_eq!(peers.streams.load(Ordering::SeqCst), 2);
    }

    /// Regression: a stream refused once its requests may have gone out passed the refusal's
    /// code on as it was, so an idempotent ask failed for good instead of being asked again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stream_refused_after_sending_fails_its_requests_as_unavailable_and_sent() {
        let peers = Peers::default();
        let url = serve(peers.clone()).await;
        let asks = asks(5_000);
        peers.refuse_next.store(true, Ordering::SeqCst);
        let status = asks
            .ask(&url, AskKind::ReadIndex, Vec::new())
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(!never_sent(&status), "{status:?}");
        assert_echoed(&asks, &url, vec![0, 4]).await;
    }

    #[tokio::test]
    async fn a_leader_that_cannot_be_reached_was_never_sent_anything() {
        // A port nothing listens on.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        drop(listener);
        let asks = asks(5_000);
        for _ in 0..2 {
            let status = asks
                .ask(&url, AskKind::Propose, vec![0])
                .await
                .expect_err("nothing listens");
            assert!(never_sent(&status), "{status:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_past_its_deadline_fails_and_leaves_nothing_waiting() {
        let url = serve(Peers::default()).await;
        let asks = asks(100);
        let late = asks
            .ask(&url, AskKind::Propose, vec![50])
            .await
            .expect_err("too slow");
        assert_eq!(late.code(), Code::DeadlineExceeded);
        let link = asks.link(&url).expect("the open stream");
        assert!(crate::lock(&link.state).waiting.is_empty());
        // Its late answer is dropped; the stream goes on.
        assert_echoed(&asks, &url, vec![0, 1]).await;
    }
}
