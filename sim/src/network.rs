//! The simulated network: every node's peer transport is an endpoint of one [`SimNetwork`].
//!
//! Messages take a seeded random latency each way. A partition isolates a node: requests to
//! or from it fail (after their latency, as a real timeout would), including responses that
//! were in flight when the partition began. A one-way cut blocks one direction of a link only
//! (requests across it fail; requests the other way run, but their responses are lost). A
//! held node (a paused process, as its peers see it) neither receives nor sends: its messages
//! wait, and are delivered late, in a burst, when it is released. With [`MessageFaults`] set,
//! single messages are also lost (a request before its handler runs, or a response after),
//! held back long enough to arrive after later ones, or delivered again — shortly after
//! (a duplicate) or up to seconds later (a replay of an old message, possibly to a restarted
//! process). Only Raft and idempotent messages are duplicated: the transport never resends a
//! forwarded client write by itself.

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
    /// A request is delivered a second time, 0–20 ms later (its second answer is dropped).
    pub duplicate: f64,
    /// A request is delivered again 0.2–3 s later: an old message replayed.
    pub replay: f64,
}

/// How long a lost message takes to be reported lost (a request timeout, in effect).
const LOST_DELAY_MS: u64 = 50;
/// The extra latency of a held-back message.
const SPIKE_MIN_MS: u64 = 20;
const SPIKE_MAX_MS: u64 = 300;
/// When a duplicate, and when a replayed old message, arrives after the original.
const DUPLICATE_MAX_MS: u64 = 20;
const REPLAY_MIN_MS: u64 = 200;
const REPLAY_MAX_MS: u64 = 3_000;

struct NetworkState {
    handlers: BTreeMap<NodeId, Arc<dyn PeerHandler>>,
    isolated: BTreeSet<NodeId>,
    /// One-way cuts: messages from the first node to the second are lost.
    cut: BTreeSet<(NodeId, NodeId)>,
    /// Held nodes and the watch that releases them.
    held: BTreeSet<NodeId>,
    faults: MessageFaults,
    rng: ChaCha8Rng,
    messages: u64,
    /// Messages delivered a second time (duplicates and replays).
    redelivered: u64,
    /// Requests being handled, by target and kind (each holds its target node while it runs).
    handling: BTreeMap<(NodeId, &'static str), u64>,
}

/// One network shared by every simulated node.
pub struct SimNetwork {
    state: Mutex<NetworkState>,
    trace: Arc<Trace>,
    /// Bumped whenever a node is released, to wake the messages waiting for it.
    released: tokio::sync::watch::Sender<u64>,
}

impl SimNetwork {
    pub fn new(rng: ChaCha8Rng, trace: Arc<Trace>) -> Arc<SimNetwork> {
        Arc::new(SimNetwork {
            state: Mutex::new(NetworkState {
                handlers: BTreeMap::new(),
                isolated: BTreeSet::new(),
                cut: BTreeSet::new(),
                held: BTreeSet::new(),
                faults: MessageFaults::default(),
                rng,
                messages: 0,
                redelivered: 0,
                handling: BTreeMap::new(),
            }),
            trace,
            released: tokio::sync::watch::channel(0).0,
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

    /// Cuts the link from `from` to `to` in that direction only.
    pub fn cut_one_way(&self, from: NodeId, to: NodeId) {
        self.lock().cut.insert((from, to));
    }

    /// Holds `node`: its messages, both ways, wait until it is released.
    pub fn hold(&self, node: NodeId) {
        self.lock().held.insert(node);
    }

    /// Releases every held node: the messages that waited are delivered now.
    pub fn release(&self) {
        self.lock().held.clear();
        self.released.send_modify(|generation| *generation += 1);
    }

    /// Ends every partition and one-way cut (held nodes stay held until released).
    pub fn heal(&self) {
        let mut state = self.lock();
        state.isolated.clear();
        state.cut.clear();
    }

    /// Waits while `from` or `to` is held.
    async fn wait_released(&self, from: NodeId, to: NodeId) {
        let mut released = self.released.subscribe();
        loop {
            {
                let state = self.lock();
                if !state.held.contains(&from) && !state.held.contains(&to) {
                    return;
                }
            }
            if released.changed().await.is_err() {
                return;
            }
        }
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

    /// Messages delivered a second time so far.
    pub fn redelivered(&self) -> u64 {
        self.lock().redelivered
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
        !state.isolated.contains(&from)
            && !state.isolated.contains(&to)
            && !state.cut.contains(&(from, to))
            && state.handlers.contains_key(&from)
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

    /// With the duplicate or replay probability, delivers `request` once more, later, to
    /// whatever process then runs at `target` (its answer goes nowhere).
    fn maybe_deliver_again(self: &Arc<Self>, from: NodeId, target: NodeId, kind: &'static str, request: &PeerRequest) {
        let later = if self.strikes(|faults| faults.duplicate) {
            Duration::from_millis(self.lock().rng.gen_range(0..=DUPLICATE_MAX_MS))
        } else if self.strikes(|faults| faults.replay) {
            Duration::from_millis(self.lock().rng.gen_range(REPLAY_MIN_MS..=REPLAY_MAX_MS))
        } else {
            return;
        };
        let network = self.clone();
        let request = request.clone();
        tokio::spawn(async move {
            tokio::time::sleep(later).await;
            let handler = network.lock().handlers.get(&target).cloned();
            let Some(handler) = handler.filter(|_| network.connected(from, target)) else { return };
            network.lock().redelivered += 1;
            network.trace.record(&format!("again {from}->{target} g{} {kind}", request.group_id));
            let _ = handler.handle(from, request).await;
        });
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
            network.wait_released(self.local, target).await;
            tokio::time::sleep(network.latency()).await;
            if !network.connected(self.local, target) {
                return Err(unreachable());
            }
            if duplicable(kind) {
                network.maybe_deliver_again(self.local, target, kind, &request);
            }
            *network.lock().handling.entry((target, kind)).or_insert(0) += 1;
            let handling = Handling { network: network.clone(), key: (target, kind) };
            let response = handler.handle(self.local, request).await;
            drop(handling);
            network.wait_released(target, self.local).await;
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

/// Whether a message of this kind may be delivered twice: Raft's own messages and requests
/// without effects. Forwarded writes, metadata commands and readmission steps are not (the
/// transport never resends them by itself).
fn duplicable(kind: &str) -> bool {
    matches!(kind, "append" | "vote" | "snapshot" | "forward-read" | "meta-barrier" | "hello" | "status")
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
