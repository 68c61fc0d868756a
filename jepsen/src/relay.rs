//! The link relay: node-to-node packets through a userspace forwarder that can delay, drop,
//! duplicate and reorder them (this machine kind's kernel has no `sch_netem`).
//!
//! The relay runs in a namespace of its own (`{prefix}-rl`, see
//! [`crate::net::Topology::add_relay_host`]) with one UDP socket per ordered node pair (i, j),
//! at port `20000 + 100·i + j`. Node i is configured (test-only `[[test_only.dial]]`) to dial
//! node j at that socket; the relay forwards what it receives there to j's real QUIC address,
//! from the same socket, so j's answers come back to it and go on to i. Every packet therefore
//! belongs to one direction of one pair, and each direction has its own [`LinkFault`]: loss,
//! duplication, and a delay drawn per packet from a range (a range wider than the gap between
//! packets reorders them), or a cut. QUIC's own encryption and retransmission see to the rest:
//! the relay never looks inside a packet.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// The first relay port; pair (i, j) listens at `RELAY_PORT_BASE + 100·i + j`.
const RELAY_PORT_BASE: u16 = 20_000;
/// The largest datagram forwarded.
const DATAGRAM_BYTES_MAX: usize = 65_536;

/// Where the relay listens and where the nodes really are.
#[derive(Debug, Clone)]
pub struct RelayPlan {
    pub address: Ipv4Addr,
    /// Each node's real QUIC address.
    pub nodes: BTreeMap<u64, SocketAddr>,
}

impl RelayPlan {
    fn port(from: u64, to: u64) -> u16 {
        RELAY_PORT_BASE + (from as u16) * 100 + to as u16
    }

    /// Where node `from` dials each other node of `ids`.
    pub fn dial_plan(&self, from: u64, ids: &[u64]) -> Vec<(u64, SocketAddr)> {
        ids.iter()
            .filter(|id| **id != from)
            .map(|to| (*to, SocketAddr::from((self.address, RelayPlan::port(from, *to)))))
            .collect()
    }
}

/// What happens to the packets of one direction of one pair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LinkFault {
    /// Share of packets dropped.
    pub loss: f64,
    /// Share of packets sent twice.
    pub duplicate: f64,
    /// Each packet waits a time drawn from this range (milliseconds) before it is sent on.
    pub delay_min_ms: u64,
    pub delay_max_ms: u64,
    /// Every packet dropped.
    pub cut: bool,
}

impl LinkFault {
    fn is_clear(&self) -> bool {
        *self == LinkFault::default()
    }
}

/// What the relay did, for the report.
#[derive(Debug, Default, Serialize)]
pub struct RelayCounts {
    pub forwarded: AtomicU64,
    pub dropped: AtomicU64,
    pub duplicated: AtomicU64,
    pub delayed: AtomicU64,
}

type Faults = Arc<Mutex<BTreeMap<(u64, u64), LinkFault>>>;

/// A running relay; dropping it stops it.
pub struct Relay {
    faults: Faults,
    counts: Arc<RelayCounts>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    /// Starts forwarding for every ordered pair of the plan's nodes, in `namespace`.
    pub fn start(namespace: &str, plan: &RelayPlan) -> Result<Relay> {
        let faults: Faults = Arc::new(Mutex::new(BTreeMap::new()));
        let counts = Arc::new(RelayCounts::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_sender, ready) = std::sync::mpsc::channel::<Result<()>>();
        let namespace = namespace.to_string();
        let plan = plan.clone();
        let thread_faults = faults.clone();
        let thread_counts = counts.clone();
        let thread = std::thread::Builder::new()
            .name("jepsen-relay".into())
            .spawn(move || {
                let setup = || -> Result<(tokio::runtime::Runtime, Vec<std::net::UdpSocket>)> {
                    crate::net::enter_namespace(&namespace)?;
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .context("starting the relay's runtime")?;
                    let mut sockets = Vec::new();
                    for from in plan.nodes.keys() {
                        for to in plan.nodes.keys().filter(|to| *to != from) {
                            let address = SocketAddr::from((plan.address, RelayPlan::port(*from, *to)));
                            let socket = std::net::UdpSocket::bind(address)
                                .with_context(|| format!("binding the relay socket {address}"))?;
                            socket.set_nonblocking(true)?;
                            sockets.push(socket);
                        }
                    }
                    Ok((runtime, sockets))
                };
                let (runtime, sockets) = match setup() {
                    Ok(ready) => ready,
                    Err(error) => {
                        let _ = ready_sender.send(Err(error));
                        return;
                    }
                };
                let _ = ready_sender.send(Ok(()));
                runtime.block_on(async move {
                    let mut pairs = Vec::new();
                    let mut index = 0u64;
                    for from in plan.nodes.keys() {
                        for to in plan.nodes.keys().filter(|to| *to != from) {
                            let socket = sockets.get(index as usize).map(|socket| socket.try_clone());
                            index += 1;
                            let Some(Ok(socket)) = socket else { continue };
                            let Ok(socket) = tokio::net::UdpSocket::from_std(socket) else { continue };
                            pairs.push(tokio::spawn(forward_pair(
                                Arc::new(socket),
                                (*from, plan.nodes[from]),
                                (*to, plan.nodes[to]),
                                thread_faults.clone(),
                                thread_counts.clone(),
                                index,
                            )));
                        }
                    }
                    let _ = stopped.await;
                    for pair in pairs {
                        pair.abort();
                    }
                });
            })
            .context("starting the relay thread")?;
        ready.recv().context("the relay thread ended before it was ready")??;
        Ok(Relay { faults, counts, stop: Some(stop), thread: Some(thread) })
    }

    /// Sets the fault of the direction `from` → `to`.
    pub fn set(&self, from: u64, to: u64, fault: LinkFault) {
        let mut faults = self.faults.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if fault.is_clear() {
            faults.remove(&(from, to));
        } else {
            faults.insert((from, to), fault);
        }
    }

    /// Cuts the direction `from` → `to` (keeping any other fault on it for when it is healed
    /// is not needed: healing clears everything).
    pub fn cut(&self, from: u64, to: u64) {
        let mut faults = self.faults.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        faults.entry((from, to)).or_default().cut = true;
    }

    /// Clears every fault.
    pub fn heal(&self) {
        self.faults.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
    }

    /// Packets forwarded, dropped, duplicated and delayed so far.
    pub fn counts(&self) -> (u64, u64, u64, u64) {
        (
            self.counts.forwarded.load(Ordering::Relaxed),
            self.counts.dropped.load(Ordering::Relaxed),
            self.counts.duplicated.load(Ordering::Relaxed),
            self.counts.delayed.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Forwards the packets of pair (a, b) both ways: from a's address on to b, from b's back to
/// the address a last sent from.
async fn forward_pair(
    socket: Arc<tokio::net::UdpSocket>,
    (a, a_address): (u64, SocketAddr),
    (b, b_address): (u64, SocketAddr),
    faults: Faults,
    counts: Arc<RelayCounts>,
    seed: u64,
) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut buffer = vec![0u8; DATAGRAM_BYTES_MAX];
    let mut a_source = a_address;
    loop {
        let Ok((length, source)) = socket.recv_from(&mut buffer).await else { continue };
        let (direction, destination) = if source == b_address {
            ((b, a), a_source)
        } else if source.ip() == a_address.ip() {
            a_source = source;
            ((a, b), b_address)
        } else {
            continue;
        };
        let fault = faults.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&direction).copied();
        let Some(fault) = fault else {
            let _ = socket.send_to(&buffer[..length], destination).await;
            counts.forwarded.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        if fault.cut || (fault.loss > 0.0 && rng.gen_bool(fault.loss.min(1.0))) {
            counts.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let copies = if fault.duplicate > 0.0 && rng.gen_bool(fault.duplicate.min(1.0)) {
            counts.duplicated.fetch_add(1, Ordering::Relaxed);
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = if fault.delay_max_ms > 0 {
                rng.gen_range(fault.delay_min_ms..=fault.delay_max_ms.max(fault.delay_min_ms))
            } else {
                0
            };
            counts.forwarded.fetch_add(1, Ordering::Relaxed);
            if delay == 0 {
                let _ = socket.send_to(&buffer[..length], destination).await;
                continue;
            }
            counts.delayed.fetch_add(1, Ordering::Relaxed);
            let packet = buffer[..length].to_vec();
            let socket = socket.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                let _ = socket.send_to(&packet, destination).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Topology;
    use std::net::UdpSocket;
    use std::path::Path;

    /// Bound on waiting for a datagram that should arrive.
    const DELIVERY_TIMEOUT: Duration = Duration::from_secs(3);
    /// Bound on waiting for a datagram that should not arrive.
    const SILENCE_TIMEOUT: Duration = Duration::from_millis(300);

    fn can_run() -> bool {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        if !root || !Path::new("/usr/sbin/ip").exists() {
            eprintln!("skipped: needs root and iproute2");
            return false;
        }
        true
    }

    /// A UDP socket bound inside `namespace` (sockets keep the namespace they were made in).
    fn socket_in(namespace: &str, address: SocketAddr) -> UdpSocket {
        let namespace = namespace.to_string();
        std::thread::spawn(move || {
            crate::net::enter_namespace(&namespace).expect("entering a test namespace");
            let socket = UdpSocket::bind(address).expect("binding a test socket");
            socket.set_read_timeout(Some(DELIVERY_TIMEOUT)).expect("a read timeout");
            socket
        })
        .join()
        .expect("the socket thread does not panic")
    }

    fn receive(socket: &UdpSocket, timeout: Duration) -> Option<(Vec<u8>, SocketAddr)> {
        socket.set_read_timeout(Some(timeout)).expect("a read timeout");
        let mut buffer = [0u8; 1500];
        socket.recv_from(&mut buffer).ok().map(|(length, source)| (buffer[..length].to_vec(), source))
    }

    #[test]
    fn forwards_both_ways_and_applies_loss_and_duplication_per_direction() {
        if !can_run() {
            return;
        }
        let prefix = format!("{}t9", crate::net::prefix_for_this_process());
        let mut topology = Topology::create(&prefix, &[(1, "a".into()), (2, "b".into())]).expect("a topology");
        let (namespace, address) = topology.add_relay_host().expect("a relay host");
        let node_address = |id: u64| SocketAddr::from((topology.node(id).expect("node").address, 7_100));
        let plan = RelayPlan { address, nodes: [(1, node_address(1)), (2, node_address(2))].into() };
        let relay = Relay::start(&namespace, &plan).expect("the relay starts");
        let one = socket_in(&topology.node(1).expect("node 1").namespace, node_address(1));
        let two = socket_in(&topology.node(2).expect("node 2").namespace, node_address(2));
        let one_dials_two = plan.dial_plan(1, &[1, 2])[0].1;

        // 1 → 2 through the relay, and 2's answer back to 1 the same way.
        one.send_to(b"hello", one_dials_two).expect("send");
        let (bytes, source) = receive(&two, DELIVERY_TIMEOUT).expect("the relay forwards 1 to 2");
        assert_eq!(bytes, b"hello");
        assert_eq!(source, one_dials_two, "2 sees the relay's socket for the pair");
        two.send_to(b"back", source).expect("send");
        assert_eq!(receive(&one, DELIVERY_TIMEOUT).expect("the answer comes back").0, b"back");

        // Every packet 1 → 2 lost; 2 → 1 untouched.
        relay.set(1, 2, LinkFault { loss: 1.0, ..Default::default() });
        one.send_to(b"lost", one_dials_two).expect("send");
        assert!(receive(&two, SILENCE_TIMEOUT).is_none(), "a lost packet arrived");
        two.send_to(b"still", source).expect("send");
        assert_eq!(receive(&one, DELIVERY_TIMEOUT).expect("the other direction works").0, b"still");

        // Every packet 1 → 2 duplicated.
        relay.set(1, 2, LinkFault { duplicate: 1.0, ..Default::default() });
        one.send_to(b"twice", one_dials_two).expect("send");
        assert_eq!(receive(&two, DELIVERY_TIMEOUT).expect("the first copy").0, b"twice");
        assert_eq!(receive(&two, DELIVERY_TIMEOUT).expect("the second copy").0, b"twice");

        // A cut, then heal.
        relay.cut(1, 2);
        one.send_to(b"cut", one_dials_two).expect("send");
        assert!(receive(&two, SILENCE_TIMEOUT).is_none(), "a packet crossed a cut");
        relay.heal();
        one.send_to(b"healed", one_dials_two).expect("send");
        assert_eq!(receive(&two, DELIVERY_TIMEOUT).expect("healed").0, b"healed");
        let (forwarded, dropped, duplicated, _) = relay.counts();
        assert_eq!((dropped, duplicated), (2, 1));
        assert!(forwarded >= 5, "forwarded {forwarded}");
        drop(relay);
        topology.destroy().expect("the topology is removed");
    }
}
