//! Redis Cluster hash slots: which slot a key lands in, and a hash tag that lands in each slot.
//!
//! Redis Cluster puts key `k` in slot CRC16/XMODEM(tag) mod 16384, where the
//! tag is the part between the first `{` and the next `}` when that part is
//! not empty, else the whole key. The engine computes slots itself so that it
//! can group a batch's writes by slot before sending them, and give each
//! slot's outbox keys a tag of that very slot ([`tag_of_slot`]), which puts a
//! device's events in the same slot, and so the same Lua script, as its state.

use std::sync::OnceLock;

use crc::{CRC_16_XMODEM, Crc};

/// Hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16_384;

const CRC16: Crc<u16> = Crc::<u16>::new(&CRC_16_XMODEM);

/// The slot of `key`, as Redis Cluster computes it (`CLUSTER KEYSLOT`).
pub fn key_slot(key: &[u8]) -> u16 {
    CRC16.checksum(hash_tag(key)) % SLOTS
}

/// The part of `key` that Redis Cluster hashes.
fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|byte| *byte == b'{') else { return key };
    let after_open = key.get(open + 1..).unwrap_or_default();
    match after_open.iter().position(|byte| *byte == b'}') {
        Some(close) if close > 0 => after_open.get(..close).unwrap_or(key),
        _ => key,
    }
}

/// A short hash tag whose slot is `slot` (`o<n>` for the smallest such n). The
/// table is computed once per process and is the same on every node and every
/// version: the outbox keys of slot S are named with it.
pub fn tag_of_slot(slot: u16) -> &'static str {
    let tags = SLOT_TAGS.get_or_init(slot_tags);
    tags.get(usize::from(slot)).map_or("o0", String::as_str)
}

static SLOT_TAGS: OnceLock<Vec<String>> = OnceLock::new();

/// Tries `o0`, `o1`, ... and keeps the first tag that lands in each slot. About
/// 180,000 candidates fill all 16,384 slots (a few milliseconds, once).
fn slot_tags() -> Vec<String> {
    let mut tags: Vec<Option<String>> = vec![None; usize::from(SLOTS)];
    let mut missing = usize::from(SLOTS);
    let mut candidate: u64 = 0;
    // The bound only guards the loop: every slot is filled long before it.
    while missing > 0 && candidate < 100_000_000 {
        let tag = format!("o{candidate}");
        if let Some(entry) = tags.get_mut(usize::from(key_slot(tag.as_bytes()))) {
            if entry.is_none() {
                *entry = Some(tag);
                missing -= 1;
            }
        }
        candidate += 1;
    }
    tags.into_iter().map(Option::unwrap_or_default).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_the_redis_cluster_specification() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(CRC16.checksum(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"abc"), 7638);
        assert_eq!(key_slot(b"P:{abc}:device"), 7638);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"{user1000}.followers"));
        // An empty tag hashes the whole key; only the first `{...}` counts.
        assert_eq!(key_slot(b"foo{}{bar}"), CRC16.checksum(b"foo{}{bar}") % SLOTS);
        assert_eq!(key_slot(b"foo{{bar}}zap"), CRC16.checksum(b"{bar") % SLOTS);
        assert_eq!(key_slot(b"foo{bar}{zap}"), CRC16.checksum(b"bar") % SLOTS);
        assert_eq!(key_slot(b"no-brace"), CRC16.checksum(b"no-brace") % SLOTS);
        assert_eq!(key_slot(b"open{only"), CRC16.checksum(b"open{only") % SLOTS);
    }

    #[test]
    fn every_slot_has_a_tag_that_lands_in_it() {
        for slot in 0..SLOTS {
            let tag = tag_of_slot(slot);
            assert!(!tag.is_empty() && !tag.contains('{') && !tag.contains('}'));
            assert_eq!(key_slot(format!("omadm:{{{tag}}}:outbox:order").as_bytes()), slot, "{tag}");
        }
    }
}
