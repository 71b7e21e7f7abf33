//! Free loopback ports: ones the OS just handed out, so a test never meets a server the machine already runs.

use std::collections::BTreeSet;
use std::net::{TcpListener, UdpSocket};
use std::sync::{Mutex, PoisonError};

/// Every port this test process has handed out: the OS may give a port back the moment its probe socket closes,
/// so two calls in a row (a node's public and internal listener) could otherwise name the same port.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

fn first_unused(mut probe: impl FnMut() -> u16) -> u16 {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let port = probe();
        if handed_out.insert(port) {
            return port;
        }
    }
}

/// A loopback TCP port that was free a moment ago and that no earlier call in this process returned (for a
/// server that must keep its address across restarts, or one started by another process).
pub fn free_port() -> u16 {
    first_unused(|| TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port())
}

/// A loopback UDP port that was free a moment ago and that no earlier call in this process returned.
pub fn free_udp_port() -> u16 {
    first_unused(|| UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn no_port_is_handed_out_twice() {
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let distinct: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
    }
}
