//! The simulated network: every node's peer transport is an endpoint of one [`SimNetwork`].
//!
//! Messages take a seeded random latency each way. A partition isolates a node: requests to
//! or from it fail (after their latency, as a real timeout would), including responses that
//! were in flight when the partition began. With [`MessageFaults`] set, single messages are
//! also lost (a request before its handler runs, or a response after) or held back long
//! enough to arrive after later ones.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use riffle_node::transport::{BoxFuture, NodeId, PeerHandler, PeerTransport, TransportError};
use riffle_proto::peer::{PeerRequest, PeerResponse};

use crate::trace::Trace;

/// Latency of one direction of a message, in microseconds.
const LATENCY_MIN_US: u64 = 100;
const LATENCY_MAX_US: u64 = 2_000;
/// How long a request to an unreachable node takes to fail.
const UNREACHABLE_DELAY_MS: u64 = 20;

/// Faults of single messages, as probabilities per message.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MessageFaults {
    /// A request is lost before it reaches its handler (the caller sees it lost after a delay).
    pub drop_request: f64,
    /// A response is lost after the handler ran (the caller cannot tell whether it did).
    pub drop_response: f64,
    /// A message (either way) is held back 20–300 ms, so later ones overtake it.
    pub delay_spike: f64,
}

/// How long a lost message takes to be reported lost (a request timeout, in effect).
const LOST_DELAY_MS: u64 = 50;
/// The extra latency of a held-back message.
const SPIKE_MIN_MS: u64 = 20;
const SPIKE_MAX_MS: u64 = 300;

struct NetworkState {
    handlers: BTreeMap<NodeId, Arc<dyn PeerHandler>>,
    isolated: BTreeSet<NodeId>,
    faults: MessageFaults,
    rng: ChaCha8Rng,
    messages: u64,
    /// Requests being handled, by target and kind (each holds its target node while it runs).
    handling: BTreeMap<(NodeId, &'static str), u64>,
}

/// One network shared by every simulated node.
pub struct SimNetwork {
    state: Mutex<NetworkState>,
    trace: Arc<Trace>,
}

impl SimNetwork {
    pub fn new(rng: ChaCha8Rng, trace: Arc<Trace>) -> Arc<SimNetwork> {
        Arc::new(SimNetwork {
            state: Mutex::new(NetworkState {
                handlers: BTreeMap::new(),
                isolated: BTreeSet::new(),
                faults: MessageFaults::default(),
                rng,
                messages: 0,
                handling: BTreeMap::new(),
            }),
            trace,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, NetworkState> {
        self.state.lock().expect("the simulation runs on one thread and never panics holding this lock")
    }

    /// A node (re)joins with a new handler.
    pub fn attach(&self, node: NodeId, handler: Arc<dyn PeerHandler>) {
        self.lock().handlers.insert(node, handler);
    }

    /// A node crashed: nothing reaches it any more.
    pub fn detach(&self, node: NodeId) {
        self.lock().handlers.remove(&node);
    }

    pub fn isolate(&self, node: NodeId) {
        self.lock().isolated.insert(node);
    }

    pub fn heal(&self) {
        self.lock().isolated.clear();
    }

    /// Sets the single-message faults ([`MessageFaults::default`] for none).
    pub fn set_faults(&self, faults: MessageFaults) {
        self.lock().faults = faults;
    }

    /// Whether the next message meets a fault of probability `pick(faults)`.
    fn strikes(&self, pick: impl Fn(&MessageFaults) -> f64) -> bool {
        let mut state = self.lock();
        let probability = pick(&state.faults);
        probability > 0.0 && state.rng.gen_bool(probability.min(1.0))
    }

    pub fn messages(&self) -> u64 {
        self.lock().messages
    }

    /// The requests `node` is handling, by kind.
    pub fn handling(&self, node: NodeId) -> Vec<(&'static str, u64)> {
        self.lock()
            .handling
            .iter()
            .filter(|((target, _), _)| *target == node)
            .map(|((_, kind), count)| (*kind, *count))
            .collect()
    }

    fn connected(&self, from: NodeId, to: NodeId) -> bool {
        let state = self.lock();
        !state.isolated.contains(&from) && !state.isolated.contains(&to) && state.handlers.contains_key(&from)
    }

    fn latency(&self) -> Duration {
        let spike = self.strikes(|faults| faults.delay_spike);
        let mut state = self.lock();
        let base = Duration::from_micros(state.rng.gen_range(LATENCY_MIN_US..=LATENCY_MAX_US));
        if spike {
            base + Duration::from_millis(state.rng.gen_range(SPIKE_MIN_MS..=SPIKE_MAX_MS))
        } else {
            base
        }
    }

    pub fn endpoint(self: &Arc<Self>, local: NodeId) -> Arc<SimEndpoint> {
        Arc::new(SimEndpoint { network: self.clone(), local })
    }
}

/// A node's view of the network.
pub struct SimEndpoint {
    network: Arc<SimNetwork>,
    local: NodeId,
}

impl PeerTransport for SimEndpoint {
    fn call(&self, target: NodeId, request: PeerRequest) -> BoxFuture<'_, Result<PeerResponse, TransportError>> {
        Box::pin(async move {
            let network = &self.network;
            let handler = {
                let mut state = network.lock();
                state.messages += 1;
                state.handlers.get(&target).cloned()
            };
            let kind = request.body.as_ref().map_or("empty", body_kind);
            network.trace.record(&format!("send {}->{} g{} {kind}", self.local, target, request.group_id));
            let unreachable =
                || TransportError::Unreachable { peer: target, reason: "simulated partition or crash".into() };
            let Some(handler) = handler.filter(|_| network.connected(self.local, target)) else {
                tokio::time::sleep(Duration::from_millis(UNREACHABLE_DELAY_MS)).await;
                return Err(unreachable());
            };
            let lost = |what: &str| TransportError::Lost { peer: target, reason: format!("the {what} was lost") };
            if network.strikes(|faults| faults.drop_request) {
                network.trace.record(&format!("drop {}->{} g{} {kind}", self.local, target, request.group_id));
                tokio::time::sleep(Duration::from_millis(LOST_DELAY_MS)).await;
                return Err(lost("request"));
            }
            tokio::time::sleep(network.latency()).await;
            if !network.connected(self.local, target) {
                return Err(unreachable());
            }
            *network.lock().handling.entry((target, kind)).or_insert(0) += 1;
            let handling = Handling { network: network.clone(), key: (target, kind) };
            let response = handler.handle(self.local, request).await;
            drop(handling);
            tokio::time::sleep(network.latency()).await;
            if !network.connected(target, self.local) {
                return Err(TransportError::Lost {
                    peer: target,
                    reason: "the response was lost to a partition".into(),
                });
            }
            if network.strikes(|faults| faults.drop_response) {
                network.trace.record(&format!("drop response {}->{} {kind}", target, self.local));
                return Err(lost("response"));
            }
            Ok(response)
        })
    }
}

/// Counts a request as being handled until it is answered or dropped.
struct Handling {
    network: Arc<SimNetwork>,
    key: (NodeId, &'static str),
}

impl Drop for Handling {
    fn drop(&mut self) {
        let mut state = self.network.lock();
        if let Some(count) = state.handling.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                state.handling.remove(&self.key);
            }
        }
    }
}

fn body_kind(body: &riffle_proto::peer::peer_request::Body) -> &'static str {
    use riffle_proto::peer::peer_request::Body;
    match body {
        Body::AppendEntries(_) => "append",
        Body::Vote(_) => "vote",
        Body::InstallSnapshot(_) => "snapshot",
        Body::ForwardAppend(_) => "forward-append",
        Body::ForwardRead(_) => "forward-read",
        Body::ForwardMeta(_) => "forward-meta",
        Body::MetaBarrier(_) => "meta-barrier",
        Body::LoadReport(_) => "load-report",
        Body::Hello(_) => "hello",
        Body::Status(_) => "status",
        Body::TakeLeadership(_) => "take-leadership",
        Body::Readmit(_) => "readmit",
        Body::Readmitted(_) => "readmitted",
    }
}
