//! The UDP listener of connectionless WAP Push (Appendix D.1): one socket, each datagram one push PDU for the inbox.

use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::task::Poll;

use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{NotificationInbox, NotificationSource};

/// The port IP devices listen on for WAP Push (IANA `wap-push`), 2948.
pub const DEFAULT_NOTIFICATION_PORT: u16 = omadm_proto::notification::WAP_PUSH_PORT;

/// Largest UDP payload; a datagram is read whole (the rest of a longer one would be lost), so the buffer holds any.
const MAX_DATAGRAM_LENGTH: usize = 65_535;

/// A running UDP listener. [`stop`](Self::stop) ends it; dropping the handle ends it too.
#[derive(Debug)]
pub struct UdpNotificationListener {
    local_address: SocketAddr,
    stop_sender: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl UdpNotificationListener {
    /// Binds `bind_address` and starts receiving on the current tokio runtime.
    pub async fn bind(inbox: NotificationInbox, bind_address: SocketAddr) -> std::io::Result<Self> {
        let socket = UdpSocket::bind(bind_address).await?;
        let local_address = socket.local_addr()?;
        let (stop_sender, stop_receiver) = oneshot::channel();
        tracing::info!(device_id = inbox.device_id(), %local_address, "notification listener started");
        let task = tokio::spawn(receive_until_stopped(inbox, socket, stop_receiver));
        Ok(Self { local_address, stop_sender: Some(stop_sender), task: Some(task) })
    }

    /// The bound address (with the port the system chose when bound to port 0).
    pub fn local_address(&self) -> SocketAddr {
        self.local_address
    }

    /// Stops receiving and waits until the listener has let go of its socket.
    /// A notification being handed over is finished first unless the receiver is stuck.
    pub async fn stop(mut self) {
        if let Some(stop_sender) = self.stop_sender.take() {
            let _already_ended = stop_sender.send(());
        }
        if let Some(task) = self.task.take() {
            let _join_result = task.await;
        }
    }
}

/// Receives datagrams until told to stop (or the handle is dropped, or nobody takes notifications any more).
/// A bad datagram is dropped, logged and counted by the inbox; the loop goes on.
async fn receive_until_stopped(inbox: NotificationInbox, socket: UdpSocket, mut stop: oneshot::Receiver<()>) {
    loop {
        // Waiting for readiness rather than in recv_from keeps an idle listener free of a
        // receive buffer: a simulator runs one listener per device, 100,000 of them.
        match unless_stopped(&mut stop, socket.readable()).await {
            None => break,
            Some(Err(error)) => {
                tracing::warn!(device_id = inbox.device_id(), %error, "notification socket failed");
                break;
            }
            Some(Ok(())) => {}
        }
        let mut buffer = vec![0u8; MAX_DATAGRAM_LENGTH];
        let (length, peer) = match socket.try_recv_from(&mut buffer) {
            Ok(received) => received,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(error) => {
                // ICMP errors surface here on some systems; they concern one peer, not the socket.
                tracing::debug!(device_id = inbox.device_id(), %error, "notification socket receive error");
                continue;
            }
        };
        buffer.truncate(length);
        let delivery = inbox.deliver_wap_push(&buffer, NotificationSource::Udp(peer));
        match unless_stopped(&mut stop, delivery).await {
            None => break,
            Some(Err(super::DropReason::ReceiverClosed)) => break,
            Some(_) => {}
        }
    }
    tracing::info!(device_id = inbox.device_id(), "notification listener stopped");
}

/// Runs `future` unless `stop` fires (or its sender is dropped) first; `None` means stopped.
/// Called no more after it returned `None`, so `stop` is never polled after completing.
async fn unless_stopped<F: Future>(stop: &mut oneshot::Receiver<()>, future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    poll_fn(|context| {
        if Pin::new(&mut *stop).poll(context).is_ready() {
            return Poll::Ready(None);
        }
        future.as_mut().poll(context).map(Some)
    })
    .await
}
