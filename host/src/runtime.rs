//! The wasmtime side: one engine, one compiled component and one pre-instantiated `ProxyPre`,
//! built once at startup; a fresh `Store` (and instance) per request, as Spin does.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Result, bail};
// wasmtime has its own error type; its Context keeps the chain and `?` turns it into anyhow.
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::error::Context as _;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits,
    StoreLimitsBuilder,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::outbound::{AllowList, OutboundPolicy};
use crate::variables::ComponentVariables;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "ion:mentoring/host-extensions",
    });
}

use bindings::fermyon::spin::variables;

/// Largest linear memory one request's instance may grow to.
const MAX_MEMORY_BYTES: usize = 128 * 1024 * 1024;

/// Per-request store state.
pub struct RequestState {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    outbound: OutboundPolicy,
    variables: Arc<ComponentVariables>,
    limits: StoreLimits,
}

impl WasiView for RequestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for RequestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

impl variables::Host for RequestState {
    fn get(&mut self, name: String) -> Result<String, variables::Error> {
        let valid = name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && name.starts_with(|c: char| c.is_ascii_lowercase());
        if !valid {
            return Err(variables::Error::InvalidName(name));
        }
        self.variables
            .get(&name)
            .map(str::to_owned)
            .ok_or(variables::Error::Undefined(name))
    }
}

/// Everything needed to run one request, shared by all requests.
pub struct Runtime {
    pre: ProxyPre<RequestState>,
    variables: Arc<ComponentVariables>,
    allowed: Arc<AllowList>,
}

impl Runtime {
    /// Builds the engine (pooling allocator sized for `max_instances`), compiles the component
    /// and links it against WASI, wasi:http and Spin variables.
    pub fn new(
        component_path: &Path,
        max_instances: u32,
        variables: ComponentVariables,
        allowed: AllowList,
    ) -> Result<Runtime> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(max_instances)
            .total_core_instances(max_instances.saturating_mul(8))
            .total_memories(max_instances.saturating_mul(2))
            .total_tables(max_instances.saturating_mul(4))
            .total_stacks(max_instances)
            .max_memory_size(MAX_MEMORY_BYTES);
        let mut config = Config::new();
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).context("cannot create the wasmtime engine")?;

        if !component_path.exists() {
            bail!(
                "component file {} not found: build it with `cargo build --target wasm32-wasip2 --release -p ion-mentoring`",
                component_path.display()
            );
        }
        let component = Component::from_file(&engine, component_path)
            .with_context(|| format!("cannot load component {}", component_path.display()))?;

        let mut linker = Linker::<RequestState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        variables::add_to_linker::<_, HasSelf<RequestState>>(&mut linker, |state| state)?;

        let pre = ProxyPre::new(linker.instantiate_pre(&component).with_context(|| {
            format!(
                "component {} needs imports ion-host does not provide",
                component_path.display()
            )
        })?)
        .context("the component does not export wasi:http/incoming-handler")?;

        Ok(Runtime {
            pre,
            variables: Arc::new(variables),
            allowed: Arc::new(allowed),
        })
    }

    pub fn pre(&self) -> &ProxyPre<RequestState> {
        &self.pre
    }

    /// A fresh store for one request.
    pub fn new_store(&self) -> Store<RequestState> {
        let wasi = WasiCtx::builder().inherit_stdout().inherit_stderr().build();
        let state = RequestState {
            table: ResourceTable::new(),
            wasi,
            http: WasiHttpCtx::new(),
            outbound: OutboundPolicy {
                allowed: self.allowed.clone(),
            },
            variables: self.variables.clone(),
            limits: StoreLimitsBuilder::new()
                .memory_size(MAX_MEMORY_BYTES)
                .instances(64)
                .build(),
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|state| &mut state.limits);
        store
    }
}
