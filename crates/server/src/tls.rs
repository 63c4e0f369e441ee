//! TLS for client (and later peer) listeners, with rustls.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

use crate::ServeError;

/// Certificate files of one listener, as etcd's `--cert-file --key-file
/// --trusted-ca-file --client-cert-auth`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub trusted_ca_file: Option<PathBuf>,
    /// Refuse clients without a certificate signed by the trusted CA.
    pub client_cert_auth: bool,
}

fn tls_error(path: &Path, reason: impl std::fmt::Display) -> ServeError {
    ServeError::Tls {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ServeError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(path, e))?;
    if certs.is_empty() {
        return Err(tls_error(path, "no certificate in file"));
    }
    Ok(certs)
}

/// Builds the acceptor; HTTP/2 and HTTP/1.1 are offered by ALPN.
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, ServeError> {
    let certs = load_certs(&files.cert_file)?;
    let key =
        PrivateKeyDer::from_pem_file(&files.key_file).map_err(|e| tls_error(&files.key_file, e))?;
    let builder = ServerConfig::builder();
    let builder = match (&files.trusted_ca_file, files.client_cert_auth) {
        (Some(ca), true) => {
            let mut roots = RootCertStore::empty();
            for cert in load_certs(ca)? {
                roots.add(cert).map_err(|e| tls_error(ca, e))?;
            }
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .map_err(|e| tls_error(ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        (None, true) => {
            return Err(ServeError::Config(
                "--client-cert-auth needs --trusted-ca-file".to_string(),
            ));
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| tls_error(&files.cert_file, e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The client side of peer TLS: the peer CA to trust and this member's certificate as its
/// client identity (etcd uses the same pair for both directions).
pub fn client_config(files: &TlsFiles) -> Result<tonic::transport::ClientTlsConfig, ServeError> {
    let read = |path: &Path| std::fs::read(path).map_err(|e| tls_error(path, e));
    let mut config = tonic::transport::ClientTlsConfig::new().identity(
        tonic::transport::Identity::from_pem(read(&files.cert_file)?, read(&files.key_file)?),
    );
    if let Some(ca) = &files.trusted_ca_file {
        config = config.ca_certificate(tonic::transport::Certificate::from_pem(read(ca)?));
    }
    Ok(config)
}
