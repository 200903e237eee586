//! The wasmtime side: the engine, the compiled component and its pre-instantiated `ProxyPre`,
//! built once at startup; instances that serve one request at a time and are reused while
//! their requests end well ([`instance`], [`idle`]).

mod idle;
mod instance;

pub use idle::{IdleInstances, ReusePolicy};
pub use instance::GuestInstance;

use std::path::Path;
use std::sync::Arc;

use anyhow::{Result, bail};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
// wasmtime has its own error type; its Context keeps the chain and `?` turns it into anyhow.
use wasmtime::error::Context as _;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Precompiled, Store,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::kv::host::{KvCtx, KvView};
use crate::kv::{Stores, Unsynced};
use crate::logging::{GuestOutput, RequestContext};
use crate::outbound::{Outbound, OutboundHooks};
use crate::variables::ComponentVariables;

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "ion:mentoring/host-extensions",
        // Store calls wait on disk or network: async, so a slow store never blocks a worker.
        imports: {
            "fermyon:spin/key-value": async,
            "wasi:keyvalue": async,
        },
        with: {
            "fermyon:spin/key-value.store": crate::kv::host::SpinStore,
            "wasi:keyvalue/store.bucket": crate::kv::host::Bucket,
            "wasi:keyvalue/atomics.cas": crate::kv::host::Cas,
        },
    });
}

use bindings::fermyon::spin::variables;

/// An instance's store state; what belongs to the request it serves is switched per request
/// (see [`instance`]).
pub struct RequestState {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    outbound: OutboundHooks,
    variables: Arc<ComponentVariables>,
    kv: KvCtx,
    limits: instance::InstanceLimits,
    /// The guest's stdout and stderr, pointed at the request being served.
    stdout: GuestOutput,
    stderr: GuestOutput,
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
        if !crate::manifest::is_valid_variable_name(&name) {
            return Err(variables::Error::InvalidName(name));
        }
        self.variables
            .get(&name)
            .map(str::to_owned)
            .ok_or(variables::Error::Undefined(name))
    }
}

/// Limits applied to every request's instance.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Instances alive at once; sizes the pooling allocator.
    pub max_instances: u32,
    /// Largest linear memory of one instance.
    pub max_memory_bytes: usize,
    /// Wall-clock deadline for one request, in epoch ticks (the epoch advances with real time).
    pub deadline_ticks: u64,
}

/// Slot decommits done together in one pass.
const DECOMMIT_BATCH: usize = 16;

/// How often the epoch advances: the granularity of the request deadline.
pub const EPOCH_TICK: std::time::Duration = std::time::Duration::from_millis(10);

/// CPU features every x86-64 server of the last decade has (x86-64-v2); a `.cwasm` compiled
/// for them loads on any such machine, not only on the one that compiled it.
const PORTABLE_X86_64_FEATURES: &[&str] = &[
    "has_sse3",
    "has_ssse3",
    "has_sse41",
    "has_sse42",
    "has_popcnt",
];

/// Engine settings shared by serving and `compile`: a `.cwasm` only loads into an engine whose
/// settings match the one that produced it.
fn base_config() -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config
}

/// `ion-host compile`: precompiles a component for this wasmtime version and a portable CPU baseline.
pub fn compile(input: &Path, output: &Path) -> Result<()> {
    let mut config = base_config();
    if cfg!(target_arch = "x86_64") {
        config.target("x86_64-unknown-linux-gnu")?;
        for flag in PORTABLE_X86_64_FEATURES {
            // SAFETY: these are valid Cranelift x86-64 ISA flags; the CPU that loads the
            // result is checked for them by wasmtime before any code runs.
            unsafe {
                config.cranelift_flag_enable(flag);
            }
        }
    }
    let engine = Engine::new(&config).context("cannot create the wasmtime engine")?;
    let wasm = std::fs::read(input).with_context(|| format!("cannot read {}", input.display()))?;
    let compiled = engine
        .precompile_component(&wasm)
        .with_context(|| format!("cannot compile {}", input.display()))?;
    std::fs::write(output, compiled)
        .with_context(|| format!("cannot write {}", output.display()))?;
    Ok(())
}

/// Everything needed to run one request, shared by all requests.
///
/// One engine and one pool of instance slots, sized for `limits.max_instances`; a slot's memory
/// goes back to the kernel when its instance ends. Instances are reused request after request
/// ([`IdleInstances`]), so a slot is faulted in once per instance, not once per request. (A
/// second engine whose slots stayed resident served the first instances at once until this
/// reuse made it redundant: it saved no CPU and its copy of the component's code kept ~2.7 MiB
/// resident.)
pub struct Runtime {
    pre: ProxyPre<RequestState>,
    /// Instances waiting for their next request.
    idle: Arc<IdleInstances>,
    variables: Arc<ComponentVariables>,
    outbound: Arc<Outbound>,
    stores: Arc<Stores>,
    limits: Limits,
}

impl Runtime {
    /// Builds the engine and its pool of `limits.max_instances` slots, loads the component
    /// (compiling a `.wasm`, or loading a `.cwasm` without compiling) and links it against
    /// WASI, wasi:http, Spin variables and the key-value interfaces. It has no key-value store
    /// until [`Runtime::set_stores`].
    pub fn new(
        component_path: &Path,
        limits: Limits,
        reuse: ReusePolicy,
        variables: ComponentVariables,
        outbound: Outbound,
    ) -> Result<Runtime> {
        let engine =
            Engine::new(&serving_config(&limits)).context("cannot create the wasmtime engine")?;
        let component = load_component(&engine, component_path)?;
        Ok(Runtime {
            pre: link(&engine, &component, component_path)?,
            idle: Arc::new(IdleInstances::new(reuse)),
            variables: Arc::new(variables),
            outbound: Arc::new(outbound),
            stores: Arc::new(Stores::none()),
            limits,
        })
    }

    /// The key-value stores that requests from now on may open.
    pub fn set_stores(&mut self, stores: Arc<Stores>) {
        self.stores = stores;
    }

    /// The engine, for the epoch ticker.
    pub fn engine(&self) -> &Engine {
        self.pre.engine()
    }

    /// The idle instances, to take back finished ones and to trim.
    pub fn idle(&self) -> &Arc<IdleInstances> {
        &self.idle
    }

    /// An instance for `served`: the most recently used idle one, or a new one. Its output becomes `served`'s log
    /// entries, its outbound calls carry `served`'s id and trace, its store calls are noted in
    /// `unsynced`, and its deadline starts now.
    pub fn instance(&self, served: Arc<RequestContext>, unsynced: Arc<Unsynced>) -> GuestInstance {
        let mut instance = self
            .idle
            .take()
            .unwrap_or_else(|| self.new_instance(served.clone()));
        instance.begin(served, unsynced, self.limits.deadline_ticks);
        instance
    }

    fn new_instance(&self, served: Arc<RequestContext>) -> GuestInstance {
        let stdout = GuestOutput::stdout(served.clone());
        let stderr = GuestOutput::stderr(served.clone());
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .build();
        let state = RequestState {
            table: ResourceTable::new(),
            wasi,
            http: WasiHttpCtx::new(),
            outbound: OutboundHooks {
                outbound: self.outbound.clone(),
                served,
            },
            variables: self.variables.clone(),
            kv: KvCtx::new(self.stores.clone()),
            limits: instance::InstanceLimits::new(self.limits.max_memory_bytes),
            stdout,
            stderr,
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|state| &mut state.limits);
        store.epoch_deadline_trap();
        GuestInstance {
            store,
            guest: instance::Guest::Unstarted(self.pre.clone()),
            requests: 0,
        }
    }
}

/// The pool: room for `limits.max_instances`; every slot goes back to the kernel when its
/// instance ends, in batches (fewer `madvise` calls and TLB shootdowns), so memory comes back
/// after a burst.
fn pool(limits: &Limits) -> PoolingAllocationConfig {
    let n = limits.max_instances;
    let mut pool = PoolingAllocationConfig::default();
    pool.decommit_batch_size(DECOMMIT_BATCH)
        .total_component_instances(n)
        .total_core_instances(n.saturating_mul(8))
        .total_memories(n.saturating_mul(2))
        .total_tables(n.saturating_mul(4))
        .total_stacks(n)
        .max_memory_size(limits.max_memory_bytes);
    pool
}

/// `base_config` with the pool. Each async stack's pages go back to the kernel when its
/// instance ends (else a burst leaves every stack it touched resident).
fn serving_config(limits: &Limits) -> Config {
    let mut config = base_config();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool(limits)));
    config.async_stack_zeroing(true);
    config
}

/// Links the component against WASI, wasi:http, Spin variables and the key-value interfaces,
/// and pre-instantiates it.
fn link(
    engine: &Engine,
    component: &Component,
    component_path: &Path,
) -> Result<ProxyPre<RequestState>> {
    let mut linker = Linker::<RequestState>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    variables::add_to_linker::<_, HasSelf<RequestState>>(&mut linker, |state| state)?;
    crate::kv::host::add_to_linker(&mut linker, |state| KvView {
        table: &mut state.table,
        ctx: &mut state.kv,
    })?;
    Ok(
        ProxyPre::new(linker.instantiate_pre(component).with_context(|| {
            format!(
                "component {} needs imports ion-host does not provide",
                component_path.display()
            )
        })?)
        .context("the component does not export wasi:http/incoming-handler")?,
    )
}

/// Whether the file starts with the WebAssembly magic (a `.wasm`, not a `.cwasm`).
fn is_wasm(path: &Path) -> Result<bool> {
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(&magic == b"\0asm")
}

/// Fails with how to build the component when it is missing.
fn ensure_exists(path: &Path) -> Result<()> {
    if !path.exists() {
        bail!(
            "component file {} not found: build it with `cargo build --target wasm32-wasip2 --release -p ion-mentoring`",
            path.display()
        );
    }
    Ok(())
}

/// Loads a `.wasm` (compiling it) or a `.cwasm` from `ion-host compile` (no compilation).
fn load_component(engine: &Engine, path: &Path) -> Result<Component> {
    ensure_exists(path)?;
    // A .wasm starts with the wasm magic; anything else must be a precompiled artifact.
    let wasm = is_wasm(path)?;
    let kind = if wasm {
        None
    } else {
        Engine::detect_precompiled_file(path).unwrap_or(None)
    };
    match kind {
        Some(Precompiled::Component) => {
            // SAFETY: the file is trusted input produced by `ion-host compile` (the image
            // builds it); wasmtime checks its version, settings and CPU features before use.
            let component = unsafe { Component::deserialize_file(engine, path) }.with_context(|| {
                format!(
                    "cannot load precompiled component {}: it must come from `ion-host compile` of \
                     this ion-host build ({})",
                    path.display(),
                    env!("CARGO_PKG_VERSION")
                )
            })?;
            Ok(component)
        }
        Some(Precompiled::Module) => bail!(
            "{} is a precompiled core module, not a component",
            path.display()
        ),
        None if !wasm => bail!(
            "{} is neither a WebAssembly component nor a .cwasm from `ion-host compile`",
            path.display()
        ),
        None => Ok(Component::from_file(engine, path)
            .with_context(|| format!("cannot load component {}", path.display()))?),
    }
}
