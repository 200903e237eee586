//! The Spin imports `wasmtime serve` lacks, as a stub: `fermyon:spin/variables@2.0.0` where no
//! variable is defined, and Spin's key-value API (`fermyon:spin/key-value@2.0.0`,
//! `wasi:keyvalue/{store,atomics}@0.2.0-draft2`) with no store to open.
//!
//! Composed into the service component for the `/health` comparison with `wasmtime serve`.
//! `/health` reads no variable and opens no store; `/chat` through the composed component
//! answers 503 `not_configured`, as under a host with no variables set.

wit_bindgen::generate!({
    inline: "package bench:stub;

world stub {
    export fermyon:spin/variables@2.0.0;
    export fermyon:spin/key-value@2.0.0;
    export wasi:keyvalue/store@0.2.0-draft2;
    export wasi:keyvalue/atomics@0.2.0-draft2;
}",
    path: ["../../wit/deps/fermyon-spin.wit", "../../wit/deps/keyvalue-2024-10-17"],
    world: "bench:stub/stub",
});

use exports::fermyon::spin::key_value;
use exports::fermyon::spin::variables;
use exports::wasi::keyvalue::{atomics, store};

struct Stub;

impl variables::Guest for Stub {
    fn get(name: String) -> Result<String, variables::Error> {
        Err(variables::Error::Undefined(name))
    }
}

/// A store that cannot be opened: no handle is ever made, so its methods are never called.
struct NoStore;

fn none<T>() -> Result<T, key_value::Error> {
    Err(key_value::Error::NoSuchStore)
}

impl key_value::Guest for Stub {
    type Store = NoStore;
}

impl key_value::GuestStore for NoStore {
    fn open(_label: String) -> Result<key_value::Store, key_value::Error> {
        none()
    }
    fn get(&self, _key: String) -> Result<Option<Vec<u8>>, key_value::Error> {
        none()
    }
    fn set(&self, _key: String, _value: Vec<u8>) -> Result<(), key_value::Error> {
        none()
    }
    fn delete(&self, _key: String) -> Result<(), key_value::Error> {
        none()
    }
    fn exists(&self, _key: String) -> Result<bool, key_value::Error> {
        none()
    }
    fn get_keys(&self) -> Result<Vec<String>, key_value::Error> {
        none()
    }
}

fn no_bucket<T>() -> Result<T, store::Error> {
    Err(store::Error::NoSuchStore)
}

impl store::Guest for Stub {
    type Bucket = NoStore;
    fn open(_identifier: String) -> Result<store::Bucket, store::Error> {
        no_bucket()
    }
}

impl store::GuestBucket for NoStore {
    fn get(&self, _key: String) -> Result<Option<Vec<u8>>, store::Error> {
        no_bucket()
    }
    fn set(&self, _key: String, _value: Vec<u8>) -> Result<(), store::Error> {
        no_bucket()
    }
    fn delete(&self, _key: String) -> Result<(), store::Error> {
        no_bucket()
    }
    fn exists(&self, _key: String) -> Result<bool, store::Error> {
        no_bucket()
    }
    fn list_keys(&self, _cursor: Option<String>) -> Result<store::KeyResponse, store::Error> {
        no_bucket()
    }
}

impl atomics::Guest for Stub {
    type Cas = NoStore;
    fn increment(
        _bucket: store::BucketBorrow<'_>,
        _key: String,
        _delta: i64,
    ) -> Result<i64, store::Error> {
        no_bucket()
    }
    fn swap(_cas: atomics::Cas, _value: Vec<u8>) -> Result<(), atomics::CasError> {
        Err(atomics::CasError::StoreError(store::Error::NoSuchStore))
    }
}

impl atomics::GuestCas for NoStore {
    fn new(_bucket: store::BucketBorrow<'_>, _key: String) -> Result<atomics::Cas, store::Error> {
        no_bucket()
    }
    fn current(&self) -> Result<Option<Vec<u8>>, store::Error> {
        no_bucket()
    }
}

export!(Stub);
