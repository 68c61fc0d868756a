//! Cluster certificates and the TLS configuration of the QUIC peer transport.
//!
//! One cluster CA signs one certificate per node. A node certificate carries exactly one DNS
//! subject alternative name, `node-<id>.riffle` ([`node_server_name`]): the client side checks it
//! as the server name of the node it dialled, and the server side reads the caller's node id
//! from it ([`node_id_from_certificate`]). No message field ever claims an identity.
//!
//! Both directions are mutually authenticated: the server requires a client certificate
//! signed by the cluster CA, and the client trusts the cluster CA only (no system roots).
//!
//! Files are written once and never overwritten: a `.pem` present means the pair is complete,
//! so generation is idempotent and safe to repeat on every start. Keys are written with mode
//! 0600 and each file is renamed into place after an fsync, key first, certificate last.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

/// ALPN protocol of the peer transport. A new wire version gets a new name.
pub const PEER_ALPN: &[u8] = b"riffle-peer/1";

/// File names inside a CA directory and a node directory.
pub const CA_CERTIFICATE_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca.key";
pub const NODE_CERTIFICATE_FILE: &str = "node.pem";
pub const NODE_KEY_FILE: &str = "node.key";

/// How long a generated CA certificate is valid, from generation.
pub const CA_VALIDITY_DAYS: u64 = 3650;
/// How long a generated node certificate is valid, from generation.
pub const NODE_CERTIFICATE_VALIDITY_DAYS: u64 = 825;
/// How far in the past generated certificates start to be valid, to tolerate clock skew.
pub const NOT_BEFORE_SKEW_DAYS: u64 = 1;

const SECONDS_PER_DAY: u64 = 86_400;
const CA_COMMON_NAME: &str = "Riffle cluster CA";
const ORGANIZATION_NAME: &str = "Riffle";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: {reason}", path.display())]
    BadFile { path: PathBuf, reason: String },
    #[error("{} exists but {} does not; restore it or remove both to regenerate", present.display(), missing.display())]
    Incomplete { present: PathBuf, missing: PathBuf },
    #[error("generating a certificate failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("building the TLS configuration failed: {0}")]
    Config(String),
}

/// The DNS name node `node_id`'s certificate carries: `node-<id>.riffle`.
pub fn node_server_name(node_id: u64) -> String {
    format!("node-{node_id}.riffle")
}

/// Writes `ca.pem` and `ca.key` (a self-signed cluster CA) into `dir`, unless `ca.pem` is
/// already there. Creates `dir` if needed.
pub fn generate_cluster_ca(dir: &Path) -> Result<(), TlsError> {
    let certificate_path = dir.join(CA_CERTIFICATE_FILE);
    let key_path = dir.join(CA_KEY_FILE);
    if is_complete(&certificate_path, &key_path)? {
        return Ok(());
    }
    create_dir(dir)?;
    let mut params = ca_params();
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    set_validity(&mut params, CA_VALIDITY_DAYS);
    let key = KeyPair::generate()?;
    let certificate = params.self_signed(&key)?;
    write_new_file(&key_path, key.serialize_pem().as_bytes(), FileMode::Private)?;
    write_new_file(&certificate_path, certificate.pem().as_bytes(), FileMode::Public)?;
    Ok(())
}

/// Writes `node.pem` and `node.key` for `node_id` into `out_dir`, signed by the CA in
/// `ca_dir`, unless `node.pem` is already there. The certificate names `node-<id>.riffle` and
/// is valid for both server and client authentication.
///
/// The CA must be one [`generate_cluster_ca`] made: its subject is rebuilt rather than parsed.
/// The new certificate is verified against `ca.pem` before it is written, so a CA from
/// elsewhere fails here instead of at the first handshake.
pub fn issue_node_certificate(ca_dir: &Path, node_id: u64, out_dir: &Path) -> Result<(), TlsError> {
    let certificate_path = out_dir.join(NODE_CERTIFICATE_FILE);
    let key_path = out_dir.join(NODE_KEY_FILE);
    if is_complete(&certificate_path, &key_path)? {
        return Ok(());
    }
    let ca_certificate_path = ca_dir.join(CA_CERTIFICATE_FILE);
    let ca_key_path = ca_dir.join(CA_KEY_FILE);
    let ca_certificate = read_certificates(&ca_certificate_path)?.remove(0);
    let ca_key_pem = read_text(&ca_key_path)?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|error| TlsError::BadFile {
        path: ca_key_path.clone(),
        reason: format!("not a usable private key: {error}"),
    })?;
    let issuer = Issuer::new(ca_params(), ca_key);

    let name = node_server_name(node_id);
    let mut params = CertificateParams::new(vec![name.clone()])?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.distinguished_name.push(DnType::OrganizationName, ORGANIZATION_NAME);
    params.use_authority_key_identifier_extension = true;
    params.key_usages.push(KeyUsagePurpose::DigitalSignature);
    params.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth);
    params.extended_key_usages.push(ExtendedKeyUsagePurpose::ClientAuth);
    set_validity(&mut params, NODE_CERTIFICATE_VALIDITY_DAYS);
    let key = KeyPair::generate()?;
    let certificate = params.signed_by(&key, &issuer)?;

    verify_node_certificate(&ca_certificate, certificate.der()).map_err(|reason| TlsError::BadFile {
        path: ca_certificate_path,
        reason: format!(
            "the CA key in {} does not issue certificates this CA verifies: {reason}",
            ca_key_path.display()
        ),
    })?;
    create_dir(out_dir)?;
    write_new_file(&key_path, key.serialize_pem().as_bytes(), FileMode::Private)?;
    write_new_file(&certificate_path, certificate.pem().as_bytes(), FileMode::Public)?;
    Ok(())
}

/// Where the local dev cluster keeps its certificates: the CA under `tls_root/ca`, node `id`
/// under `tls_root/node-<id>/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeTlsPaths {
    pub ca_certificate: PathBuf,
    pub node_certificate: PathBuf,
    pub node_key: PathBuf,
}

impl NodeTlsPaths {
    pub fn dev(tls_root: &Path, node_id: u64) -> NodeTlsPaths {
        let node_dir = dev_node_dir(tls_root, node_id);
        NodeTlsPaths {
            ca_certificate: dev_ca_dir(tls_root).join(CA_CERTIFICATE_FILE),
            node_certificate: node_dir.join(NODE_CERTIFICATE_FILE),
            node_key: node_dir.join(NODE_KEY_FILE),
        }
    }

    pub fn load(&self) -> Result<NodeTls, TlsError> {
        NodeTls::load(&self.ca_certificate, &self.node_certificate, &self.node_key)
    }
}

/// Creates the dev cluster's CA and a certificate for each of `node_ids` where missing
/// (layout in [`NodeTlsPaths::dev`]). Existing files are kept.
pub fn ensure_dev_certificates(tls_root: &Path, node_ids: &[u64]) -> Result<(), TlsError> {
    let ca_dir = dev_ca_dir(tls_root);
    generate_cluster_ca(&ca_dir)?;
    for &node_id in node_ids {
        issue_node_certificate(&ca_dir, node_id, &dev_node_dir(tls_root, node_id))?;
    }
    Ok(())
}

/// The id of the node `certificate` names, among `candidates`, if it names exactly one.
///
/// The certificate must already have been verified against the cluster CA (the TLS handshake
/// does this); this only reads which `node-<id>.riffle` name it is valid for.
pub fn node_id_from_certificate(
    certificate: &CertificateDer<'_>,
    candidates: impl IntoIterator<Item = u64>,
) -> Option<u64> {
    let end_entity = webpki::EndEntityCert::try_from(certificate).ok()?;
    let mut matches = candidates.into_iter().filter(|&candidate| {
        ServerName::try_from(node_server_name(candidate))
            .is_ok_and(|name| end_entity.verify_is_valid_for_subject_name(&name).is_ok())
    });
    let first = matches.next()?;
    // A certificate valid for two node names (a wildcard, say) identifies no single node.
    matches.next().is_none().then_some(first)
}

/// A node's TLS material: the cluster CA it trusts and its own certificate and key.
pub struct NodeTls {
    ca_certificate: CertificateDer<'static>,
    node_certificates: Vec<CertificateDer<'static>>,
    node_key: PrivateKeyDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("NodeTls")
            .field("node_certificates", &self.node_certificates.len())
            .finish_non_exhaustive()
    }
}

impl NodeTls {
    /// Reads the CA certificate, the node certificate (chain) and the node key, all PEM, and
    /// checks that the node certificate is currently valid and signed by the CA. Errors name
    /// the file that was bad.
    pub fn load(ca_certificate: &Path, node_certificate: &Path, node_key: &Path) -> Result<NodeTls, TlsError> {
        let mut ca_certificates = read_certificates(ca_certificate)?;
        if ca_certificates.len() != 1 {
            return Err(TlsError::BadFile {
                path: ca_certificate.to_path_buf(),
                reason: format!("expected exactly one CA certificate, found {}", ca_certificates.len()),
            });
        }
        let node_certificates = read_certificates(node_certificate)?;
        let key_pem = read_bytes(node_key)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|error| TlsError::BadFile {
            path: node_key.to_path_buf(),
            reason: format!("no usable PEM private key: {error}"),
        })?;
        let tls = NodeTls {
            ca_certificate: ca_certificates.remove(0),
            node_certificates,
            node_key: key,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        };
        verify_node_certificate(&tls.ca_certificate, &tls.node_certificates[0]).map_err(|reason| {
            TlsError::BadFile {
                path: node_certificate.to_path_buf(),
                reason: format!("not valid under {}: {reason}", ca_certificate.display()),
            }
        })?;
        // Building a client configuration checks that the key matches the certificate.
        tls.rustls_client_config().map_err(|error| TlsError::BadFile {
            path: node_key.to_path_buf(),
            reason: format!("unusable with {}: {error}", node_certificate.display()),
        })?;
        Ok(tls)
    }

    /// The cluster CA certificate this node trusts.
    pub fn ca_certificate(&self) -> &CertificateDer<'static> {
        &self.ca_certificate
    }

    /// A quinn server configuration that presents this node's certificate and requires a
    /// client certificate signed by the cluster CA. ALPN [`PEER_ALPN`].
    pub fn server_config(&self) -> Result<quinn::ServerConfig, TlsError> {
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots(), self.provider.clone())
            .build()
            .map_err(|error| TlsError::Config(format!("client verifier: {error}")))?;
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|error| TlsError::Config(error.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.node_certificates.clone(), self.node_key.clone_key())
            .map_err(|error| TlsError::Config(format!("node certificate: {error}")))?;
        config.alpn_protocols = vec![PEER_ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(config)
            .map_err(|error| TlsError::Config(error.to_string()))?;
        Ok(quinn::ServerConfig::with_crypto(Arc::new(crypto)))
    }

    /// A quinn client configuration that trusts the cluster CA only and presents this node's
    /// certificate. ALPN [`PEER_ALPN`].
    pub fn client_config(&self) -> Result<quinn::ClientConfig, TlsError> {
        let config = self.rustls_client_config()?;
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(config)
            .map_err(|error| TlsError::Config(error.to_string()))?;
        Ok(quinn::ClientConfig::new(Arc::new(crypto)))
    }

    fn rustls_client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let mut config = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|error| TlsError::Config(error.to_string()))?
            .with_root_certificates(self.roots())
            .with_client_auth_cert(self.node_certificates.clone(), self.node_key.clone_key())
            .map_err(|error| TlsError::Config(format!("node certificate: {error}")))?;
        config.alpn_protocols = vec![PEER_ALPN.to_vec()];
        Ok(config)
    }

    fn roots(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_certificate.clone()).expect("the CA certificate parsed when it was loaded");
        Arc::new(roots)
    }
}

/// The fields of the cluster CA's subject that its issued certificates refer to. Generation
/// and issuing must agree on them, which is why they live in one place.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, CA_COMMON_NAME);
    params.distinguished_name.push(DnType::OrganizationName, ORGANIZATION_NAME);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params
}

fn set_validity(params: &mut CertificateParams, validity_days: u64) {
    let now = SystemTime::now();
    let skew = Duration::from_secs(NOT_BEFORE_SKEW_DAYS * SECONDS_PER_DAY);
    params.not_before = now.checked_sub(skew).unwrap_or(now).into();
    params.not_after = (now + Duration::from_secs(validity_days * SECONDS_PER_DAY)).into();
}

/// Checks `node` against `ca` as both peers of a handshake will: chain, validity period and
/// the client-authentication usage. The server-authentication usage is checked by name at
/// each connect.
fn verify_node_certificate(ca: &CertificateDer<'static>, node: &CertificateDer<'_>) -> Result<(), String> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).map_err(|error| format!("bad CA certificate: {error}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|error| error.to_string())?;
    verifier.verify_client_cert(node, &[], UnixTime::now()).map(|_| ()).map_err(|error| error.to_string())
}

fn dev_ca_dir(tls_root: &Path) -> PathBuf {
    tls_root.join("ca")
}

fn dev_node_dir(tls_root: &Path, node_id: u64) -> PathBuf {
    tls_root.join(format!("node-{node_id}"))
}

/// Whether a certificate/key pair is already on disk. A certificate without its key is an
/// error: it may have been handed out, so it must not be silently replaced.
fn is_complete(certificate: &Path, key: &Path) -> Result<bool, TlsError> {
    let certificate_exists = exists(certificate)?;
    if certificate_exists && !exists(key)? {
        return Err(TlsError::Incomplete { present: certificate.to_path_buf(), missing: key.to_path_buf() });
    }
    Ok(certificate_exists)
}

fn exists(path: &Path) -> Result<bool, TlsError> {
    path.try_exists().map_err(|source| TlsError::Io { path: path.to_path_buf(), source })
}

fn create_dir(dir: &Path) -> Result<(), TlsError> {
    fs::create_dir_all(dir).map_err(|source| TlsError::Io { path: dir.to_path_buf(), source })
}

#[derive(Clone, Copy)]
enum FileMode {
    Private,
    Public,
}

/// Writes `contents` to a temporary file beside `path`, fsyncs it, renames it over `path` and
/// fsyncs the directory, so `path` is either absent or complete after a crash.
fn write_new_file(path: &Path, contents: &[u8], mode: FileMode) -> Result<(), TlsError> {
    let io_error = |source| TlsError::Io { path: path.to_path_buf(), source };
    let mut temporary_name = path.as_os_str().to_os_string();
    temporary_name.push(".tmp");
    let temporary = PathBuf::from(temporary_name);
    let permissions = match mode {
        FileMode::Private => 0o600,
        FileMode::Public => 0o644,
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(permissions)
        .open(&temporary)
        .map_err(io_error)?;
    file.write_all(contents).map_err(io_error)?;
    file.sync_all().map_err(io_error)?;
    drop(file);
    fs::rename(&temporary, path).map_err(io_error)?;
    if let Some(parent) = path.parent() {
        let directory = fs::File::open(parent).map_err(|source| TlsError::Io { path: parent.to_path_buf(), source })?;
        directory.sync_all().map_err(|source| TlsError::Io { path: parent.to_path_buf(), source })?;
    }
    Ok(())
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Io { path: path.to_path_buf(), source })
}

fn read_text(path: &Path) -> Result<String, TlsError> {
    fs::read_to_string(path).map_err(|source| TlsError::Io { path: path.to_path_buf(), source })
}

/// Every certificate in a PEM file; at least one.
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_bytes(path)?;
    let certificates = CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>().map_err(|error| {
        TlsError::BadFile { path: path.to_path_buf(), reason: format!("not a PEM certificate file: {error}") }
    })?;
    if certificates.is_empty() {
        return Err(TlsError::BadFile { path: path.to_path_buf(), reason: "contains no certificate".to_string() });
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::{Ipv4Addr, SocketAddr};

    #[test]
    fn dev_certificates_are_created_once_and_load() {
        let root = tempfile::tempdir().expect("tempdir");
        ensure_dev_certificates(root.path(), &[1, 2]).expect("generate");
        let paths = NodeTlsPaths::dev(root.path(), 1);
        let first_pem = fs::read(&paths.node_certificate).expect("read node.pem");

        // Phase 2: a second run keeps every file.
        ensure_dev_certificates(root.path(), &[1, 2]).expect("regenerate");
        assert_eq!(fs::read(&paths.node_certificate).expect("read node.pem"), first_pem);
        let key_mode = fs::metadata(&paths.node_key).expect("stat node.key").permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&key_mode) & 0o777, 0o600);

        // Phase 3: the files load and name their node.
        let tls = paths.load().expect("load node 1");
        assert_eq!(node_id_from_certificate(&tls.node_certificates[0], [1, 2, 3]), Some(1));
        assert_eq!(node_id_from_certificate(&tls.node_certificates[0], [2, 3]), None);
        assert!(tls.server_config().is_ok());
        assert!(tls.client_config().is_ok());
    }

    #[test]
    fn load_names_the_bad_file() {
        let root = tempfile::tempdir().expect("tempdir");
        ensure_dev_certificates(root.path(), &[1]).expect("generate");
        let paths = NodeTlsPaths::dev(root.path(), 1);

        let missing = NodeTlsPaths { node_key: root.path().join("absent.key"), ..paths.clone() };
        let error = missing.load().expect_err("missing key");
        assert!(error.to_string().contains("absent.key"), "{error}");

        let garbage = root.path().join("garbage.pem");
        fs::write(&garbage, b"not pem").expect("write garbage");
        let error = NodeTlsPaths { node_certificate: garbage.clone(), ..paths.clone() }
            .load()
            .expect_err("garbage certificate");
        assert!(error.to_string().contains("garbage.pem"), "{error}");

        // A certificate from another CA does not load under this one.
        let other = tempfile::tempdir().expect("tempdir");
        ensure_dev_certificates(other.path(), &[1]).expect("generate other");
        let foreign = NodeTlsPaths::dev(other.path(), 1);
        let error = NodeTlsPaths { ca_certificate: paths.ca_certificate.clone(), ..foreign }
            .load()
            .expect_err("foreign certificate");
        assert!(error.to_string().contains("node.pem"), "{error}");
    }

    #[test]
    fn certificate_without_its_key_is_not_replaced() {
        let root = tempfile::tempdir().expect("tempdir");
        ensure_dev_certificates(root.path(), &[1]).expect("generate");
        let paths = NodeTlsPaths::dev(root.path(), 1);
        fs::remove_file(&paths.node_key).expect("remove key");
        let error = ensure_dev_certificates(root.path(), &[1]).expect_err("incomplete pair");
        assert!(matches!(error, TlsError::Incomplete { .. }), "{error}");
    }

    /// The server side of the handshake refuses a client certificate from another CA, even
    /// when the client itself trusts the cluster CA.
    #[tokio::test]
    async fn server_refuses_a_client_certificate_from_another_ca() {
        let root = tempfile::tempdir().expect("tempdir");
        ensure_dev_certificates(root.path(), &[1]).expect("generate");
        let other = tempfile::tempdir().expect("tempdir");
        ensure_dev_certificates(other.path(), &[2]).expect("generate other");
        let server_tls = NodeTlsPaths::dev(root.path(), 1).load().expect("load server");
        let foreign = NodeTlsPaths::dev(other.path(), 2).load().expect("load foreign");
        let impostor = NodeTls {
            ca_certificate: server_tls.ca_certificate.clone(),
            node_certificates: foreign.node_certificates.clone(),
            node_key: foreign.node_key.clone_key(),
            provider: foreign.provider.clone(),
        };

        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let server =
            quinn::Endpoint::server(server_tls.server_config().expect("server config"), loopback).expect("bind server");
        let server_address = server.local_addr().expect("server address");
        let client = quinn::Endpoint::client(loopback).expect("bind client");
        let connecting = client
            .connect_with(impostor.client_config().expect("client config"), server_address, &node_server_name(1))
            .expect("start connect");

        let incoming = server.accept().await.expect("an incoming connection");
        assert!(incoming.await.is_err(), "the server accepted a foreign certificate");
        let client_side = async {
            let connection = connecting.await?;
            Ok::<_, quinn::ConnectionError>(connection.closed().await)
        };
        // The client either fails the handshake or sees the connection closed by the server.
        let _ = client_side.await;
        server.close(0u32.into(), b"done");
        client.close(0u32.into(), b"done");
    }
}
