//! The process-wide runtime: one engine, one linker, the epoch ticker and the
//! compilation cache.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::bindings;
use crate::breaker::BreakerSettings;
use crate::cache::ArtifactCache;
use crate::sandbox::Sandbox;
use crate::slots::InstanceSlots;
use crate::{LoadError, Plugin, contract};

/// Settings of the process-wide [`Runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    /// Where compiled plugins are cached (`None`: compile on every load).
    /// The directory must be as trusted as the Weir binary itself: its files are
    /// loaded as native code.
    pub cache_dir: Option<PathBuf>,
    /// How often the epoch advances. CPU deadlines are whole ticks, so this is
    /// the precision of [`crate::Limits::cpu_time`]; each tick costs one atomic
    /// increment, and each loop back-edge in plugin code one load.
    pub epoch_tick: Duration,
    /// Plugin instances alive at once (one per batch in flight): the size of the
    /// pooling allocator. Beyond it, a call waits for an instance to end.
    pub max_concurrent_instances: u32,
    /// The largest memory limit any binding may set; reserves address space
    /// (not memory) per pool slot.
    pub max_memory_bytes: usize,
    /// When a plugin version is taken out of service for faulting.
    pub breaker: BreakerSettings,
    /// Write `/tmp/perf-<pid>.map` so `perf report` names plugin functions
    /// (`wasm[0]::function[N]`, or their names when the plugin keeps them).
    pub perf_map: bool,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        Self {
            cache_dir: None,
            epoch_tick: Duration::from_millis(5),
            max_concurrent_instances: 64,
            max_memory_bytes: 256 << 20,
            breaker: BreakerSettings::default(),
            perf_map: false,
        }
    }
}

/// The plugin runtime. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<RuntimeInner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("settings", &self.inner.settings)
            .finish()
    }
}

pub(crate) struct RuntimeInner {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<Sandbox>,
    pub(crate) settings: RuntimeSettings,
    cache: Option<ArtifactCache>,
    ticker_stop: Arc<AtomicBool>,
    pub(crate) slots: InstanceSlots,
}

impl Drop for RuntimeInner {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    pub fn new(settings: RuntimeSettings) -> Result<Self, LoadError> {
        let mut pool = PoolingAllocationConfig::default();
        // Each plugin instance is one component instance holding a few core
        // instances (the guest module and WASI adapter shims), one memory and
        // one table per core module at most.
        // Zero would make every call wait for a slot that never comes.
        let slots = settings.max_concurrent_instances.max(1);
        pool.total_component_instances(slots)
            .total_core_instances(slots * 8)
            .total_memories(slots * 2)
            .total_tables(slots * 8)
            .total_stacks(slots)
            .max_memory_size(settings.max_memory_bytes)
            // A batch's instance starts from a reset slot. Resetting the first
            // pages with memset instead of madvise keeps them resident, so the
            // next batch does not page-fault its heap back in. Weir plugins are
            // built with a 256 KiB stack (plugins/.cargo/config.toml), so their
            // stack, data and batch heap fit in 512 KiB. Measured on 200,000
            // events: 439 page faults in all at 512 KiB, 24,409 at 256 KiB.
            // Where the kernel has PAGEMAP_SCAN (Linux 6.7+), only the pages a
            // batch wrote are reset, so a larger resident window costs nothing
            // for small plugins and spares bigger heaps (Python, JavaScript
            // plugins) their page faults. Measured with the plugin bench
            // (transaction, batches of 100): 1.94-1.96 µs per event before,
            // 1.86-1.93 with it. Older kernels memset the whole window.
            .linear_memory_keep_resident(2 << 20)
            .table_keep_resident(64 << 10)
            .pagemap_scan(wasmtime::Enabled::Auto);

        let mut config = Config::new();
        config
            .wasm_component_model(true)
            // CPU limits: cheaper than fuel (~15% vs ~25% overhead measured here).
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        if settings.perf_map {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(LoadError::Wasmtime)?;

        let mut linker = Linker::new(&engine);
        // wasm32-wasip2 guests import WASI even when they do no I/O. Each store
        // gets an empty WASI context: no files, no env, no network, a frozen clock.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(LoadError::Wasmtime)?;
        crate::wasi_sync::link_over_blocking_calls(&mut linker).map_err(LoadError::Wasmtime)?;
        // Every contract version's imports: a plugin links against its own.
        bindings::v0_1::EnricherPlugin::add_to_linker::<Sandbox, HasSelf<Sandbox>>(
            &mut linker,
            |s| s,
        )
        .map_err(LoadError::Wasmtime)?;
        bindings::v0_2::EnricherPlugin::add_to_linker::<Sandbox, HasSelf<Sandbox>>(
            &mut linker,
            |s| s,
        )
        .map_err(LoadError::Wasmtime)?;

        let cache = match &settings.cache_dir {
            Some(dir) => Some(ArtifactCache::open(dir, &engine)?),
            None => None,
        };

        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(engine.clone(), settings.epoch_tick, ticker_stop.clone())
            .map_err(LoadError::Ticker)?;

        Ok(Self {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                settings,
                cache,
                ticker_stop,
                slots: InstanceSlots::new(slots),
            }),
        })
    }

    /// Loads a plugin from its component bytes: compiles it (or loads the cached
    /// artifact), checks it against the contract, pre-instantiates it and asks
    /// it to describe itself.
    pub fn load(&self, component: &[u8]) -> Result<Plugin, LoadError> {
        let sha256 = hex_sha256(component);
        let compiled = self.compile(component, &sha256)?;
        let contract = contract::check(&self.inner.engine, &compiled)?;
        Plugin::prepare(self.clone(), compiled, contract, sha256, component.len())
    }

    /// Loads a plugin from a `.wasm` file.
    pub fn load_file(&self, path: impl Into<PathBuf>) -> Result<Plugin, LoadError> {
        let path = path.into();
        let bytes = std::fs::read(&path).map_err(|source| LoadError::Read { path, source })?;
        self.load(&bytes)
    }

    fn compile(&self, bytes: &[u8], sha256: &str) -> Result<Component, LoadError> {
        check_component_preamble(bytes)?;
        if let Some(cache) = &self.inner.cache
            && let Some(component) = cache.load(&self.inner.engine, sha256)
        {
            return Ok(component);
        }
        let started = std::time::Instant::now();
        let component =
            Component::new(&self.inner.engine, bytes).map_err(|e| LoadError::NotAComponent {
                reason: format!("{e:#}"),
            })?;
        tracing::debug!(
            sha256,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "compiled plugin"
        );
        if let Some(cache) = &self.inner.cache {
            cache.store(sha256, &component)?;
        }
        Ok(component)
    }
}

fn check_component_preamble(bytes: &[u8]) -> Result<(), LoadError> {
    const MAGIC: &[u8] = b"\0asm";
    const CORE_MODULE_VERSION: [u8; 4] = [1, 0, 0, 0];
    if !bytes.starts_with(MAGIC) || bytes.len() < 8 {
        return Err(LoadError::NotAComponent {
            reason: "the file does not start with the WebAssembly magic bytes".into(),
        });
    }
    if bytes[4..8] == CORE_MODULE_VERSION {
        return Err(LoadError::NotAComponent {
            reason: "it is a core WebAssembly module, not a component".into(),
        });
    }
    Ok(())
}

/// Without a ticker, deadlines never fire and a looping plugin would hang its
/// batch, so a runtime without one is not started.
fn spawn_epoch_ticker(
    engine: Engine,
    tick: Duration,
    stop: Arc<AtomicBool>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("weir-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                engine.increment_epoch();
            }
        })?;
    Ok(())
}

pub(crate) fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
