//! The wasmtime side: the engines, the compiled component and its pre-instantiated `ProxyPre`,
//! built once at startup; instances that serve one request at a time and are reused while
//! their requests end well ([`instance`], [`idle`]).

mod idle;
mod instance;

pub use idle::{IdleInstances, ReusePolicy};
pub use instance::GuestInstance;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Result, anyhow, bail};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
// wasmtime has its own error type; its Context keeps the chain and `?` turns it into anyhow.
use wasmtime::error::Context as _;
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Precompiled,
    Store,
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
    /// Set when the instance runs in the warm pool; gives the place back when the store drops.
    warm: Option<WarmLease>,
}

/// A place in the warm pool, held for one request.
struct WarmLease(Arc<AtomicU32>);

impl Drop for WarmLease {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
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

/// Instances served from the warm pool at once. A warm slot keeps the pages its last instance
/// touched and resets them in place (`memset`), so a request there takes no page faults and no
/// `madvise`; requests beyond this many at once use the burst pool, whose slots go back to the
/// kernel. What a burst can leave resident is bounded by twice this (see `warm_pool`) times
/// `WARM_KEEP_RESIDENT`. Two: the instances kept idle between bursts (`ReusePolicy`) are
/// warm ones; every other instance is reused for request after request wherever it lives, so
/// more warm slots saved no CPU and each kept ~0.5 MiB resident after a burst.
const WARM_INSTANCES: u32 = 2;

/// Most memory kept resident per warm slot (per linear memory, table and stack): a request
/// touches ~100–300 KiB of linear memory; only the pages it touched are kept (PAGEMAP_SCAN).
const WARM_KEEP_RESIDENT: usize = 1024 * 1024;

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
pub struct Runtime {
    /// Small pool of slots kept resident: every request while it has room.
    warm: ProxyPre<RequestState>,
    warm_in_use: Arc<AtomicU32>,
    warm_capacity: u32,
    /// Pool sized for `limits.max_instances`, returning its memory to the kernel: the overflow.
    burst: ProxyPre<RequestState>,
    /// Instances waiting for their next request.
    idle: Arc<IdleInstances>,
    variables: Arc<ComponentVariables>,
    outbound: Arc<Outbound>,
    stores: Arc<Stores>,
    limits: Limits,
}

impl Runtime {
    /// Builds the two engines (a warm pool of `WARM_INSTANCES` and a burst pool sized for
    /// `limits.max_instances`), loads the component into both (compiling a `.wasm` once, or
    /// loading a `.cwasm` without compiling) and links it against WASI, wasi:http, Spin
    /// variables and the key-value interfaces. It has no key-value store until
    /// [`Runtime::set_stores`].
    pub fn new(
        component_path: &Path,
        limits: Limits,
        reuse: ReusePolicy,
        variables: ComponentVariables,
        outbound: Outbound,
    ) -> Result<Runtime> {
        let warm_capacity = WARM_INSTANCES.min(limits.max_instances);
        let warm_config = serving_config(warm_pool(warm_capacity, &limits), false);
        let burst_config = serving_config(burst_pool(limits.max_instances, &limits), true);
        ensure_exists(component_path)?;
        let (warm, burst) = if is_wasm(component_path)? {
            // Compiled once, then copied into the second engine.
            let warm_engine = new_engine(&warm_config)?;
            let burst_engine = new_engine(&burst_config)?;
            let warm_component = load_component(&warm_engine, component_path)?;
            let burst_component = load_again(&burst_engine, &warm_component, component_path)?;
            (
                link(&warm_engine, &warm_component, component_path)?,
                link(&burst_engine, &burst_component, component_path)?,
            )
        } else {
            // A `.cwasm` loads into each engine on its own: the burst engine is set up on a
            // second thread meanwhile, since startup is what a cold start waits for.
            std::thread::scope(|scope| {
                let burst = scope.spawn(|| serving_engine(&burst_config, component_path));
                let warm = serving_engine(&warm_config, component_path)?;
                let burst = burst
                    .join()
                    .map_err(|_| anyhow!("setting up the burst pool panicked"))??;
                Ok::<_, anyhow::Error>((warm, burst))
            })?
        };
        Ok(Runtime {
            warm,
            warm_in_use: Arc::new(AtomicU32::new(0)),
            warm_capacity,
            burst,
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

    /// Both engines, for the epoch ticker.
    pub fn engines(&self) -> [&Engine; 2] {
        [self.warm.engine(), self.burst.engine()]
    }

    /// The idle instances, to take back finished ones and to trim.
    pub fn idle(&self) -> &Arc<IdleInstances> {
        &self.idle
    }

    /// An instance for `served`: the most recently used idle one, or a new one (in the warm
    /// pool while it has room, else in the burst pool). Its output becomes `served`'s log
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
        let warm = self.lease_warm();
        let pre = if warm.is_some() {
            &self.warm
        } else {
            &self.burst
        };
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
            warm,
        };
        let mut store = Store::new(pre.engine(), state);
        store.limiter(|state| &mut state.limits);
        store.epoch_deadline_trap();
        GuestInstance {
            store,
            guest: instance::Guest::Unstarted(pre.clone()),
            requests: 0,
        }
    }

    fn lease_warm(&self) -> Option<WarmLease> {
        self.warm_in_use
            .try_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.warm_capacity).then_some(n + 1)
            })
            .ok()
            .map(|_| WarmLease(self.warm_in_use.clone()))
    }
}

fn new_engine(config: &Config) -> Result<Engine> {
    Ok(Engine::new(config).context("cannot create the wasmtime engine")?)
}

/// An engine with `config`, serving the precompiled component at `path`.
fn serving_engine(config: &Config, path: &Path) -> Result<ProxyPre<RequestState>> {
    let engine = new_engine(config)?;
    let component = load_component(&engine, path)?;
    link(&engine, &component, path)
}

/// The warm pool: slots keep what their last instance touched and reset it in place. It has
/// room for twice the `n` instances leased to requests: a store drops its data (and so its
/// lease) before it frees its slots, so a new request can briefly meet a slot not freed yet.
fn warm_pool(n: u32, limits: &Limits) -> PoolingAllocationConfig {
    let mut pool = pool_for(n.saturating_mul(2), limits);
    pool.max_unused_warm_slots(n.saturating_mul(4))
        .linear_memory_keep_resident(WARM_KEEP_RESIDENT)
        .table_keep_resident(WARM_KEEP_RESIDENT)
        // Reset only the pages that were touched (Linux 6.7+; else the lowest addresses).
        .pagemap_scan(Enabled::Auto);
    pool
}

/// The burst pool: every slot goes back to the kernel when its instance ends, in batches
/// (fewer `madvise` calls and TLB shootdowns), so memory comes back after a burst.
fn burst_pool(n: u32, limits: &Limits) -> PoolingAllocationConfig {
    let mut pool = pool_for(n, limits);
    pool.decommit_batch_size(DECOMMIT_BATCH);
    pool
}

fn pool_for(n: u32, limits: &Limits) -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(8))
        .total_memories(n.saturating_mul(2))
        .total_tables(n.saturating_mul(4))
        .total_stacks(n)
        .max_memory_size(limits.max_memory_bytes);
    pool
}

/// `base_config` with a pool. `zero_stacks`: return each async stack's pages to the kernel
/// when its instance ends (else a burst leaves every stack it touched resident).
fn serving_config(pool: PoolingAllocationConfig, zero_stacks: bool) -> Config {
    let mut config = base_config();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config.async_stack_zeroing(zero_stacks);
    config
}

/// The component for a second engine with the same settings: a `.cwasm` is mapped again; a
/// `.wasm` compiled at startup is copied over rather than compiled twice.
fn load_again(engine: &Engine, loaded: &Component, path: &Path) -> Result<Component> {
    if is_wasm(path)? {
        let bytes = loaded
            .serialize()
            .context("cannot copy the compiled component")?;
        // SAFETY: the bytes come from `serialize` of this ion-host's own compilation, with
        // the same engine settings.
        Ok(unsafe { Component::deserialize(engine, &bytes) }
            .context("cannot copy the compiled component")?)
    } else {
        load_component(engine, path)
    }
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
