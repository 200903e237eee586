//! API keys: their format, how they are stored (as a SHA-256 hash only) and how a presented key
//! is checked.
//!
//! A key reads `ion_sk_<id>_<secret>`: `id` is 12 hex digits that name the key in lists and
//! logs, `secret` 32 hex digits (128 random bits) that only the holder knows. The store keeps
//! `apikey/<id>` with the key's settings and the hash of the whole key, and `apikeys`, the list
//! of ids. A plain hash suffices: with 128 random bits there is nothing to guess, so a slow
//! password hash would only cost time on every request.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::{KeyValue, StoreError, get_json, set_json};

pub const KEY_PREFIX: &str = "ion_sk_";
const ID_DIGITS: usize = 12;
const SECRET_DIGITS: usize = 32;
/// `ion_sk_` + id + `_` + secret.
pub const KEY_LENGTH: usize = KEY_PREFIX.len() + ID_DIGITS + 1 + SECRET_DIGITS;
const INDEX: &str = "apikeys";

/// A key's stored settings. The key itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    /// Lowercase hex SHA-256 of the whole key.
    pub hash: String,
    /// 0: no limit.
    pub requests_per_minute: u32,
    /// 0: no budget.
    pub daily_token_budget: u64,
    /// Unix seconds.
    pub created: u64,
}

/// A key's id, if `text` has the shape of a key (nothing is looked up).
pub fn id_of(text: &str) -> Option<&str> {
    let rest = text.strip_prefix(KEY_PREFIX)?;
    if text.len() != KEY_LENGTH {
        return None;
    }
    let (id, secret) = rest.split_at(ID_DIGITS);
    let secret = secret.strip_prefix('_')?;
    (is_hex(id) && is_hex(secret)).then_some(id)
}

/// Whether `id` has the shape of a key id.
pub fn is_id(id: &str) -> bool {
    id.len() == ID_DIGITS && is_hex(id)
}

fn is_hex(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn record_key(id: &str) -> String {
    format!("apikey/{id}")
}

/// The record of the key `presented`, if it is a key that exists. The hashes are compared in
/// constant time.
pub fn find(kv: &dyn KeyValue, presented: &str) -> Result<Option<KeyRecord>, StoreError> {
    let Some(id) = id_of(presented) else {
        return Ok(None);
    };
    let Some(record) = get_json::<KeyRecord>(kv, &record_key(id))? else {
        return Ok(None);
    };
    let stored = decode_hex(&record.hash);
    let matches = stored.len() == 32 && bool::from(stored.ct_eq(&hash(presented)));
    Ok(matches.then_some(record))
}

fn decode_hex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .filter_map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// The settings of a new key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    pub name: String,
    pub requests_per_minute: u32,
    pub daily_token_budget: u64,
}

/// Makes a key from 16 + 16 random bytes, stores its record and lists it; returns the key
/// (shown once: only its hash is kept) and the record.
pub fn create(
    kv: &dyn KeyValue,
    random: &dyn Fn() -> [u8; 16],
    settings: NewKey,
    now: u64,
) -> Result<(String, KeyRecord), StoreError> {
    let id = hex(&random()[..ID_DIGITS / 2]);
    let key = format!("{KEY_PREFIX}{id}_{}", hex(&random()));
    let record = KeyRecord {
        id: id.clone(),
        name: settings.name,
        hash: hex(&hash(&key)),
        requests_per_minute: settings.requests_per_minute,
        daily_token_budget: settings.daily_token_budget,
        created: now,
    };
    set_json(kv, &record_key(&id), &record)?;
    change_index(kv, &mut |ids| {
        if !ids.contains(&id) {
            ids.push(id.clone());
        }
    })?;
    Ok((key, record))
}

/// Every key's record, oldest first.
pub fn list(kv: &dyn KeyValue) -> Result<Vec<KeyRecord>, StoreError> {
    let ids = get_json::<Vec<String>>(kv, INDEX)?.unwrap_or_default();
    let keys: Vec<String> = ids.iter().map(|id| record_key(id)).collect();
    Ok(kv
        .get_many(&keys)?
        .into_iter()
        .flatten()
        .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
        .collect())
}

pub fn get(kv: &dyn KeyValue, id: &str) -> Result<Option<KeyRecord>, StoreError> {
    get_json(kv, &record_key(id))
}

/// Deletes a key: from the next request on, on every instance, it is refused. `false` when
/// there was no such key.
pub fn revoke(kv: &dyn KeyValue, id: &str) -> Result<bool, StoreError> {
    let existed = kv.get(&record_key(id))?.is_some();
    kv.delete(&record_key(id))?;
    change_index(kv, &mut |ids| ids.retain(|listed| listed != id))?;
    Ok(existed)
}

fn change_index(
    kv: &dyn KeyValue,
    change: &mut dyn FnMut(&mut Vec<String>),
) -> Result<(), StoreError> {
    kv.update(INDEX, &mut |current| {
        let before: Vec<String> = current
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or_default();
        let mut ids = before.clone();
        change(&mut ids);
        // Nothing to write when nothing changes. This also ends a retry whose write landed but
        // was reported as failed: Spin 4's Redis store reports every swap so (its `UNWATCH`
        // takes an argument Redis refuses).
        (ids != before)
            .then(|| serde_json::to_vec(&ids).ok())
            .flatten()
    })
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::MemoryStore;
    use std::cell::Cell;

    fn counter_random() -> impl Fn() -> [u8; 16] {
        let n = Cell::new(0u8);
        move || {
            n.set(n.get() + 1);
            [n.get(); 16]
        }
    }

    fn new_key(name: &str) -> NewKey {
        NewKey {
            name: name.into(),
            requests_per_minute: 60,
            daily_token_budget: 100_000,
        }
    }

    #[test]
    fn a_created_key_is_found_and_only_its_hash_is_stored() {
        let kv = MemoryStore::default();
        let (key, record) = create(&kv, &counter_random(), new_key("mentee app"), 7).unwrap();
        assert_eq!(key.len(), KEY_LENGTH);
        assert!(key.starts_with("ion_sk_010101010101_"));
        assert_eq!(id_of(&key), Some(record.id.as_str()));
        assert_eq!(find(&kv, &key).unwrap(), Some(record.clone()));
        let stored: Vec<u8> = kv.map.borrow().values().flatten().copied().collect();
        let secret = &key[KEY_PREFIX.len() + ID_DIGITS + 1..];
        assert!(!String::from_utf8_lossy(&stored).contains(secret));
        assert_eq!(list(&kv).unwrap(), vec![record]);
    }

    #[test]
    fn forged_truncated_and_foreign_keys_are_not_found() {
        let kv = MemoryStore::default();
        let (key, _) = create(&kv, &counter_random(), new_key("a"), 7).unwrap();
        let mut forged = key.clone();
        forged.replace_range(KEY_LENGTH - 1.., if key.ends_with('0') { "1" } else { "0" });
        for presented in [
            forged.as_str(),
            &key[..KEY_LENGTH - 1],
            &format!("{key}0"),
            &key.to_uppercase(),
            "sk-proj-abc",
            "ion_sk_",
            "ion_sk_0101010101é1_02020202020202020202020202020202",
            "",
        ] {
            assert_eq!(find(&kv, presented).unwrap(), None, "{presented:?}");
        }
    }

    #[test]
    fn a_revoked_key_is_gone_from_the_store_and_the_list() {
        let kv = MemoryStore::default();
        let random = counter_random();
        let (first, a) = create(&kv, &random, new_key("a"), 1).unwrap();
        let (_, b) = create(&kv, &random, new_key("b"), 2).unwrap();
        assert!(revoke(&kv, &a.id).unwrap());
        assert!(!revoke(&kv, &a.id).unwrap());
        assert_eq!(find(&kv, &first).unwrap(), None);
        assert_eq!(list(&kv).unwrap(), vec![b]);
    }

    #[test]
    fn a_store_failure_is_an_error_not_a_missing_key() {
        let kv = MemoryStore::default();
        let (key, _) = create(&kv, &counter_random(), new_key("a"), 1).unwrap();
        kv.down.set(true);
        assert!(find(&kv, &key).is_err());
    }
}
