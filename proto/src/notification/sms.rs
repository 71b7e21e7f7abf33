//! WAP Push over SMS (Appendix D.1 "typically delivered over SMS"): the WDP framing of a WSP push PDU into
//! short messages (WAP-259-WDP 6.5 and Annex A, 3GPP TS 23.040 9.2.3.24) and its reassembly on the device side.
//!
//! Every segment is one SMS user data (TP-UD, 8-bit data coding, UDHI set) of at most 140 octets, header
//! included. A push PDU that fits one SMS (at most 133 octets) goes alone, with the port addressing element only:
//!
//! ```text
//! 06                UDHL: 6 octets of header follow
//! 05 04 0b 84 23 f0 IEI 0x05 application port addressing, 16 bit: destination 2948 (WAP push), source 9200
//! 01 06 03 d8 af 87 ...   the WSP push PDU (wrap_push)
//! ```
//!
//! A longer one is cut into segments of 128 octets (127 with a 16-bit reference), each with the ports and a
//! concatenation element:
//!
//! ```text
//! 0b 05 04 0b 84 23 f0 00 03 2a 02 01 ...   8-bit reference 0x2a, segment 1 of 2
//! 0c 05 04 0b 84 23 f0 08 04 12 34 02 01 ... 16-bit reference 0x1234, segment 1 of 2
//! ```
//!
//! [`SmsReassembler`] is the receiving end without a clock: the caller passes `now`, and memory is bounded by
//! the number of messages pending, the segments a message may have and a timeout.

use std::collections::BTreeMap;

use super::wsp::WAP_PUSH_PORT;

/// The most octets one SMS carries in 8-bit data coding (TP-UD, header included).
pub const MAX_SMS_OCTETS: usize = 140;
/// WDP source port of a WAP push (the WAP connectionless session service, WAP-259-WDP Annex B).
pub const WAP_PUSH_SOURCE_PORT: u16 = 9200;
/// IEI: concatenated short message, 8-bit reference (TS 23.040 9.2.3.24.1).
pub const IEI_CONCAT_8: u8 = 0x00;
/// IEI: application port addressing, 8-bit ports (TS 23.040 9.2.3.24.3); accepted, never sent.
pub const IEI_PORTS_8: u8 = 0x04;
/// IEI: application port addressing, 16-bit ports (TS 23.040 9.2.3.24.4).
pub const IEI_PORTS_16: u8 = 0x05;
/// IEI: concatenated short message, 16-bit reference (TS 23.040 9.2.3.24.8).
pub const IEI_CONCAT_16: u8 = 0x08;
/// The most segments a concatenated message can have: the count is one octet.
pub const MAX_SEGMENTS: usize = 255;

/// Octets of the port addressing element with its IEI and length.
const PORTS_IE_LENGTH: usize = 6;

/// The concatenation reference that ties a message's segments together; it must differ between the messages to
/// one device that could be in reassembly at the same time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConcatReference {
    /// IEI 0x00: one octet (128 payload octets per segment).
    Bits8(u8),
    /// IEI 0x08: two octets (127 payload octets per segment).
    Bits16(u16),
}

impl ConcatReference {
    /// The reference as a number, whichever its width.
    pub fn value(self) -> u16 {
        match self {
            ConcatReference::Bits8(reference) => u16::from(reference),
            ConcatReference::Bits16(reference) => reference,
        }
    }

    /// Octets of its concatenation element with IEI and length.
    fn element_length(self) -> usize {
        match self {
            ConcatReference::Bits8(_) => 5,
            ConcatReference::Bits16(_) => 6,
        }
    }
}

/// Why bytes are not a WAP Push SMS segment, or cannot be framed or reassembled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmsError {
    #[error("the segment is empty: no user data header length")]
    Empty,
    #[error("the user data header claims {length} octets but only {available} follow")]
    HeaderPastEnd { length: usize, available: usize },
    #[error("information element 0x{iei:02x} is cut short")]
    ElementTruncated { iei: u8 },
    #[error("information element 0x{iei:02x} has length {length}; it must be {expected}")]
    ElementLength { iei: u8, length: usize, expected: usize },
    #[error("segment {sequence} of {total}: a concatenated message counts its segments from 1 to the total")]
    BadSequence { sequence: u8, total: u8 },
    #[error("the message has no application port addressing: it is not a WAP push")]
    NoPorts,
    #[error("destination port {0}; a WAP push goes to port 2948")]
    WrongPort(u16),
    #[error("the message has {total} segments; at most {limit} are accepted")]
    TooManySegments { total: usize, limit: usize },
    #[error("the segment is {length} octets; an SMS carries at most 140")]
    SegmentTooLong { length: usize },
    #[error("a {length}-octet push PDU needs more than 255 segments")]
    TooLong { length: usize },
}

/// The two ports of an application port addressing element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub destination: u16,
    pub source: u16,
}

/// A concatenation element: which message, how many segments, which one this is (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concatenation {
    pub reference: ConcatReference,
    pub total: u8,
    pub sequence: u8,
}

/// One SMS user data, read: its header's elements of interest and the payload after the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment<'a> {
    pub ports: Option<Ports>,
    pub concatenation: Option<Concatenation>,
    pub payload: &'a [u8],
}

/// Frames a WSP push PDU (from `wrap_push`) into the user data of one or more SMS to port 2948, each at most
/// 140 octets header included; `reference` ties the segments together when there are several (see the module
/// example).
pub fn sms_segments(pdu: &[u8], reference: ConcatReference) -> Result<Vec<Vec<u8>>, SmsError> {
    let single_room = MAX_SMS_OCTETS - 1 - PORTS_IE_LENGTH;
    if pdu.len() <= single_room {
        let mut segment = Vec::with_capacity(1 + PORTS_IE_LENGTH + pdu.len());
        segment.push(PORTS_IE_LENGTH as u8);
        push_ports(&mut segment);
        segment.extend_from_slice(pdu);
        return Ok(vec![segment]);
    }
    let header_length = PORTS_IE_LENGTH + reference.element_length();
    let room = MAX_SMS_OCTETS - 1 - header_length;
    let chunks: Vec<&[u8]> = pdu.chunks(room).collect();
    let total = u8::try_from(chunks.len()).map_err(|_| SmsError::TooLong { length: pdu.len() })?;
    let mut segments = Vec::with_capacity(chunks.len());
    for (sequence, chunk) in (1..=total).zip(chunks) {
        let mut segment = Vec::with_capacity(1 + header_length + chunk.len());
        segment.push(header_length as u8);
        push_ports(&mut segment);
        match reference {
            ConcatReference::Bits8(value) => segment.extend_from_slice(&[IEI_CONCAT_8, 3, value]),
            ConcatReference::Bits16(value) => {
                let [high, low] = value.to_be_bytes();
                segment.extend_from_slice(&[IEI_CONCAT_16, 4, high, low]);
            }
        }
        segment.extend_from_slice(&[total, sequence]);
        segment.extend_from_slice(chunk);
        segments.push(segment);
    }
    Ok(segments)
}

fn push_ports(segment: &mut Vec<u8>) {
    let [destination_high, destination_low] = WAP_PUSH_PORT.to_be_bytes();
    let [source_high, source_low] = WAP_PUSH_SOURCE_PORT.to_be_bytes();
    segment.extend_from_slice(&[IEI_PORTS_16, 4, destination_high, destination_low, source_high, source_low]);
}

/// Reads one SMS user data that starts with a user data header (UDHI set): the port and concatenation
/// elements (other elements are skipped, as TS 23.040 asks of a receiver) and the payload.
pub fn parse_segment(user_data: &[u8]) -> Result<Segment<'_>, SmsError> {
    if user_data.len() > MAX_SMS_OCTETS {
        return Err(SmsError::SegmentTooLong { length: user_data.len() });
    }
    let (&header_length, rest) = user_data.split_first().ok_or(SmsError::Empty)?;
    let header_length = usize::from(header_length);
    let (mut header, payload) = rest
        .split_at_checked(header_length)
        .ok_or(SmsError::HeaderPastEnd { length: header_length, available: rest.len() })?;
    let mut segment = Segment { ports: None, concatenation: None, payload };
    while let Some((&iei, after_iei)) = header.split_first() {
        let (&length, after_length) = after_iei.split_first().ok_or(SmsError::ElementTruncated { iei })?;
        let (data, after) =
            after_length.split_at_checked(usize::from(length)).ok_or(SmsError::ElementTruncated { iei })?;
        header = after;
        let expect = |expected: usize| {
            if data.len() == expected {
                Ok(())
            } else {
                Err(SmsError::ElementLength { iei, length: data.len(), expected })
            }
        };
        match (iei, data) {
            (IEI_PORTS_16, &[destination_high, destination_low, source_high, source_low]) => {
                segment.ports = Some(Ports {
                    destination: u16::from_be_bytes([destination_high, destination_low]),
                    source: u16::from_be_bytes([source_high, source_low]),
                });
            }
            (IEI_PORTS_8, &[destination, source]) => {
                segment.ports = Some(Ports { destination: u16::from(destination), source: u16::from(source) });
            }
            (IEI_CONCAT_8, &[reference, total, sequence]) => {
                segment.concatenation = Some(concatenation(ConcatReference::Bits8(reference), total, sequence)?);
            }
            (IEI_CONCAT_16, &[high, low, total, sequence]) => {
                let reference = ConcatReference::Bits16(u16::from_be_bytes([high, low]));
                segment.concatenation = Some(concatenation(reference, total, sequence)?);
            }
            (IEI_PORTS_16, _) | (IEI_CONCAT_16, _) => expect(4)?,
            (IEI_PORTS_8, _) => expect(2)?,
            (IEI_CONCAT_8, _) => expect(3)?,
            _ => {}
        }
    }
    Ok(segment)
}

fn concatenation(reference: ConcatReference, total: u8, sequence: u8) -> Result<Concatenation, SmsError> {
    if total == 0 || sequence == 0 || sequence > total {
        return Err(SmsError::BadSequence { sequence, total });
    }
    Ok(Concatenation { reference, total, sequence })
}

/// The bounds of a [`SmsReassembler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyLimits {
    /// Messages in reassembly at once; a new one past this drops the oldest.
    pub max_pending: usize,
    /// Segments one message may have (at most 255, the count being one octet).
    pub max_segments: usize,
    /// A message whose first segment came longer ago than this (milliseconds) is dropped.
    pub timeout_ms: u64,
}

impl Default for ReassemblyLimits {
    /// 64 messages of at most 16 segments (2 KiB of push PDU each), three minutes.
    fn default() -> Self {
        ReassemblyLimits { max_pending: 64, max_segments: 16, timeout_ms: 180_000 }
    }
}

/// A message in reassembly.
#[derive(Debug)]
struct Pending {
    started_at: u64,
    total: u8,
    /// Segment payloads by sequence number.
    parts: BTreeMap<u8, Vec<u8>>,
    /// The destination port, from whichever segment carried the ports.
    destination_port: Option<u16>,
}

/// Puts WAP Push SMS segments back together: segments in any order, from any number of senders, duplicates
/// ignored; yields each complete push PDU once. No clock and no I/O: `now` (milliseconds) comes with each
/// segment.
#[derive(Debug)]
pub struct SmsReassembler {
    limits: ReassemblyLimits,
    /// By (sender, reference): TS 23.040 scopes a reference to its originator.
    pending: BTreeMap<(String, ConcatReference), Pending>,
}

impl SmsReassembler {
    pub fn new(limits: ReassemblyLimits) -> SmsReassembler {
        SmsReassembler { limits, pending: BTreeMap::new() }
    }

    /// Messages in reassembly.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Takes one segment's user data from `sender` at `now`; returns the push PDU when it completes a message.
    ///
    /// A lone SMS (no concatenation element) completes at once, and so every time it comes: it has no reference
    /// to tell a repeat by (a client drops a repeated Package#0 by its NOTIFICATION-ID). A malformed segment is
    /// an error and changes nothing; a segment that repeats one already held is ignored.
    pub fn accept(&mut self, sender: &str, user_data: &[u8], now: u64) -> Result<Option<Vec<u8>>, SmsError> {
        self.expire(now);
        let segment = parse_segment(user_data)?;
        let check_port = |port: Option<u16>| match port {
            None => Err(SmsError::NoPorts),
            Some(WAP_PUSH_PORT) => Ok(()),
            Some(other) => Err(SmsError::WrongPort(other)),
        };
        let Some(concatenation) = segment.concatenation else {
            check_port(segment.ports.map(|ports| ports.destination))?;
            return Ok(Some(segment.payload.to_vec()));
        };
        let limit = self.limits.max_segments.min(MAX_SEGMENTS);
        if usize::from(concatenation.total) > limit {
            return Err(SmsError::TooManySegments { total: usize::from(concatenation.total), limit });
        }
        match segment.ports {
            Some(ports) if ports.destination != WAP_PUSH_PORT => return Err(SmsError::WrongPort(ports.destination)),
            _ => {}
        }
        let key = (sender.to_owned(), concatenation.reference);
        // The same reference with another count is another message: the sender reused the reference.
        if self.pending.get(&key).is_some_and(|pending| pending.total != concatenation.total) {
            self.pending.remove(&key);
        }
        if !self.pending.contains_key(&key) {
            self.make_room();
        }
        let pending = self.pending.entry(key.clone()).or_insert_with(|| Pending {
            started_at: now,
            total: concatenation.total,
            parts: BTreeMap::new(),
            destination_port: None,
        });
        if let Some(ports) = segment.ports {
            pending.destination_port = Some(ports.destination);
        }
        pending.parts.entry(concatenation.sequence).or_insert_with(|| segment.payload.to_vec());
        if pending.parts.len() < usize::from(pending.total) {
            return Ok(None);
        }
        let Some(complete) = self.pending.remove(&key) else { return Ok(None) };
        check_port(complete.destination_port)?;
        Ok(Some(complete.parts.into_values().flatten().collect()))
    }

    /// Drops messages older than the timeout.
    fn expire(&mut self, now: u64) {
        let timeout = self.limits.timeout_ms;
        self.pending.retain(|_, pending| now.saturating_sub(pending.started_at) <= timeout);
    }

    /// Drops the oldest messages until a new one fits.
    fn make_room(&mut self) {
        while self.pending.len() >= self.limits.max_pending.max(1) {
            let oldest = self.pending.iter().min_by_key(|(_, pending)| pending.started_at).map(|(key, _)| key.clone());
            match oldest {
                Some(key) => {
                    self.pending.remove(&key);
                }
                None => break,
            }
        }
    }
}

impl Default for SmsReassembler {
    fn default() -> Self {
        SmsReassembler::new(ReassemblyLimits::default())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use crate::notification::{unwrap_push, wrap_push};

    fn pdu(length: usize) -> Vec<u8> {
        let package: Vec<u8> = (0..length.saturating_sub(6)).map(|index| index as u8).collect();
        wrap_push(&package, 7)
    }

    #[test]
    fn a_short_push_is_one_sms_with_the_ports_only() {
        let pdu = wrap_push(&[0x20, 0x80], 1);
        let segments = sms_segments(&pdu, ConcatReference::Bits8(9)).unwrap();
        assert_eq!(segments.len(), 1);
        assert_eq!(hex::encode(&segments[0]), "0605040b8423f0010603d8af872080");
        let segment = parse_segment(&segments[0]).unwrap();
        assert_eq!(segment.ports, Some(Ports { destination: 2948, source: 9200 }));
        assert_eq!((segment.concatenation, segment.payload), (None, &pdu[..]));
        let mut reassembler = SmsReassembler::default();
        let out = reassembler.accept("+49", &segments[0], 0).unwrap().unwrap();
        assert_eq!(unwrap_push(&out).unwrap(), &[0x20, 0x80]);
    }

    #[test]
    fn the_single_sms_limit_is_133_octets_of_pdu() {
        let fits = pdu(133);
        let segments = sms_segments(&fits, ConcatReference::Bits8(1)).unwrap();
        assert_eq!((segments.len(), segments[0].len()), (1, 140));
        let over = pdu(134);
        let segments = sms_segments(&over, ConcatReference::Bits8(0x2a)).unwrap();
        assert_eq!(segments.len(), 2);
        assert_eq!(hex::encode(&segments[0][..12]), "0b05040b8423f000032a0201");
        assert_eq!(segments[0].len(), 140);
        assert_eq!(hex::encode(&segments[1][..12]), "0b05040b8423f000032a0202");
        assert_eq!(segments[1].len(), 12 + 134 - 128);
    }

    #[test]
    fn sixteen_bit_references_carry_127_octets_per_segment() {
        let long = pdu(300);
        let segments = sms_segments(&long, ConcatReference::Bits16(0x1234)).unwrap();
        assert_eq!(segments.len(), 3);
        assert_eq!(hex::encode(&segments[2][..13]), "0c05040b8423f0080412340303");
        assert!(segments.iter().all(|segment| segment.len() <= MAX_SMS_OCTETS));
        let mut reassembler = SmsReassembler::default();
        assert_eq!(reassembler.accept("a", &segments[2], 0), Ok(None));
        assert_eq!(reassembler.accept("a", &segments[0], 1), Ok(None));
        assert_eq!(reassembler.accept("a", &segments[1], 2), Ok(Some(long)));
        assert_eq!(reassembler.pending(), 0);
    }

    #[test]
    fn duplicates_are_ignored_and_senders_are_kept_apart() {
        let first = pdu(200);
        let second = pdu(250);
        let a = sms_segments(&first, ConcatReference::Bits8(5)).unwrap();
        let b = sms_segments(&second, ConcatReference::Bits8(5)).unwrap();
        let mut reassembler = SmsReassembler::default();
        assert_eq!(reassembler.accept("alice", &a[0], 0), Ok(None));
        assert_eq!(reassembler.accept("alice", &a[0], 0), Ok(None), "a repeat");
        assert_eq!(reassembler.accept("bob", &b[1], 0), Ok(None), "same reference, another sender");
        assert_eq!(reassembler.accept("alice", &a[1], 0), Ok(Some(first)));
        assert_eq!(reassembler.accept("bob", &b[0], 0), Ok(Some(second)));
        assert_eq!(reassembler.accept("alice", &a[1], 0), Ok(None), "a late repeat starts nothing complete");
    }

    #[test]
    fn memory_is_bounded_by_pending_messages_segments_and_time() {
        let limits = ReassemblyLimits { max_pending: 2, max_segments: 3, timeout_ms: 1_000 };
        let mut reassembler = SmsReassembler::new(limits);
        let messages: Vec<Vec<Vec<u8>>> =
            (0..3).map(|reference| sms_segments(&pdu(200), ConcatReference::Bits8(reference)).unwrap()).collect();
        reassembler.accept("s", &messages[0][0], 0).unwrap();
        reassembler.accept("s", &messages[1][0], 10).unwrap();
        reassembler.accept("s", &messages[2][0], 20).unwrap();
        assert_eq!(reassembler.pending(), 2, "the oldest made room");
        assert_eq!(reassembler.accept("s", &messages[0][1], 30), Ok(None), "message 0 was dropped");
        assert_eq!(reassembler.accept("s", &messages[1][1], 5_000), Ok(None), "message 1 timed out");
        assert_eq!(reassembler.pending(), 1);
        let too_many = sms_segments(&pdu(600), ConcatReference::Bits8(9)).unwrap();
        assert_eq!(reassembler.accept("s", &too_many[0], 5_000), Err(SmsError::TooManySegments { total: 5, limit: 3 }));
    }

    #[test]
    fn malformed_headers_are_typed_errors() {
        assert_eq!(parse_segment(&[]), Err(SmsError::Empty));
        assert_eq!(parse_segment(&[0x05, 0x05, 0x04]), Err(SmsError::HeaderPastEnd { length: 5, available: 2 }));
        assert_eq!(parse_segment(&[0x01, 0x05]), Err(SmsError::ElementTruncated { iei: 0x05 }));
        assert_eq!(parse_segment(&[0x03, 0x05, 0x04, 0x0b]), Err(SmsError::ElementTruncated { iei: 0x05 }));
        assert_eq!(
            parse_segment(&[0x04, 0x00, 0x02, 0x01, 0x01]),
            Err(SmsError::ElementLength { iei: 0x00, length: 2, expected: 3 })
        );
        assert_eq!(
            parse_segment(&[0x05, 0x00, 0x03, 0x01, 0x02, 0x03]),
            Err(SmsError::BadSequence { sequence: 3, total: 2 })
        );
        assert_eq!(
            parse_segment(&[0x05, 0x00, 0x03, 0x01, 0x00, 0x00]),
            Err(SmsError::BadSequence { sequence: 0, total: 0 })
        );
        assert_eq!(parse_segment(&[0u8; 141]), Err(SmsError::SegmentTooLong { length: 141 }));
        // An unknown element is skipped; 8-bit ports are read.
        let segment = parse_segment(&[0x07, 0x70, 0x01, 0xff, 0x04, 0x02, 0x10, 0x20, 0xaa]).unwrap();
        assert_eq!(segment.ports, Some(Ports { destination: 0x10, source: 0x20 }));
        assert_eq!(segment.payload, &[0xaa]);
        let mut reassembler = SmsReassembler::default();
        assert_eq!(reassembler.accept("s", &[0x00, 0x01], 0), Err(SmsError::NoPorts));
        assert_eq!(
            reassembler.accept("s", &[0x06, 0x05, 0x04, 0x00, 0x50, 0x23, 0xf0, 0x01], 0),
            Err(SmsError::WrongPort(80))
        );
        let huge = vec![0u8; 255 * 128 + 1];
        assert_eq!(sms_segments(&huge, ConcatReference::Bits8(0)), Err(SmsError::TooLong { length: huge.len() }));
        assert_eq!(sms_segments(&huge[1..], ConcatReference::Bits8(0)).unwrap().len(), 255);
    }
}
