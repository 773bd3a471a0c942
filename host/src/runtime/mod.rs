//! The component runtime: one engine, one `InstancePre` per plugin, a fresh
//! instance per request. A plugin is a plinth plugin or a standard
//! `wasi:http` proxy component (see [`proxy`]); both run in the same store,
//! limits and grants.
//!
//! Instances come from the pooling allocator, sized so that every in-flight
//! request can have one. A request's time in the guest is bounded twice: the
//! epoch callback traps a guest that computes past its deadline (yielding to
//! tokio every tick until then, so a busy guest never holds a worker
//! thread), and a tokio timeout ends one that waits in a host call.

pub mod bindings;
pub mod cache;
pub mod epoch;
pub mod grants;
pub mod host;
pub mod migrating;
pub mod outgoing;
mod output;
pub mod proxy;
pub mod state;
pub mod worker;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::histogram::Histogram;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap, UpdateDeadline};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::audit::Actor;
use crate::config::{Grant, MAX_PLUGIN_MEMORY, PluginConfig};
use crate::metrics::{FailureLabels, Metrics, PluginLabels};
use crate::routes::Route;
use crate::runtime::bindings::external_signing::ExternalSigningBindingsPre;
pub use crate::runtime::bindings::external_signing::external_sign_in::{Identity, Refusal};
use crate::runtime::bindings::{
    PluginBindingsPre, assets, audit, blobs, events, jobs, kv, log, messages, outbox, passwords, principals, schemas,
    sessions, settings, signing, types, webhooks,
};
use crate::runtime::host::types::{RequestBody, RequestData, ResponseData};
use crate::runtime::state::{HostState, PluginContext, RequestMeta, SessionEffect};
use crate::storage::Storage;

/// How often the epoch advances; the granularity of plugin deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);
/// Core instances, memories and tables one component instance may use (a
/// Rust wasip2 component has one core module; a componentize-py one, its
/// interpreter and libraries linked dynamically, has 14).
const CORE_INSTANCES_PER_COMPONENT: u32 = 32;
/// Most bytes of a freed slot's memory (and tables) reset in place instead of
/// released with `madvise`, which under concurrency means TLB shootdowns
/// across cores. With `PAGEMAP_SCAN` only the pages the guest dirtied are
/// reset, so this bounds the work and the memory a slot keeps, not the cost.
const KEEP_RESIDENT: usize = 128 * 1024;
/// Memories (and tables) per component instance slot.
const MEMORIES_PER_COMPONENT: u32 = 2;
/// Most routes one plugin may declare, and the longest route text.
const MAX_DECLARED_ROUTES: usize = 256;
const MAX_ROUTE_BYTES: usize = 512;
/// Epoch ticks `routes` may run at load before it is stopped (about 1 s).
const ROUTES_DEADLINE_TICKS: u64 = 200;
/// Memory `routes` may use at load.
const ROUTES_MEMORY: usize = 16 << 20;

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The component file could not be read.
    #[error("plugin `{plugin}`: cannot read component `{path}`: {reason}")]
    Read {
        /// Plugin name.
        plugin: String,
        /// File.
        path: String,
        /// Why.
        reason: String,
    },
    /// The file is not a valid component for this engine.
    #[error("plugin `{plugin}`: `{path}` is not a loadable wasm component: {reason}")]
    Compile {
        /// Plugin name.
        plugin: String,
        /// File.
        path: String,
        /// Why.
        reason: String,
    },
    /// Its imports or exports do not fit its grants.
    #[error("plugin `{plugin}`: component {problem}")]
    Grants {
        /// Plugin name.
        plugin: String,
        /// Which import or export.
        problem: grants::GrantError,
    },
    /// The routes it declares could not be read or are malformed.
    #[error("plugin `{plugin}`: {reason}")]
    Routes {
        /// Plugin name.
        plugin: String,
        /// Which route and why.
        reason: String,
    },
    /// The migration steps it declares could not be read or are malformed.
    #[error("plugin `{plugin}`: {reason}")]
    Migrations {
        /// Plugin name.
        plugin: String,
        /// Why.
        reason: String,
    },
    /// Linking failed (a type mismatch in an allowed interface).
    #[error("plugin `{plugin}`: cannot link: {reason}")]
    Link {
        /// Plugin name.
        plugin: String,
        /// Why.
        reason: String,
    },
}

/// How a request to a plugin failed; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum PluginFailure {
    /// The guest trapped (a bug in the plugin).
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// The guest ran past its deadline.
    #[error("plugin ran past its {0:?} deadline")]
    Deadline(Duration),
    /// The guest tried to grow memory past its cap.
    #[error("plugin reached its memory cap of {0} bytes")]
    MemoryCap(usize),
    /// A write could not be made durable, so the response is withheld.
    #[error("storage flush failed: {0}")]
    Flush(String),
}

/// The SHA-256 (hex) of a component's bytes: its identity across reloads.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn read_component(plugin: &str, path: &Path) -> Result<Vec<u8>, LoadError> {
    tokio::fs::read(path).await.map_err(|e| LoadError::Read {
        plugin: plugin.to_owned(),
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// The engine and what every plugin shares.
pub struct Runtime {
    /// One engine for all plugins.
    engine: Engine,
    /// Compiled components on disk; none for `check` and `inspect`.
    cache: Option<Arc<cache::CompiledCache>>,
    /// Keeps guests' deadlines moving while they run.
    ticker: epoch::EpochTicker,
}

impl Runtime {
    /// An engine whose pool holds `max_instances` concurrent instances,
    /// caching compiled components in `cache_dir` when given.
    pub fn new(max_instances: u32, cache_dir: Option<std::path::PathBuf>) -> anyhow::Result<Self> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(max_instances)
            .total_core_instances(max_instances * CORE_INSTANCES_PER_COMPONENT)
            .total_memories(max_instances * MEMORIES_PER_COMPONENT)
            .total_tables(max_instances * MEMORIES_PER_COMPONENT)
            .total_stacks(max_instances)
            .max_memories_per_component(MEMORIES_PER_COMPONENT)
            .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
            .max_memory_size(MAX_PLUGIN_MEMORY as usize)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT)
            .pagemap_scan(Enabled::Auto);
        let mut config = wasmtime::Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)?;
        let ticker = epoch::EpochTicker::start(engine.clone());
        let cache = cache_dir.map(|dir| Arc::new(cache::CompiledCache::new(dir, &engine)));
        Ok(Self { engine, cache, ticker })
    }

    /// The engine, for inspecting components.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// What a store of this engine holds while its guest may run.
    fn ticking(&self) -> epoch::Ticking {
        self.ticker.ticking()
    }

    /// Reads and compiles a component file (on a blocking thread); returns
    /// it with the SHA-256 of its bytes.
    pub async fn compile(&self, plugin: &str, path: &Path) -> Result<(Component, String), LoadError> {
        let bytes = read_component(plugin, path).await?;
        let digest = digest(&bytes);
        Ok((self.compile_bytes(plugin, path, bytes, &digest).await?.0, digest))
    }

    /// Takes the compiled code from the cache, or compiles it (and caches
    /// it), on a blocking thread: a language runtime's entry is tens of MB
    /// read, checked and mapped, which must not stall a reload's neighbours.
    async fn compile_bytes(
        &self,
        plugin: &str,
        path: &Path,
        bytes: Vec<u8>,
        digest: &str,
    ) -> Result<(Component, cache::Origin), LoadError> {
        let (engine, cache, digest) = (self.engine.clone(), self.cache.clone(), digest.to_owned());
        let compiled = tokio::task::spawn_blocking(move || {
            if let Some(component) = cache.as_ref().and_then(|c| c.load(&engine, &digest)) {
                return Ok((component, cache::Origin::Cache));
            }
            let component = Component::new(&engine, &bytes)?;
            if let Some(cache) = &cache {
                cache.store(&digest, &component);
            }
            Ok((component, cache::Origin::Compiled))
        });
        compiled.await.expect("compile task panicked").map_err(|e: wasmtime::Error| LoadError::Compile {
            plugin: plugin.to_owned(),
            path: path.display().to_string(),
            reason: format!("{e:#}"),
        })
    }

    /// Prepares a plugin from its component file; see [`Runtime::prepare_bytes`].
    pub async fn prepare(&self, config: &PluginConfig) -> Result<Prepared, LoadError> {
        let bytes = read_component(&config.name, &config.component).await?;
        let digest = digest(&bytes);
        self.prepare_bytes(config, bytes, digest).await
    }

    /// Prepares a plugin: compile, check imports against grants, link only
    /// what is granted, and pre-instantiate. Touches no storage, so
    /// `plinth check` can run beside a live server.
    pub async fn prepare_bytes(
        &self,
        config: &PluginConfig,
        bytes: Vec<u8>,
        digest: String,
    ) -> Result<Prepared, LoadError> {
        let (component, origin) = self.compile_bytes(&config.name, &config.component, bytes, &digest).await?;
        let surface = grants::surface(&self.engine, &component);
        let kind = grants::check(&surface, &config.grants)
            .map_err(|problem| LoadError::Grants { plugin: config.name.clone(), problem })?;
        let link_error = |e: wasmtime::Error| LoadError::Link { plugin: config.name.clone(), reason: format!("{e:#}") };
        let linker = self.linker(&config.grants).map_err(link_error)?;
        let pre = linker.instantiate_pre(&component).map_err(link_error)?;
        let routes_error = |reason: String| LoadError::Routes { plugin: config.name.clone(), reason };
        let (handler, signing_in, routes) = match kind {
            grants::Kind::Plinth => {
                if config.strip_prefix.is_some() {
                    return Err(routes_error(
                        "`strip_prefix` is for wasi:http components; a plinth plugin declares the paths it serves"
                            .into(),
                    ));
                }
                // Only a component that exports it has it.
                let signing_in = ExternalSigningBindingsPre::new(pre.clone()).ok();
                let pre = PluginBindingsPre::new(pre).map_err(link_error)?;
                (Handler::Plinth(pre), signing_in, self.declared_routes(&config.name, &component).await?)
            }
            grants::Kind::Proxy => {
                let routes = config
                    .routes
                    .iter()
                    .map(|r| Route::parse(r).map_err(|e| routes_error(format!("its entry lists an {e}"))))
                    .collect::<Result<Vec<_>, _>>()?;
                let pre = ProxyPre::new(pre).map_err(link_error)?;
                (Handler::Proxy { pre, strip_prefix: config.strip_prefix.clone() }, None, routes)
            }
        };
        let timeout = Duration::from_millis(config.limits.timeout_ms);
        let data_version =
            self.data_version(&config.name, &component, config.limits.memory.0 as usize, timeout).await?;
        Ok(Prepared {
            handler,
            signing_in,
            routes,
            data_version,
            digest,
            origin,
            memory_limit: config.limits.memory.0 as usize,
            timeout: Duration::from_millis(config.limits.timeout_ms),
            ticking: self.ticking(),
        })
    }

    /// The data version the component's migration steps lead to (none: 0),
    /// checking that they are numbered 1, 2, … without gaps.
    async fn data_version(
        &self,
        plugin: &str,
        component: &Component,
        memory: usize,
        timeout: Duration,
    ) -> Result<u32, LoadError> {
        let Some(converter) = self.converter(plugin, component, memory, timeout)? else { return Ok(0) };
        let fail = |reason: String| LoadError::Migrations { plugin: plugin.to_owned(), reason };
        let steps = converter.steps().await.map_err(|e| fail(format!("its `migrations.steps` export failed: {e}")))?;
        for (i, step) in steps.iter().enumerate() {
            if step.to != i as u32 + 1 {
                return Err(fail(format!(
                    "its migration step `{}` leads to version {}; steps are numbered 1, 2, … without gaps",
                    step.name, step.to
                )));
            }
        }
        Ok(steps.len() as u32)
    }

    /// Calls the component's `routes` in an instance that can reach nothing
    /// but WASI with nothing inherited and `wasi:http` refusing every
    /// request (every other import traps), under a small memory cap and a
    /// deadline.
    async fn declared_routes(&self, plugin: &str, component: &Component) -> Result<Vec<Route>, LoadError> {
        let fail = |reason: String| LoadError::Routes { plugin: plugin.to_owned(), reason };
        let mut linker = Linker::<state::LoadState>::new(&self.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| fail(format!("{e:#}")))?;
        // Every outgoing request is refused: the load state has no egress.
        link_wasi_http(&mut linker, true).map_err(|e| fail(format!("{e:#}")))?;
        stub_non_wasi_imports(&mut linker, &self.engine, component).map_err(|e| fail(format!("{e:#}")))?;
        let running = self.ticking().running();
        let mut store = Store::new(&self.engine, state::LoadState::new(&plugin.into(), ROUTES_MEMORY, running));
        store.limiter(|state| &mut state.memory);
        store.set_epoch_deadline(ROUTES_DEADLINE_TICKS);
        store.epoch_deadline_trap();
        // Looked up by name: the typed bindings would check `handle`'s
        // resources too, which here are stand-ins.
        let texts = async {
            let instance = linker.instantiate_async(&mut store, component).await?;
            let handler = instance
                .get_export_index(&mut store, None, grants::HANDLER_EXPORT)
                .ok_or_else(|| wasmtime::format_err!("no `{}` export", grants::HANDLER_EXPORT))?;
            let routes = instance
                .get_export_index(&mut store, Some(&handler), "routes")
                .ok_or_else(|| wasmtime::format_err!("no `routes` function in `{}`", grants::HANDLER_EXPORT))?;
            let routes = instance.get_typed_func::<(), (Vec<String>,)>(&mut store, routes)?;
            let (texts,) = routes.call_async(&mut store, ()).await?;
            Ok::<_, wasmtime::Error>(texts)
        };
        // The epoch deadline stops computing; this stops waiting (a guest
        // asleep in a WASI poll), so no component can hold up a load.
        let deadline = EPOCH_TICK * ROUTES_DEADLINE_TICKS as u32;
        let texts = tokio::time::timeout(deadline, texts)
            .await
            .map_err(|_| fail(format!("its `routes` export did not return within {deadline:?}")))?
            .map_err(|e| fail(format!("its `routes` export failed: {e:#}")))?;
        if texts.is_empty() || texts.len() > MAX_DECLARED_ROUTES {
            return Err(fail(format!(
                "it declares {} routes; a plugin declares 1 to {MAX_DECLARED_ROUTES}",
                texts.len()
            )));
        }
        let mut routes: Vec<Route> = Vec::with_capacity(texts.len());
        for text in texts {
            if text.len() > MAX_ROUTE_BYTES {
                return Err(fail(format!("a declared route is {} bytes; at most {MAX_ROUTE_BYTES}", text.len())));
            }
            let route = Route::parse(&text).map_err(|e| fail(format!("it declares an {e}")))?;
            if route.methods().is_some_and(|mut methods| methods.any(|m| m == "HEAD")) {
                return Err(fail(format!("it declares `{route}`; HEAD is served by the GET route, declare GET")));
            }
            if let Some(same) = routes.iter().find(|r| r.ambiguous_with(&route)) {
                return Err(fail(format!(
                    "it declares `{route}` twice (it overlaps `{same}` and neither is more specific)"
                )));
            }
            routes.push(route);
        }
        Ok(routes)
    }

    /// A linker with the base interfaces and exactly the granted ones.
    fn linker(&self, grants: &[Grant]) -> wasmtime::Result<Linker<HostState>> {
        let mut linker = Linker::new(&self.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        link_wasi_http(&mut linker, grants.contains(&Grant::OutgoingHttp))?;
        types::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
        settings::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
        log::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
        schemas::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
        messages::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
        assets::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
        for grant in grants {
            match grant {
                Grant::Kv => kv::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?,
                // Linked for every plugin above.
                Grant::Log => {}
                Grant::Audit => audit::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?,
                Grant::Principals => principals::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?,
                Grant::Sessions => sessions::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?,
                Grant::Passwords => passwords::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?,
                Grant::Outbox => outbox::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?,
                Grant::Signing => signing::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?,
                Grant::Events => events::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?,
                Grant::Blobs => blobs::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?,
                Grant::Jobs => jobs::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?,
                Grant::Webhooks => webhooks::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?,
                // Linked with `wasi:http` above.
                Grant::OutgoingHttp => {}
            }
        }
        Ok(linker)
    }
}

/// Links `wasi:http/types` and, with `outgoing`, the outgoing handler
/// (whose requests go through the store's hooks).
fn link_wasi_http<T: WasiHttpView + 'static>(linker: &mut Linker<T>, outgoing: bool) -> wasmtime::Result<()> {
    use wasmtime_wasi_http::WasiHttp;
    use wasmtime_wasi_http::p2::bindings::{LinkOptions, http};
    http::types::add_to_linker::<_, WasiHttp>(linker, &(&LinkOptions::default()).into(), T::http)?;
    if outgoing {
        http::outgoing_handler::add_to_linker::<_, WasiHttp>(linker, T::http)?;
    }
    Ok(())
}

/// Defines every function a component imports outside WASI as a trap, and
/// its resources as stand-ins. (wasmtime's `define_unknown_imports_as_traps`
/// would also stub a WASI interface imported at a newer 0.2.x than the
/// linker's, shadowing the real one with a mismatched resource type.)
fn stub_non_wasi_imports<T: 'static>(
    linker: &mut Linker<T>,
    engine: &Engine,
    component: &Component,
) -> wasmtime::Result<()> {
    use wasmtime::component::ResourceType;
    use wasmtime::component::types::ComponentItem;
    for (name, item) in component.component_type().imports(engine) {
        let ComponentItem::ComponentInstance(instance) = item.ty else { continue };
        if name.starts_with("wasi:") {
            continue;
        }
        let mut stubs = linker.instance(name)?;
        for (export, item) in instance.exports(engine) {
            match item.ty {
                ComponentItem::ComponentFunc(_) => {
                    let what = format!("{name}#{export}");
                    stubs.func_new(export, move |_, _, _, _| {
                        wasmtime::bail!("`{what}` is not reachable while a component loads")
                    })?;
                }
                ComponentItem::Resource(_) => stubs.resource(export, ResourceType::host::<()>(), |_, _| Ok(()))?,
                _ => {}
            }
        }
    }
    Ok(())
}

/// Interrupts the store's guest at `deadline`, handing the thread back to
/// the scheduler at every epoch tick until then (a worker, a conversion).
pub(crate) fn yield_until<T: Send + 'static>(store: &mut Store<T>, deadline: tokio::time::Instant) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        Ok(if tokio::time::Instant::now() >= deadline {
            UpdateDeadline::Interrupt
        } else {
            UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
        })
    });
}

/// What a plugin produced for one request.
#[derive(Debug)]
pub struct PluginOutput {
    /// The response it built.
    pub response: ResponseData,
    /// A session cookie change the host applies.
    pub session: Option<SessionEffect>,
    /// A host call failed in a way the client is told of (the request
    /// body; a record's conversion): the answer is this error, not the
    /// plugin's response.
    pub host_failure: Option<crate::error::ApiError>,
}

/// How a component serves requests, linked and type-checked once;
/// instantiated per request.
enum Handler {
    /// A plinth plugin.
    Plinth(PluginBindingsPre<HostState>),
    /// A `wasi:http` proxy component, and the prefix its paths lose.
    Proxy { pre: ProxyPre<HostState>, strip_prefix: Option<String> },
}

impl Handler {
    fn engine(&self) -> &Engine {
        match self {
            Handler::Plinth(pre) => pre.engine(),
            Handler::Proxy { pre, .. } => pre.engine(),
        }
    }
}

/// A compiled, checked and linked plugin, not yet bound to storage.
pub struct Prepared {
    /// How it serves requests.
    handler: Handler,
    /// Its `external-sign-in` export, if it has one.
    signing_in: Option<ExternalSigningBindingsPre<HostState>>,
    /// The routes the component declares.
    pub routes: Vec<Route>,
    /// The data version its migration steps lead to.
    pub data_version: u32,
    /// SHA-256 of the component file.
    pub digest: String,
    /// Whether the compiled code came from the cache.
    pub origin: cache::Origin,
    /// Linear memory cap per instance.
    memory_limit: usize,
    /// Time one request may spend in the guest.
    timeout: Duration,
    /// Keeps the epoch moving while its requests run.
    ticking: epoch::Ticking,
}

impl Prepared {
    /// Binds the plugin to its host handles, ready to serve.
    pub fn bind(self, ctx: Arc<PluginContext>, storage: Arc<dyn Storage>, metrics: Arc<Metrics>) -> Plugin {
        let version = ctx.settings.get("version").cloned().unwrap_or_else(|| self.digest[..12].to_owned());
        let labels = PluginLabels { plugin: ctx.name.to_string(), version };
        let instantiate_seconds = metrics.instantiate.get_or_create(&labels).clone();
        let call_seconds = metrics.call.get_or_create(&labels).clone();
        Plugin {
            instantiate_seconds,
            call_seconds,
            labels,
            metrics,
            ctx,
            storage,
            handler: self.handler,
            signing_in: self.signing_in,
            routes: self.routes,
            data_version: self.data_version,
            digest: self.digest,
            memory_limit: self.memory_limit,
            timeout: self.timeout,
            ticking: self.ticking,
        }
    }
}

/// A loaded plugin, ready to serve.
pub struct Plugin {
    /// Its metric labels (name and version).
    labels: PluginLabels,
    /// Where its failures are counted.
    metrics: Arc<Metrics>,
    /// Its instantiation-time histogram, looked up once rather than per request.
    instantiate_seconds: Histogram,
    /// Its guest-call-time histogram, likewise.
    call_seconds: Histogram,
    /// Host handles shared by its requests.
    ctx: Arc<PluginContext>,
    /// Flushed before a response that follows a write.
    storage: Arc<dyn Storage>,
    /// How it serves requests.
    handler: Handler,
    /// Its `external-sign-in` export, if it has one.
    signing_in: Option<ExternalSigningBindingsPre<HostState>>,
    /// The routes the component declares.
    routes: Vec<Route>,
    /// The data version it serves.
    pub data_version: u32,
    /// SHA-256 of the component file.
    pub digest: String,
    /// Linear memory cap per instance.
    memory_limit: usize,
    /// Time one request may spend in the guest.
    timeout: Duration,
    /// Keeps the epoch moving while its requests run.
    ticking: epoch::Ticking,
}

impl Plugin {
    /// Its storage namespace (what a job it submitted may read, through
    /// `job-kv`, under the job's prefix).
    pub fn namespace(&self) -> Arc<dyn crate::storage::Namespace> {
        self.ctx.namespace.clone()
    }

    /// The routes the component declares, in its order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.ctx.name
    }

    /// Runs one request in a fresh instance. Nothing survives the call but
    /// what the guest wrote through its grants.
    /// `actor` is who the audit log names (the principal, `anonymous`, or
    /// `cli` for operator commands). The deadline moves by the time spent
    /// waiting for the request body (`body_wait`).
    pub async fn handle(
        &self,
        request: RequestData,
        user_agent: String,
        actor: Actor,
        body_wait: Arc<crate::body::BodyWait>,
    ) -> Result<PluginOutput, PluginFailure> {
        let meta = RequestMeta {
            body_wait: body_wait.clone(),
            trace_id: request.trace_id.clone(),
            client_address: request.client_address.clone(),
            principal: request.principal.clone(),
            revalidation: request.revalidation,
            user_agent,
            actor,
        };
        let started = tokio::time::Instant::now();
        let mut store = self.store(meta, started);
        let call = async {
            match &self.handler {
                Handler::Plinth(pre) => {
                    let started = Instant::now();
                    let instance = pre.instantiate_async(&mut store).await?;
                    let instantiated = Instant::now();
                    Metrics::observe(&self.instantiate_seconds, instantiated - started);
                    let req = store.data_mut().table.push(request)?;
                    let resp = instance.plinth_platform_handler().call_handle(&mut store, req).await?;
                    Metrics::observe(&self.call_seconds, instantiated.elapsed());
                    Ok::<_, wasmtime::Error>(store.data_mut().table.delete(resp)?)
                }
                Handler::Proxy { pre, strip_prefix } => {
                    self.call_proxy(pre, strip_prefix.as_deref(), request, &mut store).await
                }
            }
        };
        let outcome = body_wait.within(started, self.timeout, call).await;
        let response = match outcome {
            None => return Err(self.failed(PluginFailure::Deadline(self.timeout))),
            Some(Ok(response)) => response,
            Some(Err(e)) => return Err(self.failed(self.classify(&store, e))),
        };
        // The plugin answered: the blob links and jobs it made are its to
        // keep (its records may name them, durable or not yet).
        store.data_mut().unanswered_links.clear();
        store.data_mut().unanswered_jobs.clear();
        if store.data().wrote {
            self.storage.flush().await.map_err(|e| self.failed(PluginFailure::Flush(e.to_string())))?;
        }
        let state = store.data_mut();
        Ok(PluginOutput { response, session: state.session_effect.take(), host_failure: state.host_failure.take() })
    }

    /// Runs one request through a `wasi:http` component: the request as
    /// [`proxy::incoming`] makes it, the response as [`proxy::collect`]
    /// reads it, read while the guest writes it.
    async fn call_proxy(
        &self,
        pre: &ProxyPre<HostState>,
        strip_prefix: Option<&str>,
        mut request: RequestData,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<ResponseData> {
        let body = match std::mem::replace(&mut request.body, RequestBody::Taken).read_whole().await {
            Ok(bytes) => bytes,
            Err(failure) => {
                store.data_mut().host_failure = Some(failure);
                return Ok(ResponseData::default());
            }
        };
        let locale = request.locale(&self.ctx.locales);
        let incoming = proxy::incoming(&request, body, strip_prefix, locale)?.map(|body| {
            http_body_util::BodyExt::map_err(body, |never| -> wasmtime_wasi_http::Error { match never {} })
        });
        let started = Instant::now();
        let instance = pre.instantiate_async(&mut *store).await?;
        let instantiated = Instant::now();
        Metrics::observe(&self.instantiate_seconds, instantiated - started);
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(wasmtime_wasi_http::p2::bindings::http::types::Scheme::Http, incoming)?;
        let out = store.data_mut().http().new_response_outparam(sender)?;
        let handle = instance.wasi_http_incoming_handler().call_handle(&mut *store, req, out);
        let collect = proxy::collect(receiver, self.memory_limit);
        tokio::pin!(handle, collect);
        // The body is read while the guest writes it. A trap ends the call
        // at once, whether or not a response was started; so does a
        // response that cannot be taken (too large, no final status),
        // whatever the guest goes on doing; a whole one waits for the guest
        // to return (it may still trap).
        let response = tokio::select! {
            called = &mut handle => {
                called?;
                collect.await?
            }
            done = &mut collect => {
                let response = done?;
                handle.await?;
                response
            }
        };
        Metrics::observe(&self.call_seconds, instantiated.elapsed());
        Ok(response)
    }

    /// A store for one call, within the plugin's memory cap and its
    /// deadline from `started` (moved by the time spent waiting for a body).
    fn store(&self, meta: RequestMeta, started: tokio::time::Instant) -> Store<HostState> {
        let wait = meta.body_wait.clone();
        let state = HostState::new(self.ctx.clone(), meta, self.memory_limit, self.ticking.running());
        let mut store = Store::new(self.handler.engine(), state);
        store.limiter(|s| &mut s.memory);
        let timeout = self.timeout;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if tokio::time::Instant::now() >= started + timeout + wait.total() {
                UpdateDeadline::Interrupt
            } else {
                // tokio's own yield, so the task goes to the back of the
                // queue instead of being polled again at once.
                UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
            })
        });
        store
    }

    /// Whether it exports `external-sign-in`.
    pub fn admits(&self) -> bool {
        self.signing_in.is_some()
    }

    /// Asks its `external-sign-in` export who `identity` signs in as: the
    /// account id, or the plugin's refusal. `meta` is the callback request's.
    pub async fn admit(&self, identity: Identity, meta: RequestMeta) -> Result<Result<String, Refusal>, PluginFailure> {
        let pre = self
            .signing_in
            .as_ref()
            .ok_or_else(|| PluginFailure::Trap(format!("plugin `{}` does not export external-sign-in", self.name())))?;
        let started = tokio::time::Instant::now();
        let wait = meta.body_wait.clone();
        let mut store = self.store(meta, started);
        let call = async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance.plinth_platform_external_sign_in().call_admit(&mut store, &identity).await
        };
        let answer = match wait.within(started, self.timeout, call).await {
            None => return Err(self.failed(PluginFailure::Deadline(self.timeout))),
            Some(Ok(answer)) => answer,
            Some(Err(e)) => return Err(self.failed(self.classify(&store, e))),
        };
        if store.data().wrote {
            self.storage.flush().await.map_err(|e| self.failed(PluginFailure::Flush(e.to_string())))?;
        }
        Ok(answer)
    }

    /// Counts a failure by kind and passes it on.
    fn failed(&self, failure: PluginFailure) -> PluginFailure {
        let kind = match failure {
            PluginFailure::Trap(_) => "trap",
            PluginFailure::Deadline(_) => "deadline",
            PluginFailure::MemoryCap(_) => "memory",
            PluginFailure::Flush(_) => "flush",
        };
        let labels = FailureLabels {
            plugin: self.labels.plugin.clone(),
            version: self.labels.version.clone(),
            kind: kind.to_owned(),
        };
        self.metrics.plugin_failures.get_or_create(&labels).inc();
        failure
    }

    fn classify(&self, store: &Store<HostState>, e: wasmtime::Error) -> PluginFailure {
        if store.data().memory.hit {
            PluginFailure::MemoryCap(self.memory_limit)
        } else if matches!(e.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
            PluginFailure::Deadline(self.timeout)
        } else {
            PluginFailure::Trap(format!("{e:#}"))
        }
    }
}
