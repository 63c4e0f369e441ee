//! [`AuthorityFix`]: lets clients that send a full URL as the HTTP/2 `:authority` reach the
//! server.
//!
//! etcd's clientv3 3.4 dials maintenance calls (`etcdctl endpoint status`, `snapshot save`,
//! `defrag`, `endpoint hashkv`, and everything with `--cluster`) with the endpoint as given,
//! so `--endpoints=http://host:2379` puts `http://host:2379` in `:authority`. etcd's Go
//! server ignores it; the `h2` crate refuses the stream with `PROTOCOL_ERROR`, as RFC 9113
//! allows. This adapter sits between the socket (or TLS stream) and hyper and, on a
//! connection whose first request carries such an authority, rewrites the header blocks the
//! client sends:
//!
//! ```text
//!  client ──► preface ──► frames ──┬─ HEADERS (+CONTINUATION) ─► HPACK decode, fix
//!                                  │                             :authority, re-encode ─► hyper
//!                                  └─ any other frame ────────────────────────────────► hyper
//! ```
//!
//! A connection whose first request has a valid authority (every other client), or that is
//! not HTTP/2 with prior knowledge (HTTP/1.1, the JSON gateway), is passed through untouched
//! from then on. Rewriting must go on for the rest of the connection once it starts: the
//! header blocks are re-encoded with an HPACK context of our own, which the server's decoder
//! then follows instead of the client's.
//!
//! The server's answers pass through untouched. A malformed frame or header block is
//! forwarded as it is, for hyper to refuse as it would have anyway.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The largest frame payload this adapter writes: the HTTP/2 default every peer accepts.
const MAX_FRAME: usize = 16_384;
/// A header block larger than this is not one this adapter rewrites (hyper's own limit on
/// header lists is 16 KiB by default).
const MAX_BLOCK: usize = 1 << 20;

enum Mode {
    /// Waiting for the client preface.
    Preface,
    /// Parsing frames; `rewrite` is undecided until the first header block.
    Frames { rewrite: bool },
    /// Bytes pass through.
    Transparent,
}

/// A header block being collected: its HEADERS frame's flags, stream and priority fields,
/// the fragments so far, and the original bytes of its frames.
struct Block {
    flags: u8,
    stream: u32,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
    original: Vec<u8>,
}

/// An I/O stream whose read side fixes the `:authority` of HTTP/2 requests; see the module
/// documentation.
pub struct AuthorityFix<S> {
    inner: S,
    mode: Mode,
    /// Bytes read from `inner`, not yet processed.
    raw: Vec<u8>,
    /// Processed bytes not yet handed to the reader, from `out_pos`.
    out: Vec<u8>,
    out_pos: usize,
    block: Option<Block>,
    decoder: fluke_hpack::Decoder<'static>,
    encoder: fluke_hpack::Encoder<'static>,
}

impl<S> AuthorityFix<S> {
    pub fn new(inner: S) -> Self {
        AuthorityFix {
            inner,
            mode: Mode::Preface,
            raw: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            block: None,
            decoder: fluke_hpack::Decoder::new(),
            encoder: fluke_hpack::Encoder::new(),
        }
    }

    /// Moves what can be processed from `raw` to `out`.
    fn process(&mut self) {
        loop {
            match self.mode {
                Mode::Transparent => {
                    self.out.append(&mut self.raw);
                    return;
                }
                Mode::Preface => {
                    let n = self.raw.len().min(PREFACE.len());
                    if self.raw[..n] != PREFACE[..n] {
                        self.mode = Mode::Transparent;
                        continue;
                    }
                    if n < PREFACE.len() {
                        return;
                    }
                    self.out.extend(self.raw.drain(..PREFACE.len()));
                    self.mode = Mode::Frames { rewrite: false };
                    self.block = None;
                }
                Mode::Frames { rewrite } => {
                    if self.raw.len() < FRAME_HEADER {
                        return;
                    }
                    let len = u32::from_be_bytes([0, self.raw[0], self.raw[1], self.raw[2]]);
                    let total = FRAME_HEADER + len as usize;
                    if self.raw.len() < total {
                        return;
                    }
                    let frame: Vec<u8> = self.raw.drain(..total).collect();
                    self.frame(frame, rewrite);
                }
            }
        }
    }

    fn frame(&mut self, frame: Vec<u8>, rewrite: bool) {
        let (kind, flags) = (frame[3], frame[4]);
        let stream = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
        let open = self.block.as_ref().map(|b| b.stream);
        let fragment = match (kind, open) {
            (HEADERS, None) => {
                let Some((priority, fragment)) = split_headers(flags, &frame[FRAME_HEADER..])
                else {
                    return self.give_up(frame);
                };
                let fragment = fragment.to_vec();
                self.block = Some(Block {
                    flags,
                    stream,
                    priority,
                    fragment: Vec::new(),
                    original: Vec::new(),
                });
                fragment
            }
            (CONTINUATION, Some(open)) if open == stream => frame[FRAME_HEADER..].to_vec(),
            (HEADERS | CONTINUATION, _) | (_, Some(_)) => return self.give_up(frame),
            _ => {
                self.out.extend_from_slice(&frame);
                return;
            }
        };
        let Some(block) = self.block.as_mut() else {
            return;
        };
        block.fragment.extend_from_slice(&fragment);
        block.original.extend_from_slice(&frame);
        if block.fragment.len() > MAX_BLOCK {
            let original = std::mem::take(&mut block.original);
            return self.give_up(original);
        }
        if flags & END_HEADERS == 0 {
            return;
        }
        if let Some(block) = self.block.take() {
            self.finish(block, rewrite);
        }
    }

    /// A complete header block: decide (on the first), then rewrite or pass it on.
    fn finish(&mut self, block: Block, rewrite: bool) {
        let Ok(mut headers) = self.decoder.decode(&block.fragment) else {
            return self.give_up(block.original);
        };
        let malformed = headers
            .iter()
            .position(|(name, value)| name == b":authority" && !valid_authority(value));
        if !rewrite && malformed.is_none() {
            // The usual case: nothing to fix on this connection, ever.
            self.out.extend_from_slice(&block.original);
            self.mode = Mode::Transparent;
            return;
        }
        self.mode = Mode::Frames { rewrite: true };
        if let Some(i) = malformed {
            match fixed_authority(&headers[i].1) {
                Some(fixed) => headers[i].1 = fixed,
                None => {
                    headers.remove(i);
                }
            }
        }
        let encoded = self
            .encoder
            .encode(headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        self.write_block(&block, &encoded);
    }

    /// Writes `encoded` as a HEADERS frame (with the block's END_STREAM and priority) and as
    /// many CONTINUATION frames as it takes.
    fn write_block(&mut self, block: &Block, encoded: &[u8]) {
        let mut first = Vec::with_capacity(5 + encoded.len().min(MAX_FRAME));
        let mut flags = block.flags & END_STREAM;
        if let Some(p) = block.priority {
            flags |= PRIORITY;
            first.extend_from_slice(&p);
        }
        let room = MAX_FRAME - first.len();
        let (head, mut rest) = encoded.split_at(encoded.len().min(room));
        first.extend_from_slice(head);
        if rest.is_empty() {
            flags |= END_HEADERS;
        }
        self.write_frame(HEADERS, flags, block.stream, &first);
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(rest.len().min(MAX_FRAME));
            rest = tail;
            let flags = if rest.is_empty() { END_HEADERS } else { 0 };
            self.write_frame(CONTINUATION, flags, block.stream, chunk);
        }
    }

    fn write_frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let len = (payload.len() as u32).to_be_bytes();
        self.out.extend_from_slice(&len[1..]);
        self.out.push(kind);
        self.out.push(flags);
        self.out.extend_from_slice(&stream.to_be_bytes());
        self.out.extend_from_slice(payload);
    }

    /// Something this adapter does not understand: hand everything on unchanged and stop
    /// looking (hyper judges the connection as it would have without this adapter).
    fn give_up(&mut self, bytes: Vec<u8>) {
        if let Some(block) = self.block.take() {
            self.out.extend_from_slice(&block.original);
        }
        self.out.extend_from_slice(&bytes);
        self.mode = Mode::Transparent;
    }
}

/// The header block fragment of a HEADERS payload, after its padding length and priority
/// fields, without the padding; `None` if the lengths do not add up.
fn split_headers(flags: u8, payload: &[u8]) -> Option<(Option<[u8; 5]>, &[u8])> {
    let mut rest = payload;
    let mut pad = 0usize;
    if flags & PADDED != 0 {
        let (&p, tail) = rest.split_first()?;
        pad = usize::from(p);
        rest = tail;
    }
    let mut priority = None;
    if flags & PRIORITY != 0 {
        let (p, tail) = rest.split_first_chunk::<5>()?;
        priority = Some(*p);
        rest = tail;
    }
    let end = rest.len().checked_sub(pad)?;
    Some((priority, &rest[..end]))
}

/// Whether h2 accepts this as an `:authority`.
fn valid_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// `host:port` out of `scheme://host:port[/...]`, if that is valid.
fn fixed_authority(value: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(value).ok()?;
    let (_, after) = text.split_once("://")?;
    let host = after.split('/').next()?;
    valid_authority(host.as_bytes()).then(|| host.as_bytes().to_vec())
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.out_pos < this.out.len() {
                let n = buf.remaining().min(this.out.len() - this.out_pos);
                buf.put_slice(&this.out[this.out_pos..this.out_pos + n]);
                this.out_pos += n;
                if this.out_pos == this.out.len() {
                    this.out.clear();
                    this.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if matches!(this.mode, Mode::Transparent) && this.raw.is_empty() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                // End of stream: whatever is left goes on as it is.
                if let Some(block) = this.block.take() {
                    this.out.extend_from_slice(&block.original);
                }
                this.out.append(&mut this.raw);
                this.mode = Mode::Transparent;
                if this.out.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            this.raw.extend_from_slice(read.filled());
            this.process();
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    type Headers = Vec<(Vec<u8>, Vec<u8>)>;

    fn request(authority: &str, path: &str) -> Headers {
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
        .iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        out.push(kind);
        out.push(flags);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// A client connection: preface, SETTINGS, then for each request a HEADERS frame (the
    /// second one split into HEADERS + CONTINUATION) and a DATA frame.
    fn client_bytes(requests: &[Headers]) -> Vec<u8> {
        let mut encoder = fluke_hpack::Encoder::new();
        let mut out = PREFACE.to_vec();
        out.extend(frame(0x4, 0, 0, &[]));
        for (i, headers) in requests.iter().enumerate() {
            let stream = 1 + 2 * i as u32;
            let block = encoder.encode(headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
            if i == 1 {
                let (a, b) = block.split_at(block.len() / 2);
                out.extend(frame(HEADERS, 0, stream, a));
                out.extend(frame(CONTINUATION, END_HEADERS, stream, b));
            } else {
                out.extend(frame(HEADERS, END_HEADERS, stream, &block));
            }
            out.extend(frame(0x0, END_STREAM, stream, b"\0\0\0\0\0"));
        }
        out
    }

    /// What a server reading through the adapter sees: the header lists, in order, decoded
    /// with one HPACK context as h2 does, and the frame kinds.
    fn server_view(bytes: &[u8]) -> (Vec<Headers>, Vec<u8>) {
        assert!(bytes.starts_with(PREFACE));
        let mut decoder = fluke_hpack::Decoder::new();
        let (mut lists, mut kinds, mut block) = (Vec::new(), Vec::new(), Vec::new());
        let mut rest = &bytes[PREFACE.len()..];
        while !rest.is_empty() {
            let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
            let (kind, flags) = (rest[3], rest[4]);
            kinds.push(kind);
            let payload = &rest[FRAME_HEADER..FRAME_HEADER + len];
            if kind == HEADERS || kind == CONTINUATION {
                let (_, fragment) = if kind == HEADERS {
                    split_headers(flags, payload).expect("well-formed HEADERS")
                } else {
                    (None, payload)
                };
                block.extend_from_slice(fragment);
                if flags & END_HEADERS != 0 {
                    lists.push(decoder.decode(&block).expect("decodable block"));
                    block.clear();
                }
            }
            rest = &rest[FRAME_HEADER + len..];
        }
        (lists, kinds)
    }

    /// Reads everything through the adapter, the input arriving `chunk` bytes at a time.
    async fn through(input: &[u8], chunk: usize) -> Vec<u8> {
        let (mut client, server) = tokio::io::duplex(64);
        let input = input.to_vec();
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for piece in input.chunks(chunk) {
                client.write_all(piece).await.expect("write");
            }
        });
        let mut fixed = AuthorityFix::new(server);
        let mut out = Vec::new();
        fixed.read_to_end(&mut out).await.expect("read");
        writer.await.expect("writer");
        out
    }

    #[tokio::test]
    async fn a_url_as_authority_becomes_host_and_port_on_every_request() {
        let requests = vec![
            request("http://127.0.0.1:2379", "/etcdserverpb.Maintenance/Status"),
            request(
                "http://127.0.0.1:2379",
                "/etcdserverpb.Maintenance/Defragment",
            ),
            request("http://127.0.0.1:2379", "/etcdserverpb.Maintenance/Status"),
        ];
        let input = client_bytes(&requests);
        for chunk in [1, 7, 4096] {
            let (lists, kinds) = server_view(&through(&input, chunk).await);
            assert_eq!(lists.len(), 3, "chunk {chunk}");
            for (got, sent) in lists.iter().zip(&requests) {
                let mut want = sent.clone();
                want[3].1 = b"127.0.0.1:2379".to_vec();
                assert_eq!(got, &want, "chunk {chunk}");
            }
            // SETTINGS, then HEADERS and DATA per request (the split block rejoined).
            assert_eq!(kinds, vec![4, 1, 0, 1, 0, 1, 0], "chunk {chunk}");
        }
    }

    #[tokio::test]
    async fn a_valid_authority_leaves_the_connection_byte_for_byte_unchanged() {
        let input = client_bytes(&[
            request("127.0.0.1:2379", "/etcdserverpb.KV/Range"),
            request("127.0.0.1:2379", "/etcdserverpb.KV/Put"),
        ]);
        assert_eq!(through(&input, 5).await, input);
    }

    #[tokio::test]
    async fn http1_and_garbage_pass_through() {
        let http1 = b"POST /v3/kv/range HTTP/1.1\r\nHost: http://x\r\n\r\n{}".to_vec();
        assert_eq!(through(&http1, 3).await, http1);
        let mut truncated = PREFACE.to_vec();
        truncated.extend_from_slice(&[0, 0, 40, HEADERS, END_HEADERS, 0, 0, 0, 1, 0x82]);
        assert_eq!(through(&truncated, 2).await, truncated);
        let mut bad_padding = PREFACE.to_vec();
        bad_padding.extend(frame(HEADERS, END_HEADERS | PADDED, 1, &[200, 0x82]));
        assert_eq!(through(&bad_padding, 64).await, bad_padding);
    }

    #[test]
    fn only_a_url_with_a_valid_host_is_shortened() {
        assert_eq!(
            fixed_authority(b"https://etcd-0.example:2379/"),
            Some(b"etcd-0.example:2379".to_vec())
        );
        assert_eq!(fixed_authority(b"#initially=[http://a:1]"), None);
        assert!(valid_authority(b"127.0.0.1:2379"));
        assert!(!valid_authority(b"http://127.0.0.1:2379"));
    }
}
