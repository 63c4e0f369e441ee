//! A small HTTP/1.1 client for the JSON gateway tests, over any `Read + Write` stream
//! (plain TCP, or rustls for https): fixed-length and chunked bodies (trailers skipped),
//! and a line reader for streamed (newline-delimited) responses with a deadline.
//!
//! Include it with `#[path = "common/http.rs"] mod http;`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A whole response.
#[derive(Debug)]
pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl HttpResponse {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }
}

fn write_request(
    stream: &mut impl Write,
    method: &str,
    path: &str,
    body: Option<&str>,
    close: bool,
) {
    write_typed_request(stream, method, path, "application/json", body, close);
}

fn write_typed_request(
    stream: &mut impl Write,
    method: &str,
    path: &str,
    content_type: &str,
    body: Option<&str>,
    close: bool,
) {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    if let Some(body) = body {
        head.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("write request");
    if let Some(body) = body {
        stream.write_all(body.as_bytes()).expect("write body");
    }
    stream.flush().expect("flush request");
}

fn try_read_line(reader: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn read_line(reader: &mut impl BufRead) -> String {
    try_read_line(reader).expect("read a response line")
}

/// Reads the status line and headers.
fn read_head(reader: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    let status_line = read_line(reader);
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader);
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    (status, headers)
}

fn is_chunked(headers: &[(String, String)]) -> bool {
    headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    })
}

/// Reads one chunk of a chunked body; `None` at the last (empty) chunk, after its trailers.
fn try_read_chunk(reader: &mut impl BufRead) -> std::io::Result<Option<Vec<u8>>> {
    let size_line = try_read_line(reader)?;
    let hex = size_line.split(';').next().unwrap_or("").trim();
    let size = usize::from_str_radix(hex, 16)
        .unwrap_or_else(|_| panic!("bad chunk size line {size_line:?}"));
    if size == 0 {
        // Trailers (grpc-gateway sends some), then the blank line.
        while !try_read_line(reader)?.is_empty() {}
        return Ok(None);
    }
    let mut chunk = vec![0; size];
    reader.read_exact(&mut chunk)?;
    assert!(
        try_read_line(reader)?.is_empty(),
        "chunk not followed by CRLF"
    );
    Ok(Some(chunk))
}

fn read_chunk(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    try_read_chunk(reader).expect("read a chunk")
}

fn read_body(reader: &mut impl BufRead, headers: &[(String, String)]) -> Vec<u8> {
    if is_chunked(headers) {
        let mut body = Vec::new();
        while let Some(chunk) = read_chunk(reader) {
            body.extend(chunk);
        }
        return body;
    }
    let length = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse::<usize>().expect("numeric content-length"));
    let mut body = Vec::new();
    match length {
        Some(n) => {
            body.resize(n, 0);
            reader.read_exact(&mut body).expect("read the body");
        }
        None => {
            reader.read_to_end(&mut body).expect("read the body");
        }
    }
    body
}

/// One request on `stream` (which is then done with); the body, if any, is sent as JSON.
pub(crate) fn request_on<S: Read + Write>(
    mut stream: S,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> HttpResponse {
    write_request(&mut stream, method, path, body, true);
    let mut reader = BufReader::new(stream);
    let (status, headers) = read_head(&mut reader);
    let body = read_body(&mut reader, &headers);
    HttpResponse {
        status,
        headers,
        body,
    }
}

/// Any method, with a body of the given content type (e.g. `application/merge-patch+json`).
pub(crate) fn send(
    endpoint: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: Option<&str>,
) -> HttpResponse {
    let mut stream = connect(endpoint);
    write_typed_request(&mut stream, method, path, content_type, body, true);
    let mut reader = BufReader::new(stream);
    let (status, headers) = read_head(&mut reader);
    let body = read_body(&mut reader, &headers);
    HttpResponse {
        status,
        headers,
        body,
    }
}

/// A request without a body and with extra headers (e.g. `Accept`).
pub(crate) fn send_with_headers(
    endpoint: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> HttpResponse {
    let mut stream = connect(endpoint);
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("write request");
    let mut reader = BufReader::new(stream);
    let (status, headers) = read_head(&mut reader);
    let body = read_body(&mut reader, &headers);
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn connect(endpoint: &str) -> TcpStream {
    let tcp = TcpStream::connect(endpoint).unwrap_or_else(|e| panic!("connect {endpoint}: {e}"));
    tcp.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("read timeout");
    tcp.set_write_timeout(Some(Duration::from_secs(15)))
        .expect("write timeout");
    tcp
}

/// `POST path` with a JSON body over plain TCP.
pub(crate) fn post(endpoint: &str, path: &str, body: &str) -> HttpResponse {
    request_on(connect(endpoint), "POST", path, Some(body))
}

/// `GET path` over plain TCP.
pub(crate) fn get(endpoint: &str, path: &str) -> HttpResponse {
    request_on(connect(endpoint), "GET", path, None)
}

/// A streamed response read line by line (grpc-gateway's newline-delimited JSON).
pub(crate) struct LineStream {
    pub(crate) status: u16,
    reader: BufReader<TcpStream>,
    chunked: bool,
    pending: Vec<u8>,
}

impl LineStream {
    /// `POST path` and read the response head; the body is read by [`LineStream::next_line`].
    pub(crate) fn open(endpoint: &str, path: &str, body: &str) -> LineStream {
        Self::open_with(endpoint, "POST", path, Some(body))
    }

    /// `GET path` (a Kubernetes-style watch) and read the response head.
    pub(crate) fn get(endpoint: &str, path: &str) -> LineStream {
        Self::open_with(endpoint, "GET", path, None)
    }

    fn open_with(endpoint: &str, method: &str, path: &str, body: Option<&str>) -> LineStream {
        let mut tcp = connect(endpoint);
        write_request(&mut tcp, method, path, body, false);
        let mut reader = BufReader::new(tcp);
        let (status, headers) = read_head(&mut reader);
        LineStream {
            status,
            chunked: is_chunked(&headers),
            reader,
            pending: Vec::new(),
        }
    }

    /// The next line of the body, waiting at most `within`; panics on timeout or end of
    /// stream, naming what was expected.
    pub(crate) fn next_line(&mut self, within: Duration, what: &str) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(pos) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=pos).collect();
                return String::from_utf8_lossy(&line).trim_end().to_string();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no {what} line within {within:?}");
            self.reader
                .get_ref()
                .set_read_timeout(Some(left))
                .expect("read timeout");
            let read = if self.chunked {
                try_read_chunk(&mut self.reader)
            } else {
                let mut buf = [0; 4096];
                self.reader
                    .read(&mut buf)
                    .map(|n| (n > 0).then(|| buf[..n].to_vec()))
            };
            match read {
                Ok(Some(bytes)) => self.pending.extend(bytes),
                Ok(None) => panic!("stream ended while waiting for {what}"),
                Err(e) => panic!("no {what} line within {within:?}: {e}"),
            }
        }
    }
}
