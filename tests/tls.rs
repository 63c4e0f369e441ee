//! Client TLS end to end: a CA, a server certificate (SAN 127.0.0.1) and client
//! certificates are made at test time with rcgen; `stead serve` gets etcd's flags
//! `--cert-file --key-file --trusted-ca-file --client-cert-auth`, and etcdctl (Go's TLS) and
//! a rustls HTTP client (the JSON gateway) talk to it over https.

mod common;
#[path = "common/http.rs"]
mod http;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Proc, require_tool, start_stead, stead_bin};
use http::HttpResponse;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// PEM files of a test PKI.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    /// A client certificate signed by a CA the server does not trust.
    rogue_cert: PathBuf,
    rogue_key: PathBuf,
}

fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA cert")
}

/// Writes a leaf certificate and its key signed by `ca`; returns (cert, key) paths.
fn leaf(
    dir: &Path,
    name: &str,
    sans: &[&str],
    usage: ExtendedKeyUsagePurpose,
    ca: &CertifiedIssuer<'static, KeyPair>,
) -> (PathBuf, PathBuf) {
    let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(sans).expect("leaf params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().expect("leaf key");
    let cert = params.signed_by(&key, ca).expect("sign leaf");
    let cert_path = dir.join(format!("{name}.pem"));
    let key_path = dir.join(format!("{name}-key.pem"));
    std::fs::write(&cert_path, cert.pem()).expect("write cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    (cert_path, key_path)
}

fn make_pki(dir: &Path) -> Pki {
    std::fs::create_dir_all(dir).expect("mkdir pki");
    let ca = new_ca("stead test CA");
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).expect("write CA");
    let (server_cert, server_key) = leaf(
        dir,
        "server",
        &["127.0.0.1", "localhost"],
        ExtendedKeyUsagePurpose::ServerAuth,
        &ca,
    );
    let (client_cert, client_key) =
        leaf(dir, "client", &[], ExtendedKeyUsagePurpose::ClientAuth, &ca);
    let rogue_ca = new_ca("somebody else's CA");
    let (rogue_cert, rogue_key) = leaf(
        dir,
        "rogue",
        &[],
        ExtendedKeyUsagePurpose::ClientAuth,
        &rogue_ca,
    );
    Pki {
        ca: ca_path,
        server_cert,
        server_key,
        client_cert,
        client_key,
        rogue_cert,
        rogue_key,
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Starts stead on an https client URL with the PKI's server certificate.
fn start_tls_stead(dir: &Path, pki: &Pki, client_cert_auth: bool) -> Proc {
    let mut args = vec![
        "--cert-file",
        path(&pki.server_cert),
        "--key-file",
        path(&pki.server_key),
        "--trusted-ca-file",
        path(&pki.ca),
    ];
    if client_cert_auth {
        args.push("--client-cert-auth");
    }
    start_stead(&dir.join("data"), &args)
}

/// Runs etcdctl against `https://endpoint` with the given TLS flags.
fn etcdctl_tls(endpoint: &str, tls: &[&str], args: &[&str]) -> Output {
    Command::new(require_tool("etcdctl"))
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints=https://{endpoint}"))
        .arg("--dial-timeout=3s")
        .arg("--command-timeout=5s")
        .args(tls)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run etcdctl")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn report(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        stdout(out),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn etcdctl_with_a_ca_signed_client_cert_puts_and_gets_over_mutual_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = make_pki(&dir.path().join("pki"));
    let server = start_tls_stead(dir.path(), &pki, true);
    let tls = [
        "--cacert",
        path(&pki.ca),
        "--cert",
        path(&pki.client_cert),
        "--key",
        path(&pki.client_key),
    ];
    let out = etcdctl_tls(&server.endpoint, &tls, &["put", "secure", "value"]);
    assert!(out.status.success(), "{}", report(&out));
    assert_eq!(stdout(&out), "OK\n");
    let out = etcdctl_tls(&server.endpoint, &tls, &["get", "secure"]);
    assert!(out.status.success(), "{}", report(&out));
    assert_eq!(stdout(&out), "secure\nvalue\n");
    let out = etcdctl_tls(&server.endpoint, &tls, &["endpoint", "health"]);
    assert!(out.status.success(), "{}", report(&out));
}

#[test]
fn clients_without_a_trusted_certificate_are_refused_under_client_cert_auth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = make_pki(&dir.path().join("pki"));
    let server = start_tls_stead(dir.path(), &pki, true);
    let ep = &server.endpoint;

    let no_cert = etcdctl_tls(ep, &["--cacert", path(&pki.ca)], &["put", "k", "nocert"]);
    assert!(!no_cert.status.success(), "{}", report(&no_cert));
    assert!(!stdout(&no_cert).contains("OK"), "{}", report(&no_cert));

    let rogue = [
        "--cacert",
        path(&pki.ca),
        "--cert",
        path(&pki.rogue_cert),
        "--key",
        path(&pki.rogue_key),
    ];
    let out = etcdctl_tls(ep, &rogue, &["put", "k", "rogue"]);
    assert!(!out.status.success(), "{}", report(&out));

    // Plain gRPC to the TLS port is not served either.
    let out = Command::new(require_tool("etcdctl"))
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints=http://{ep}"))
        .args([
            "--dial-timeout=3s",
            "--command-timeout=5s",
            "put",
            "k",
            "plain",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run etcdctl");
    assert!(!out.status.success(), "{}", report(&out));

    // None of those wrote anything, and a good client still gets in.
    let good = [
        "--cacert",
        path(&pki.ca),
        "--cert",
        path(&pki.client_cert),
        "--key",
        path(&pki.client_key),
    ];
    let out = etcdctl_tls(ep, &good, &["get", "k"]);
    assert!(out.status.success(), "{}", report(&out));
    assert_eq!(stdout(&out), "", "a refused client wrote a key");
    assert!(
        !server.log_text().contains("panicked"),
        "{}",
        server.log_text()
    );
}

#[test]
fn a_tls_server_without_client_cert_auth_accepts_a_client_that_has_only_the_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = make_pki(&dir.path().join("pki"));
    let server = start_tls_stead(dir.path(), &pki, false);
    let tls = ["--cacert", path(&pki.ca)];
    let out = etcdctl_tls(&server.endpoint, &tls, &["put", "open", "door"]);
    assert!(out.status.success(), "{}", report(&out));
    let out = etcdctl_tls(
        &server.endpoint,
        &tls,
        &["get", "open", "--print-value-only"],
    );
    assert!(out.status.success(), "{}", report(&out));
    assert_eq!(stdout(&out), "door\n");
}

fn load_certs(p: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(p)
        .expect("open cert")
        .collect::<Result<_, _>>()
        .expect("parse cert")
}

/// A rustls client trusting the test CA, presenting the client certificate if asked.
fn client_config(pki: &Pki, with_cert: bool) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(&pki.ca) {
        roots.add(cert).expect("add CA");
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots);
    let config = if with_cert {
        let key = PrivateKeyDer::from_pem_file(&pki.client_key).expect("client key");
        builder
            .with_client_auth_cert(load_certs(&pki.client_cert), key)
            .expect("client cert")
    } else {
        builder.with_no_client_auth()
    };
    Arc::new(config)
}

fn tls_stream(
    endpoint: &str,
    config: Arc<ClientConfig>,
) -> StreamOwned<ClientConnection, TcpStream> {
    let tcp = TcpStream::connect(endpoint).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let name = ServerName::try_from("127.0.0.1").expect("server name");
    let conn = ClientConnection::new(config, name).expect("TLS client");
    StreamOwned::new(conn, tcp)
}

fn https(
    endpoint: &str,
    config: &Arc<ClientConfig>,
    method: &str,
    p: &str,
    body: Option<&str>,
) -> HttpResponse {
    http::request_on(tls_stream(endpoint, config.clone()), method, p, body)
}

#[test]
fn the_json_gateway_answers_over_https_only_to_clients_with_a_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = make_pki(&dir.path().join("pki"));
    let server = start_tls_stead(dir.path(), &pki, true);
    let ep = &server.endpoint;
    let config = client_config(&pki, true);

    let health = https(ep, &config, "GET", "/health", None);
    assert_eq!(
        (health.status, health.text()),
        (200, r#"{"health":"true"}"#.to_string())
    );
    // key "gw", value "ok" in base64.
    let put = https(
        ep,
        &config,
        "POST",
        "/v3/kv/put",
        Some(r#"{"key":"Z3c=","value":"b2s="}"#),
    );
    assert_eq!(put.status, 200, "{}", put.text());
    let range = https(
        ep,
        &config,
        "POST",
        "/v3/kv/range",
        Some(r#"{"key":"Z3c="}"#),
    );
    assert_eq!(range.status, 200, "{}", range.text());
    let kvs = &range.json()["kvs"];
    assert_eq!(kvs[0]["value"], "b2s=", "{}", range.text());

    // Without a certificate the handshake is refused: no HTTP response comes back.
    let mut stream = tls_stream(ep, client_config(&pki, false));
    let sent = stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut answer = Vec::new();
    let read = stream.read_to_end(&mut answer);
    assert!(
        sent.is_err() || read.is_err() || answer.is_empty(),
        "a client without a certificate got an answer: {}",
        String::from_utf8_lossy(&answer)
    );
}

/// Runs `stead serve` that is expected to exit by itself; returns (exit success, stderr).
fn serve_expecting_exit(dir: &Path, args: &[&str]) -> (bool, String) {
    let mut child = Command::new(stead_bin())
        .arg("serve")
        .args(["--data-dir", path(&dir.join("data"))])
        .args(["--listen-client-urls", "https://127.0.0.1:0"])
        .args(["--listen-api-url", "http://127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stead");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("stead serve {args:?} kept running with unusable TLS files");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unusable_tls_files_stop_serve_with_an_error_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = make_pki(&dir.path().join("pki"));
    let missing = dir.path().join("missing.pem");
    let not_pem = dir.path().join("not-a-cert.pem");
    std::fs::write(&not_pem, "hello\n").expect("write");
    for (cert, key) in [
        (&missing, &pki.server_key),
        (&not_pem, &pki.server_key),
        (&pki.server_cert, &not_pem),
    ] {
        let (ok, stderr) = serve_expecting_exit(
            dir.path(),
            &["--cert-file", path(cert), "--key-file", path(key)],
        );
        assert!(!ok, "serve succeeded with {cert:?} {key:?}");
        let bad = if cert == &pki.server_cert { key } else { cert };
        assert!(
            stderr.contains(path(bad)),
            "the error does not name {bad:?}:\n{stderr}"
        );
    }
}

#[test]
fn members_replicate_over_peer_tls_and_refuse_peers_without_a_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki_dir = dir.path().join("pki");
    std::fs::create_dir_all(&pki_dir).expect("mkdir pki");
    let ca = new_ca("stead peer CA");
    let ca_path = pki_dir.join("peer-ca.pem");
    std::fs::write(&ca_path, ca.pem()).expect("write CA");
    // One certificate per member serves both directions of peer traffic.
    let sans: Vec<String> = vec!["127.0.0.1".into(), "localhost".into()];
    let mut params = CertificateParams::new(sans).expect("params");
    params.distinguished_name.push(DnType::CommonName, "member");
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &ca).expect("sign");
    let (cert_path, key_path) = (pki_dir.join("member.pem"), pki_dir.join("member-key.pem"));
    std::fs::write(&cert_path, cert.pem()).expect("write cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");

    let flags = [
        "--peer-cert-file",
        path(&cert_path),
        "--peer-key-file",
        path(&key_path),
        "--peer-trusted-ca-file",
        path(&ca_path),
        "--peer-client-cert-auth",
    ];
    let cluster = common::Cluster::start_with(dir.path(), 3, &flags);
    // Replication works: a write through one member is read back through another.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let out = common::etcdctl(&cluster.endpoint(0), &["put", "secret", "over-tls"], None);
        if out.status.success() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no write over peer TLS: {}",
            report(&out)
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let got = common::etcdctl(
        &cluster.endpoint(2),
        &["get", "secret", "--print-value-only"],
        None,
    );
    assert_eq!(stdout(&got).trim(), "over-tls", "{}", report(&got));
    for log in cluster.dirs.iter().map(|d| d.with_extension("log")) {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(!text.contains("panicked"), "{text}");
    }
    // A peer port refuses a TLS client without a certificate from the peer CA.
    let peer = format!("127.0.0.1:{}", cluster.ports[1].1);
    let out = etcdctl_tls(&peer, &["--cacert", path(&ca_path)], &["get", "secret"]);
    assert!(
        !out.status.success(),
        "a peer port served a client without a certificate"
    );
}
