//! How a Package#0 leaves: one [`Transport`] per kind of [`Destination`]: connectionless WAP Push over UDP here,
//! over SMS in [`crate::sms`].
//!
//! ```text
//! UdpTransport::bind("0.0.0.0:0") -> send(Udp(198.51.100.7:2948), package, id)
//!     -> one datagram: TID 06 03 D8 AF 87 | Package#0     (WSP push header: 3 bytes, within D.1's 48)
//! ```
//!
//! UDP gives no receipt: a send that the socket accepted is `sent`; whether the device woke shows in its next
//! session.

use std::net::SocketAddr;

use async_trait::async_trait;
use omadm_proto::notification::wrap_push;
use tokio::net::UdpSocket;

use crate::plan::Destination;
use crate::rate::SharedRate;

/// A transport's failure to send. When every transport tried fails, the request's attempt fails: as
/// `transport_error`, tried again later, when any failure was a [`TransportError::Send`]; as
/// `transport_rejected`, its outcome, when all were [`TransportError::Rejected`].
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The send failed in a way that may pass: no connection, no answer, throttled.
    #[error("{transport} cannot send to {destination}: {reason}")]
    Send { transport: &'static str, destination: String, reason: String },
    /// The destination refused the message itself (an SMSC refusing the number): sending it again would not help.
    #[error("{transport} refused the message to {destination}: {reason}")]
    Rejected { transport: &'static str, destination: String, reason: String },
}

impl TransportError {
    /// Whether sending the same message later may succeed.
    pub fn may_pass(&self) -> bool {
        matches!(self, TransportError::Send { .. })
    }
}

/// The request a send serves: a transport that reports on deliveries later (an SMSC's receipts) files its
/// report under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dispatch<'a> {
    pub device_id: &'a str,
    pub request_id: &'a str,
    /// The Package#0's NOTIFICATION-ID.
    pub notification_id: u16,
}

/// Sends Package#0 bytes to one kind of destination.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// The transport's name, as [`Destination::transport`] gives it.
    fn name(&self) -> &'static str;
    /// Sends `package` (the Package#0 of `dispatch`) to `destination`.
    async fn send(
        &self,
        destination: &Destination,
        package: &[u8],
        dispatch: &Dispatch<'_>,
    ) -> Result<(), TransportError>;
}

/// Connectionless WAP Push over UDP (Appendix D.1) from one socket.
#[derive(Debug)]
pub struct UdpTransport {
    socket: UdpSocket,
    /// Datagrams per second for all replicas; `None`: no limit.
    rate: Option<SharedRate>,
}

impl UdpTransport {
    /// Binds the socket datagrams leave from (`0.0.0.0:0`: any address, a port of the system's choice).
    pub async fn bind(address: SocketAddr) -> std::io::Result<UdpTransport> {
        Ok(UdpTransport { socket: UdpSocket::bind(address).await?, rate: None })
    }

    /// The same transport, its datagrams paced by `rate`.
    pub fn with_rate(self, rate: Option<SharedRate>) -> UdpTransport {
        UdpTransport { rate, ..self }
    }

    /// Where datagrams leave from.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

#[async_trait]
impl Transport for UdpTransport {
    fn name(&self) -> &'static str {
        "udp"
    }

    async fn send(
        &self,
        destination: &Destination,
        package: &[u8],
        dispatch: &Dispatch<'_>,
    ) -> Result<(), TransportError> {
        let Destination::Udp(address) = destination else {
            return Err(TransportError::Send {
                transport: "udp",
                destination: format!("{destination:?}"),
                reason: "not a UDP destination".to_owned(),
            });
        };
        // The WSP transaction id only tells pushes apart; the id's low byte does that well enough.
        let pdu = wrap_push(package, dispatch.notification_id.to_be_bytes()[1]);
        let failed =
            |reason: String| TransportError::Send { transport: "udp", destination: address.to_string(), reason };
        if let Some(rate) = &self.rate {
            rate.wait_turn().await.map_err(failed)?;
        }
        let written = self.socket.send_to(&pdu, address).await.map_err(|error| failed(error.to_string()))?;
        if written != pdu.len() {
            return Err(failed(format!("{written} of {} bytes written", pdu.len())));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use std::time::Duration;

    use omadm_proto::notification::{MAX_PUSH_HEADER_LENGTH, Notification, unwrap_push, verify};

    use super::*;

    #[tokio::test]
    async fn a_datagram_reaches_a_real_socket_and_decodes_back_into_the_signed_package() {
        let device = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let transport = UdpTransport::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let notification = Notification {
            server_id: Some("srv".to_owned()),
            notification_id: Some(0x1234),
            request_mos: true,
            ..Notification::default()
        };
        let package = notification.encode_signed(b"secret", 1_700_000_000).unwrap();
        let destination = Destination::Udp(device.local_addr().unwrap());
        let dispatch = Dispatch { device_id: "IMEI:1", request_id: "r1", notification_id: 0x1234 };
        transport.send(&destination, &package, &dispatch).await.unwrap();

        let mut buffer = [0u8; 1500];
        let (length, from) =
            tokio::time::timeout(Duration::from_secs(5), device.recv_from(&mut buffer)).await.unwrap().unwrap();
        assert_eq!(from.port(), transport.local_addr().unwrap().port());
        let datagram = &buffer[..length];
        assert_eq!(datagram[0], 0x34, "the transaction id is the id's low byte");
        assert!(usize::from(datagram[2]) <= MAX_PUSH_HEADER_LENGTH, "WSP headers within 48 bytes (D.1)");
        let received = unwrap_push(datagram).unwrap();
        assert_eq!(received, &package[..]);
        let verified = verify(received, Some(b"secret"), 1_700_000_010, Some(60)).unwrap();
        assert_eq!((verified.server_id.as_deref(), verified.notification_id), (Some("srv"), Some(0x1234)));
        assert!(verify(received, Some(b"wrong"), 1_700_000_010, None).is_err());
    }

    #[tokio::test]
    async fn a_send_the_socket_refuses_is_an_error() {
        // An IPv6 destination from an IPv4 socket: the system refuses the send at once.
        let transport = UdpTransport::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let destination = Destination::Udp("[::1]:2948".parse().unwrap());
        let dispatch = Dispatch { device_id: "IMEI:1", request_id: "r1", notification_id: 1 };
        let error = transport.send(&destination, &[0x20, 0x00], &dispatch).await.unwrap_err();
        assert!(matches!(error, TransportError::Send { transport: "udp", .. }), "{error}");
    }
}
