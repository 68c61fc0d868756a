//! QUIC peer transport (quinn + rustls, mutual TLS with a cluster CA).
//!
//! Each call is one bidirectional stream on the one connection this node keeps to the target:
//! the caller writes a frame (a big-endian `u32` length, then a prost-encoded
//! [`PeerRequest`]) and finishes its half; the callee answers with one [`PeerResponse`] frame.
//! Requests of every Raft group share the connection, so one slow request never blocks another.
//!
//! Identity comes from certificates only: a caller's node id is the `node-<id>.riffle` name its
//! verified client certificate carries (see [`super::tls`]), and a callee is verified against
//! the name of the node that was dialled. Production only: the simulator replaces this whole
//! type with an in-memory network behind [`PeerTransport`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use quinn::crypto::rustls::HandshakeData;
use quinn::{Connection, Endpoint, IdleTimeout, RecvStream, SendStream, TransportConfig, VarInt};
use riffle_proto::peer::{PeerRequest, PeerResponse};
use rustls::pki_types::CertificateDer;
use tokio::time::{timeout, Instant};

use super::tls::{node_id_from_certificate, node_server_name, NodeTls, TlsError};
use super::{BoxFuture, NodeId, PeerTransport, SharedHandler, TransportError};

const MEBIBYTE: u64 = 1024 * 1024;

/// Bytes of the length prefix in front of every message.
const FRAME_HEADER_BYTES: usize = 4;

/// Connection-close and stream-reset codes on the wire.
const CLOSE_SHUTDOWN: u32 = 0;
const CLOSE_UNKNOWN_NODE: u32 = 1;
const STREAM_REQUEST_REJECTED: u32 = 1;
const STREAM_RESPONSE_TOO_LARGE: u32 = 2;

/// Handshakes the endpoint works on at once; further connection attempts are refused.
const INCOMING_HANDSHAKES_MAX: usize = 256;

/// How long [`QuicTransport::shutdown`] waits for close frames to be delivered.
const SHUTDOWN_DRAIN_MS: u64 = 1_000;

/// Tunables of the QUIC transport. Every field is checked by [`QuicConfig::validate`], which
/// [`QuicTransport::bind`] calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuicConfig {
    /// Largest encoded request or response, without the 4-byte length prefix. Larger messages
    /// are refused on both sides. Default 64 MiB; 1 KiB ..= 1 GiB.
    pub message_bytes_max: u64,
    /// Bound on one call, from asking for a connection to decoding the response; also bounds
    /// how long the callee waits for a request to arrive. Default 5000; 1 ..= 600000.
    pub request_timeout_ms: u64,
    /// Bound on establishing a connection (QUIC + TLS handshake). Default 2000;
    /// 1 ..= `request_timeout_ms`.
    pub connect_timeout_ms: u64,
    /// After a failed connect, calls to that peer fail at once with `Unreachable` for this
    /// long instead of dialling again, so a dead peer is not hammered. Default 250; 0 ..= 60000.
    pub reconnect_backoff_ms: u64,
    /// Flow-control window of one stream, in bytes. Default 8 MiB; 64 KiB ..= 1 GiB.
    pub stream_receive_window_bytes: u64,
    /// Flow-control window of one connection, in bytes. Default 32 MiB;
    /// `stream_receive_window_bytes` ..= 4 GiB.
    pub connection_receive_window_bytes: u64,
    /// Data a connection may have in flight before the peer acknowledges it, in bytes.
    /// Default 32 MiB; 64 KiB ..= 4 GiB.
    pub send_window_bytes: u64,
    /// Calls the peer may have open on one connection at once; a caller over the limit waits
    /// (within its timeout) for a stream. Default 1024; 1 ..= 65536.
    pub concurrent_streams_max: u32,
    /// Interval of keep-alive packets on an idle connection. Default 1000;
    /// 1 ..= `idle_timeout_ms` / 2.
    pub keep_alive_interval_ms: u64,
    /// A connection with no packets from the peer for this long is closed. Default 10000;
    /// 2 ..= 600000.
    pub idle_timeout_ms: u64,
    /// Test-only: peers dialled at these addresses, whatever address the configuration or the
    /// metadata gives them (the fault harness routes node-to-node packets through its link
    /// relay this way). Default empty.
    pub dial_overrides: BTreeMap<NodeId, SocketAddr>,
}

impl Default for QuicConfig {
    fn default() -> Self {
        QuicConfig {
            message_bytes_max: 64 * MEBIBYTE,
            request_timeout_ms: 5_000,
            connect_timeout_ms: 2_000,
            reconnect_backoff_ms: 250,
            stream_receive_window_bytes: 8 * MEBIBYTE,
            connection_receive_window_bytes: 32 * MEBIBYTE,
            send_window_bytes: 32 * MEBIBYTE,
            concurrent_streams_max: 1024,
            keep_alive_interval_ms: 1_000,
            idle_timeout_ms: 10_000,
            dial_overrides: BTreeMap::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    #[error("invalid QUIC transport configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("binding the QUIC endpoint to {address} failed: {source}")]
    Bind { address: SocketAddr, source: std::io::Error },
}

impl QuicConfig {
    pub fn validate(&self) -> Result<(), QuicError> {
        fn check(ok: bool, message: impl FnOnce() -> String) -> Result<(), QuicError> {
            if ok {
                Ok(())
            } else {
                Err(QuicError::Config(message()))
            }
        }
        let gibibyte = 1024 * MEBIBYTE;
        check((1024..=gibibyte).contains(&self.message_bytes_max), || {
            format!("message_bytes_max = {} is outside 1024 ..= {gibibyte}", self.message_bytes_max)
        })?;
        check((1..=600_000).contains(&self.request_timeout_ms), || {
            format!("request_timeout_ms = {} is outside 1 ..= 600000", self.request_timeout_ms)
        })?;
        check((1..=self.request_timeout_ms).contains(&self.connect_timeout_ms), || {
            format!(
                "connect_timeout_ms = {} is outside 1 ..= request_timeout_ms ({})",
                self.connect_timeout_ms, self.request_timeout_ms
            )
        })?;
        check(self.reconnect_backoff_ms <= 60_000, || {
            format!("reconnect_backoff_ms = {} is above 60000", self.reconnect_backoff_ms)
        })?;
        check((64 * 1024..=gibibyte).contains(&self.stream_receive_window_bytes), || {
            format!(
                "stream_receive_window_bytes = {} is outside 65536 ..= {gibibyte}",
                self.stream_receive_window_bytes
            )
        })?;
        check(
            (self.stream_receive_window_bytes..=4 * gibibyte).contains(&self.connection_receive_window_bytes),
            || {
                format!(
                    "connection_receive_window_bytes = {} is outside stream_receive_window_bytes ({}) ..= {}",
                    self.connection_receive_window_bytes,
                    self.stream_receive_window_bytes,
                    4 * gibibyte
                )
            },
        )?;
        check((64 * 1024..=4 * gibibyte).contains(&self.send_window_bytes), || {
            format!("send_window_bytes = {} is outside 65536 ..= {}", self.send_window_bytes, 4 * gibibyte)
        })?;
        check((1..=65_536).contains(&self.concurrent_streams_max), || {
            format!("concurrent_streams_max = {} is outside 1 ..= 65536", self.concurrent_streams_max)
        })?;
        check((2..=600_000).contains(&self.idle_timeout_ms), || {
            format!("idle_timeout_ms = {} is outside 2 ..= 600000", self.idle_timeout_ms)
        })?;
        check((1..=self.idle_timeout_ms / 2).contains(&self.keep_alive_interval_ms), || {
            format!(
                "keep_alive_interval_ms = {} is outside 1 ..= idle_timeout_ms / 2 ({})",
                self.keep_alive_interval_ms,
                self.idle_timeout_ms / 2
            )
        })?;
        Ok(())
    }

    fn transport_config(&self) -> Result<TransportConfig, QuicError> {
        let var_int = |name: &str, value: u64| {
            VarInt::from_u64(value).map_err(|_| QuicError::Config(format!("{name} = {value} is too large for QUIC")))
        };
        let idle_timeout = IdleTimeout::try_from(Duration::from_millis(self.idle_timeout_ms))
            .map_err(|_| QuicError::Config(format!("idle_timeout_ms = {} is too large", self.idle_timeout_ms)))?;
        let mut config = TransportConfig::default();
        config
            .max_concurrent_bidi_streams(VarInt::from_u32(self.concurrent_streams_max))
            .max_concurrent_uni_streams(VarInt::from_u32(0))
            .stream_receive_window(var_int("stream_receive_window_bytes", self.stream_receive_window_bytes)?)
            .receive_window(var_int("connection_receive_window_bytes", self.connection_receive_window_bytes)?)
            .send_window(self.send_window_bytes)
            .keep_alive_interval(Some(Duration::from_millis(self.keep_alive_interval_ms)))
            .max_idle_timeout(Some(idle_timeout));
        Ok(config)
    }
}

/// The production [`PeerTransport`]: one QUIC endpoint serving incoming calls and dialling
/// at most one connection per peer for outgoing ones.
pub struct QuicTransport {
    shared: Arc<Shared>,
}

struct Shared {
    local_id: NodeId,
    /// This process's incarnation, sent with every request.
    incarnation: u64,
    endpoint: Endpoint,
    config: QuicConfig,
    handler: SharedHandler,
    /// The peers this node talks to. Incoming connections from certificates naming any
    /// other node are refused.
    peers: RwLock<BTreeMap<NodeId, Arc<PeerSlot>>>,
}

/// The outgoing connection to one peer. The async mutex makes concurrent callers share one
/// connect attempt instead of each dialling.
struct PeerSlot {
    address: SocketAddr,
    state: tokio::sync::Mutex<SlotState>,
    /// The incarnation the peer's requests last carried (0: none seen yet).
    incarnation: std::sync::atomic::AtomicU64,
}

enum SlotState {
    Idle,
    Connected(Connection),
    Failed { retry_at: Instant, reason: String },
}

impl QuicTransport {
    /// Binds `listen` and starts serving calls from `peers` through `handler`. Use port 0 and
    /// [`QuicTransport::local_addr`] to let the system choose.
    pub fn bind(
        local_id: NodeId,
        listen: SocketAddr,
        peers: BTreeMap<NodeId, SocketAddr>,
        tls: NodeTls,
        config: QuicConfig,
        handler: SharedHandler,
    ) -> Result<Arc<QuicTransport>, QuicError> {
        config.validate()?;
        let transport_config = Arc::new(config.transport_config()?);
        let mut server_config = tls.server_config()?;
        server_config.transport_config(transport_config.clone()).max_incoming(INCOMING_HANDSHAKES_MAX);
        let mut client_config = tls.client_config()?;
        client_config.transport_config(transport_config);
        let mut endpoint =
            Endpoint::server(server_config, listen).map_err(|source| QuicError::Bind { address: listen, source })?;
        endpoint.set_default_client_config(client_config);

        let peers = peers
            .into_iter()
            .map(|(id, address)| (id, config.dial_overrides.get(&id).copied().unwrap_or(address)))
            .map(|(id, address)| (id, Arc::new(PeerSlot::new(address))))
            .collect();
        // Distinct per start of the process; 0 is reserved for "not seen".
        let incarnation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |elapsed| elapsed.as_nanos() as u64)
            .max(1)
            ^ u64::from(std::process::id()) << 32;
        let shared = Arc::new(Shared { local_id, incarnation, endpoint, config, handler, peers: RwLock::new(peers) });
        tokio::spawn(accept_connections(shared.clone()));
        Ok(Arc::new(QuicTransport { shared }))
    }

    /// The address the endpoint is bound to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.shared.endpoint.local_addr()
    }

    /// Adds a peer, or moves it to a new address. An existing connection to it is dropped.
    pub fn set_peer_addr(&self, peer: NodeId, address: SocketAddr) {
        let address = self.shared.config.dial_overrides.get(&peer).copied().unwrap_or(address);
        let mut peers = self.shared.peers.write().unwrap_or_else(PoisonError::into_inner);
        peers.insert(peer, Arc::new(PeerSlot::new(address)));
    }

    /// Closes every connection and the endpoint, then waits (boundedly) for the close to
    /// reach the peers. Calls in flight fail; later calls fail with `Unreachable`.
    pub async fn shutdown(&self) {
        self.shared.endpoint.close(VarInt::from_u32(CLOSE_SHUTDOWN), b"shutdown");
        // Best effort: a peer that is already gone never acknowledges the close.
        let _ = timeout(Duration::from_millis(SHUTDOWN_DRAIN_MS), self.shared.endpoint.wait_idle()).await;
    }

    async fn call_without_timeout(
        &self,
        target: NodeId,
        mut request: PeerRequest,
    ) -> Result<PeerResponse, TransportError> {
        request.incarnation = self.shared.incarnation;
        let message_bytes_max = self.shared.config.message_bytes_max;
        let frame = encode_frame(&request, message_bytes_max).map_err(|encoded_bytes| TransportError::Malformed {
            peer: target,
            reason: format!("request of {encoded_bytes} bytes exceeds message_bytes_max = {message_bytes_max}"),
        })?;
        let connection = self.connection(target).await?;
        let unreachable = |reason: String| TransportError::Unreachable { peer: target, reason };
        let (mut send, mut receive) = connection.open_bi().await.map_err(|error| unreachable(error.to_string()))?;
        // From here on the request may reach the peer, so failures are `Lost`, not
        // `Unreachable`: a caller must not assume it did not run.
        let lost = |reason: String| TransportError::Lost { peer: target, reason };
        send.write_chunk(frame).await.map_err(|error| lost(error.to_string()))?;
        send.finish().map_err(|error| lost(error.to_string()))?;
        match read_frame::<PeerResponse>(&mut receive, message_bytes_max).await {
            Ok(response) => Ok(response),
            Err(FrameError::Stream(quinn::ReadError::Reset(code)))
                if code == VarInt::from_u32(STREAM_REQUEST_REJECTED) =>
            {
                Err(TransportError::Malformed {
                    peer: target,
                    reason: "the peer rejected the request as malformed".to_string(),
                })
            }
            Err(FrameError::Stream(quinn::ReadError::Reset(code)))
                if code == VarInt::from_u32(STREAM_RESPONSE_TOO_LARGE) =>
            {
                Err(TransportError::Malformed {
                    peer: target,
                    reason: "the peer's response exceeded its message_bytes_max".to_string(),
                })
            }
            Err(FrameError::Stream(error)) => Err(lost(error.to_string())),
            Err(error) => {
                let _ = receive.stop(VarInt::from_u32(STREAM_REQUEST_REJECTED));
                Err(TransportError::Malformed { peer: target, reason: error.to_string() })
            }
        }
    }

    /// The live connection to `target`, dialling it if there is none and the backoff after
    /// the last failure has passed.
    async fn connection(&self, target: NodeId) -> Result<Connection, TransportError> {
        let slot = {
            let peers = self.shared.peers.read().unwrap_or_else(PoisonError::into_inner);
            peers.get(&target).cloned().ok_or(TransportError::UnknownPeer(target))?
        };
        let mut state = slot.state.lock().await;
        match &*state {
            SlotState::Connected(connection) if connection.close_reason().is_none() => return Ok(connection.clone()),
            SlotState::Failed { retry_at, reason } if Instant::now() < *retry_at => {
                return Err(TransportError::Unreachable {
                    peer: target,
                    reason: format!("{reason} (not redialling until reconnect_backoff_ms has passed)"),
                });
            }
            _ => {}
        }
        let config = &self.shared.config;
        let attempt = async {
            let connecting = self
                .shared
                .endpoint
                .connect(slot.address, &node_server_name(target))
                .map_err(|error| error.to_string())?;
            connecting.await.map_err(|error| error.to_string())
        };
        let outcome = match timeout(Duration::from_millis(config.connect_timeout_ms), attempt).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("connecting timed out after {} ms", config.connect_timeout_ms)),
        };
        match outcome {
            Ok(connection) => {
                tracing::debug!(local = self.shared.local_id, peer = target, address = %slot.address, "connected to peer");
                *state = SlotState::Connected(connection.clone());
                Ok(connection)
            }
            Err(reason) => {
                let reason = format!("connecting to {}: {reason}", slot.address);
                *state = SlotState::Failed {
                    retry_at: Instant::now() + Duration::from_millis(config.reconnect_backoff_ms),
                    reason: reason.clone(),
                };
                Err(TransportError::Unreachable { peer: target, reason })
            }
        }
    }
}

impl PeerTransport for QuicTransport {
    fn learn_peer(&self, peer: NodeId, address: SocketAddr) {
        if peer == self.shared.local_id {
            return;
        }
        let address = self.shared.config.dial_overrides.get(&peer).copied().unwrap_or(address);
        let known =
            self.shared.peers.read().unwrap_or_else(PoisonError::into_inner).get(&peer).map(|slot| slot.address);
        if known != Some(address) {
            tracing::info!(local = self.shared.local_id, peer, %address, "learned a peer's address");
            self.set_peer_addr(peer, address);
        }
    }

    fn call(&self, target: NodeId, request: PeerRequest) -> BoxFuture<'_, Result<PeerResponse, TransportError>> {
        Box::pin(async move {
            let timeout_ms = self.shared.config.request_timeout_ms;
            match timeout(Duration::from_millis(timeout_ms), self.call_without_timeout(target, request)).await {
                Ok(result) => result,
                Err(_) => Err(TransportError::Timeout { peer: target, timeout_ms }),
            }
        })
    }
}

impl Drop for QuicTransport {
    fn drop(&mut self) {
        // Ends the accept loop, which holds the only other reference to the endpoint.
        self.shared.endpoint.close(VarInt::from_u32(CLOSE_SHUTDOWN), b"shutdown");
    }
}

impl PeerSlot {
    fn new(address: SocketAddr) -> PeerSlot {
        PeerSlot {
            address,
            state: tokio::sync::Mutex::new(SlotState::Idle),
            incarnation: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

async fn accept_connections(shared: Arc<Shared>) {
    while let Some(incoming) = shared.endpoint.accept().await {
        tokio::spawn(serve_connection(shared.clone(), incoming));
    }
}

async fn serve_connection(shared: Arc<Shared>, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    let connection = match incoming.await {
        Ok(connection) => connection,
        Err(error) => {
            tracing::debug!(local = shared.local_id, %remote, %error, "peer handshake failed");
            return;
        }
    };
    let Some(from) = identify(&shared, &connection) else {
        tracing::warn!(local = shared.local_id, %remote, "refused a connection whose certificate names no known peer");
        connection.close(VarInt::from_u32(CLOSE_UNKNOWN_NODE), b"unknown node");
        return;
    };
    tracing::debug!(local = shared.local_id, peer = from, %remote, "accepted peer connection");
    while let Ok((send, receive)) = connection.accept_bi().await {
        tokio::spawn(serve_stream(shared.clone(), from, send, receive));
    }
}

/// Records the incarnation a request from `from` carries. A new one means the peer restarted:
/// the outgoing connection to it, made to the old process, is dropped, so the next call dials the
/// new one at once instead of timing out on a connection nobody answers.
async fn note_incarnation(shared: &Shared, from: NodeId, incarnation: u64) {
    if incarnation == 0 {
        return;
    }
    let slot = {
        let peers = shared.peers.read().unwrap_or_else(PoisonError::into_inner);
        match peers.get(&from) {
            Some(slot) => slot.clone(),
            None => return,
        }
    };
    let previous = slot.incarnation.swap(incarnation, std::sync::atomic::Ordering::SeqCst);
    if previous != 0 && previous != incarnation {
        tracing::info!(local = shared.local_id, peer = from, "peer restarted; redialling it");
        let mut state = slot.state.lock().await;
        if let SlotState::Connected(connection) = &*state {
            connection.close(VarInt::from_u32(CLOSE_SHUTDOWN), b"peer restarted");
        }
        *state = SlotState::Idle;
    }
}

/// The known peer the connection's verified client certificate names.
fn identify(shared: &Shared, connection: &Connection) -> Option<NodeId> {
    let handshake = connection.handshake_data()?.downcast::<HandshakeData>().ok()?;
    if handshake.protocol.as_deref() != Some(super::tls::PEER_ALPN) {
        return None;
    }
    let certificates = connection.peer_identity()?.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    let end_entity = certificates.first()?;
    let peers = shared.peers.read().unwrap_or_else(PoisonError::into_inner);
    node_id_from_certificate(end_entity, peers.keys().copied())
}

async fn serve_stream(shared: Arc<Shared>, from: NodeId, mut send: SendStream, mut receive: RecvStream) {
    let config = &shared.config;
    let read = read_frame::<PeerRequest>(&mut receive, config.message_bytes_max);
    let request = match timeout(Duration::from_millis(config.request_timeout_ms), read).await {
        Ok(Ok(request)) => request,
        Ok(Err(FrameError::Stream(error))) => {
            tracing::debug!(local = shared.local_id, peer = from, %error, "request stream failed");
            return;
        }
        Ok(Err(error)) => {
            tracing::warn!(local = shared.local_id, peer = from, %error, "rejected a malformed request");
            reject(&mut send, &mut receive, STREAM_REQUEST_REJECTED);
            return;
        }
        Err(_) => {
            tracing::debug!(local = shared.local_id, peer = from, "request did not arrive within request_timeout_ms");
            reject(&mut send, &mut receive, STREAM_REQUEST_REJECTED);
            return;
        }
    };
    note_incarnation(&shared, from, request.incarnation).await;
    let response = shared.handler.handle(from, request).await;
    let frame = match encode_frame(&response, config.message_bytes_max) {
        Ok(frame) => frame,
        Err(encoded_bytes) => {
            tracing::warn!(local = shared.local_id, peer = from, encoded_bytes, "response exceeds message_bytes_max");
            reject(&mut send, &mut receive, STREAM_RESPONSE_TOO_LARGE);
            return;
        }
    };
    // A write fails only when the caller gave up or the connection broke; it sees that itself.
    if send.write_chunk(frame).await.is_ok() {
        let _ = send.finish();
    }
}

fn reject(send: &mut SendStream, receive: &mut RecvStream, code: u32) {
    // Either half may already be closed by the caller; there is nothing left to tell it then.
    let _ = send.reset(VarInt::from_u32(code));
    let _ = receive.stop(VarInt::from_u32(code));
}

/// One message with its length prefix, or the encoded size if it exceeds `message_bytes_max`.
fn encode_frame(message: &impl Message, message_bytes_max: u64) -> Result<Bytes, u64> {
    let encoded_bytes = message.encoded_len();
    let length = u32::try_from(encoded_bytes)
        .ok()
        .filter(|&length| u64::from(length) <= message_bytes_max)
        .ok_or(encoded_bytes as u64)?;
    let mut frame = BytesMut::with_capacity(FRAME_HEADER_BYTES + encoded_bytes);
    frame.put_u32(length);
    message.encode(&mut frame).expect("the buffer was sized from encoded_len");
    Ok(frame.freeze())
}

#[derive(Debug, thiserror::Error)]
enum FrameError {
    #[error(transparent)]
    Stream(quinn::ReadError),
    #[error("stream ended inside a message")]
    Truncated,
    #[error("message of {length} bytes exceeds message_bytes_max = {message_bytes_max}")]
    TooLarge { length: u32, message_bytes_max: u64 },
    #[error("message does not decode: {0}")]
    Decode(#[from] prost::DecodeError),
}

impl From<quinn::ReadExactError> for FrameError {
    fn from(error: quinn::ReadExactError) -> Self {
        match error {
            quinn::ReadExactError::FinishedEarly(_) => FrameError::Truncated,
            quinn::ReadExactError::ReadError(error) => FrameError::Stream(error),
        }
    }
}

async fn read_frame<M: Message + Default>(receive: &mut RecvStream, message_bytes_max: u64) -> Result<M, FrameError> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    receive.read_exact(&mut header).await?;
    let length = u32::from_be_bytes(header);
    if u64::from(length) > message_bytes_max {
        return Err(FrameError::TooLarge { length, message_bytes_max });
    }
    let mut body = vec![0u8; length as usize];
    receive.read_exact(&mut body).await?;
    Ok(M::decode(body.as_slice())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;
    use std::path::Path;
    use std::sync::Mutex;

    use riffle_proto::peer::{peer_request, peer_response, ForwardAppend, ReadResult, RecordInput, StoredRecord};

    use crate::transport::tls::{ensure_dev_certificates, NodeTlsPaths};
    use crate::transport::PeerHandler;

    /// Answers a `ForwardAppend` with a `ReadResult` holding the same records, the group id as
    /// each sequence and the caller's id as each timestamp, and counts calls per caller.
    #[derive(Default)]
    struct EchoHandler {
        calls_by_caller: Mutex<BTreeMap<NodeId, usize>>,
    }

    impl EchoHandler {
        fn calls_from(&self, caller: NodeId) -> usize {
            let calls = self.calls_by_caller.lock().expect("handler lock");
            calls.get(&caller).copied().unwrap_or(0)
        }

        fn total_calls(&self) -> usize {
            self.calls_by_caller.lock().expect("handler lock").values().sum()
        }
    }

    impl PeerHandler for EchoHandler {
        fn handle(&self, from: NodeId, request: PeerRequest) -> BoxFuture<'_, PeerResponse> {
            *self.calls_by_caller.lock().expect("handler lock").entry(from).or_default() += 1;
            Box::pin(async move {
                let records = match request.body {
                    Some(peer_request::Body::ForwardAppend(append)) => append.records,
                    _ => Vec::new(),
                };
                let records = records
                    .into_iter()
                    .map(|record| StoredRecord {
                        sequence: request.group_id,
                        timestamp_ms: from as i64,
                        partition_key: record.partition_key,
                        data: record.data,
                    })
                    .collect();
                PeerResponse {
                    body: Some(peer_response::Body::Read(ReadResult {
                        records,
                        next_sequence: 0,
                        millis_behind_latest: 0,
                        sealed_at_index: None,
                    })),
                }
            })
        }
    }

    fn request(group_id: u64, data_bytes: usize) -> PeerRequest {
        PeerRequest {
            group_id,
            body: Some(peer_request::Body::ForwardAppend(ForwardAppend {
                records: vec![RecordInput {
                    partition_key: format!("key-{group_id}"),
                    data: vec![(group_id % 251) as u8; data_bytes].into(),
                }],
            })),
            incarnation: 0,
        }
    }

    fn check_echo(request: &PeerRequest, response: &PeerResponse, caller: NodeId) {
        let Some(peer_request::Body::ForwardAppend(sent)) = &request.body else {
            panic!("test requests are appends");
        };
        let Some(peer_response::Body::Read(echoed)) = &response.body else {
            panic!("unexpected response {response:?}");
        };
        assert_eq!(echoed.records.len(), sent.records.len());
        for (sent, echoed) in sent.records.iter().zip(&echoed.records) {
            assert_eq!(echoed.sequence, request.group_id, "response belongs to another request");
            assert_eq!(echoed.timestamp_ms, caller as i64, "handler saw the wrong caller");
            assert_eq!(echoed.partition_key, sent.partition_key);
            assert_eq!(echoed.data, sent.data);
        }
    }

    fn loopback() -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
    }

    /// Short bounds so failing paths end quickly.
    fn test_config() -> QuicConfig {
        QuicConfig {
            request_timeout_ms: 3_000,
            connect_timeout_ms: 1_000,
            reconnect_backoff_ms: 0,
            ..QuicConfig::default()
        }
    }

    fn bind(tls_root: &Path, id: NodeId, config: QuicConfig, handler: Arc<EchoHandler>) -> Arc<QuicTransport> {
        let tls = NodeTlsPaths::dev(tls_root, id).load().expect("load node certificates");
        QuicTransport::bind(id, loopback(), BTreeMap::new(), tls, config, handler).expect("bind transport")
    }

    fn introduce(a: (NodeId, &QuicTransport), b: (NodeId, &QuicTransport)) {
        a.1.set_peer_addr(b.0, b.1.local_addr().expect("address of b"));
        b.1.set_peer_addr(a.0, a.1.local_addr().expect("address of a"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_calls_both_ways_match_and_carry_the_callers_id() {
        let certificates = tempfile::tempdir().expect("tempdir");
        ensure_dev_certificates(certificates.path(), &[1, 2]).expect("certificates");
        let handler_1 = Arc::new(EchoHandler::default());
        let handler_2 = Arc::new(EchoHandler::default());
        let node_1 = bind(certificates.path(), 1, test_config(), handler_1.clone());
        let node_2 = bind(certificates.path(), 2, test_config(), handler_2.clone());
        introduce((1, &node_1), (2, &node_2));

        // Phase 1: many calls at once in both directions, some large.
        let calls_per_direction = 200u64;
        let mut calls = Vec::new();
        for group_id in 0..calls_per_direction {
            let data_bytes = if group_id % 20 == 0 { 512 * 1024 } else { 100 };
            for (caller, callee, transport) in [(1, 2, node_1.clone()), (2, 1, node_2.clone())] {
                calls.push(tokio::spawn(async move {
                    let sent = request(group_id, data_bytes);
                    let response = transport.call(callee, sent.clone()).await;
                    (caller, sent, response)
                }));
            }
        }
        for call in calls {
            let (caller, sent, response) = call.await.expect("call task");
            let response = response.unwrap_or_else(|error| panic!("call from {caller} failed: {error}"));
            check_echo(&sent, &response, caller);
        }

        // Phase 2: each handler saw every call, all from the other node.
        assert_eq!(handler_2.calls_from(1), calls_per_direction as usize);
        assert_eq!(handler_1.calls_from(2), calls_per_direction as usize);
        assert_eq!(handler_1.total_calls() + handler_2.total_calls(), 2 * calls_per_direction as usize);

        // Phase 3: one connection per direction was shared by all of them.
        assert_eq!(node_1.shared.endpoint.open_connections(), 2);
        node_1.shutdown().await;
        node_2.shutdown().await;
    }

    #[tokio::test]
    async fn broken_connection_is_reestablished_by_the_next_call() {
        let certificates = tempfile::tempdir().expect("tempdir");
        ensure_dev_certificates(certificates.path(), &[1, 2]).expect("certificates");
        let handler = Arc::new(EchoHandler::default());
        let node_1 = bind(certificates.path(), 1, test_config(), Arc::new(EchoHandler::default()));
        let node_2 = bind(certificates.path(), 2, test_config(), handler.clone());
        introduce((1, &node_1), (2, &node_2));
        node_1.call(2, request(1, 10)).await.expect("first call");

        // Phase 1: the connection breaks under the transport.
        let slot = node_1.shared.peers.read().expect("peers").get(&2).cloned().expect("slot for 2");
        let first = match &*slot.state.lock().await {
            SlotState::Connected(connection) => connection.clone(),
            _ => panic!("no connection after a successful call"),
        };
        first.close(VarInt::from_u32(7), b"test breaks the connection");

        // Phase 2: the next call dials again and succeeds.
        let sent = request(2, 10);
        let response = node_1.call(2, sent.clone()).await.expect("call after the break");
        check_echo(&sent, &response, 1);
        assert_eq!(handler.calls_from(1), 2);
        node_1.shutdown().await;
        node_2.shutdown().await;
    }

    #[tokio::test]
    async fn certificate_from_another_ca_gets_no_response() {
        let certificates = tempfile::tempdir().expect("tempdir");
        ensure_dev_certificates(certificates.path(), &[1]).expect("certificates");
        let foreign_certificates = tempfile::tempdir().expect("tempdir");
        ensure_dev_certificates(foreign_certificates.path(), &[2]).expect("foreign certificates");
        let handler = Arc::new(EchoHandler::default());
        let node_1 = bind(certificates.path(), 1, test_config(), handler.clone());
        let impostor = bind(foreign_certificates.path(), 2, test_config(), Arc::new(EchoHandler::default()));
        introduce((1, &node_1), (2, &impostor));

        let error = impostor.call(1, request(1, 10)).await.expect_err("foreign CA must not get through");
        assert!(matches!(error, TransportError::Unreachable { .. }), "{error}");
        let error = node_1.call(2, request(1, 10)).await.expect_err("foreign server must not be trusted");
        assert!(matches!(error, TransportError::Unreachable { .. }), "{error}");
        assert_eq!(handler.total_calls(), 0);
        node_1.shutdown().await;
        impostor.shutdown().await;
    }

    #[tokio::test]
    async fn certificate_of_a_node_not_in_peers_is_refused() {
        let certificates = tempfile::tempdir().expect("tempdir");
        ensure_dev_certificates(certificates.path(), &[1, 3]).expect("certificates");
        let handler = Arc::new(EchoHandler::default());
        let node_1 = bind(certificates.path(), 1, test_config(), handler.clone());
        let stranger = bind(certificates.path(), 3, test_config(), Arc::new(EchoHandler::default()));
        // Node 3 knows node 1, but node 1 does not know node 3.
        stranger.set_peer_addr(1, node_1.local_addr().expect("address of 1"));

        let error = stranger.call(1, request(1, 10)).await.expect_err("unknown node must be refused");
        // The handshake succeeds and node 1 then closes the connection: depending on when the
        // close arrives, the request was not sent or was sent into a closing connection.
        assert!(matches!(error, TransportError::Unreachable { .. } | TransportError::Lost { .. }), "{error}");
        assert_eq!(handler.total_calls(), 0);
        node_1.shutdown().await;
        stranger.shutdown().await;
    }

    #[tokio::test]
    async fn unknown_peer_and_oversized_request_fail_without_dialling() {
        let certificates = tempfile::tempdir().expect("tempdir");
        ensure_dev_certificates(certificates.path(), &[1]).expect("certificates");
        let config = QuicConfig { message_bytes_max: 4096, ..test_config() };
        let node_1 = bind(certificates.path(), 1, config, Arc::new(EchoHandler::default()));

        let error = node_1.call(9, request(1, 10)).await.expect_err("peer 9 is unknown");
        assert!(matches!(error, TransportError::UnknownPeer(9)), "{error}");
        node_1.set_peer_addr(9, loopback());
        let error = node_1.call(9, request(1, 8192)).await.expect_err("request is too large");
        assert!(matches!(error, TransportError::Malformed { .. }), "{error}");
        node_1.shutdown().await;
    }

    #[tokio::test]
    async fn peer_that_is_down_fails_within_the_configured_bounds() {
        let certificates = tempfile::tempdir().expect("tempdir");
        ensure_dev_certificates(certificates.path(), &[1]).expect("certificates");
        // A bound UDP socket that never answers stands in for a dead peer.
        let silent = std::net::UdpSocket::bind(loopback()).expect("bind silent socket");
        let config = QuicConfig {
            request_timeout_ms: 1_000,
            connect_timeout_ms: 300,
            reconnect_backoff_ms: 60_000,
            ..QuicConfig::default()
        };
        let node_1 = bind(certificates.path(), 1, config, Arc::new(EchoHandler::default()));
        node_1.set_peer_addr(2, silent.local_addr().expect("silent address"));

        // Phase 1: the first call dials and gives up (bounded by connect_timeout_ms).
        let error = node_1.call(2, request(1, 10)).await.expect_err("peer is down");
        assert!(matches!(error, TransportError::Unreachable { .. } | TransportError::Timeout { .. }), "{error}");

        // Phase 2: within the backoff the next call fails without dialling (the reason says so;
        // no assertion on elapsed time, which a loaded machine would make flaky).
        let error = node_1.call(2, request(2, 10)).await.expect_err("peer is still down");
        assert!(
            matches!(&error, TransportError::Unreachable { reason, .. } if reason.contains("not redialling")),
            "{error}"
        );
        node_1.shutdown().await;
    }

    #[test]
    fn config_bounds_are_checked() {
        assert!(QuicConfig::default().validate().is_ok());
        let too_small = QuicConfig { message_bytes_max: 10, ..QuicConfig::default() };
        assert!(too_small.validate().is_err());
        let connect_beyond_request = QuicConfig { connect_timeout_ms: 10_000, ..QuicConfig::default() };
        assert!(connect_beyond_request.validate().is_err());
        let window_below_stream = QuicConfig { connection_receive_window_bytes: 1024 * 1024, ..QuicConfig::default() };
        assert!(window_below_stream.validate().is_err());
        let keep_alive_beyond_idle = QuicConfig { keep_alive_interval_ms: 9_000, ..QuicConfig::default() };
        assert!(keep_alive_beyond_idle.validate().is_err());
    }

    #[test]
    fn frames_round_trip_and_respect_the_limit() {
        let sent = request(5, 300);
        let frame = encode_frame(&sent, 1024).expect("fits");
        let length = u32::from_be_bytes(frame[..4].try_into().expect("header")) as usize;
        assert_eq!(length, frame.len() - FRAME_HEADER_BYTES);
        assert_eq!(PeerRequest::decode(&frame[FRAME_HEADER_BYTES..]).expect("decode"), sent);
        assert_eq!(encode_frame(&sent, 100), Err(sent.encoded_len() as u64));
    }
}
