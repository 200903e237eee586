//! The runtime's key-value store "default" as a [`KeyValue`]: Spin's `key_value` API for
//! values and `wasi:keyvalue/atomics` for counters (the one atomic operation conversations
//! need, and compare-and-swap for the access records). Not `wasi:keyvalue/batch`: Spin 4's Redis store panics in `get-many`. Both runtimes provide both; they name the same store. Opened on first use, so a
//! request that never touches state never opens it. Only compiled for `wasm32`.

use std::cell::OnceCell;

use spin_sdk::key_value;
use spin_sdk::wit::wasi::keyvalue::{atomics, store as wasi_store};

use crate::store::{Change, KeyValue, StoreError, UPDATE_ATTEMPTS};

const LABEL: &str = "default";

#[derive(Default)]
pub struct SpinStore {
    values: OnceCell<Result<key_value::Store, StoreError>>,
    counters: OnceCell<Result<wasi_store::Bucket, StoreError>>,
}

impl SpinStore {
    fn values(&self) -> Result<&key_value::Store, StoreError> {
        self.values
            .get_or_init(|| {
                key_value::Store::open(LABEL)
                    .map_err(|e| StoreError::new(format!("opening key-value store {LABEL}: {e}")))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    fn counters(&self) -> Result<&wasi_store::Bucket, StoreError> {
        self.counters
            .get_or_init(|| {
                wasi_store::open(LABEL).map_err(|e| {
                    StoreError::new(format!("opening key-value bucket {LABEL}: {e:?}"))
                })
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

fn failed(what: &str, key: &str, e: impl std::fmt::Debug) -> StoreError {
    StoreError::new(format!("key-value {what} {key}: {e:?}"))
}

impl KeyValue for SpinStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.values()?.get(key).map_err(|e| failed("get", key, e))
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.values()?
            .set(key, value)
            .map_err(|e| failed("set", key, e))
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.values()?
            .delete(key)
            .map_err(|e| failed("delete", key, e))
    }

    fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        atomics::increment(self.counters()?, key, delta).map_err(|e| failed("increment", key, e))
    }

    fn update(&self, key: &str, change: &mut Change<'_>) -> Result<bool, StoreError> {
        let mut cas =
            atomics::Cas::new(self.counters()?, key).map_err(|e| failed("cas", key, e))?;
        for _ in 0..UPDATE_ATTEMPTS {
            let current = cas.current().map_err(|e| failed("cas read", key, e))?;
            let Some(value) = change(current.as_deref()) else {
                return Ok(false);
            };
            match atomics::swap(cas, &value) {
                Ok(()) => return Ok(true),
                // Another writer got in first: the error carries a handle on the newer value.
                Err(atomics::CasError::CasFailed(newer)) => cas = newer,
                Err(atomics::CasError::StoreError(e)) => return Err(failed("swap", key, e)),
            }
        }
        Err(StoreError::new(format!(
            "key-value update {key}: still contended after {UPDATE_ATTEMPTS} tries"
        )))
    }
}

/// 128 bits from the runtime's cryptographically secure random source.
pub fn random_id() -> [u8; 16] {
    let bytes = wasi::random::random::get_random_bytes(16);
    let mut id = [0; 16];
    id.copy_from_slice(&bytes[..16]);
    id
}
