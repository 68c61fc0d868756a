//! What the process-level tests share: finding free loopback ports.

use std::net::{Ipv4Addr, TcpListener, UdpSocket};

/// Candidate port bases tried before giving up.
const PORT_BASE_ATTEMPTS_MAX: u32 = 200;

/// A base port such that `base .. base + span` are all free for both TCP and UDP on loopback
/// (gRPC and the Kinesis API listen on TCP, QUIC peers on UDP). Searched below Linux's
/// ephemeral range, starting at a point derived from the process id so concurrent test
/// binaries start apart.
pub fn free_port_base(span: u16) -> u16 {
    const LOW: u32 = 12_000;
    const RANGE: u32 = 18_000;
    let mut candidate = (std::process::id().wrapping_mul(7919)) % RANGE;
    for _ in 0..PORT_BASE_ATTEMPTS_MAX {
        let base = (LOW + candidate) as u16;
        let free = (base..base + span).all(|port| {
            TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
                && UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
        });
        if free {
            return base;
        }
        candidate = (candidate + u32::from(span)) % RANGE;
    }
    panic!("no free loopback ports found after {PORT_BASE_ATTEMPTS_MAX} tries");
}
