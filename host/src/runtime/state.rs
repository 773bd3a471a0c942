//! What a store holds for one request: the resource table, a WASI context
//! with nothing inherited, the memory cap, and the plugin's host handles.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::audit::{Actor, AuditLog, Envelope};
use crate::identity::Identity;
use crate::outbox::Outbox;
use crate::passwords::Passwords;
use crate::runtime::bindings::types::Principal;
use crate::runtime::epoch::Running;
use crate::runtime::host::log::{LogBudget, MAX_LINES_PER_REQUEST};
use crate::runtime::outgoing::{Egress, OutgoingHooks};
use crate::runtime::output::GuestOutput;
use crate::storage::Namespace;

/// Most table elements a guest may grow a table to.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Host handles one plugin's requests share.
pub struct PluginContext {
    /// The plugin's name.
    pub name: Arc<str>,
    /// Its storage namespace; the only one it can reach.
    pub namespace: Arc<dyn Namespace>,
    /// The audit log its events go to.
    pub audit: Arc<AuditLog>,
    /// Registry and sessions (reachable only with those grants).
    pub identity: Arc<Identity>,
    /// Password hashing (reachable only with that grant).
    pub passwords: Arc<Passwords>,
    /// Whether a password sign-in may end in a session now (emergency mode).
    pub emergency: Arc<crate::oidc::emergency::Emergency>,
    /// The mail queue (reachable only with that grant).
    pub outbox: Arc<Outbox>,
    /// Webhook endpoints and delivery (reachable only with that grant).
    pub webhooks: Arc<crate::webhooks::Webhooks>,
    /// Root keys its signing key is derived from (reachable only with that grant).
    pub signing: Arc<crate::signing::SigningKeys>,
    /// Change feeds and stream limits (reachable only with that grant).
    pub events: Arc<crate::events::Events>,
    /// Compiled JSON Schemas, shared by all plugins.
    pub schemas: Arc<crate::schemas::Schemas>,
    /// The blob store (reachable only with that grant).
    pub blobs: Arc<crate::blobs::Blobs>,
    /// The plugin's blob quotas.
    pub blob_quota: BlobQuota,
    /// The job queue (reachable only with that grant).
    pub jobs: Arc<crate::jobs::Jobs>,
    /// The plugin's most unfinished jobs, in all and per owner.
    pub job_limits: crate::jobs::JobLimits,
    /// Where the host counts what the plugin's calls did.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The plugin's `[plugins.settings]`.
    pub settings: std::collections::BTreeMap<String, String>,
    /// The deployment's locales, which requests are negotiated against.
    pub locales: Arc<crate::i18n::Locales>,
    /// The plugin's messages, when its entry names a directory of them.
    pub messages: Option<Arc<crate::i18n::Catalog>>,
    /// The plugin's read-only files.
    pub assets: Arc<crate::assets::Assets>,
    /// Where its outgoing HTTP may go (none without grant `outgoing-http`).
    pub egress: Option<Arc<Egress>>,
}

/// Bytes of blobs a plugin may hold, in all and per owner.
#[derive(Debug, Clone, Copy)]
pub struct BlobQuota {
    /// All its blobs and upload reservations.
    pub plugin_bytes: u64,
    /// One owner's.
    pub owner_bytes: u64,
}

/// Facts about the request the host uses to fill envelopes (audit, logs).
#[derive(Debug, Clone)]
pub struct RequestMeta {
    /// W3C trace id.
    pub trace_id: String,
    /// Client address.
    pub client_address: String,
    /// The signed-in principal, if any.
    pub principal: Option<Principal>,
    /// The host is re-asking for an open stream: `events.follow` counts
    /// nothing against the stream limits.
    pub revalidation: bool,
    /// The request's `User-Agent`, recorded with sessions it issues.
    pub user_agent: String,
    /// Who the audit log names for this request's events.
    pub actor: Actor,
    /// Time spent waiting for the request's body; the plugin's deadline
    /// moves by it.
    pub body_wait: Arc<crate::body::BodyWait>,
}

/// What the plugin did to the session cookie during this request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEffect {
    /// A session was issued: set this token for this many seconds.
    Issued {
        /// The new token.
        token: String,
        /// Cookie lifetime.
        max_age: u64,
    },
    /// The current session was revoked: clear the cookie.
    Cleared,
    /// A session was issued for an API client and its token is in the body.
    TokenIssued,
}

/// Refuses memory growth past the plugin's cap and remembers that it did,
/// so the failure can be told apart from an ordinary trap.
pub struct MemoryCap {
    /// Bytes one linear memory may reach.
    limit: usize,
    /// Set when a growth was refused.
    pub hit: bool,
    /// The largest size a memory grew to.
    pub peak: usize,
}

/// The error a refused memory growth traps with.
#[derive(Debug, thiserror::Error)]
#[error("memory cap of {0} bytes reached")]
pub struct MemoryCapHit(pub usize);

impl MemoryCap {
    /// A cap of `limit` bytes per linear memory.
    pub fn new(limit: usize) -> Self {
        Self { limit, hit: false, peak: 0 }
    }
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            return Err(MemoryCapHit(self.limit).into());
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// The data of one request's store.
pub struct HostState {
    /// Resources the guest holds handles to (request, response, WASI streams).
    pub table: ResourceTable,
    /// WASI with no preopens, no environment, no network; built on the
    /// guest's first WASI call, since many requests make none.
    wasi: Option<WasiCtx>,
    /// `wasi:http` state: field limits, and the hooks its outgoing
    /// requests go through.
    http: WasiHttpCtx,
    outgoing: OutgoingHooks,
    /// The memory cap.
    pub memory: MemoryCap,
    /// The plugin's host handles.
    pub plugin: Arc<PluginContext>,
    /// The request being served.
    pub request: RequestMeta,
    /// Whether the guest wrote to storage (then the response waits for a flush).
    pub wrote: bool,
    /// Cookie change to apply to the response.
    pub session_effect: Option<SessionEffect>,
    /// A host call failed in a way the client is told of, whatever the
    /// plugin answers (reading the request body; converting a record in a
    /// migration window); the edge answers with this.
    pub host_failure: Option<crate::error::ApiError>,
    /// Blob links this request made (stored, finished, linked): undone if
    /// the plugin never answers (a trap, its deadline, a dropped request),
    /// so a blob no record of the plugin's names cannot stay behind.
    pub unanswered_links: Vec<String>,
    /// Jobs this request submitted, forgotten likewise: a job no record
    /// names would hold the blobs its worker makes for good.
    pub unanswered_jobs: Vec<String>,
    /// The lines the guest may still log.
    pub log: LogBudget,
    /// Keeps the epoch moving while the guest may run.
    _running: Running,
}

impl Drop for HostState {
    fn drop(&mut self) {
        if self.unanswered_links.is_empty() && self.unanswered_jobs.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (links, plugin) = (std::mem::take(&mut self.unanswered_links), self.plugin.clone());
        let jobs = std::mem::take(&mut self.unanswered_jobs);
        runtime.spawn(async move {
            for id in jobs {
                if let Err(e) = plugin.jobs.forget(&plugin.name, &id).await {
                    tracing::error!(plugin = %plugin.name, job = id, error = %e, "an unanswered request's job stays");
                }
            }
            for id in links {
                if let Err(e) = plugin.blobs.unlink(&plugin.name, &id).await {
                    tracing::error!(plugin = %plugin.name, blob = id, error = %e, "an unanswered request's blob link stays");
                }
            }
        });
    }
}

impl HostState {
    /// State for one request to `plugin`, capped at `memory_limit` bytes.
    pub fn new(plugin: Arc<PluginContext>, request: RequestMeta, memory_limit: usize, running: Running) -> Self {
        Self {
            table: ResourceTable::new(),
            wasi: None,
            http: WasiHttpCtx::new(),
            outgoing: OutgoingHooks::new(plugin.egress.clone()),
            memory: MemoryCap::new(memory_limit),
            plugin,
            request,
            wrote: false,
            session_effect: None,
            host_failure: None,
            unanswered_links: Vec::new(),
            unanswered_jobs: Vec::new(),
            log: LogBudget::new(MAX_LINES_PER_REQUEST, "a request"),
            _running: running,
        }
    }
}

impl HostState {
    /// The audit envelope of this request: its principal, client, trace, plugin.
    pub fn envelope(&self) -> Envelope {
        Envelope {
            actor: self.request.actor.clone(),
            client_address: Some(self.request.client_address.clone()),
            trace_id: Some(self.request.trace_id.clone()),
            plugin: Some(self.plugin.name.to_string()),
        }
    }
}

/// The store of a call made while a component loads (`routes`): a memory
/// cap, WASI with nothing inherited (language runtimes need its clocks and
/// randomness) and `wasi:http` with every request refused; every other
/// import traps.
pub struct LoadState {
    /// The memory cap.
    pub memory: MemoryCap,
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    /// Hooks with no egress: every outgoing request is refused.
    outgoing: OutgoingHooks,
    /// Keeps the epoch moving while the guest may run.
    _running: Running,
}

impl LoadState {
    /// State for plugin `name`'s load-time call, capped at `limit` bytes.
    pub fn new(name: &Arc<str>, limit: usize, running: Running) -> Self {
        Self {
            memory: MemoryCap::new(limit),
            table: ResourceTable::new(),
            wasi: sandboxed_wasi(name),
            http: WasiHttpCtx::new(),
            outgoing: OutgoingHooks::new(None),
            _running: running,
        }
    }
}

impl WasiView for LoadState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for LoadState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.outgoing }
    }
}

/// WASI for a guest named `name` (a plugin or a worker): no preopens, no
/// environment, no network; its output goes to the host's log.
pub fn sandboxed_wasi(name: &Arc<str>) -> WasiCtx {
    WasiCtx::builder()
        .stdout(GuestOutput::new(name.clone(), "stdout"))
        .stderr(GuestOutput::new(name.clone(), "stderr"))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build()
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let ctx = self.wasi.get_or_insert_with(|| sandboxed_wasi(&self.plugin.name));
        WasiCtxView { ctx, table: &mut self.table }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.outgoing }
    }
}
