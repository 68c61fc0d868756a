//! HTTPS on the Kinesis listener: a certificate chain and its private key from PEM files
//! (`kinesis_tls_cert`, `kinesis_tls_key`), served with rustls on the ring provider, offering
//! HTTP/1.1 over ALPN. Clients authenticate with SigV4, not certificates.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

/// The ALPN protocol the listener offers (the server speaks HTTP/1.1 only).
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Loads the certificate chain at `certificate` and the key at `key` (PEM). Errors name the
/// configuration key at fault: `kinesis_tls_cert: ...` or `kinesis_tls_key: ...`.
pub fn server_config(certificate: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let shown = certificate.display();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certificate)
        .map_err(|error| format!("kinesis_tls_cert: cannot read {shown}: {error}"))?
        .collect::<Result<_, _>>()
        .map_err(|error| format!("kinesis_tls_cert: {shown} is not a PEM certificate chain: {error}"))?;
    if chain.is_empty() {
        return Err(format!("kinesis_tls_cert: {shown} holds no PEM certificate"));
    }
    let key_shown = key.display();
    let private_key = PrivateKeyDer::from_pem_file(key)
        .map_err(|error| format!("kinesis_tls_key: {key_shown} holds no usable PEM private key: {error}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("kinesis_tls_cert: {error}"))?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|error| format!("kinesis_tls_key: {key_shown} does not fit the certificate in {shown}: {error}"))?;
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    struct Files {
        _dir: tempfile::TempDir,
        certificate: PathBuf,
        key: PathBuf,
        certificate_der: CertificateDer<'static>,
    }

    fn files() -> Files {
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("a certificate");
        let dir = tempfile::tempdir().expect("a directory");
        let certificate = dir.path().join("kinesis.pem");
        let key = dir.path().join("kinesis.key");
        std::fs::write(&certificate, generated.cert.pem()).expect("written");
        std::fs::write(&key, generated.signing_key.serialize_pem()).expect("written");
        Files { _dir: dir, certificate, key, certificate_der: generated.cert.der().clone() }
    }

    #[test]
    fn bad_files_are_named_by_their_key() {
        let files = files();
        let missing = files.certificate.with_file_name("absent.pem");
        assert!(server_config(&missing, &files.key).unwrap_err().starts_with("kinesis_tls_cert: "));
        assert!(server_config(&files.key, &files.key).unwrap_err().starts_with("kinesis_tls_cert: "));
        assert!(server_config(&files.certificate, &files.certificate).unwrap_err().starts_with("kinesis_tls_key: "));
        let other = super::tests::files();
        assert!(server_config(&files.certificate, &other.key).unwrap_err().starts_with("kinesis_tls_key: "));
        let config = server_config(&files.certificate, &files.key).expect("loaded");
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[tokio::test]
    async fn a_client_trusting_the_certificate_gets_an_https_answer() {
        let files = files();
        let config = server_config(&files.certificate, &files.key).expect("loaded");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bound");
        let address = listener.local_addr().expect("an address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handler = |_request| async {
            hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(b"hello over TLS")))
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let server = tokio::spawn(super::super::server::serve_with(listener, Some(acceptor), handler, async {
            let _ = stopped.await;
        }));

        let mut roots = rustls::RootCertStore::empty();
        roots.add(files.certificate_der.clone()).expect("trusted");
        let mut client =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let tcp = tokio::net::TcpStream::connect(address).await.expect("connected");
        let mut tls =
            connector.connect(ServerName::try_from("localhost").expect("a name"), tcp).await.expect("handshake");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.expect("sent");
        let mut answer = Vec::new();
        tls.read_to_end(&mut answer).await.expect("read");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("hello over TLS"), "{answer}");

        // A plain-text client gets no HTTP answer from an HTTPS listener.
        let mut plain = tokio::net::TcpStream::connect(address).await.expect("connected");
        plain.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("sent");
        let mut answer = Vec::new();
        let _ = plain.read_to_end(&mut answer).await;
        assert!(!answer.starts_with(b"HTTP/1.1"));

        stop.send(()).expect("the server listens");
        server.await.expect("stopped");
    }
}
