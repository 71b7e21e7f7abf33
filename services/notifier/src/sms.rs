//! WAP Push over SMS through the operator's SMSC (Appendix D.1 "typically delivered over SMS"): an SMPP 3.4
//! bind (rusmppc; transceiver by default, transmitter when the account allows no more) and one submit_sm per WDP
//! segment (omadm_proto::notification::sms_segments).
//!
//! ```text
//! send(Sms { msisdn: "+491701234567" }, package, id 0x1234)
//!   -> wrap_push(package, 0x34) -> sms_segments(pdu, 8-bit reference 0x34) -> 1..n user data of <= 140 octets
//!   -> per segment, once the account's shared rate allows (rate::SharedRate): submit_sm
//!        dest_addr_ton 1 (international), dest_addr_npi 1 (ISDN), destination_addr "491701234567"
//!        esm_class 0x40 (UDHI), data_coding 0x04 (8-bit), registered_delivery 1, short_message = the segment
//!   -> each segment's message_id filed under the request (crate::receipts), for the SMSC's delivery receipt
//! ```
//!
//! The bind is made on first use and made again when the SMSC drops it. A refused bind, a submit the SMSC
//! cannot take now (ESME_RTHROTTLED, a full queue, a system error) and a dropped connection are retried a few
//! times with a doubling pause; past that, or at once for a status about the message itself (a bad destination),
//! the send is a [`TransportError`]: `Rejected` (final, `transport_rejected`) for a status about the message,
//! `Send` (tried again by the notifier's retries) for the rest. When no
//! try got a bind, the SMSC counts as unavailable and sends fail at once for 30 s, so that a batch of requests
//! does not wait out every request's bind tries. A transceiver bind receives the SMSC's deliver_sm: each receipt is
//! filed under its request ([`crate::receipts`]) before it is answered, so one that cannot be stored comes again. A
//! transmitter bind receives none: receipts are asked for (registered_delivery 1) but not read back.

use std::str::FromStr as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::StreamExt as _;
use omadm_core::store::Store;
use omadm_proto::notification::{ConcatReference, sms_segments, wrap_push};
use rusmpp::pdus::{BindTransceiver, BindTransmitter, DeliverSm, DeliverSmResp, SubmitSm};
use rusmpp::tlvs::TlvValue;
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, InterfaceVersion, Npi, RegisteredDelivery, Ton};
use rusmpp::{Command, CommandStatus, Pdu};
use rusmppc::{Client, ConnectionBuilder, Event};
use tokio::sync::Mutex;
use tracing::Instrument as _;

use crate::metrics::metrics;
use crate::plan::Destination;
use crate::rate::SharedRate;
use crate::receipts::{Receipt, ReceiptBook};
use crate::settings::{SmppBind, SmppSettings};
use crate::transport::{Dispatch, Transport, TransportError};

/// Tries of one bind or one segment's submit before the send fails.
const MAX_ATTEMPTS: u32 = 5;
/// The pause after the first failed try; it doubles after each, up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(2);
/// How long the SMSC has to answer a bind or a submit.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the SMSC has to accept the TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// After a send that could not bind at all, sends fail at once for this long: the notifier handles a batch one
/// request at a time, and without it every request of the batch would wait out its own bind tries.
const COOL_DOWN: Duration = Duration::from_secs(30);
/// enquire_link keeps an idle bind alive through NATs and tells a dead SMSC apart.
const ENQUIRE_LINK_INTERVAL: Duration = Duration::from_secs(30);

/// The SMS transport: one SMPP transmitter bind to the SMSC, shared by the notifier's sends.
pub struct SmppTransport {
    settings: SmppSettings,
    /// The account's submit rate, shared by every replica bound with it.
    rate: Option<SharedRate>,
    /// Where the message ids of submits wait for their receipts, shared by every replica.
    receipts: ReceiptBook,
    /// The bound client, `None` until the first send and after the SMSC dropped the bind.
    client: Mutex<Option<Client>>,
    /// Set when a send found no bind after all its tries: until then sends fail without trying, with the reason.
    cool_down: std::sync::Mutex<Option<(Instant, String)>>,
}

impl std::fmt::Debug for SmppTransport {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("SmppTransport").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// Why one try failed, and whether another may succeed.
enum Failure {
    /// The SMSC refused the bind (any status: a busy or restarting SMSC refuses binds it takes a moment later).
    BindRefused(CommandStatus),
    /// The SMSC answered a submit with a status a later try may not get (throttled, queue full, system error).
    Transient(CommandStatus),
    /// The SMSC answered with an error status; [`SmppTransport::bound`] and [`SmppTransport::submit`] say
    /// which of the above it is.
    Rejected(CommandStatus),
    /// The connection is gone or timed out: bind again and retry.
    Connection(String),
    /// No retry helps: a status about the message itself (a bad destination), or a PDU that cannot be encoded.
    Permanent(String),
}

/// submit_sm statuses worth another try (SMPP 3.4 5.1.3): the SMSC's state, not the message, is at fault.
fn transient(status: CommandStatus) -> bool {
    matches!(
        status,
        CommandStatus::EsmeRthrottled
            | CommandStatus::EsmeRmsgqful
            | CommandStatus::EsmeRsyserr
            | CommandStatus::EsmeRsubmitfail
            | CommandStatus::EsmeRinvbndsts
    )
}

impl SmppTransport {
    /// The transport for `settings`, its submit rate kept in `store` under the SMSC account
    /// (`notifier:sms:{system_id}@{host}:{port}`); nothing is connected until the first send.
    pub fn new(settings: SmppSettings, store: Arc<dyn Store>) -> SmppTransport {
        let account = format!("{}@{}:{}", settings.system_id, settings.host, settings.port);
        let rate = SharedRate::new(store.clone(), "sms", &account, settings.tps);
        let receipts = ReceiptBook::new(store, account);
        SmppTransport { settings, rate, receipts, client: Mutex::new(None), cool_down: std::sync::Mutex::new(None) }
    }

    /// `host:port` of the SMSC.
    pub fn smsc(&self) -> String {
        format!("{}:{}", self.settings.host, self.settings.port)
    }

    /// Waits for the account's next token; the reason when the shared rate cannot be read.
    async fn throttle(&self) -> Result<(), String> {
        match &self.rate {
            Some(rate) => rate.wait_turn().await,
            None => Ok(()),
        }
    }

    /// A bound client: the one held if its connection lives, else a new connection and bind_transmitter.
    async fn bound(&self, held: &mut Option<Client>) -> Result<Client, Failure> {
        if let Some(client) = held.as_ref().filter(|client| client.is_active()) {
            return Ok(client.clone());
        }
        *held = None;
        // The PDU first: settings it cannot carry fail before a connection is opened.
        fn text<const MAX: usize>(value: &str, what: &str) -> Result<COctetString<1, MAX>, Failure> {
            COctetString::from_str(value).map_err(|error| Failure::Permanent(format!("SMPP {what}: {error}")))
        }
        let (system_id, password, system_type) = (
            text(&self.settings.system_id, "system_id")?,
            text(&self.settings.password, "password")?,
            text(&self.settings.system_type, "system_type")?,
        );
        let address = (self.settings.host.as_str(), self.settings.port);
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(address))
            .await
            .map_err(|_| Failure::Connection(format!("no TCP connection to {} within 5 s", self.smsc())))?
            .map_err(|error| Failure::Connection(format!("cannot connect to {}: {error}", self.smsc())))?;
        let (client, mut events) = ConnectionBuilder::new()
            // SMPP 3.4: rusmppc checks for 5.0 unless told otherwise.
            .disable_interface_version_check()
            .response_timeout(RESPONSE_TIMEOUT)
            .enquire_link_interval(ENQUIRE_LINK_INTERVAL)
            .connected(stream);
        // The event stream is unbounded: drain it, or a long-lived bind would hold every event in memory.
        let receipts = (self.settings.bind == SmppBind::Transceiver).then(|| self.receipts.clone());
        let responder = client.clone();
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                match event {
                    Event::Incoming(command) => answer_incoming(&responder, receipts.as_ref(), command),
                    Event::Error(error) => tracing::debug!(%error, "SMPP connection event"),
                }
            }
        });
        // Both binds carry the same fields (SMPP 3.4 4.1.1, 4.1.5); only the PDU type differs.
        macro_rules! bind_pdu {
            ($pdu:ty) => {
                <$pdu>::builder()
                    .system_id(system_id)
                    .password(password)
                    .system_type(system_type)
                    .interface_version(InterfaceVersion::Smpp3_4)
                    .addr_ton(Ton::Unknown)
                    .addr_npi(Npi::Unknown)
                    .address_range(COctetString::empty())
                    .build()
            };
        }
        let bound = match self.settings.bind {
            SmppBind::Transceiver => client.bind_transceiver(bind_pdu!(BindTransceiver)).await.map(|_| ()),
            SmppBind::Transmitter => client.bind_transmitter(bind_pdu!(BindTransmitter)).await.map(|_| ()),
        };
        match bound {
            Ok(()) => {
                metrics().smpp_binds.with_label_values(&["bound"]).inc();
                let system_id = &self.settings.system_id;
                let mode = self.settings.bind;
                tracing::info!(smsc = %self.smsc(), %system_id, ?mode, "bound to the SMSC");
                *held = Some(client.clone());
                Ok(client)
            }
            Err(error) => {
                let _ = client.close().await;
                let failure = match classify(error) {
                    Failure::Rejected(status) => Failure::BindRefused(status),
                    other => other,
                };
                let outcome = if matches!(failure, Failure::BindRefused(_)) { "refused" } else { "error" };
                metrics().smpp_binds.with_label_values(&[outcome]).inc();
                Err(failure)
            }
        }
    }

    /// One segment to the SMSC: bind when needed, submit, retry what may pass on a later try.
    async fn submit(&self, submit: &SubmitSm) -> Result<String, Refused> {
        let mut pause = FIRST_PAUSE;
        let mut last = String::new();
        let mut ever_bound = false;
        for attempt in 1..=MAX_ATTEMPTS {
            if let Err(detail) = self.throttle().await {
                return Err(Refused { detail, bound: true, permanent: false });
            }
            let mut held = self.client.lock().await;
            let result = match self.bound(&mut held).await {
                Ok(client) => {
                    ever_bound = true;
                    client.submit_sm(submit.clone()).await.map_err(|error| match classify(error) {
                        Failure::Rejected(status) if transient(status) => Failure::Transient(status),
                        Failure::Rejected(status) => Failure::Permanent(format!("{status:?}")),
                        other => other,
                    })
                }
                Err(failure) => Err(failure),
            };
            let failure = match result {
                Ok(response) => {
                    metrics().sms_submits.with_label_values(&["accepted"]).inc();
                    return Ok(response.message_id().to_string());
                }
                Err(failure) => failure,
            };
            let detail = match failure {
                // A bind refusal is counted in omadm_smpp_binds_total; no submit was made.
                Failure::BindRefused(status) => format!("bind refused: {status:?}"),
                Failure::Transient(status) => {
                    let outcome = if status == CommandStatus::EsmeRthrottled { "throttled" } else { "refused" };
                    metrics().sms_submits.with_label_values(&[outcome]).inc();
                    format!("{status:?}")
                }
                Failure::Connection(detail) => {
                    // The bind is gone: the next try connects and binds again.
                    *held = None;
                    if ever_bound {
                        metrics().sms_submits.with_label_values(&["error"]).inc();
                    }
                    detail
                }
                Failure::Permanent(detail) => {
                    metrics().sms_submits.with_label_values(&["refused"]).inc();
                    return Err(Refused { detail, bound: true, permanent: true });
                }
                Failure::Rejected(status) => {
                    metrics().sms_submits.with_label_values(&["refused"]).inc();
                    return Err(Refused { detail: format!("{status:?}"), bound: true, permanent: true });
                }
            };
            drop(held);
            tracing::info!(attempt, detail = %detail, "SMPP try failed");
            last = detail;
            if attempt < MAX_ATTEMPTS {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
        }
        Err(Refused {
            detail: format!("{MAX_ATTEMPTS} tries failed, the last: {last}"),
            bound: ever_bound,
            permanent: false,
        })
    }
}

/// The submit_sm of one segment to `msisdn`.
fn submit_sm(settings: &SmppSettings, msisdn: &str, segment: &[u8]) -> Result<SubmitSm, String> {
    let destination = msisdn.strip_prefix('+').unwrap_or(msisdn);
    let (source_ton, source_npi, source) = source_address(&settings.source_addr);
    let text = |value: &str, what: &str| {
        COctetString::<1, 21>::from_str(value).map_err(|error| format!("SMPP {what} {value:?}: {error}"))
    };
    let short_message =
        OctetString::from_slice(segment).map_err(|error| format!("a segment of {} octets: {error}", segment.len()))?;
    Ok(SubmitSm::builder()
        .source_addr_ton(source_ton)
        .source_addr_npi(source_npi)
        .source_addr(text(source, "source_addr")?)
        .dest_addr_ton(Ton::International)
        .dest_addr_npi(Npi::Isdn)
        .destination_addr(text(destination, "destination_addr")?)
        .esm_class(EsmClass::from(UDHI))
        .registered_delivery(RegisteredDelivery::from(1))
        .data_coding(DataCoding::from(DATA_CODING_8BIT))
        .short_message(short_message)
        .build())
}

/// Why a segment was not accepted, whether any try got a bind (else the SMSC is unavailable: cool down), and
/// whether the SMSC refused the message itself (an invalid destination, say), which no later attempt changes.
struct Refused {
    detail: String,
    bound: bool,
    permanent: bool,
}

/// esm_class with the UDHI bit: short_message starts with a user data header (SMPP 3.4 5.2.12).
pub const UDHI: u8 = 0x40;
/// data_coding 0x04: 8-bit binary (SMPP 3.4 5.2.19), what WAP push over SMS uses.
pub const DATA_CODING_8BIT: u8 = 0x04;

/// TON and NPI of the source address as written: `+digits` international ISDN, digits unknown ISDN, anything
/// else alphanumeric; empty leaves it to the SMSC.
fn source_address(address: &str) -> (Ton, Npi, &str) {
    if address.is_empty() {
        return (Ton::Unknown, Npi::Unknown, address);
    }
    if let Some(digits) = address.strip_prefix('+')
        && !digits.is_empty()
        && digits.bytes().all(|byte| byte.is_ascii_digit())
    {
        return (Ton::International, Npi::Isdn, digits);
    }
    if address.bytes().all(|byte| byte.is_ascii_digit()) {
        return (Ton::Unknown, Npi::Isdn, address);
    }
    (Ton::Alphanumeric, Npi::Unknown, address)
}

/// What a rusmppc error means for the next try.
fn classify(error: rusmppc::error::Error) -> Failure {
    use rusmppc::error::Error;
    match error {
        // A response (or generic_nack) with an error status: what the SMSC said.
        Error::UnexpectedResponse { response } if response.status() != CommandStatus::EsmeRok => {
            Failure::Rejected(response.status())
        }
        Error::UnexpectedResponse { response } => {
            Failure::Connection(format!("unexpected SMPP response {:?}", response.id()))
        }
        Error::Encode(error) => Failure::Permanent(format!("cannot encode the PDU: {error}")),
        other => Failure::Connection(other.to_string()),
    }
}

#[async_trait]
impl Transport for SmppTransport {
    fn name(&self) -> &'static str {
        "sms"
    }

    async fn send(
        &self,
        destination: &Destination,
        package: &[u8],
        dispatch: &Dispatch<'_>,
    ) -> Result<(), TransportError> {
        let notification_id = dispatch.notification_id;
        let failed = |reason: String| TransportError::Send {
            transport: "sms",
            destination: destination_text(destination),
            reason,
        };
        let Destination::Sms { msisdn } = destination else {
            return Err(failed("not an SMS destination".to_owned()));
        };
        if let Some(reason) = self.cooling_down(Instant::now()) {
            return Err(failed(reason));
        }
        // The id's low byte tells this push's segments from the device's previous one (and is the WSP TID).
        let low_byte = notification_id.to_be_bytes()[1];
        let pdu = wrap_push(package, low_byte);
        let segments =
            sms_segments(&pdu, ConcatReference::Bits8(low_byte)).map_err(|error| failed(error.to_string()))?;
        let span = tracing::info_span!("sms.send", segments = segments.len(), smsc = %self.smsc());
        self.send_segments(msisdn, &segments, dispatch.request_id).instrument(span).await.map_err(|refused| {
            let reason = refused.detail;
            if refused.permanent {
                TransportError::Rejected { transport: "sms", destination: destination_text(destination), reason }
            } else {
                failed(reason)
            }
        })
    }
}

impl SmppTransport {
    /// Every segment in order; the first that cannot be submitted ends the send.
    async fn send_segments(&self, msisdn: &str, segments: &[Vec<u8>], request_id: &str) -> Result<(), Refused> {
        for (index, segment) in segments.iter().enumerate() {
            // A number the SMPP fields cannot hold stays so: final.
            let submit = submit_sm(&self.settings, msisdn, segment).map_err(|detail| Refused {
                detail,
                bound: true,
                permanent: true,
            })?;
            let message_id = match self.submit(&submit).await {
                Ok(message_id) => message_id,
                Err(refused) => {
                    if !refused.bound {
                        self.start_cool_down(Instant::now(), &refused.detail);
                    }
                    let detail = format!("segment {} of {}: {}", index + 1, segments.len(), refused.detail);
                    return Err(Refused { detail, ..refused });
                }
            };
            tracing::debug!(%message_id, segment = index + 1, "segment accepted by the SMSC");
            // The push is out whatever happens here: a message id not filed only loses its receipt.
            if self.settings.bind == SmppBind::Transceiver
                && let Err(error) = self.receipts.expect(&message_id, request_id, index + 1, segments.len()).await
            {
                tracing::warn!(%error, %message_id, "cannot file the message id for its delivery receipt");
            }
        }
        Ok(())
    }

    /// The reason sends fail at once, while the cool-down after an unavailable SMSC lasts.
    fn cooling_down(&self, now: Instant) -> Option<String> {
        let mut cool_down = self.cool_down.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match cool_down.as_ref() {
            Some((until, reason)) if now < *until => Some(format!(
                "the SMSC is unavailable for {} s more: {reason}",
                until.saturating_duration_since(now).as_secs()
            )),
            Some(_) => {
                *cool_down = None;
                None
            }
            None => None,
        }
    }

    fn start_cool_down(&self, now: Instant, reason: &str) {
        tracing::warn!(smsc = %self.smsc(), reason, "SMSC unavailable: SMS sends fail for 30 s");
        let mut cool_down = self.cool_down.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *cool_down = Some((now + COOL_DOWN, reason.to_owned()));
    }
}

/// A command the SMSC sent on its own: a deliver_sm is answered once its receipt is filed (ESME_RX_T_APPN when the
/// store cannot take it, so that the SMSC delivers it again); a mobile-originated message is taken and dropped.
fn answer_incoming(client: &Client, receipts: Option<&ReceiptBook>, command: Command) {
    let sequence = command.sequence_number();
    let Some(Pdu::DeliverSm(deliver)) = command.pdu() else {
        tracing::debug!(id = ?command.id(), "SMPP command from the SMSC left unanswered");
        return;
    };
    let receipt = read_receipt(deliver);
    let (client, receipts) = (client.clone(), receipts.cloned());
    tokio::spawn(async move {
        let status = match (receipt, receipts) {
            (Some(receipt), Some(receipts)) => match receipts.file(&receipt).await {
                Ok(filed) => {
                    tracing::debug!(message_id = %receipt.message_id, filed = filed.label(), "delivery receipt read");
                    CommandStatus::EsmeRok
                }
                Err(error) => {
                    tracing::warn!(%error, message_id = %receipt.message_id, "cannot file a delivery receipt");
                    CommandStatus::EsmeRxTAppn
                }
            },
            _ => CommandStatus::EsmeRok,
        };
        if let Err(error) = client.status(status).deliver_sm_resp(sequence, DeliverSmResp::default()).await {
            tracing::debug!(%error, "cannot answer a deliver_sm");
        }
    });
}

/// The receipt of a deliver_sm, from its TLVs or its text.
fn read_receipt(deliver: &DeliverSm) -> Option<Receipt> {
    let mut receipted_message_id = None;
    let mut message_state = None;
    for tlv in deliver.tlvs() {
        match tlv.value() {
            Some(TlvValue::ReceiptedMessageId(id)) => receipted_message_id = Some(id.to_string()),
            Some(TlvValue::MessageState(state)) => message_state = Some(u8::from(*state)),
            _ => {}
        }
    }
    let esm_class = u8::from(deliver.esm_class);
    Receipt::read(esm_class, deliver.short_message().as_ref(), receipted_message_id.as_deref(), message_state)
}

fn destination_text(destination: &Destination) -> String {
    match destination {
        Destination::Push { device_id, .. } => format!("push:{device_id}"),
        Destination::Udp(address) => address.to_string(),
        Destination::Sms { msisdn } => msisdn.clone(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn source_addresses_get_their_ton_and_npi() {
        assert_eq!(source_address("+4930123"), (Ton::International, Npi::Isdn, "4930123"));
        assert_eq!(source_address("12345"), (Ton::Unknown, Npi::Isdn, "12345"));
        assert_eq!(source_address("OMADM"), (Ton::Alphanumeric, Npi::Unknown, "OMADM"));
        assert_eq!(source_address("+"), (Ton::Alphanumeric, Npi::Unknown, "+"));
        assert_eq!(source_address(""), (Ton::Unknown, Npi::Unknown, ""));
    }

    #[test]
    fn a_submit_carries_udhi_8_bit_coding_and_the_international_number() {
        let settings = SmppSettings {
            host: "127.0.0.1".to_owned(),
            port: 2775,
            system_id: "omadm".to_owned(),
            password: String::new(),
            system_type: String::new(),
            source_addr: "OMADM".to_owned(),
            tps: 1,
            bind: crate::settings::SmppBind::Transceiver,
        };
        let submit = submit_sm(&settings, "+491701234567", &[0x06, 0x05, 0x04, 0x0b, 0x84, 0x23, 0xf0]).unwrap();
        assert_eq!(u8::from(submit.esm_class), 0x40);
        assert_eq!(u8::from(submit.data_coding), 0x04);
        assert_eq!(u8::from(submit.registered_delivery), 1);
        assert_eq!((submit.dest_addr_ton, submit.dest_addr_npi), (Ton::International, Npi::Isdn));
        assert_eq!(submit.destination_addr.to_string(), "491701234567");
        assert_eq!(submit.short_message().as_ref(), &[0x06, 0x05, 0x04, 0x0b, 0x84, 0x23, 0xf0]);
        assert!(submit_sm(&settings, &format!("+{}", "1".repeat(21)), &[0]).is_err(), "too long for the field");
    }
}
