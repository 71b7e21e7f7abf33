//! A test SMSC: an SMPP 3.4 server (rusmpp's codec) on a loopback port of its own that takes transmitter and
//! transceiver binds, answers submit_sm with message ids, records every submit_sm it accepted for a test to
//! read, and sends transceivers a delivery receipt for each.
//!
//! ```text
//! let smsc = TestSmsc::start(SmscOptions { refuse_binds: 1, throttle_submits: 2, ..SmscOptions::default() });
//! bind_transmitter|transceiver #1 -> ..._resp ESME_RBINDFAIL (0x0d)
//! bind_transmitter|transceiver #2 -> ..._resp OK, system_id "TESTSMSC"
//! submit_sm #1, #2             -> submit_sm_resp ESME_RTHROTTLED (0x58)
//! submit_sm #3...              -> submit_sm_resp OK, message_id "1", "2", ...   (recorded: smsc.submits())
//!                                 then, on a transceiver, deliver_sm esm_class 0x04 "id:1 ... stat:DELIVRD ..."
//!                                 (odd ids also with the receipted_message_id and message_state TLVs)
//! submit_sm to an invalid_destinations number -> submit_sm_resp ESME_RINVDSTADR (0x0b)
//! submit_sm to an undeliverable number        -> accepted, its receipt says stat:UNDELIV
//! ```
//!
//! With `receipts_elsewhere`, a receipt goes to another transceiver of the SMSC when one is bound, as a real
//! SMSC hands an account's receipts to any of its binds; [`TestSmsc::receipt_answers`] lists the
//! deliver_sm_resp statuses.
//!
//! It runs on a thread with its own runtime, so a test's runtime can be busy or gone without stopping it; it
//! stops when the [`TestSmsc`] is dropped. [`TestSmsc::drop_connections`] closes every connection, as an SMSC
//! that restarts would.

use std::net::SocketAddr;
use std::str::FromStr as _;
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::{SinkExt as _, StreamExt as _};
use rusmpp::pdus::{BindTransceiverResp, DeliverSm};
use rusmpp::pdus::{BindTransmitterResp, SubmitSmResp};
use rusmpp::tlvs::MessageDeliveryRequestTlvValue;
use rusmpp::tokio_codec::CommandCodec;
use rusmpp::types::COctetString;
use rusmpp::types::OctetString;
use rusmpp::values::InterfaceVersion;
use rusmpp::values::{EsmClass, MessageState};
use rusmpp::{Command, CommandStatus, Pdu};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
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
    /// submit_sm to these destination_addr values are accepted, and their receipts say UNDELIV.
    pub undeliverable: Vec<String>,
    /// Send each receipt on another transceiver than the one that submitted, when another is bound.
    pub receipts_elsewhere: bool,
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

/// One bind as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Whether it was a bind_transceiver (else bind_transmitter).
    pub transceiver: bool,
    pub system_id: String,
    pub password: String,
    pub system_type: String,
    pub interface_version: u8,
    pub accepted: bool,
}

impl Bind {
    /// The bind as received, given its interface version; `accepted` is decided by [`Server::bind`].
    fn of(
        transceiver: bool,
        system_id: &impl ToString,
        password: &impl ToString,
        system_type: &impl ToString,
    ) -> impl FnOnce(u8) -> Bind {
        let (system_id, password, system_type) = (system_id.to_string(), password.to_string(), system_type.to_string());
        move |interface_version| Bind {
            transceiver,
            system_id,
            password,
            system_type,
            interface_version,
            accepted: false,
        }
    }
}

/// The SMSC's system_id in its bind responses.
fn system_id() -> COctetString<1, 16> {
    COctetString::from_str("TESTSMSC").unwrap()
}

fn bind_status(accepted: bool) -> CommandStatus {
    if accepted { CommandStatus::EsmeRok } else { CommandStatus::EsmeRbindfail }
}

#[derive(Debug, Default)]
struct Recorded {
    binds: Vec<Bind>,
    submits: Vec<Submitted>,
    throttled: usize,
    invalid: usize,
    /// Receipts sent, by the connection that got them: (connection, message id, sequence number).
    receipts_sent: Vec<(u64, String, u32)>,
    /// deliver_sm_resp received: (message id, command status).
    receipt_answers: Vec<(String, u32)>,
    /// Transceiver connections that receipts can be sent on.
    transceivers: Vec<(u64, mpsc::UnboundedSender<Command>)>,
    next_connection: u64,
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

    /// (message id, command status) of every deliver_sm_resp the ESMEs sent for receipts, in arrival order.
    pub fn receipt_answers(&self) -> Vec<(String, u32)> {
        self.lock().receipt_answers.clone()
    }

    /// (connection, message id) of every receipt sent: connections are numbered from 1 in accept order.
    pub fn receipts_sent(&self) -> Vec<(u64, String)> {
        self.lock().receipts_sent.iter().map(|(connection, id, _)| (*connection, id.clone())).collect()
    }

    /// Every bind so far, refused ones too.
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

    /// One ESME connection: its session, then its receipt route closed.
    async fn serve(&self, stream: TcpStream) {
        let connection = {
            let mut recorded = self.lock();
            recorded.next_connection += 1;
            recorded.next_connection
        };
        let (outbound, mut queued) = mpsc::unbounded_channel::<Command>();
        self.session(connection, stream, outbound, &mut queued).await;
        self.lock().transceivers.retain(|(id, _)| *id != connection);
    }

    /// A bind: accepted unless it is among the first `refuse_binds`; a transceiver joins the receipt routes.
    fn bind(&self, connection: u64, bind: Bind, outbound: &mpsc::UnboundedSender<Command>) -> bool {
        let mut recorded = self.lock();
        let refused = recorded.binds.iter().filter(|bind| !bind.accepted).count();
        let accepted = refused >= self.options.refuse_binds;
        if accepted && bind.transceiver {
            recorded.transceivers.push((connection, outbound.clone()));
        }
        recorded.binds.push(Bind { accepted, ..bind });
        accepted
    }

    /// The delivery receipt of an accepted submit, onto the connection it is routed to (none for a transmitter
    /// without `receipts_elsewhere`).
    fn send_receipt(&self, connection: u64, message_id: &str, submitted: &Submitted) {
        let mut recorded = self.lock();
        let own = recorded.transceivers.iter().position(|(id, _)| *id == connection);
        let elsewhere = recorded.transceivers.iter().position(|(id, _)| *id != connection);
        let route = if self.options.receipts_elsewhere { elsewhere.or(own) } else { own };
        let Some(route) = route else { return };
        let (target, sender) = recorded.transceivers[route].clone();
        let delivered = !self.options.undeliverable.contains(&submitted.destination_addr);
        let (stat, state) =
            if delivered { ("DELIVRD", MessageState::Delivered) } else { ("UNDELIV", MessageState::Undeliverable) };
        let text = format!(
            "id:{message_id} sub:001 dlvrd:{} submit date:2612031200 done date:2612031200 stat:{stat} err:000 text:",
            if delivered { "001" } else { "000" }
        );
        let mut deliver = DeliverSm::builder()
            .source_addr(COctetString::from_str(&submitted.destination_addr).unwrap())
            .destination_addr(COctetString::from_str(&submitted.source_addr).unwrap_or_else(|_| COctetString::empty()))
            .esm_class(EsmClass::from(0x04))
            .short_message(OctetString::from_slice(text.as_bytes()).unwrap())
            .build();
        // Odd ids carry the SMPP 3.4 TLVs too: both ways of reading a receipt are exercised.
        if message_id.parse::<u64>().is_ok_and(|id| id % 2 == 1) {
            deliver.push_tlv(MessageDeliveryRequestTlvValue::ReceiptedMessageId(
                COctetString::from_str(message_id).unwrap(),
            ));
            deliver.push_tlv(MessageDeliveryRequestTlvValue::MessageState(state));
        }
        // The SMSC's own sequence numbers, apart from the ESME's.
        let sequence = 0x4000_0000 + u32::try_from(recorded.receipts_sent.len()).unwrap_or(0);
        recorded.receipts_sent.push((target, message_id.to_owned(), sequence));
        let _ = sender.send(Command::new(CommandStatus::EsmeRok, sequence, Pdu::DeliverSm(deliver)));
    }

    /// One ESME connection until it unbinds, closes, or [`TestSmsc::drop_connections`].
    async fn session(
        &self,
        connection: u64,
        stream: TcpStream,
        outbound: mpsc::UnboundedSender<Command>,
        queued: &mut mpsc::UnboundedReceiver<Command>,
    ) {
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
                Some(receipt) = queued.recv() => {
                    if framed.send(receipt).await.is_err() {
                        return;
                    }
                    continue;
                }
                _ = generation.changed() => return,
            };
            let sequence = command.sequence_number();
            let mut receipt = None;
            let (status, pdu, close) = match command.pdu() {
                Some(Pdu::BindTransmitter(bind)) if !bound => {
                    let request = Bind::of(false, &bind.system_id, &bind.password, &bind.system_type);
                    bound = self.bind(connection, request(u8::from(bind.interface_version)), &outbound);
                    let response = BindTransmitterResp::new(system_id(), Some(InterfaceVersion::Smpp3_4));
                    (bind_status(bound), Pdu::BindTransmitterResp(response), !bound)
                }
                Some(Pdu::BindTransceiver(bind)) if !bound => {
                    let request = Bind::of(true, &bind.system_id, &bind.password, &bind.system_type);
                    bound = self.bind(connection, request(u8::from(bind.interface_version)), &outbound);
                    let response = BindTransceiverResp::new(system_id(), Some(InterfaceVersion::Smpp3_4));
                    (bind_status(bound), Pdu::BindTransceiverResp(response), !bound)
                }
                Some(Pdu::BindTransmitter(_)) | Some(Pdu::BindTransceiver(_)) => {
                    (CommandStatus::EsmeRalybnd, Pdu::GenericNack, false)
                }
                Some(Pdu::DeliverSmResp(_)) => {
                    let mut recorded = self.lock();
                    let answered = recorded.receipts_sent.iter().find(|(_, _, sent)| *sent == sequence);
                    if let Some((_, message_id, _)) = answered.cloned() {
                        recorded.receipt_answers.push((message_id, u32::from(command.status())));
                    }
                    continue;
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
                        receipt = Some((message_id.clone(), recorded.submits.last().cloned()));
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
            // After the submit_sm_resp, as an SMSC reports at the soonest.
            if let Some((message_id, Some(submitted))) = receipt
                && submitted.registered_delivery & 0x01 == 1
            {
                self.send_receipt(connection, &message_id, &submitted);
            }
        }
    }
}
