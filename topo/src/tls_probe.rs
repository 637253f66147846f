//! A one-off TLS handshake with an etcd endpoint, to learn *why* a connection
//! was dropped: with TLS 1.3 a server judges the client certificate only after
//! the client has finished its side of the handshake, so the gRPC client may see
//! just "connection closed" instead of the server's alert, depending on timing.
//! This probe finishes the handshake and then *reads* first, so the server's
//! verdict (an alert, or its HTTP/2 settings) arrives deterministically. It also
//! tells a TLS-only server from a plaintext one when cairn was given no TLS flags.
//!
//! IO only (rustls through `tokio-rustls`, the same stack tonic uses); the
//! meaning of the verdict is [`crate::explain`]'s. Calls nothing else of the crate.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// What the server made of the handshake.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The handshake failed or the server sent an alert: rustls's description
    /// (e.g. "invalid peer certificate: UnknownIssuer", "received fatal alert:
    /// BadCertificate").
    Refused(String),
    /// The server accepted us (it sent data, or kept the connection open).
    Accepted,
    /// Nothing can be said (no TCP connection, bad local files, no answer).
    Unknown,
}

/// How long the whole probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long to wait for the server's verdict after the handshake.
const VERDICT_WAIT: Duration = Duration::from_millis(700);

/// Handshakes with `host_port` trusting the CAs in `ca_pem` (none: every server
/// certificate is refused, which still proves the server speaks TLS) and
/// presenting `identity` (certificate chain PEM, key PEM) if given.
pub(crate) async fn probe(
    host_port: &str,
    ca_pem: Option<&[u8]>,
    identity: Option<(&[u8], &[u8])>,
) -> Verdict {
    tokio::time::timeout(PROBE_TIMEOUT, probe_inner(host_port, ca_pem, identity))
        .await
        .unwrap_or(Verdict::Unknown)
}

async fn probe_inner(
    host_port: &str,
    ca_pem: Option<&[u8]>,
    identity: Option<(&[u8], &[u8])>,
) -> Verdict {
    let Some(config) = client_config(ca_pem, identity) else {
        return Verdict::Unknown;
    };
    let host = host_port
        .rsplit_once(':')
        .map_or(host_port, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let Ok(name) = ServerName::try_from(host.to_string()) else {
        return Verdict::Unknown;
    };
    let Ok(tcp) = TcpStream::connect(host_port).await else {
        return Verdict::Unknown;
    };
    let mut tls = match TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
    {
        Ok(s) => s,
        Err(e) => return Verdict::Refused(e.to_string()),
    };
    let mut buf = [0u8; 64];
    match tokio::time::timeout(VERDICT_WAIT, tls.read(&mut buf)).await {
        Ok(Err(e)) => Verdict::Refused(e.to_string()),
        Ok(Ok(0)) => {
            Verdict::Refused("the server closed the connection after the handshake".into())
        }
        Ok(Ok(_)) | Err(_) => Verdict::Accepted,
    }
}

/// A rustls client config like tonic's: ring, safe defaults, ALPN h2.
fn client_config(ca_pem: Option<&[u8]>, identity: Option<(&[u8], &[u8])>) -> Option<ClientConfig> {
    let mut roots = RootCertStore::empty();
    if let Some(pem) = ca_pem {
        for cert in CertificateDer::pem_slice_iter(pem) {
            roots.add(cert.ok()?).ok()?;
        }
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert_pem, key_pem)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
                .collect::<Result<_, _>>()
                .ok()?;
            let key = PrivateKeyDer::from_pem_slice(key_pem).ok()?;
            builder.with_client_auth_cert(chain, key).ok()?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Some(config)
}
