//! The wasmtime side: one engine, one compiled component and one pre-instantiated `ProxyPre`,
//! built once at startup; a fresh `Store` (and instance) per request, as Spin does.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Result, bail};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
// wasmtime has its own error type; its Context keeps the chain and `?` turns it into anyhow.
use wasmtime::error::Context as _;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Precompiled, Store,
    StoreLimits, StoreLimitsBuilder,
};
use wasmtime_wasi::cli::StdoutStream;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::outbound::{Outbound, OutboundHooks};
use crate::variables::ComponentVariables;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "ion:mentoring/host-extensions",
    });
}

use bindings::fermyon::spin::variables;

/// Per-request store state.
pub struct RequestState {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    outbound: OutboundHooks,
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
    /// CPU deadline for one request, in epoch ticks.
    pub deadline_ticks: u64,
}

/// Slot decommits done together in one pass.
const DECOMMIT_BATCH: usize = 16;

/// How often the epoch advances: the granularity of the CPU deadline.
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
    pre: ProxyPre<RequestState>,
    variables: Arc<ComponentVariables>,
    outbound: Arc<Outbound>,
    limits: Limits,
}

impl Runtime {
    /// Builds the engine (pooling allocator sized for `limits.max_instances`), loads the
    /// component (compiling a `.wasm`, or loading a `.cwasm` without compiling) and links it
    /// against WASI, wasi:http and Spin variables.
    pub fn new(
        component_path: &Path,
        limits: Limits,
        variables: ComponentVariables,
        outbound: Outbound,
    ) -> Result<Runtime> {
        let n = limits.max_instances;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(8))
            .total_memories(n.saturating_mul(2))
            .total_tables(n.saturating_mul(4))
            .total_stacks(n)
            .max_memory_size(limits.max_memory_bytes)
            // Slot memory is returned to the kernel in batches: fewer madvise calls and TLB
            // shootdowns per fresh instance. (Keeping slots resident instead is faster still,
            // but then every slot a burst touched stays resident: ~1 GiB after 1000 at once.)
            .decommit_batch_size(DECOMMIT_BATCH);
        let mut config = base_config();
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).context("cannot create the wasmtime engine")?;
        let component = load_component(&engine, component_path)?;

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
            outbound: Arc::new(outbound),
            limits,
        })
    }

    pub fn pre(&self) -> &ProxyPre<RequestState> {
        &self.pre
    }

    pub fn engine(&self) -> &Engine {
        self.pre.engine()
    }

    /// A fresh store for one request.
    pub fn new_store(
        &self,
        stdout: impl StdoutStream + 'static,
        stderr: impl StdoutStream + 'static,
    ) -> Store<RequestState> {
        let wasi = WasiCtx::builder().stdout(stdout).stderr(stderr).build();
        let state = RequestState {
            table: ResourceTable::new(),
            wasi,
            http: WasiHttpCtx::new(),
            outbound: OutboundHooks(self.outbound.clone()),
            variables: self.variables.clone(),
            limits: StoreLimitsBuilder::new()
                .memory_size(self.limits.max_memory_bytes)
                .instances(64)
                .build(),
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|state| &mut state.limits);
        store.set_epoch_deadline(self.limits.deadline_ticks);
        store.epoch_deadline_trap();
        store
    }
}

/// Loads a `.wasm` (compiling it) or a `.cwasm` from `ion-host compile` (no compilation).
fn load_component(engine: &Engine, path: &Path) -> Result<Component> {
    if !path.exists() {
        bail!(
            "component file {} not found: build it with `cargo build --target wasm32-wasip2 --release -p ion-mentoring`",
            path.display()
        );
    }
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .with_context(|| format!("cannot read {}", path.display()))?;
    // A .wasm starts with the wasm magic; anything else must be a precompiled artifact.
    let kind = if &magic == b"\0asm" {
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
        None if &magic != b"\0asm" => bail!(
            "{} is neither a WebAssembly component nor a .cwasm from `ion-host compile`",
            path.display()
        ),
        None => Ok(Component::from_file(engine, path)
            .with_context(|| format!("cannot load component {}", path.display()))?),
    }
}
