//! A test SMSC: an SMPP 3.4 server (rusmpp's codec) on a loopback port of its own that takes transmitter binds,
//! answers submit_sm with message ids and records every submit_sm it accepted, for a test to read.
//!
//! ```text
//! let smsc = TestSmsc::start(SmscOptions { refuse_binds: 1, throttle_submits: 2, ..SmscOptions::default() });
//! bind_transmitter #1          -> bind_transmitter_resp ESME_RBINDFAIL (0x0d)
//! bind_transmitter #2          -> bind_transmitter_resp OK, system_id "TESTSMSC"
//! submit_sm #1, #2             -> submit_sm_resp ESME_RTHROTTLED (0x58)
//! submit_sm #3...              -> submit_sm_resp OK, message_id "1", "2", ...   (recorded: smsc.submits())
//! submit_sm to an invalid_destinations number -> submit_sm_resp ESME_RINVDSTADR (0x0b)
//! ```
//!
//! It runs on a thread with its own runtime, so a test's runtime can be busy or gone without stopping it; it
//! stops when the [`TestSmsc`] is dropped. [`TestSmsc::drop_connections`] closes every connection, as an SMSC
//! that restarts would.

use std::net::SocketAddr;
use std::str::FromStr as _;
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::{SinkExt as _, StreamExt as _};
use rusmpp::pdus::{BindTransmitterResp, SubmitSmResp};
use rusmpp::tokio_codec::CommandCodec;
use rusmpp::types::COctetString;
use rusmpp::values::InterfaceVersion;
use rusmpp::{Command, CommandStatus, Pdu};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio_util::codec::Framed;

/// How the SMSC behaves.
#[derive(Debug, Clone, Default)]
pub struct SmscOptions {
    /// The first this many bind_transmitter are refused with ESME_RBINDFAIL.
    pub refuse_binds: usize,
    /// The first this many submit_sm (after a bind) are answered ESME_RTHROTTLED.
    pub throttle_submits: usize,
    /// submit_sm to these destination_addr values are answered ESME_RINVDSTADR (and not recorded).
    pub invalid_destinations: Vec<String>,
}

/// One accepted submit_sm, the fields a WAP Push over SMS sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub source_addr: String,
    pub dest_addr_ton: u8,
    pub dest_addr_npi: u8,
    pub destination_addr: String,
    pub esm_class: u8,
    pub data_coding: u8,
    pub registered_delivery: u8,
    pub short_message: Vec<u8>,
    pub message_id: String,
}

/// One bind_transmitter as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub system_id: String,
    pub password: String,
    pub system_type: String,
    pub interface_version: u8,
    pub accepted: bool,
}

#[derive(Debug, Default)]
struct Recorded {
    binds: Vec<Bind>,
    submits: Vec<Submitted>,
    throttled: usize,
    invalid: usize,
}

/// A running test SMSC; stopped when dropped.
pub struct TestSmsc {
    address: SocketAddr,
    recorded: Arc<Mutex<Recorded>>,
    /// Each new value closes every open connection.
    generation: watch::Sender<u64>,
    stop: Option<oneshot::Sender<()>>,
}

impl TestSmsc {
    /// Starts the SMSC on a free loopback port.
    pub fn start(options: SmscOptions) -> TestSmsc {
        let recorded = Arc::new(Mutex::new(Recorded::default()));
        let (generation, generation_seen) = watch::channel(0u64);
        let (stop, stopped) = oneshot::channel();
        let (ready, address) = std::sync::mpsc::channel();
        let state = Arc::clone(&recorded);
        std::thread::Builder::new()
            .name("test-smsc".to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                runtime.block_on(async move {
                    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                    ready.send(listener.local_addr().unwrap()).unwrap();
                    let server = Arc::new(Server { options, recorded: state, generation: generation_seen });
                    tokio::select! {
                        _ = stopped => {}
                        () = server.accept_all(listener) => {}
                    }
                });
            })
            .unwrap();
        let address = address.recv().unwrap();
        TestSmsc { address, recorded, generation, stop: Some(stop) }
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Every submit_sm accepted so far, in arrival order.
    pub fn submits(&self) -> Vec<Submitted> {
        self.lock().submits.clone()
    }

    /// Every bind_transmitter so far, refused ones too.
    pub fn binds(&self) -> Vec<Bind> {
        self.lock().binds.clone()
    }

    /// How many submit_sm were answered ESME_RTHROTTLED.
    pub fn throttled(&self) -> usize {
        self.lock().throttled
    }

    /// How many submit_sm were answered ESME_RINVDSTADR.
    pub fn invalid_destinations(&self) -> usize {
        self.lock().invalid
    }

    /// Closes every open connection (binds are lost; the client must bind again).
    pub fn drop_connections(&self) {
        self.generation.send_modify(|generation| *generation += 1);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.recorded.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for TestSmsc {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

struct Server {
    options: SmscOptions,
    recorded: Arc<Mutex<Recorded>>,
    generation: watch::Receiver<u64>,
}

impl Server {
    async fn accept_all(self: Arc<Self>, listener: TcpListener) {
        while let Ok((stream, _)) = listener.accept().await {
            let server = Arc::clone(&self);
            tokio::spawn(async move { server.serve(stream).await });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.recorded.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One ESME connection until it unbinds, closes, or [`TestSmsc::drop_connections`].
    async fn serve(&self, stream: TcpStream) {
        let mut framed = Framed::new(stream, CommandCodec::new());
        let mut generation = self.generation.clone();
        generation.mark_unchanged();
        let mut bound = false;
        loop {
            let command = tokio::select! {
                next = framed.next() => match next {
                    Some(Ok(command)) => command,
                    _ => return,
                },
                _ = generation.changed() => return,
            };
            let sequence = command.sequence_number();
            let (status, pdu, close) = match command.pdu() {
                Some(Pdu::BindTransmitter(bind)) => {
                    let mut recorded = self.lock();
                    let refused = recorded.binds.iter().filter(|bind| !bind.accepted).count();
                    let accepted = bound || refused >= self.options.refuse_binds;
                    recorded.binds.push(Bind {
                        system_id: bind.system_id.to_string(),
                        password: bind.password.to_string(),
                        system_type: bind.system_type.to_string(),
                        interface_version: u8::from(bind.interface_version),
                        accepted,
                    });
                    bound = bound || accepted;
                    let response = BindTransmitterResp::new(
                        COctetString::from_str("TESTSMSC").unwrap(),
                        Some(InterfaceVersion::Smpp3_4),
                    );
                    let status = if accepted { CommandStatus::EsmeRok } else { CommandStatus::EsmeRbindfail };
                    (status, Pdu::BindTransmitterResp(response), !accepted)
                }
                Some(Pdu::SubmitSm(submit)) if bound => {
                    let mut recorded = self.lock();
                    let destination = submit.destination_addr.to_string();
                    if self.options.invalid_destinations.contains(&destination) {
                        recorded.invalid += 1;
                        let response = SubmitSmResp::new(COctetString::empty(), Vec::new());
                        (CommandStatus::EsmeRinvdstadr, Pdu::SubmitSmResp(response), false)
                    } else if recorded.throttled < self.options.throttle_submits {
                        recorded.throttled += 1;
                        let response = SubmitSmResp::new(COctetString::empty(), Vec::new());
                        (CommandStatus::EsmeRthrottled, Pdu::SubmitSmResp(response), false)
                    } else {
                        let message_id = (recorded.submits.len() + 1).to_string();
                        recorded.submits.push(Submitted {
                            source_addr: submit.source_addr.to_string(),
                            dest_addr_ton: u8::from(submit.dest_addr_ton),
                            dest_addr_npi: u8::from(submit.dest_addr_npi),
                            destination_addr: submit.destination_addr.to_string(),
                            esm_class: u8::from(submit.esm_class),
                            data_coding: u8::from(submit.data_coding),
                            registered_delivery: u8::from(submit.registered_delivery),
                            short_message: submit.short_message().as_ref().to_vec(),
                            message_id: message_id.clone(),
                        });
                        let response = SubmitSmResp::new(COctetString::from_str(&message_id).unwrap(), Vec::new());
                        (CommandStatus::EsmeRok, Pdu::SubmitSmResp(response), false)
                    }
                }
                Some(Pdu::SubmitSm(_)) => {
                    let response = SubmitSmResp::new(COctetString::empty(), Vec::new());
                    (CommandStatus::EsmeRinvbndsts, Pdu::SubmitSmResp(response), false)
                }
                Some(Pdu::EnquireLink) => (CommandStatus::EsmeRok, Pdu::EnquireLinkResp, false),
                Some(Pdu::Unbind) => (CommandStatus::EsmeRok, Pdu::UnbindResp, true),
                // Responses the ESME sends (enquire_link_resp) need no answer.
                Some(Pdu::EnquireLinkResp) | Some(Pdu::GenericNack) => continue,
                _ => (CommandStatus::EsmeRinvcmdid, Pdu::GenericNack, false),
            };
            if framed.send(Command::new(status, sequence, pdu)).await.is_err() || close {
                return;
            }
        }
    }
}
