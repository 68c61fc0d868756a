//! The HTTP/1.1 server of the Kinesis API and the JSON 1.1 protocol checks that run before an
//! operation: method, content type, target, body and credentials, in the order AWS applies
//! them (the order kinesalite reproduces from AWS).

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Body;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::{TokioIo, TokioTimer};
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use super::auth::{Authenticator, KinesisCredential, SignedRequest};
use super::cbor;
use super::error::{access_denied_body, KinesisError};
use super::operations::{ArnScope, Operation, Operations, Target};
use super::request::parse_body;
use crate::api::ApiError;
use crate::seam::Clock;
use crate::service::StreamService;

/// A request body at most; larger ones get 413 with an empty body, as kinesalite answers.
pub const REQUEST_BYTES_MAX: usize = 7 << 20;
/// Connections served at once; further clients wait in the listen backlog.
pub const CONNECTIONS_MAX: usize = 1024;
/// How long a client may take to send a request's headers.
pub const HEADER_READ_TIMEOUT_MS: u64 = 30_000;
/// How long a client may take to send a request's body once its headers arrived.
pub const BODY_READ_TIMEOUT_MS: u64 = 60_000;
/// How long a stopping server waits for requests in flight before dropping their connections.
pub const SHUTDOWN_DRAIN_TIMEOUT_MS: u64 = 10_000;
/// Pause after a failed accept (out of file descriptors, say) before trying again.
pub const ACCEPT_RETRY_MS: u64 = 100;

const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.1";
const CBOR_CONTENT_TYPE: &str = "application/x-amz-cbor-1.1";

/// Settings of the Kinesis API, from the node configuration.
#[derive(Clone)]
pub struct KinesisSettings {
    /// Region and account of the cluster's stream ARNs (the service's own); signatures must be
    /// scoped to this region.
    pub region: String,
    pub account: String,
    /// Serve unsigned requests, and requests signed by keys not in `credentials`, as anonymous.
    pub allow_anonymous: bool,
    /// The access keys whose SigV4 signatures are verified.
    pub credentials: Vec<KinesisCredential>,
    /// The cluster secret that signs shard iterators, to see which stream a GetRecords reads.
    pub iterator_secret: Vec<u8>,
    /// The node's wall clock, which request dates must be near.
    pub clock: Arc<dyn Clock>,
    /// Serve HTTPS with this certificate and key (`kinesis_tls_cert`, `kinesis_tls_key`);
    /// plain HTTP when absent.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// An HTTP answer before it becomes a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: Option<&'static str>,
    pub body: Vec<u8>,
}

impl Reply {
    fn json(body: Vec<u8>) -> Reply {
        Reply { status: 200, content_type: Some(JSON_CONTENT_TYPE), body }
    }

    fn error(error: &KinesisError) -> Reply {
        Reply { status: error.status(), content_type: Some(JSON_CONTENT_TYPE), body: error.body_bytes() }
    }

    /// The same answer in CBOR, for a request that came in CBOR. Answers without a JSON body
    /// (403, 404, 413) are the same in both protocols.
    fn into_cbor(self) -> Reply {
        match self.content_type {
            Some(JSON_CONTENT_TYPE) => Reply {
                status: self.status,
                content_type: Some(CBOR_CONTENT_TYPE),
                body: cbor::from_json_body(&self.body),
            },
            _ => self,
        }
    }

    fn access_denied() -> Reply {
        Reply { status: 403, content_type: None, body: access_denied_body().as_bytes().to_vec() }
    }

    fn too_large() -> Reply {
        Reply { status: 413, content_type: None, body: Vec::new() }
    }
}

/// What a request's `Content-Type` says it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ContentKind {
    Json,
    Cbor,
    Other,
}

fn content_kind(headers: &HeaderMap) -> ContentKind {
    let value = headers.get(CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or_default();
    let media_type = value.split(';').next().unwrap_or_default().trim();
    if media_type.eq_ignore_ascii_case(JSON_CONTENT_TYPE) || media_type.eq_ignore_ascii_case("application/json") {
        ContentKind::Json
    } else if media_type.eq_ignore_ascii_case(CBOR_CONTENT_TYPE) {
        ContentKind::Cbor
    } else {
        ContentKind::Other
    }
}

/// Applies the protocol checks to a request whose body has been read. `Ok` names the
/// operation to run and its members; `Err` is the answer instead.
pub fn admit(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    auth: &Authenticator,
) -> Result<(Operation, Map<String, Value>), Reply> {
    if method != Method::POST {
        return Err(Reply::access_denied());
    }
    let kind = content_kind(headers);
    let target_header = headers.get("x-amz-target").and_then(|value| value.to_str().ok()).unwrap_or_default();
    let target = Target::parse(target_header);
    let names_an_operation =
        target_header.split_once('.').is_some_and(|(service, operation)| !service.is_empty() && !operation.is_empty());
    if body.is_empty() && kind != ContentKind::Other {
        return Err(Reply::error(&match target {
            Some(_) => KinesisError::Serialization(None),
            None => KinesisError::UnknownOperation,
        }));
    }
    match kind {
        ContentKind::Json | ContentKind::Cbor => {}
        ContentKind::Other if !names_an_operation => return Err(Reply::access_denied()),
        ContentKind::Other => {
            return Err(Reply { status: 404, content_type: None, body: b"<UnknownOperationException/>\n".to_vec() })
        }
    }
    let members = match kind {
        ContentKind::Cbor => cbor::parse_body(body),
        _ => parse_body(body),
    }
    .map_err(|error| Reply::error(&error))?;
    let target = target.ok_or_else(|| Reply::error(&KinesisError::UnknownOperation))?;
    let signed = SignedRequest {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or_default(),
        headers,
        body,
    };
    let principal = auth.authenticate(&signed).map_err(|error| Reply::error(&error))?;
    let action = match target {
        Target::Supported(operation) => format!("{operation:?}"),
        Target::NotYetSupported(name) | Target::NotSupported(name) => name.to_string(),
    };
    auth.authorize(principal, &action, &members).map_err(|error| Reply::error(&error))?;
    match target {
        Target::Supported(operation) => Ok((operation, members)),
        Target::NotYetSupported(name) => Err(Reply::error(&KinesisError::Api(ApiError::InvalidArgument(format!(
            "The operation {name} is not supported by this server yet."
        ))))),
        Target::NotSupported(name) => Err(Reply::error(&KinesisError::Api(ApiError::InvalidArgument(format!(
            "The operation {name} is not supported by this server."
        ))))),
    }
}

/// Reads a request body of at most [`REQUEST_BYTES_MAX`] within [`BODY_READ_TIMEOUT_MS`].
pub async fn read_body<B>(headers: &HeaderMap, body: B) -> Result<Bytes, Reply>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let declared = headers.get(CONTENT_LENGTH).and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > REQUEST_BYTES_MAX as u64) {
        return Err(Reply::too_large());
    }
    let unreadable = |reason: String| {
        Reply::error(&KinesisError::Serialization(Some(format!("The request body could not be read: {reason}"))))
    };
    let collected = tokio::time::timeout(
        Duration::from_millis(BODY_READ_TIMEOUT_MS),
        Limited::new(body, REQUEST_BYTES_MAX).collect(),
    )
    .await
    .map_err(|_| unreadable(format!("it did not arrive within {BODY_READ_TIMEOUT_MS} ms")))?;
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(Reply::too_large()),
        Err(error) => Err(unreadable(error.to_string())),
    }
}

/// The Kinesis API of one node.
pub struct KinesisApi {
    operations: Operations,
    auth: Authenticator,
    request_ids: Mutex<SmallRng>,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl KinesisApi {
    /// `request_id_seed` seeds the request ids (`x-amzn-RequestId`); they need to be unique
    /// enough to find a request in logs, not unpredictable.
    pub fn new(service: StreamService, settings: KinesisSettings, request_id_seed: u64) -> Arc<KinesisApi> {
        let auth = Authenticator::new(
            settings.region.clone(),
            settings.account.clone(),
            settings.allow_anonymous,
            &settings.credentials,
            settings.clock,
            &settings.iterator_secret,
        );
        let scope = ArnScope { region: settings.region, account: settings.account };
        Arc::new(KinesisApi {
            operations: Operations::new(service, scope),
            auth,
            request_ids: Mutex::new(SmallRng::seed_from_u64(request_id_seed)),
            tls: settings.tls,
        })
    }

    /// A random (version 4) UUID.
    fn request_id(&self) -> String {
        let mut bytes = [0u8; 16];
        match self.request_ids.lock() {
            Ok(mut random) => random.fill_bytes(&mut bytes),
            // A panic while filling 16 bytes leaves the generator usable.
            Err(poisoned) => poisoned.into_inner().fill_bytes(&mut bytes),
        }
        format_uuid(bytes)
    }

    /// Answers one request. Every answer carries `x-amzn-RequestId`.
    pub async fn handle<B>(&self, request: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let request_id = self.request_id();
        let (parts, body) = request.into_parts();
        let kind = content_kind(&parts.headers);
        let reply = match read_body(&parts.headers, body).await {
            Err(reply) => reply,
            Ok(body) => match admit(&parts.method, &parts.uri, &parts.headers, &body, &self.auth) {
                Err(reply) => reply,
                Ok((operation, members)) => match self.operations.invoke(operation, &members).await {
                    Ok(body) => Reply::json(body),
                    Err(error) => {
                        if error.status() >= 500 {
                            tracing::warn!(request = %request_id, ?operation, error = %error.body(), "Kinesis request failed");
                        }
                        Reply::error(&error)
                    }
                },
            },
        };
        let reply = if kind == ContentKind::Cbor { reply.into_cbor() } else { reply };
        response(reply, &request_id)
    }
}

fn format_uuid(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

fn extended_request_id(request_id: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(request_id.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(digest)
}

fn response(reply: Reply, request_id: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-RequestId", value);
    }
    // AWS's extended request id: an opaque base64 token; ours is derived from the request id.
    if let Ok(value) = HeaderValue::from_str(&extended_request_id(request_id)) {
        headers.insert("x-amz-id-2", value);
    }
    if let Some(content_type) = reply.content_type {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    response
}

/// Serves the Kinesis API on `listener` (over TLS when the settings carry a certificate) until
/// `shutdown` completes, then lets requests in flight finish for at most
/// [`SHUTDOWN_DRAIN_TIMEOUT_MS`].
pub async fn serve(listener: TcpListener, api: Arc<KinesisApi>, shutdown: impl Future<Output = ()>) {
    let tls = api.tls.clone().map(TlsAcceptor::from);
    let handler = move |request: Request<hyper::body::Incoming>| {
        let api = api.clone();
        async move { api.handle(request).await }
    };
    serve_with(listener, tls, handler, shutdown).await
}

/// [`serve`] with any request handler.
pub(super) async fn serve_with<H, F>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<hyper::body::Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let connections = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => permit.expect("the connection semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "accepting a Kinesis API connection failed");
                    tokio::time::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Responses are written whole; waiting to coalesce them only adds latency.
        let _ = stream.set_nodelay(true);
        let watcher = graceful.watcher();
        let handler = handler.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, handler, watcher).await,
                Some(acceptor) => {
                    // The handshake gets the time a client has to send its headers.
                    let handshake =
                        tokio::time::timeout(Duration::from_millis(HEADER_READ_TIMEOUT_MS), acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(stream)) => serve_connection(stream, handler, watcher).await,
                        Ok(Err(error)) => tracing::debug!(%error, "a Kinesis API TLS handshake failed"),
                        Err(_) => tracing::debug!("a Kinesis API TLS handshake timed out"),
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_millis(SHUTDOWN_DRAIN_TIMEOUT_MS)) => {
            tracing::warn!("Kinesis API requests still in flight after {SHUTDOWN_DRAIN_TIMEOUT_MS} ms; dropping them");
        }
    }
}

async fn serve_connection<S, H, F>(stream: S, handler: H, watcher: hyper_util::server::graceful::Watcher)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<hyper::body::Incoming>) -> F + Send + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
        let answer = handler(request);
        async move { Ok::<_, Infallible>(answer.await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(Duration::from_millis(HEADER_READ_TIMEOUT_MS));
    if let Err(error) = watcher.watch(builder.serve_connection(TokioIo::new(stream), service)).await {
        tracing::debug!(%error, "a Kinesis API connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_static(value));
        }
        headers
    }

    const JSON: (&str, &str) = ("content-type", "application/x-amz-json-1.1");
    const PUT: (&str, &str) = ("x-amz-target", "Kinesis_20131202.PutRecord");

    fn root() -> Uri {
        Uri::from_static("/")
    }

    fn auth(allow_anonymous: bool) -> Authenticator {
        let clock: Arc<dyn Clock> = Arc::new(crate::seam::SystemClock);
        Authenticator::new("us-east-1".into(), "000000000000".into(), allow_anonymous, &[], clock, b"secret")
    }

    fn json_of(reply: &Reply) -> Value {
        serde_json::from_slice(&reply.body).expect("a JSON body")
    }

    #[test]
    fn a_well_formed_anonymous_request_names_its_operation() {
        let (operation, members) =
            admit(&Method::POST, &root(), &headers(&[JSON, PUT]), br#"{"StreamName":"s"}"#, &auth(true))
                .expect("admitted");
        assert_eq!(operation, Operation::PutRecord);
        assert_eq!(members["StreamName"], "s");
        let plain_json = headers(&[("content-type", "application/json; charset=utf-8"), PUT]);
        assert!(admit(&Method::POST, &root(), &plain_json, b"{}", &auth(true)).is_ok());
    }

    #[test]
    fn without_anonymous_access_an_unsigned_request_lacks_a_token() {
        let reply = admit(&Method::POST, &root(), &headers(&[JSON, PUT]), b"{}", &auth(false)).unwrap_err();
        assert_eq!(reply.status, 400);
        assert_eq!(
            json_of(&reply),
            json!({"__type": "MissingAuthenticationTokenException", "message": "Missing Authentication Token"})
        );
    }

    #[test]
    fn signed_requests_are_verified_and_keys_limited_to_their_actions() {
        use super::super::auth::{authorization_header, format_amz_date, Scope};
        let key = KinesisCredential {
            access_key_id: "AKIDREADER".into(),
            secret_access_key: "secret".into(),
            allowed_streams: None,
            allowed_actions: Some(vec!["DescribeStream".into()]),
        };
        let clock: Arc<dyn Clock> = Arc::new(crate::seam::SystemClock);
        let amz_date = format_amz_date(clock.now_ms());
        let auth = Authenticator::new("us-east-1".into(), "000000000000".into(), false, &[key], clock, b"secret");
        let sign = |target: &'static str, secret: &str| {
            let mut headers = headers(&[JSON, ("x-amz-target", target), ("host", "localhost")]);
            headers.insert("x-amz-date", HeaderValue::from_str(&amz_date).expect("a header value"));
            let request = SignedRequest {
                method: "POST",
                path: "/",
                query: "",
                headers: &headers,
                body: br#"{"StreamName":"s"}"#,
            };
            let scope = Scope { amz_date: &amz_date, region: "us-east-1", service: "kinesis" };
            let value = authorization_header(
                &request,
                &["content-type", "host", "x-amz-date", "x-amz-target"],
                "AKIDREADER",
                secret,
                &scope,
            );
            headers.insert("authorization", HeaderValue::from_str(&value).expect("a header value"));
            headers
        };
        let body = br#"{"StreamName":"s"}"#;
        let describe = sign("Kinesis_20131202.DescribeStream", "secret");
        let (operation, _) = admit(&Method::POST, &root(), &describe, body, &auth).expect("admitted");
        assert_eq!(operation, Operation::DescribeStream);
        let wrong = sign("Kinesis_20131202.DescribeStream", "guess");
        assert_eq!(
            json_of(&admit(&Method::POST, &root(), &wrong, body, &auth).unwrap_err())["__type"],
            "InvalidSignatureException"
        );
        let delete = sign("Kinesis_20131202.DeleteStream", "secret");
        let denied = admit(&Method::POST, &root(), &delete, body, &auth).unwrap_err();
        assert_eq!(
            (denied.status, json_of(&denied)),
            (
                400,
                json!({"__type": "AccessDeniedException", "message": "User: arn:aws:iam::000000000000:user/AKIDREADER is not authorized to perform: kinesis:DeleteStream on resource: arn:aws:kinesis:us-east-1:000000000000:stream/s"})
            )
        );
    }

    #[test]
    fn a_request_that_is_not_a_json_call_is_denied_as_aws_does() {
        let get = admit(&Method::GET, &root(), &headers(&[JSON, PUT]), b"{}", &auth(true)).unwrap_err();
        assert_eq!(get.status, 403);
        assert!(String::from_utf8_lossy(&get.body).contains("<AccessDeniedException>"));
        let no_type_no_target = admit(&Method::POST, &root(), &headers(&[]), b"{}", &auth(true)).unwrap_err();
        assert_eq!(no_type_no_target.status, 403);
        let no_type = admit(&Method::POST, &root(), &headers(&[PUT]), b"{}", &auth(true)).unwrap_err();
        assert_eq!((no_type.status, no_type.body.as_slice()), (404, &b"<UnknownOperationException/>\n"[..]));
    }

    #[test]
    fn targets_and_bodies_are_checked_before_credentials() {
        let missing_target = admit(&Method::POST, &root(), &headers(&[JSON]), b"{}", &auth(false)).unwrap_err();
        assert_eq!(
            (missing_target.status, json_of(&missing_target)),
            (400, json!({"__type": "UnknownOperationException"}))
        );
        let unknown = headers(&[JSON, ("x-amz-target", "Kinesis_20131202.Frobnicate")]);
        assert_eq!(
            json_of(&admit(&Method::POST, &root(), &unknown, b"{}", &auth(true)).unwrap_err())["__type"],
            "UnknownOperationException"
        );
        let empty = admit(&Method::POST, &root(), &headers(&[JSON, PUT]), b"", &auth(false)).unwrap_err();
        assert_eq!(json_of(&empty), json!({"__type": "SerializationException"}));
        let not_json = admit(&Method::POST, &root(), &headers(&[JSON, PUT]), b"{nope", &auth(false)).unwrap_err();
        assert_eq!(json_of(&not_json)["__type"], "SerializationException");
        assert!(json_of(&not_json)["Message"].is_string());
        let cbor = headers(&[("content-type", "application/x-amz-cbor-1.1"), PUT]);
        assert_eq!(
            json_of(&admit(&Method::POST, &root(), &cbor, b"\x01", &auth(true)).unwrap_err())["__type"],
            "SerializationException"
        );
        let (operation, members) =
            admit(&Method::POST, &root(), &cbor, b"\xa1\x6aStreamName\x61s", &auth(true)).expect("admitted");
        assert_eq!((operation, Value::Object(members)), (Operation::PutRecord, json!({"StreamName": "s"})));
        let reply = Reply::error(&KinesisError::UnknownOperation).into_cbor();
        assert_eq!((reply.status, reply.content_type), (400, Some(CBOR_CONTENT_TYPE)));
        assert_eq!(reply.body, b"\xa1\x66__type\x78\x19UnknownOperationException");
        assert_eq!(Reply::access_denied().into_cbor(), Reply::access_denied());
    }

    #[test]
    fn operations_not_offered_are_answered_honestly() {
        let split = headers(&[JSON, ("x-amz-target", "Kinesis_20131202.SubscribeToShard")]);
        let reply = admit(&Method::POST, &root(), &split, b"{}", &auth(true)).unwrap_err();
        assert_eq!(
            (reply.status, json_of(&reply)),
            (
                400,
                json!({"__type": "InvalidArgumentException", "message": "The operation SubscribeToShard is not supported by this server yet."})
            )
        );
    }

    #[tokio::test]
    async fn bodies_above_the_limit_are_refused_with_413() {
        let fits = Full::new(Bytes::from(vec![b' '; REQUEST_BYTES_MAX]));
        assert_eq!(read_body(&HeaderMap::new(), fits).await.expect("fits").len(), REQUEST_BYTES_MAX);
        let above = Full::new(Bytes::from(vec![b' '; REQUEST_BYTES_MAX + 1]));
        assert_eq!(read_body(&HeaderMap::new(), above).await.unwrap_err().status, 413);
        let declared = headers(&[("content-length", "7340033")]);
        assert_eq!(read_body(&declared, Full::new(Bytes::new())).await.unwrap_err().status, 413);
    }

    #[test]
    fn request_ids_are_version_4_uuids() {
        let id = format_uuid([0xff; 16]);
        assert_eq!(id, "ffffffff-ffff-4fff-bfff-ffffffffffff");
        let reply = response(Reply::json(b"{}".to_vec()), &id);
        assert_eq!(reply.headers()["x-amzn-requestid"], id.as_str());
        assert_eq!(reply.headers()["x-amz-id-2"].len(), 44);
        assert_eq!(reply.headers()[CONTENT_TYPE], JSON_CONTENT_TYPE);
    }
}
