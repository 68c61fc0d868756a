//! The test network of the harness: one Linux network namespace per host, joined by a bridge.
//!
//! A topology with prefix `P` and network number `N` (100..=199, derived from `P`) is:
//!
//! - `P-sw`, the switch: a bridge `br0` with the outer end of every host's veth pair attached
//!   (`node{id}` for a node, `client` for the client).
//! - `P-{zone}{id}` per node: the inner end `eth0` at `10.N.0.{id}/24`, and `lo`, both up.
//! - `P-cl`, the client: `eth0` at `10.N.0.200/24`, and `lo`, both up.
//!
//! Nothing is added to the root namespace: veth pairs are created with both ends already inside
//! the harness's namespaces, so deleting the namespaces removes every link and route a topology
//! made. Two topologies never share an interface, a route or an address space; the network number
//! only keeps the addresses of runs with different prefixes apart in logs and captures.
//!
//! Faults are one-directional cuts: a blackhole route in the sender's namespace for the
//! receiver's /32. The sender's packets to that address are dropped before they leave (a UDP send
//! or a TCP connect fails at once with `EINVAL`); packets the receiver sends the other way still
//! arrive, so a TCP connection across a one-way cut stalls rather than resets.
//!
//! Invariant: the set [`Topology::cuts`] returns is exactly the blackhole routes this topology has
//! installed, because the set is updated under its lock only after `ip` reports success.
//!
//! Every change goes through the `ip` program of iproute2 and needs root (`CAP_SYS_ADMIN` and
//! `CAP_NET_ADMIN`); the kernel needs veth and bridge support, nothing else (no netem, no
//! netfilter).

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, PoisonError};

use anyhow::{bail, ensure, Context};

/// The `ip` program of iproute2 that every change to the network goes through.
const IP_PROGRAM: &str = "/usr/sbin/ip";

/// Where `ip netns` keeps a bind mount for every named network namespace.
const NAMESPACE_DIRECTORY: &str = "/var/run/netns";

/// Every namespace name of a harness run starts with this; [`clean_stale`] looks for it.
const HARNESS_PREFIX_START: &str = "rj";

/// Longest namespace name a topology makes. `ip netns` accepts longer ones (they are file names),
/// but short names keep `ip netns list` and error messages readable.
const NAMESPACE_NAME_LENGTH_MAX: usize = 32;

/// Smallest node id: the host part of the address is the id, and `.0` is the network.
const NODE_ID_MIN: u64 = 1;

/// Largest node id: `.200` belongs to the client.
const NODE_ID_MAX: u64 = 199;

/// Host part of the client's address.
const CLIENT_HOST_OCTET: u8 = 200;

/// Smallest network number, the second octet of every address of a topology.
const NETWORK_NUMBER_MIN: u8 = 100;

/// How many network numbers there are from [`NETWORK_NUMBER_MIN`] on (100..=199).
const NETWORK_NUMBER_COUNT: u8 = 100;

/// Prefix length of the test network: one /24 per topology.
const NETWORK_PREFIX_LENGTH: u8 = 24;

/// The bridge in the switch namespace.
const BRIDGE_NAME: &str = "br0";

/// The inner end of the veth pair in every host namespace.
const HOST_INTERFACE_NAME: &str = "eth0";

/// The outer end of the client's veth pair, in the switch namespace.
const CLIENT_SWITCH_PORT_NAME: &str = "client";

/// Which host of the test network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Host {
    /// The node with this id.
    Node(u64),
    /// The client, where the harness itself sends requests from.
    Client,
}

impl fmt::Display for Host {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Node(id) => write!(formatter, "node {id}"),
            Host::Client => write!(formatter, "the client"),
        }
    }
}

/// One node's place in the test network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeHost {
    /// The node id; also the host part of its address.
    pub id: u64,
    /// The zone the node is placed in (part of its namespace name).
    pub zone: String,
    /// The network namespace the node runs in, `{prefix}-{zone}{id}`.
    pub namespace: String,
    /// The node's address, `10.{net}.0.{id}`.
    pub address: Ipv4Addr,
}

/// The test network of one harness run: the namespaces, links and addresses made by
/// [`Topology::create`], and the cuts currently in place.
///
/// Dropping it deletes its namespaces (see [`Topology::destroy`]).
#[derive(Debug)]
pub struct Topology {
    /// Start of every namespace name of this topology.
    prefix: String,
    /// The second octet of every address.
    network_number: u8,
    /// The namespace holding the bridge.
    switch_namespace: String,
    /// The nodes, in the order given to [`Topology::create`].
    nodes: Vec<NodeHost>,
    /// The namespace of the client.
    client_namespace: String,
    /// The client's address, `10.{net}.0.200`.
    client_address: Ipv4Addr,
    /// Namespaces this topology made and has not deleted yet, in the order they were made.
    created_namespaces: Vec<String>,
    /// The one-directional cuts in place, as (from, to).
    cuts: Mutex<BTreeSet<(Host, Host)>>,
}

impl Topology {
    /// Builds the network: a "switch" namespace `{prefix}-sw` holding a bridge; per node a
    /// namespace `{prefix}-{zone}{id}` (e.g. `rj1234-a1`) whose `eth0` has address
    /// `10.{net}.0.{id}/24` and is one end of a veth pair whose other end is a port of the
    /// bridge; and a client namespace `{prefix}-cl` at `10.{net}.0.200/24` the same way. `lo` is
    /// up in every host namespace. `net` is in 100..=199 and is derived from the prefix.
    ///
    /// The prefix must be ASCII letters and digits; node ids must be distinct and in 1..=199;
    /// zones must be non-empty ASCII letters, digits, `_` or `-`; every namespace name must be
    /// distinct and at most 32 bytes long. A namespace that already exists is an error (it is
    /// never reused or deleted). On any error part-way, the namespaces made so far are deleted
    /// before the error is returned.
    pub fn create(prefix: &str, nodes: &[(u64, String)]) -> anyhow::Result<Topology> {
        let mut topology =
            Topology::plan(prefix, nodes).with_context(|| format!("checking the layout of test network {prefix:?}"))?;
        match topology.build() {
            Ok(()) => {
                tracing::debug!(
                    prefix,
                    network_number = topology.network_number,
                    nodes = topology.nodes.len(),
                    "test network built"
                );
                Ok(topology)
            }
            Err(error) => {
                let error = error.context(format!("building test network {prefix:?}"));
                match topology.destroy() {
                    Ok(()) => Err(error),
                    Err(cleanup_error) => {
                        Err(error.context(format!("and removing what was built also failed: {cleanup_error:#}")))
                    }
                }
            }
        }
    }

    /// The node with this id, if it is part of the topology.
    pub fn node(&self, id: u64) -> Option<&NodeHost> {
        self.nodes.iter().find(|node| node.id == id)
    }

    /// Every node, in the order given to [`Topology::create`].
    pub fn nodes(&self) -> &[NodeHost] {
        &self.nodes
    }

    /// The client's address, `10.{net}.0.200`.
    pub fn client_address(&self) -> Ipv4Addr {
        self.client_address
    }

    /// The address of a host, or `None` for a node that is not part of the topology.
    pub fn address(&self, host: Host) -> Option<Ipv4Addr> {
        match host {
            Host::Node(id) => self.node(id).map(|node| node.address),
            Host::Client => Some(self.client_address),
        }
    }

    /// The network namespace of a host, or `None` for a node that is not part of the topology.
    pub fn namespace(&self, host: Host) -> Option<&str> {
        match host {
            Host::Node(id) => self.node(id).map(|node| node.namespace.as_str()),
            Host::Client => Some(self.client_namespace.as_str()),
        }
    }

    /// A command that runs `program` inside the host's namespace (`ip netns exec NS program`).
    /// Arguments, environment and standard streams are the caller's to add. `ip` executes the
    /// program in place, so the child's process id is the program's own.
    pub fn command_in(&self, host: Host, program: &Path) -> anyhow::Result<Command> {
        let namespace = self.known_namespace(host)?;
        let mut command = Command::new(IP_PROGRAM);
        command.args(["netns", "exec", namespace]).arg(program);
        Ok(command)
    }

    /// Moves the calling thread into the client namespace (`setns` with `CLONE_NEWNET`). Only
    /// the calling thread moves; threads it spawns afterwards start in the client namespace too,
    /// so the harness calls this before it builds its async runtime.
    pub fn enter_client_namespace(&self) -> anyhow::Result<()> {
        enter(&self.client_namespace)
    }

    /// Cuts the link in one direction: packets `from` sends to `to` are dropped (a blackhole
    /// route in `from`'s namespace for `to`'s /32). Packets `to` sends to `from` still arrive.
    /// Idempotent.
    pub fn cut(&self, from: Host, to: Host) -> anyhow::Result<()> {
        let (namespace, destination) = self.route_endpoints(from, to)?;
        let mut cuts = self.lock_cuts();
        // `replace` rather than `add`, so installing a route that is already there succeeds.
        run_ip(&["-n", namespace, "route", "replace", "blackhole", &destination])
            .with_context(|| format!("cutting the link from {from} to {to}"))?;
        cuts.insert((from, to));
        Ok(())
    }

    /// Restores the link in one direction, undoing [`Topology::cut`]. Idempotent.
    pub fn restore(&self, from: Host, to: Host) -> anyhow::Result<()> {
        let (namespace, destination) = self.route_endpoints(from, to)?;
        let mut cuts = self.lock_cuts();
        if !cuts.contains(&(from, to)) {
            return Ok(());
        }
        run_ip(&["-n", namespace, "route", "delete", "blackhole", &destination])
            .with_context(|| format!("restoring the link from {from} to {to}"))?;
        cuts.remove(&(from, to));
        Ok(())
    }

    /// Cuts both directions between every host in `side` and every host in `other`. The two
    /// sides must not share a host. Links within a side are left as they are. If a cut fails
    /// part-way, the cuts made before it stay in place (and are listed by [`Topology::cuts`]).
    pub fn partition(&self, side: &[Host], other: &[Host]) -> anyhow::Result<()> {
        for host in side.iter().chain(other) {
            self.known_namespace(*host)?;
        }
        if let Some(shared) = side.iter().find(|host| other.contains(host)) {
            bail!("cannot partition {shared} from itself: it is on both sides");
        }
        for &left in side {
            for &right in other {
                self.cut(left, right)?;
                self.cut(right, left)?;
            }
        }
        Ok(())
    }

    /// Removes every cut. If some cannot be removed, the others still are, and the error names
    /// the ones left in place.
    pub fn heal(&self) -> anyhow::Result<()> {
        let mut cuts = self.lock_cuts();
        let mut failures = Vec::new();
        for (from, to) in cuts.clone() {
            let (namespace, destination) = self.route_endpoints(from, to)?;
            match run_ip(&["-n", namespace, "route", "delete", "blackhole", &destination]) {
                Ok(_) => {
                    cuts.remove(&(from, to));
                }
                Err(error) => failures.push(format!("{from} to {to}: {error:#}")),
            }
        }
        ensure!(
            failures.is_empty(),
            "healing the network left {} cut(s) in place: {}",
            failures.len(),
            failures.join("; ")
        );
        Ok(())
    }

    /// The cuts in place now, as (from, to), in order.
    pub fn cuts(&self) -> Vec<(Host, Host)> {
        self.lock_cuts().iter().copied().collect()
    }

    /// Deletes every namespace this topology created, which removes their links and routes.
    /// Idempotent: a namespace already gone counts as deleted, and a failed deletion is tried
    /// again on the next call. Also called on drop.
    ///
    /// The caller must kill the processes it started in the namespaces first: `ip netns delete`
    /// only removes the name, so it succeeds while processes still run inside, and the network
    /// (with their sockets) lives on until the last of them exits.
    pub fn destroy(&mut self) -> anyhow::Result<()> {
        let mut failures = Vec::new();
        let mut remaining = Vec::new();
        // Hosts first and the switch last, the reverse of creation.
        for namespace in self.created_namespaces.drain(..).rev() {
            if let Err(error) = delete_namespace(&namespace) {
                failures.push(format!("{error:#}"));
                remaining.push(namespace);
            }
        }
        remaining.reverse();
        self.created_namespaces = remaining;
        // Routes go with their namespace, so any cut left is gone even if a deletion failed.
        self.lock_cuts().clear();
        ensure!(
            failures.is_empty(),
            "removing test network {:?} failed for {} namespace(s): {}",
            self.prefix,
            failures.len(),
            failures.join("; ")
        );
        Ok(())
    }

    /// Checks the layout and works out names and addresses, without touching the system.
    fn plan(prefix: &str, nodes: &[(u64, String)]) -> anyhow::Result<Topology> {
        ensure!(
            !prefix.is_empty() && prefix.bytes().all(|byte| byte.is_ascii_alphanumeric()),
            "the prefix {prefix:?} must be non-empty ASCII letters and digits"
        );
        let network_number = network_number(prefix);
        let switch_namespace = format!("{prefix}-sw");
        let client_namespace = format!("{prefix}-cl");
        let mut namespaces: HashSet<String> = HashSet::new();
        namespaces.insert(switch_namespace.clone());
        namespaces.insert(client_namespace.clone());
        let mut ids = HashSet::new();
        let mut node_hosts = Vec::with_capacity(nodes.len());
        for (id, zone) in nodes {
            let id = *id;
            ensure!(
                (NODE_ID_MIN..=NODE_ID_MAX).contains(&id),
                "node id {id} is outside {NODE_ID_MIN}..={NODE_ID_MAX}: it is the host part of \
                 the node's address"
            );
            ensure!(ids.insert(id), "node id {id} appears twice");
            ensure!(
                !zone.is_empty()
                    && zone.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-'),
                "the zone {zone:?} of node {id} must be non-empty ASCII letters, digits, '_' or '-'"
            );
            let namespace = format!("{prefix}-{zone}{id}");
            ensure!(
                namespaces.insert(namespace.clone()),
                "node {id} in zone {zone:?} would get namespace {namespace:?}, which another host \
                 already has"
            );
            let host_octet = u8::try_from(id).expect("node ids were checked to be at most 199");
            node_hosts.push(NodeHost {
                id,
                zone: zone.clone(),
                namespace,
                address: Ipv4Addr::new(10, network_number, 0, host_octet),
            });
        }
        if let Some(long) = namespaces.iter().find(|name| name.len() > NAMESPACE_NAME_LENGTH_MAX) {
            bail!(
                "namespace name {long:?} is longer than {NAMESPACE_NAME_LENGTH_MAX} bytes; use a \
                 shorter prefix or zone"
            );
        }
        Ok(Topology {
            prefix: prefix.to_owned(),
            network_number,
            switch_namespace,
            nodes: node_hosts,
            client_namespace,
            client_address: Ipv4Addr::new(10, network_number, 0, CLIENT_HOST_OCTET),
            created_namespaces: Vec::new(),
            cuts: Mutex::new(BTreeSet::new()),
        })
    }

    /// Makes the planned namespaces, links and addresses, recording each namespace as soon as it
    /// exists so that [`Topology::destroy`] removes exactly what was made.
    fn build(&mut self) -> anyhow::Result<()> {
        let switch_namespace = self.switch_namespace.clone();
        self.add_namespace(&switch_namespace)?;
        run_ip(&["-n", &switch_namespace, "link", "add", BRIDGE_NAME, "type", "bridge"])?;
        run_ip(&["-n", &switch_namespace, "link", "set", BRIDGE_NAME, "up"])?;
        let hosts: Vec<(String, String, Ipv4Addr)> = self
            .nodes
            .iter()
            .map(|node| (node.namespace.clone(), format!("node{}", node.id), node.address))
            .chain(std::iter::once((
                self.client_namespace.clone(),
                CLIENT_SWITCH_PORT_NAME.to_owned(),
                self.client_address,
            )))
            .collect();
        for (namespace, switch_port, address) in hosts {
            self.add_host(&namespace, &switch_port, address)
                .with_context(|| format!("connecting namespace {namespace} to the switch"))?;
        }
        Ok(())
    }

    /// Adds the link relay's host: a namespace `{prefix}-rl` at `10.{net}.0.201/24`, plugged
    /// into the bridge like the others. Returns its namespace and address.
    pub fn add_relay_host(&mut self) -> anyhow::Result<(String, Ipv4Addr)> {
        let namespace = format!("{}-rl", self.prefix);
        let address = Ipv4Addr::new(10, self.network_number, 0, RELAY_HOST_NUMBER);
        self.add_host(&namespace, "relay", address)
            .with_context(|| format!("connecting the relay namespace {namespace} to the switch"))?;
        Ok((namespace, address))
    }

    /// Makes one host namespace and plugs it into the bridge.
    fn add_host(&mut self, namespace: &str, switch_port: &str, address: Ipv4Addr) -> anyhow::Result<()> {
        let switch_namespace = self.switch_namespace.clone();
        self.add_namespace(namespace)?;
        run_ip(&[
            "link",
            "add",
            HOST_INTERFACE_NAME,
            "netns",
            namespace,
            "type",
            "veth",
            "peer",
            "name",
            switch_port,
            "netns",
            &switch_namespace,
        ])?;
        let address = format!("{address}/{NETWORK_PREFIX_LENGTH}");
        run_ip(&["-n", namespace, "address", "add", &address, "dev", HOST_INTERFACE_NAME])?;
        run_ip(&["-n", namespace, "link", "set", "lo", "up"])?;
        run_ip(&["-n", namespace, "link", "set", HOST_INTERFACE_NAME, "up"])?;
        run_ip(&["-n", &switch_namespace, "link", "set", switch_port, "master", BRIDGE_NAME, "up"])?;
        Ok(())
    }

    /// Makes a namespace and records it as created; fails if it already exists.
    fn add_namespace(&mut self, namespace: &str) -> anyhow::Result<()> {
        run_ip(&["netns", "add", namespace]).with_context(|| format!("creating network namespace {namespace}"))?;
        self.created_namespaces.push(namespace.to_owned());
        Ok(())
    }

    /// The namespace of a host, or an error naming the unknown node.
    fn known_namespace(&self, host: Host) -> anyhow::Result<&str> {
        self.namespace(host).with_context(|| format!("{host} is not part of test network {:?}", self.prefix))
    }

    /// The namespace holding the route of a cut from `from` to `to`, and the route's destination.
    fn route_endpoints(&self, from: Host, to: Host) -> anyhow::Result<(&str, String)> {
        // A route cannot cut a host from itself: its own address is in the local table, which
        // the kernel consults before the main table.
        ensure!(from != to, "cannot cut {from} from itself");
        let namespace = self.known_namespace(from)?;
        let address =
            self.address(to).with_context(|| format!("{to} is not part of test network {:?}", self.prefix))?;
        Ok((namespace, format!("{address}/32")))
    }

    /// The set of cuts. A panic while it was held cannot have left it half-updated (it changes
    /// only by one insert or remove after `ip` succeeded), so a poisoned lock is still usable.
    fn lock_cuts(&self) -> MutexGuard<'_, BTreeSet<(Host, Host)>> {
        self.cuts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if let Err(error) = self.destroy() {
            tracing::warn!(prefix = %self.prefix, "removing the test network on drop failed: {error:#}");
        }
    }
}

/// Removes namespaces left by earlier runs that were killed before they could clean up: every
/// namespace named `rj<digits>-...` whose creating process (the digits are its process id) no
/// longer runs. Returns their names, sorted.
///
/// Processes a dead run left behind inside such a namespace (its nodes) are killed first. A
/// process id that has been reused by an unrelated process keeps its
/// namespaces, which errs on the side of never removing a live run's network.
pub fn clean_stale() -> anyhow::Result<Vec<String>> {
    let entries = match fs::read_dir(NAMESPACE_DIRECTORY) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => {
            return Err(error).with_context(|| format!("listing {NAMESPACE_DIRECTORY}"));
        }
    };
    let mut stale = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {NAMESPACE_DIRECTORY}"))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let Some(creator) = creator_process_id(&name) else {
            continue;
        };
        let running = process_is_running(creator)
            .with_context(|| format!("checking whether the creator of namespace {name} runs"))?;
        if !running {
            stale.push(name);
        }
    }
    stale.sort();
    let mut failures = Vec::new();
    for name in &stale {
        // Node processes of the dead run still inside: they die first.
        if let Ok(pids) = run_ip(&["netns", "pids", name]) {
            for pid in pids.split_whitespace().filter_map(|pid| pid.parse::<libc::pid_t>().ok()).filter(|pid| *pid > 0)
            {
                // SAFETY: SIGKILL to a process inside a namespace of a dead harness run.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        match delete_namespace(name) {
            Ok(()) => tracing::info!(namespace = %name, "removed a stale test namespace"),
            Err(error) => failures.push(format!("{error:#}")),
        }
    }
    ensure!(
        failures.is_empty(),
        "removing stale test namespaces failed for {} of {}: {}",
        failures.len(),
        stale.len(),
        failures.join("; ")
    );
    Ok(stale)
}

/// A prefix for this process: `rj{pid}`, which [`clean_stale`] recognises once the process is
/// gone.
pub fn prefix_for_this_process() -> String {
    format!("{HARNESS_PREFIX_START}{}", std::process::id())
}

/// The host number of the link relay (see [`Topology::add_relay_host`]).
const RELAY_HOST_NUMBER: u8 = 201;

/// Moves the calling thread into the named network namespace (threads it spawns afterwards
/// inherit it).
pub fn enter_namespace(namespace: &str) -> anyhow::Result<()> {
    enter(namespace)
}

/// Moves the calling thread into the named network namespace.
fn enter(namespace: &str) -> anyhow::Result<()> {
    let path: PathBuf = Path::new(NAMESPACE_DIRECTORY).join(namespace);
    let file = File::open(&path).with_context(|| format!("opening network namespace {}", path.display()))?;
    // SAFETY: `file` stays open for the whole call; setns only reads the descriptor.
    let result = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if result != 0 {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("entering network namespace {namespace} (setns)"));
    }
    Ok(())
}

/// Deletes a named namespace; one that is already gone counts as deleted.
fn delete_namespace(namespace: &str) -> anyhow::Result<()> {
    if !Path::new(NAMESPACE_DIRECTORY).join(namespace).exists() {
        return Ok(());
    }
    run_ip(&["netns", "delete", namespace]).with_context(|| format!("deleting network namespace {namespace}"))?;
    Ok(())
}

/// The process id in a namespace name made from [`prefix_for_this_process`] (`rj<digits>-...`),
/// or `None` if the name does not have that shape.
fn creator_process_id(namespace: &str) -> Option<libc::pid_t> {
    let rest = namespace.strip_prefix(HARNESS_PREFIX_START)?;
    // The process id, then an optional run suffix (`rj1234r2-a1`), then the host.
    let (run, _) = rest.split_once('-')?;
    let digits = &run[..run.bytes().take_while(u8::is_ascii_digit).count()];
    if digits.is_empty() {
        return None;
    }
    // Zero or negative ids would make kill(2) signal process groups; no harness has them.
    let process_id: libc::pid_t = digits.parse().ok()?;
    (process_id > 0).then_some(process_id)
}

/// Whether a process with this id exists (a zombie counts as running).
fn process_is_running(process_id: libc::pid_t) -> anyhow::Result<bool> {
    assert!(process_id > 0, "kill(2) with id {process_id} would signal a process group");
    // SAFETY: signal 0 sends nothing; it only checks that the process exists.
    let result = unsafe { libc::kill(process_id, 0) };
    if result == 0 {
        return Ok(true);
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::ESRCH) => Ok(false),
        // The process exists but belongs to someone we may not signal.
        Some(libc::EPERM) => Ok(true),
        _ => Err(error).with_context(|| format!("probing process {process_id} with kill(0)")),
    }
}

/// A number in 100..=199 derived from the prefix (FNV-1a), the second octet of the addresses.
fn network_number(prefix: &str) -> u8 {
    const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = prefix.bytes().fold(FNV_OFFSET_BASIS, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME));
    let offset =
        u8::try_from(hash % u64::from(NETWORK_NUMBER_COUNT)).expect("a remainder of division by 100 fits in a byte");
    NETWORK_NUMBER_MIN + offset
}

/// Runs `ip` with these arguments and returns its standard output; a failure to start it or a
/// non-zero exit is an error carrying the command line and its standard error.
fn run_ip(arguments: &[&str]) -> anyhow::Result<String> {
    let command_line = format!("{IP_PROGRAM} {}", arguments.join(" "));
    let output =
        Command::new(IP_PROGRAM).args(arguments).output().with_context(|| format!("starting `{command_line}`"))?;
    if !output.status.success() {
        bail!("`{command_line}` failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    String::from_utf8(output.stdout).with_context(|| format!("reading the output of `{command_line}`"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
    use std::time::Duration;

    /// Bound on waiting for a datagram or a connection that should get through.
    const DELIVERY_TIMEOUT: Duration = Duration::from_secs(3);

    /// Bound on waiting for a datagram that should not get through. A blackholed send fails at
    /// once, so this wait only runs if the cut is broken.
    const SILENCE_TIMEOUT: Duration = Duration::from_millis(300);

    /// Ports the tests listen on; every topology has fresh namespaces, so they never clash.
    const NODE_UDP_PORT: u16 = 7001;
    const CLIENT_UDP_PORT: u16 = 7002;
    const NODE_TCP_PORT: u16 = 7003;

    /// Whether this machine can run the namespace tests; prints why not when it cannot.
    fn network_tests_can_run() -> bool {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipping: the network namespace tests need root");
            return false;
        }
        if !Path::new(IP_PROGRAM).exists() {
            eprintln!("skipping: {IP_PROGRAM} (iproute2) is missing");
            return false;
        }
        true
    }

    /// Runs `work` on a thread that has entered `namespace`. Sockets made there stay in that
    /// namespace after the thread ends, so the test can use them from anywhere.
    fn in_namespace<T: Send>(namespace: &str, work: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    enter(namespace).expect("entering a test namespace");
                    work()
                })
                .join()
                .expect("the thread inside a test namespace panicked")
        })
    }

    /// Names of every network namespace on the machine, from `ip netns list`.
    fn namespace_names() -> Vec<String> {
        run_ip(&["netns", "list"])
            .expect("listing network namespaces")
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .map(str::to_owned)
            .collect()
    }

    /// Names of the namespaces whose name starts with `{prefix}-`.
    fn namespaces_of(prefix: &str) -> Vec<String> {
        let start = format!("{prefix}-");
        let mut names: Vec<String> = namespace_names().into_iter().filter(|name| name.starts_with(&start)).collect();
        names.sort();
        names
    }

    fn zones(nodes: &[(u64, &str)]) -> Vec<(u64, String)> {
        nodes.iter().map(|(id, zone)| (*id, (*zone).to_owned())).collect()
    }

    /// Sends `payload` from `sender` to `receiver` (bound at `destination`) and reports whether
    /// it arrived within `timeout`. A send the kernel refuses (a blackhole route) counts as not
    /// delivered.
    fn delivered(
        sender: &UdpSocket,
        receiver: &UdpSocket,
        destination: SocketAddr,
        payload: &[u8],
        timeout: Duration,
    ) -> bool {
        if sender.send_to(payload, destination).is_err() {
            return false;
        }
        receiver.set_read_timeout(Some(timeout)).expect("setting a read timeout");
        let mut buffer = [0_u8; 64];
        match receiver.recv_from(&mut buffer) {
            Ok((length, source)) => {
                assert_eq!(&buffer[..length], payload, "a different datagram arrived");
                assert_eq!(
                    source,
                    sender.local_addr().expect("the sender's address"),
                    "the datagram came from an unexpected address"
                );
                true
            }
            Err(error) if matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => false,
            Err(error) => panic!("receiving a datagram failed: {error}"),
        }
    }

    #[test]
    fn plan_derives_names_and_addresses() {
        let topology = Topology::plan("rj42", &zones(&[(1, "a"), (2, "b"), (3, "c")])).expect("a valid layout");
        let network = topology.network_number;
        assert!((100..=199).contains(&network));
        assert_eq!(topology.switch_namespace, "rj42-sw");
        assert_eq!(topology.namespace(Host::Client), Some("rj42-cl"));
        assert_eq!(topology.namespace(Host::Node(2)), Some("rj42-b2"));
        assert_eq!(topology.address(Host::Node(3)), Some(Ipv4Addr::new(10, network, 0, 3)));
        assert_eq!(topology.client_address(), Ipv4Addr::new(10, network, 0, 200));
        assert_eq!(topology.address(Host::Node(4)), None);
        assert!(topology.command_in(Host::Node(4), Path::new("/bin/true")).is_err());
        assert!(topology.created_namespaces.is_empty());
    }

    #[test]
    fn plan_rejects_bad_layouts() {
        let bad_layouts: [(&str, Vec<(u64, String)>); 7] = [
            ("", zones(&[(1, "a")])),
            ("rj-1", zones(&[(1, "a")])),
            ("rj1", zones(&[(0, "a")])),
            ("rj1", zones(&[(200, "a")])),
            ("rj1", zones(&[(1, "a"), (1, "b")])),
            ("rj1", zones(&[(1, "a/b")])),
            // Zone "a1" with id 2 and zone "a" with id 12 would share namespace "rj1-a12".
            ("rj1", zones(&[(2, "a1"), (12, "a")])),
        ];
        for (prefix, nodes) in bad_layouts {
            assert!(
                Topology::plan(prefix, &nodes).is_err(),
                "prefix {prefix:?} with nodes {nodes:?} should be rejected"
            );
        }
        let long_zone = "z".repeat(NAMESPACE_NAME_LENGTH_MAX);
        assert!(Topology::plan("rj1", &[(1, long_zone)]).is_err());
    }

    #[test]
    fn stale_names_carry_the_creator_process_id() {
        assert_eq!(creator_process_id("rj1234-a1"), Some(1234));
        assert_eq!(creator_process_id("rj1234-sw"), Some(1234));
        assert_eq!(creator_process_id("rj1234r2-a1"), Some(1234), "a run suffix after the process id");
        assert_eq!(creator_process_id("rj-a1"), None);
        assert_eq!(creator_process_id("rj0-a1"), None);
        assert_eq!(creator_process_id("rj99999999999-a1"), None);
        assert_eq!(creator_process_id("xx1234-a1"), None);
        let prefix = prefix_for_this_process();
        assert_eq!(
            creator_process_id(&format!("{prefix}-cl")),
            Some(libc::pid_t::try_from(std::process::id()).expect("process ids fit in pid_t"))
        );
    }

    #[test]
    fn cuts_are_one_directional_and_heal_restores_them() {
        if !network_tests_can_run() {
            return;
        }
        // Not `rj<digits>-`, so clean_stale never takes it for another run's leftovers.
        let prefix = format!("{}t1", prefix_for_this_process());
        let mut topology =
            Topology::create(&prefix, &zones(&[(1, "a"), (2, "b"), (3, "c")])).expect("creating the test network");

        // Phase: the layout is what was asked for.
        assert_eq!(
            namespaces_of(&prefix),
            [
                format!("{prefix}-a1"),
                format!("{prefix}-b2"),
                format!("{prefix}-c3"),
                format!("{prefix}-cl"),
                format!("{prefix}-sw"),
            ]
        );
        assert_eq!(topology.nodes().len(), 3);
        let node_one = topology.node(1).expect("node 1 exists").clone();
        assert_eq!(node_one.namespace, format!("{prefix}-a1"));
        let client_namespace = topology.namespace(Host::Client).expect("the client has a namespace").to_owned();
        let node_udp_address = SocketAddr::from((node_one.address, NODE_UDP_PORT));
        let client_udp_address = SocketAddr::from((topology.client_address(), CLIENT_UDP_PORT));
        let node_tcp_address = SocketAddr::from((node_one.address, NODE_TCP_PORT));
        let node_udp =
            in_namespace(&node_one.namespace, || UdpSocket::bind(node_udp_address)).expect("binding UDP on node 1");
        let node_tcp = in_namespace(&node_one.namespace, || TcpListener::bind(node_tcp_address))
            .expect("listening on TCP on node 1");
        let client_udp =
            in_namespace(&client_namespace, || UdpSocket::bind(client_udp_address)).expect("binding UDP on the client");
        let connect_from_client =
            || in_namespace(&client_namespace, || TcpStream::connect_timeout(&node_tcp_address, DELIVERY_TIMEOUT));

        // Phase: the client reaches node 1 over UDP and TCP.
        assert!(delivered(&client_udp, &node_udp, node_udp_address, b"before", DELIVERY_TIMEOUT));
        let stream = connect_from_client().expect("connecting from the client to node 1");
        let (_accepted, peer) = node_tcp.accept().expect("accepting the client's connection");
        assert_eq!(peer, stream.local_addr().expect("the client's end of the connection"));

        // Phase: a cut from the client to node 1 stops only that direction.
        topology.cut(Host::Client, Host::Node(1)).expect("cutting client -> node 1");
        topology.cut(Host::Client, Host::Node(1)).expect("cutting again is a no-op");
        assert_eq!(topology.cuts(), [(Host::Client, Host::Node(1))]);
        assert!(!delivered(&client_udp, &node_udp, node_udp_address, b"cut", SILENCE_TIMEOUT));
        assert!(connect_from_client().is_err(), "a TCP connect crossed the cut");
        assert!(delivered(&node_udp, &client_udp, client_udp_address, b"back", DELIVERY_TIMEOUT));

        // Phase: heal restores the link, and restoring what is not cut is a no-op.
        topology.heal().expect("healing");
        assert!(topology.cuts().is_empty());
        topology.restore(Host::Client, Host::Node(1)).expect("restoring an uncut link");
        assert!(delivered(&client_udp, &node_udp, node_udp_address, b"healed", DELIVERY_TIMEOUT));
        let stream = connect_from_client().expect("connecting after heal");
        let (_accepted, peer) = node_tcp.accept().expect("accepting after heal");
        assert_eq!(peer, stream.local_addr().expect("the client's end of the connection"));

        // Phase: a partition cuts both directions across the sides and nothing else.
        let node_two_address = topology.address(Host::Node(2)).expect("node 2 has an address");
        let node_three_address = topology.address(Host::Node(3)).expect("node 3 has an address");
        topology.partition(&[Host::Node(1)], &[Host::Node(2), Host::Node(3)]).expect("partitioning node 1 away");
        assert_eq!(
            topology.cuts(),
            [
                (Host::Node(1), Host::Node(2)),
                (Host::Node(1), Host::Node(3)),
                (Host::Node(2), Host::Node(1)),
                (Host::Node(3), Host::Node(1)),
            ]
        );
        let blackholes = run_ip(&["-n", &node_one.namespace, "route", "show", "type", "blackhole"])
            .expect("listing node 1's blackhole routes");
        assert!(blackholes.contains(&node_two_address.to_string()), "{blackholes}");
        assert!(blackholes.contains(&node_three_address.to_string()), "{blackholes}");
        assert!(topology.partition(&[Host::Node(1)], &[Host::Node(1)]).is_err());
        assert!(topology.partition(&[Host::Node(1)], &[Host::Node(9)]).is_err());
        topology.restore(Host::Node(3), Host::Node(1)).expect("restoring node 3 -> node 1");
        assert_eq!(topology.cuts().len(), 3);
        topology.heal().expect("healing the partition");
        let blackholes = run_ip(&["-n", &node_one.namespace, "route", "show", "type", "blackhole"])
            .expect("listing node 1's blackhole routes");
        assert!(blackholes.trim().is_empty(), "{blackholes}");

        // Phase: destroy removes every namespace, and again is a no-op.
        drop((node_udp, node_tcp, client_udp));
        topology.destroy().expect("destroying the test network");
        assert!(namespaces_of(&prefix).is_empty(), "{:?}", namespaces_of(&prefix));
        topology.destroy().expect("destroying twice");
    }

    #[test]
    fn drop_removes_every_namespace() {
        if !network_tests_can_run() {
            return;
        }
        let prefix = format!("{}t2", prefix_for_this_process());
        let topology = Topology::create(&prefix, &zones(&[(1, "a")])).expect("creating the test network");
        assert_eq!(namespaces_of(&prefix).len(), 3);
        drop(topology);
        assert!(namespaces_of(&prefix).is_empty(), "{:?}", namespaces_of(&prefix));
    }

    #[test]
    fn failed_create_removes_only_what_it_created() {
        if !network_tests_can_run() {
            return;
        }
        let prefix = format!("{}t3", prefix_for_this_process());
        let squatter = format!("{prefix}-b2");
        run_ip(&["netns", "add", &squatter]).expect("creating a namespace in the way");

        let error = Topology::create(&prefix, &zones(&[(1, "a"), (2, "b")]))
            .expect_err("creating over an existing namespace must fail");
        let message = format!("{error:#}");
        assert!(message.contains(&squatter), "{message}");
        assert_eq!(namespaces_of(&prefix), std::slice::from_ref(&squatter));

        delete_namespace(&squatter).expect("removing the namespace in the way");
    }

    #[test]
    fn clean_stale_removes_namespaces_of_exited_processes_only() {
        if !network_tests_can_run() {
            return;
        }
        let mut exited = Command::new("/bin/true").spawn().expect("starting /bin/true");
        exited.wait().expect("waiting for /bin/true");
        let exited_id = libc::pid_t::try_from(exited.id()).expect("process ids fit in pid_t");
        assert!(!process_is_running(exited_id).expect("probing the exited process"));
        let stale = format!("{HARNESS_PREFIX_START}{exited_id}-a1");
        let live = format!("{}-zz", prefix_for_this_process());
        run_ip(&["netns", "add", &stale]).expect("creating a stale namespace");
        run_ip(&["netns", "add", &live]).expect("creating a live namespace");

        let removed = clean_stale().expect("cleaning stale namespaces");
        let remaining = namespace_names();
        delete_namespace(&live).expect("removing the live namespace");

        assert!(removed.contains(&stale), "{removed:?}");
        assert!(!remaining.contains(&stale), "{remaining:?}");
        assert!(!removed.contains(&live), "{removed:?}");
        assert!(remaining.contains(&live), "{remaining:?}");
    }
}
