//! Faults and the named schedules that combine them.
//!
//! A schedule is a generator of fault *packages*: each package is a short script of
//! [`Action`]s with waits between them (kill a node, wait, start it again), and ends with the
//! system whole again. The nemesis runs packages one after another, each followed by a quiet
//! window, until the time limit, and records every package as a fault window for the report.

use std::time::Duration;

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::net::Host;

/// One step of a fault package.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Action {
    /// `kill -9` of these nodes (with the `lose-unsynced` storage mode, each loses what it had
    /// not synced; all of them at once is a coordinated power loss).
    Kill(Vec<u64>),
    /// Starts these nodes again.
    Start(Vec<u64>),
    Pause(Vec<u64>),
    Resume(Vec<u64>),
    /// Drops every packet from the first host to the second, for each pair.
    Cut(Vec<(Host, Host)>),
    /// Removes every cut and every link fault.
    Heal,
    /// Sets a link fault on each direction (from, to) between nodes (the link relay).
    Link(Vec<(u64, u64)>, crate::relay::LinkFault),
    /// Sets a node's wall clock to the system time plus this many milliseconds.
    Clock(u64, i64),
    /// Damages a file of a stopped node (the node must be killed first).
    Corrupt(u64, Damage),
    /// Changes the stream's shard count (UpdateShardCount, through the Kinesis API).
    Reshard(u32),
    /// Starts a spare node that joins the running cluster.
    Join(u64),
    /// Moves every replica off a node and removes it from the cluster.
    Decommission(u64),
    /// Waits.
    Wait(Duration),
}

/// How a file is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Damage {
    /// A few bits flipped at random places.
    BitFlips,
    /// The file's tail cut off.
    Truncate,
    /// A 4 KiB block overwritten with zeros (a sector that was never written, or rolled back).
    ZeroBlock,
}

/// A named fault package: what it does, as a script.
#[derive(Debug, Clone, Serialize)]
pub struct Package {
    pub name: String,
    pub actions: Vec<Action>,
}

/// What a schedule needs to know of the cluster to draw its next package.
pub struct Situation<'a> {
    /// Founding nodes still in the cluster (not decommissioned).
    pub members: &'a [u64],
    /// Zones of the members, as (node, zone).
    pub zones: &'a [(u64, String)],
    /// The node believed to lead the stream's first shard, if known.
    pub leader: Option<u64>,
    /// Spare nodes that have not joined yet.
    pub spares: &'a [u64],
    /// The stream's open shard count now.
    pub shards: u32,
    /// Node-to-node packets go through the link relay (link faults are possible).
    pub relay: bool,
}

/// The named schedules (`riffle-jepsen schedules`).
pub const SCHEDULES: &[(&str, &str)] = &[
    ("control", "no faults: the baseline for availability and the checker on a healthy cluster"),
    ("pause-kill", "SIGSTOP/SIGCONT and kill -9 of one node at a time, alternating"),
    (
        "partition-kill",
        "the leader isolated from the other nodes, then a node of the majority killed (losing its unsynced writes) and restarted: the new majority must hold every acknowledged write",
    ),
    ("kill-membership", "kill -9 of single nodes while a spare node joins and a founding node is decommissioned"),
    ("corruption-kill", "bit flips, truncation and zeroed blocks in one stopped node's files, and kills"),
    ("power-loss", "every node killed at once, each losing what it had not synced, then all restarted"),
    ("zone-loss", "a whole zone down (its nodes killed), then back"),
    ("partitions", "one node, one zone, majority ring, one-way and client-to-leader partitions"),
    ("clock", "wall-clock offsets and jumps forward and back on single nodes"),
    (
        "links",
        "node-to-node packets through the link relay: loss, delay with jitter (reordering), duplication, alone or together, on one direction, one node's links or all links",
    ),
    (
        "chaos",
        "general chaos: every fault package in rotation (kills, pauses, partitions, link faults, clock, corruption, power loss, resharding) with quiet windows",
    ),
];

pub fn is_schedule(name: &str) -> bool {
    SCHEDULES.iter().any(|(known, _)| *known == name)
}

fn wait(rng: &mut ChaCha8Rng, low_ms: u64, high_ms: u64) -> Action {
    Action::Wait(Duration::from_millis(rng.gen_range(low_ms..=high_ms)))
}

fn pick(rng: &mut ChaCha8Rng, nodes: &[u64]) -> u64 {
    nodes.choose(rng).copied().unwrap_or(1)
}

/// Cuts both ways between `side` and every other member.
fn isolate(side: &[u64], members: &[u64]) -> Vec<(Host, Host)> {
    let mut cuts = Vec::new();
    for inside in side {
        for outside in members.iter().filter(|node| !side.contains(node)) {
            cuts.push((Host::Node(*inside), Host::Node(*outside)));
            cuts.push((Host::Node(*outside), Host::Node(*inside)));
        }
    }
    cuts
}

fn kill_package(rng: &mut ChaCha8Rng, at: &Situation) -> Package {
    let node = pick(rng, at.members);
    Package {
        name: format!("kill node {node}"),
        actions: vec![Action::Kill(vec![node]), wait(rng, 500, 4_000), Action::Start(vec![node])],
    }
}

fn pause_package(rng: &mut ChaCha8Rng, at: &Situation) -> Package {
    let node = pick(rng, at.members);
    Package {
        name: format!("pause node {node}"),
        actions: vec![Action::Pause(vec![node]), wait(rng, 500, 4_000), Action::Resume(vec![node])],
    }
}

fn partition_kill_package(rng: &mut ChaCha8Rng, at: &Situation) -> Package {
    let isolated = at.leader.filter(|leader| at.members.contains(leader)).unwrap_or_else(|| pick(rng, at.members));
    let others: Vec<u64> = at.members.iter().copied().filter(|node| *node != isolated).collect();
    let victim = pick(rng, &others);
    Package {
        name: format!("isolate node {isolated}, then kill node {victim} of the majority"),
        actions: vec![
            Action::Cut(isolate(&[isolated], at.members)),
            wait(rng, 500, 2_000),
            Action::Kill(vec![victim]),
            wait(rng, 200, 1_500),
            Action::Start(vec![victim]),
            wait(rng, 1_000, 3_000),
            Action::Heal,
        ],
    }
}

fn partition_package(rng: &mut ChaCha8Rng, at: &Situation) -> Package {
    let hold = wait(rng, 1_000, 5_000);
    let (name, cuts) = match rng.gen_range(0..5) {
        0 => {
            let node = pick(rng, at.members);
            (format!("node {node} isolated"), isolate(&[node], at.members))
        }
        1 => {
            let zones: Vec<&String> = at.zones.iter().map(|(_, zone)| zone).collect();
            let zone = zones.choose(rng).map(|zone| zone.to_string()).unwrap_or_default();
            let side: Vec<u64> = at.zones.iter().filter(|(_, at)| *at == zone).map(|(node, _)| *node).collect();
            (format!("zone {zone} isolated"), isolate(&side, at.members))
        }
        2 if at.members.len() >= 3 => {
            // A ring of majorities: the first and last node cannot talk, the middle one talks to
            // both, so each side sees a majority that the other does not.
            let mut ring = at.members.to_vec();
            ring.shuffle(rng);
            let (first, last) = (ring[0], ring[ring.len() - 1]);
            (
                format!("majorities ring: nodes {first} and {last} apart"),
                vec![(Host::Node(first), Host::Node(last)), (Host::Node(last), Host::Node(first))],
            )
        }
        3 => {
            let node = pick(rng, at.members);
            let cuts = at
                .members
                .iter()
                .filter(|other| **other != node)
                .map(|other| (Host::Node(node), Host::Node(*other)))
                .collect();
            (format!("one way: node {node} cannot send to the others"), cuts)
        }
        _ => {
            let node = at.leader.unwrap_or_else(|| pick(rng, at.members));
            (
                format!("client cut from node {node} (the leader)"),
                vec![(Host::Client, Host::Node(node)), (Host::Node(node), Host::Client)],
            )
        }
    };
    Package { name, actions: vec![Action::Cut(cuts), hold, Action::Heal] }
}

fn clock_package(rng: &mut ChaCha8Rng, at: &Situation) -> Package {
    let node = pick(rng, at.members);
    let first = rng.gen_range(-30_000i64..=30_000);
    let jump = rng.gen_range(-60_000i64..=60_000);
    Package {
        name: format!("clock of node {node} off by {first} ms, then {jump} ms"),
        actions: vec![
            Action::Clock(node, first),
            wait(rng, 1_000, 3_000),
            Action::Clock(node, jump),
            wait(rng, 1_000, 3_000),
            Action::Clock(node, 0),
        ],
    }
}

fn corruption_package(rng: &mut ChaCha8Rng, at: &Situation) -> Package {
    // Always the same node: damage stays on a minority, so a good copy of every acknowledged
    // record always exists.
    let node = at.members.last().copied().unwrap_or(1);
    let damage = *[Damage::BitFlips, Damage::Truncate, Damage::ZeroBlock].choose(rng).unwrap_or(&Damage::BitFlips);
    Package {
        name: format!("node {node} stopped, its files damaged ({damage:?}), started"),
        actions: vec![Action::Kill(vec![node]), Action::Corrupt(node, damage), Action::Start(vec![node])],
    }
}

fn power_loss_package(rng: &mut ChaCha8Rng, at: &Situation) -> Package {
    Package {
        name: "power loss of every node".into(),
        actions: vec![Action::Kill(at.members.to_vec()), wait(rng, 200, 2_000), Action::Start(at.members.to_vec())],
    }
}

fn zone_loss_package(rng: &mut ChaCha8Rng, at: &Situation) -> Package {
    let zones: Vec<&String> = at.zones.iter().map(|(_, zone)| zone).collect();
    let zone = zones.choose(rng).map(|zone| zone.to_string()).unwrap_or_default();
    let down: Vec<u64> = at.zones.iter().filter(|(_, at)| *at == zone).map(|(node, _)| *node).collect();
    Package {
        name: format!("zone {zone} lost (nodes {down:?})"),
        actions: vec![Action::Kill(down.clone()), wait(rng, 2_000, 6_000), Action::Start(down)],
    }
}

fn reshard_package(_rng: &mut ChaCha8Rng, at: &Situation) -> Package {
    let target = if at.shards <= 2 { at.shards * 2 } else { at.shards / 2 };
    Package { name: format!("UpdateShardCount to {target}"), actions: vec![Action::Reshard(target)] }
}

/// Loss, delay with jitter, duplication, or all three, on some node-to-node directions.
fn links_package(rng: &mut ChaCha8Rng, at: &Situation) -> Package {
    use crate::relay::LinkFault;
    let (scope, directions): (String, Vec<(u64, u64)>) = match rng.gen_range(0..3) {
        0 => {
            let all = at
                .members
                .iter()
                .flat_map(|from| at.members.iter().filter(move |to| *to != from).map(move |to| (*from, *to)));
            ("every link".into(), all.collect())
        }
        1 => {
            let node = pick(rng, at.members);
            let links =
                at.members.iter().filter(|other| **other != node).flat_map(|other| [(node, *other), (*other, node)]);
            (format!("node {node}'s links"), links.collect())
        }
        _ => {
            let from = pick(rng, at.members);
            let others: Vec<u64> = at.members.iter().copied().filter(|node| *node != from).collect();
            let to = pick(rng, &others);
            (format!("{from} to {to}"), vec![(from, to)])
        }
    };
    let delay_max = rng.gen_range(20..=300);
    let fault = match rng.gen_range(0..4) {
        0 => LinkFault { loss: rng.gen_range(0.05..0.4), ..Default::default() },
        1 => LinkFault { delay_min_ms: delay_max / 4, delay_max_ms: delay_max, ..Default::default() },
        2 => LinkFault { duplicate: rng.gen_range(0.1..0.5), ..Default::default() },
        _ => LinkFault {
            loss: rng.gen_range(0.05..0.2),
            duplicate: rng.gen_range(0.05..0.3),
            delay_min_ms: 0,
            delay_max_ms: delay_max,
            cut: false,
        },
    };
    Package {
        name: format!(
            "links {scope}: loss {:.0}%, duplicates {:.0}%, delay {}-{} ms",
            fault.loss * 100.0,
            fault.duplicate * 100.0,
            fault.delay_min_ms,
            fault.delay_max_ms
        ),
        actions: vec![Action::Link(directions, fault), wait(rng, 2_000, 8_000), Action::Heal],
    }
}

/// A spare joins, and a founding node of the same zone leaves, while another node is killed.
fn membership_package(rng: &mut ChaCha8Rng, at: &Situation) -> Option<Package> {
    let spare = *at.spares.first()?;
    let leaving = at.members.first().copied()?;
    let others: Vec<u64> = at.members.iter().copied().filter(|node| *node != leaving).collect();
    let victim = pick(rng, &others);
    Some(Package {
        name: format!("node {spare} joins, node {victim} killed meanwhile, node {leaving} decommissioned"),
        actions: vec![
            Action::Join(spare),
            wait(rng, 1_000, 3_000),
            Action::Kill(vec![victim]),
            wait(rng, 500, 2_000),
            Action::Start(vec![victim]),
            Action::Decommission(leaving),
        ],
    })
}

/// The next package of `schedule`, the `round`-th of the run; `None` for no fault (control).
pub fn next_package(schedule: &str, round: u64, rng: &mut ChaCha8Rng, at: &Situation) -> Option<Package> {
    match schedule {
        "pause-kill" => Some(if round.is_multiple_of(2) { pause_package(rng, at) } else { kill_package(rng, at) }),
        "partition-kill" => Some(partition_kill_package(rng, at)),
        "kill-membership" => match round {
            1 => membership_package(rng, at).or_else(|| Some(kill_package(rng, at))),
            _ => Some(kill_package(rng, at)),
        },
        "corruption-kill" => {
            Some(if round.is_multiple_of(2) { corruption_package(rng, at) } else { kill_package(rng, at) })
        }
        "power-loss" => Some(power_loss_package(rng, at)),
        "zone-loss" => Some(zone_loss_package(rng, at)),
        "partitions" => Some(partition_package(rng, at)),
        "clock" => Some(clock_package(rng, at)),
        "links" => Some(links_package(rng, at)),
        "chaos" => Some(match rng.gen_range(0..if at.relay { 10 } else { 9 }) {
            0 => kill_package(rng, at),
            1 => pause_package(rng, at),
            2 => partition_kill_package(rng, at),
            3 => partition_package(rng, at),
            4 => clock_package(rng, at),
            5 => corruption_package(rng, at),
            6 => power_loss_package(rng, at),
            7 => zone_loss_package(rng, at),
            8 => reshard_package(rng, at),
            _ => links_package(rng, at),
        }),
        _ => None,
    }
}

/// The quiet window after a package.
pub fn quiet(rng: &mut ChaCha8Rng) -> Duration {
    Duration::from_millis(rng.gen_range(1_000..=3_000))
}

/// Damages one file of `files` (a stopped node's data files) as `damage` says; returns what it
/// did. Leaves files of under 64 bytes alone.
pub fn damage_file(rng: &mut ChaCha8Rng, files: &[std::path::PathBuf], damage: Damage) -> anyhow::Result<String> {
    use anyhow::Context;
    use std::os::unix::fs::FileExt;
    let candidates: Vec<&std::path::PathBuf> = files
        .iter()
        .filter(|path| std::fs::metadata(path).map(|meta| meta.len() >= 64).unwrap_or(false))
        .filter(|path| !path.ends_with("LOCK") && !path.ends_with("clock-offset-ms"))
        .collect();
    let Some(path) = candidates.choose(rng) else { return Ok("no file to damage".into()) };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let len = file.metadata()?.len();
    let what = match damage {
        Damage::BitFlips => {
            let mut flipped = Vec::new();
            for _ in 0..rng.gen_range(1..=4) {
                let at = rng.gen_range(0..len);
                let mut byte = [0u8; 1];
                file.read_exact_at(&mut byte, at)?;
                byte[0] ^= 1 << rng.gen_range(0..8);
                file.write_all_at(&byte, at)?;
                flipped.push(at);
            }
            format!("bits flipped at offsets {flipped:?}")
        }
        Damage::Truncate => {
            let keep = rng.gen_range(len / 2..len);
            file.set_len(keep)?;
            format!("cut from {len} to {keep} bytes")
        }
        Damage::ZeroBlock => {
            let block = rng.gen_range(0..len.div_ceil(4096));
            let start = block * 4096;
            let count = (len - start).min(4096) as usize;
            file.write_all_at(&vec![0u8; count], start)?;
            format!("{count} bytes zeroed at offset {start}")
        }
    };
    file.sync_all()?;
    Ok(format!("{}: {what}", path.display()))
}
