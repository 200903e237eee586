//! The host side of `fermyon:spin/key-value@2.0.0` and `wasi:keyvalue/{store,atomics,batch}
//! @0.2.0-draft2`: resources in the request's table, each holding its store; every call goes
//! through [`Store`], with its deadline and limits.

use std::sync::Arc;

use wasmtime::component::{HasData, Resource, ResourceTable};

use super::{CasOutcome, KvError, Store, Stores, Unsynced};
use crate::runtime::bindings::fermyon::spin::key_value as spin_kv;
use crate::runtime::bindings::wasi::keyvalue::{atomics, batch, store as wasi_kv};

/// Store, bucket and CAS handles one request may hold at once.
pub const MAX_HANDLES: u32 = 64;

/// `fermyon:spin/key-value` `store`.
pub struct SpinStore(Arc<Store>);

/// `wasi:keyvalue/store` `bucket`.
pub struct Bucket(Arc<Store>);

/// `wasi:keyvalue/atomics` `cas`: the key and its value when the CAS began.
pub struct Cas {
    store: Arc<Store>,
    key: String,
    current: Option<Vec<u8>>,
}

/// A request's key-value state.
pub struct KvCtx {
    stores: Arc<Stores>,
    handles: u32,
    /// The request being served, whose response waits for what its calls left off the disk.
    unsynced: Option<Arc<Unsynced>>,
}

impl KvCtx {
    pub fn new(stores: Arc<Stores>) -> KvCtx {
        KvCtx {
            stores,
            handles: 0,
            unsynced: None,
        }
    }

    /// Makes the calls from now on `unsynced`'s request's (`None`: no request).
    pub fn serve(&mut self, unsynced: Option<Arc<Unsynced>>) {
        self.unsynced = unsynced;
    }

    /// Notes a call on `store` that has returned, for the request's response to wait on.
    fn used(&self, store: &Store) {
        if let (Some(unsynced), Some(db)) = (&self.unsynced, store.embedded_db()) {
            unsynced.used(db);
        }
    }

    /// Store, bucket and CAS handles the guest holds now.
    pub fn open_handles(&self) -> u32 {
        self.handles
    }
}

/// What the host functions work on: the request's resource table and key-value state.
pub struct KvView<'a> {
    pub table: &'a mut ResourceTable,
    pub ctx: &'a mut KvCtx,
}

/// Marks [`KvView`] as the data the generated `add_to_linker` functions hand out.
pub struct KvHost;

impl HasData for KvHost {
    type Data<'a> = KvView<'a>;
}

impl KvView<'_> {
    /// Adds a handle to the table, within [`MAX_HANDLES`].
    fn push<T: Send + 'static>(&mut self, value: T) -> Result<Resource<T>, KvError> {
        if self.ctx.handles >= MAX_HANDLES {
            return Err(KvError::TableFull);
        }
        let handle = self
            .table
            .push(value)
            .map_err(|e| KvError::Other(format!("cannot hold the handle: {e}")))?;
        self.ctx.handles += 1;
        Ok(handle)
    }

    fn remove<T: 'static>(&mut self, handle: Resource<T>) -> wasmtime::Result<T> {
        let value = self.table.delete(handle)?;
        self.ctx.handles = self.ctx.handles.saturating_sub(1);
        Ok(value)
    }

    fn spin_store(&self, handle: &Resource<SpinStore>) -> Result<Arc<Store>, KvError> {
        self.table
            .get(handle)
            .map(|s| s.0.clone())
            .map_err(|e| KvError::Other(format!("invalid store handle: {e}")))
    }

    fn bucket(&self, handle: &Resource<Bucket>) -> Result<Arc<Store>, KvError> {
        self.table
            .get(handle)
            .map(|b| b.0.clone())
            .map_err(|e| KvError::Other(format!("invalid bucket handle: {e}")))
    }
}

impl From<KvError> for spin_kv::Error {
    fn from(e: KvError) -> spin_kv::Error {
        match e {
            KvError::NoSuchStore => spin_kv::Error::NoSuchStore,
            KvError::AccessDenied => spin_kv::Error::AccessDenied,
            KvError::TableFull => spin_kv::Error::StoreTableFull,
            KvError::Other(message) => spin_kv::Error::Other(message),
        }
    }
}

impl From<KvError> for wasi_kv::Error {
    fn from(e: KvError) -> wasi_kv::Error {
        match e {
            KvError::NoSuchStore => wasi_kv::Error::NoSuchStore,
            KvError::AccessDenied => wasi_kv::Error::AccessDenied,
            KvError::TableFull => {
                wasi_kv::Error::Other(format!("too many open handles (at most {MAX_HANDLES})"))
            }
            KvError::Other(message) => wasi_kv::Error::Other(message),
        }
    }
}

impl spin_kv::Host for KvView<'_> {}

impl spin_kv::HostStore for KvView<'_> {
    async fn open(&mut self, label: String) -> Result<Resource<SpinStore>, spin_kv::Error> {
        let store = self.ctx.stores.get(&label)?;
        Ok(self.push(SpinStore(store))?)
    }

    async fn get(
        &mut self,
        store: Resource<SpinStore>,
        key: String,
    ) -> Result<Option<Vec<u8>>, spin_kv::Error> {
        let store = self.spin_store(&store)?;
        let result = store.get(&key).await;
        self.ctx.used(&store);
        Ok(result?)
    }

    async fn set(
        &mut self,
        store: Resource<SpinStore>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), spin_kv::Error> {
        let store = self.spin_store(&store)?;
        let result = store.set(&key, value).await;
        self.ctx.used(&store);
        Ok(result?)
    }

    async fn delete(
        &mut self,
        store: Resource<SpinStore>,
        key: String,
    ) -> Result<(), spin_kv::Error> {
        let store = self.spin_store(&store)?;
        let result = store.delete(&key).await;
        self.ctx.used(&store);
        Ok(result?)
    }

    async fn exists(
        &mut self,
        store: Resource<SpinStore>,
        key: String,
    ) -> Result<bool, spin_kv::Error> {
        let store = self.spin_store(&store)?;
        let result = store.exists(&key).await;
        self.ctx.used(&store);
        Ok(result?)
    }

    async fn get_keys(
        &mut self,
        store: Resource<SpinStore>,
    ) -> Result<Vec<String>, spin_kv::Error> {
        let store = self.spin_store(&store)?;
        let result = store.all_keys().await;
        self.ctx.used(&store);
        Ok(result?)
    }

    async fn drop(&mut self, store: Resource<SpinStore>) -> wasmtime::Result<()> {
        self.remove(store)?;
        Ok(())
    }
}

impl wasi_kv::Host for KvView<'_> {
    async fn open(&mut self, identifier: String) -> Result<Resource<Bucket>, wasi_kv::Error> {
        let store = self.ctx.stores.get(&identifier)?;
        Ok(self.push(Bucket(store))?)
    }
}

impl wasi_kv::HostBucket for KvView<'_> {
    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> Result<Option<Vec<u8>>, wasi_kv::Error> {
        let store = self.bucket(&bucket)?;
        let result = store.get(&key).await;
        self.ctx.used(&store);
        Ok(result?)
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), wasi_kv::Error> {
        let store = self.bucket(&bucket)?;
        let result = store.set(&key, value).await;
        self.ctx.used(&store);
        Ok(result?)
    }

    async fn delete(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> Result<(), wasi_kv::Error> {
        let store = self.bucket(&bucket)?;
        let result = store.delete(&key).await;
        self.ctx.used(&store);
        Ok(result?)
    }

    async fn exists(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> Result<bool, wasi_kv::Error> {
        let store = self.bucket(&bucket)?;
        let result = store.exists(&key).await;
        self.ctx.used(&store);
        Ok(result?)
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<String>,
    ) -> Result<wasi_kv::KeyResponse, wasi_kv::Error> {
        let store = self.bucket(&bucket)?;
        let page = store.list_keys(cursor).await;
        self.ctx.used(&store);
        let page = page?;
        Ok(wasi_kv::KeyResponse {
            keys: page.keys,
            cursor: page.cursor,
        })
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.remove(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KvView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> Result<i64, wasi_kv::Error> {
        let store = self.bucket(&bucket)?;
        let result = store.increment(&key, delta).await;
        self.ctx.used(&store);
        Ok(result?)
    }

    async fn swap(&mut self, cas: Resource<Cas>, value: Vec<u8>) -> Result<(), atomics::CasError> {
        let Cas {
            store,
            key,
            current,
        } = self
            .remove(cas)
            .map_err(|e| store_error(KvError::Other(format!("invalid cas handle: {e}"))))?;
        let outcome = store.compare_and_swap(&key, current, value).await;
        self.ctx.used(&store);
        match outcome.map_err(store_error)? {
            CasOutcome::Swapped => Ok(()),
            CasOutcome::Changed(now) => {
                let retry = self
                    .push(Cas {
                        store,
                        key,
                        current: now,
                    })
                    .map_err(store_error)?;
                Err(atomics::CasError::CasFailed(retry))
            }
        }
    }
}

fn store_error(e: KvError) -> atomics::CasError {
    atomics::CasError::StoreError(e.into())
}

impl atomics::HostCas for KvView<'_> {
    async fn new(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> Result<Resource<Cas>, wasi_kv::Error> {
        let store = self.bucket(&bucket)?;
        let current = store.get(&key).await;
        self.ctx.used(&store);
        let current = current?;
        Ok(self.push(Cas {
            store,
            key,
            current,
        })?)
    }

    async fn current(&mut self, cas: Resource<Cas>) -> Result<Option<Vec<u8>>, wasi_kv::Error> {
        self.table
            .get(&cas)
            .map(|c| c.current.clone())
            .map_err(|e| KvError::Other(format!("invalid cas handle: {e}")).into())
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.remove(cas)?;
        Ok(())
    }
}

impl batch::Host for KvView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<Vec<(String, Option<Vec<u8>>)>, wasi_kv::Error> {
        let store = self.bucket(&bucket)?;
        Store::check_batch(keys.iter())?;
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            let value = store.get(&key).await;
            self.ctx.used(&store);
            values.push((key, value?));
        }
        Ok(values)
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<(), wasi_kv::Error> {
        let store = self.bucket(&bucket)?;
        Store::check_batch(key_values.iter().map(|(k, _)| k))?;
        for (key, value) in key_values {
            let result = store.set(&key, value).await;
            self.ctx.used(&store);
            result?;
        }
        Ok(())
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<(), wasi_kv::Error> {
        let store = self.bucket(&bucket)?;
        Store::check_batch(keys.iter())?;
        for key in keys {
            let result = store.delete(&key).await;
            self.ctx.used(&store);
            result?;
        }
        Ok(())
    }
}

/// Adds every key-value interface to `linker`, each call reaching the request's state
/// through `view`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    view: fn(&mut T) -> KvView<'_>,
) -> wasmtime::Result<()> {
    spin_kv::add_to_linker::<T, KvHost>(linker, view)?;
    wasi_kv::add_to_linker::<T, KvHost>(linker, view)?;
    atomics::add_to_linker::<T, KvHost>(linker, view)?;
    batch::add_to_linker::<T, KvHost>(linker, view)?;
    Ok(())
}
