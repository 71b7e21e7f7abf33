//! Free loopback ports: ones the OS just handed out, so a test never meets a server the machine already runs.

use std::net::{TcpListener, UdpSocket};

/// A loopback TCP port that was free a moment ago (for a server that must keep its address across restarts,
/// or one started by another process).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A loopback UDP port that was free a moment ago.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
