//! The serving state. What lives as long as the process (storage, audit log,
//! identity, outbox, engine, bounds) is in [`App`]; what a config reload may
//! change (plugins, routes, policies, headers, rate limits) is one
//! [`Deployment`] behind an atomic pointer. A request loads the deployment
//! once and finishes on it, so a swap never changes a request midway.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use serde::Serialize;
use tokio::sync::Semaphore;

use sha2::{Digest as _, Sha256};

use crate::assets::Assets;
use crate::audit::{AuditKey, AuditLog, Envelope, Outcome};
use crate::config::{Config, OnBroken, PluginConfig, ServerConfig};
use crate::edge::auth::CookiePolicy;
use crate::edge::client::ClientKey;
use crate::edge::headers::SecurityHeaders;
use crate::edge::rate_limit::RateLimits;
use crate::events::Events;
use crate::i18n::{Catalog, Locales};
use crate::identity::{Identity, Lifetimes};
use crate::metrics::Metrics;
use crate::outbox::{Outbox, Retry, Sink};
use crate::passwords::Passwords;
use crate::per_client::PerClientLimit;
use crate::routes::{Route, RouteTable};
use crate::runtime::cache::Origin;
use crate::runtime::state::PluginContext;
use crate::runtime::worker::Worker;
use crate::runtime::{Plugin, Runtime};
use crate::signing::SigningKeys;
use crate::storage::{SledStorage, Storage};

/// A plugin as loaded, with what operators see of it.
#[derive(Clone)]
pub struct LoadedPlugin {
    /// The runnable plugin.
    pub plugin: Arc<Plugin>,
    /// The config entry it was loaded from.
    pub config: PluginConfig,
    /// When it was loaded (RFC 3339).
    pub loaded_at: String,
    /// Whether its compiled code came from the on-disk cache.
    pub origin: Origin,
    /// The canary version and its share of requests, in percent.
    pub canary: Option<(Arc<Plugin>, u8)>,
    /// The version this one replaced, kept loaded for a rollback.
    pub previous: Option<Arc<LoadedPlugin>>,
    /// Its messages, assets and the locales they were linted against.
    pub files: Arc<PluginFiles>,
}

/// What a plugin reads besides its component: read and checked when a
/// deployment is built, so a bad file refuses the deployment.
pub struct PluginFiles {
    /// The deployment's locales.
    pub locales: Arc<Locales>,
    /// Its messages, when its entry names directories of them.
    pub messages: Option<Arc<Catalog>>,
    /// Its read-only files.
    pub assets: Arc<Assets>,
    /// SHA-256 over all of it, to tell a change.
    pub digest: [u8; 32],
}

impl PluginFiles {
    /// Reads `entry`'s messages (linted against `locales`) and assets; an
    /// error names each problem's file, locale and key.
    pub fn read(entry: &PluginConfig, locales: Arc<Locales>) -> anyhow::Result<Self> {
        let messages = match entry.messages.as_slice() {
            [] => None,
            dirs => Some(Arc::new(Catalog::load(dirs, &locales).map_err(|problems| {
                let list: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
                anyhow::anyhow!("plugin `{}`: its messages fail the lint:\n{}", entry.name, list.join("\n"))
            })?)),
        };
        let assets = match &entry.assets {
            Some(dir) => Assets::load(dir).with_context(|| format!("plugin `{}`: assets", entry.name))?,
            None => Assets::default(),
        };
        let (_, problems) = crate::i18n::forms::lint(&assets, messages.as_deref());
        if !problems.is_empty() {
            let list: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
            anyhow::bail!("plugin `{}`: its form definitions fail the lint:\n{}", entry.name, list.join("\n"));
        }
        let mut hasher = Sha256::new();
        for name in locales.names() {
            hasher.update(name.as_bytes());
            hasher.update([0]);
        }
        hasher.update(messages.as_ref().map(|m| m.digest()).unwrap_or_default());
        hasher.update(assets.digest());
        Ok(Self { locales, messages, assets: Arc::new(assets), digest: hasher.finalize().into() })
    }

    /// The files read, for the watcher.
    pub fn paths(&self) -> impl Iterator<Item = &std::path::Path> {
        let messages = self.messages.iter().flat_map(|m| m.files());
        messages.chain(self.assets.paths()).map(PathBuf::as_path)
    }
}

impl LoadedPlugin {
    /// True when `config` describes exactly this plugin (same component
    /// bytes, grants, limits, settings, messages, assets), so a reload can
    /// keep it.
    fn same_as(&self, config: &PluginConfig, digest: &str, canary_digest: Option<&str>, files: &PluginFiles) -> bool {
        self.plugin.digest == digest
            && self.files.digest == files.digest
            && self.config.grants == config.grants
            && self.config.limits == config.limits
            && self.config.settings == config.settings
            && self.config.canary == config.canary
            && self.config.routes == config.routes
            && self.config.outgoing_http == config.outgoing_http
            && self.config.strip_prefix == config.strip_prefix
            && self.canary.as_ref().map(|(c, _)| c.digest.as_str()) == canary_digest
    }

    /// The version that serves a request: the canary for its share, sticky
    /// per session (the same session always lands on the same version).
    pub fn choose(&self, session: Option<&str>) -> &Plugin {
        let Some((canary, weight)) = &self.canary else {
            return &self.plugin;
        };
        let bucket = match session {
            Some(id) => {
                use std::hash::{Hash, Hasher};
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                id.hash(&mut hasher);
                (hasher.finish() % 100) as u8
            }
            None => rand::random_range(0..100u8),
        };
        if bucket < *weight { canary } else { &self.plugin }
    }
}

/// Everything a reload may replace.
pub struct Deployment {
    /// The config it was built from (command-line overrides applied).
    pub config: Config,
    /// Loaded plugins, indexed by the route table.
    pub plugins: Vec<Arc<LoadedPlugin>>,
    /// Loaded workers; the job dispatcher takes each job's worker from the
    /// deployment current when the job starts.
    pub workers: Vec<Arc<Worker>>,
    /// Every route a plugin serves.
    pub routes: RouteTable<ServedRoute>,
    /// Rate limiters per class (kept across reloads that leave them alone).
    pub rate_limits: Arc<RateLimits>,
    /// Security headers per class.
    pub headers: SecurityHeaders,
    /// Session cookie attributes.
    pub cookies: CookiePolicy,
}

/// A route in service: which plugin serves it, and the route the plugin
/// declared that it reaches (what the plugin dispatches on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedRoute {
    /// Index into [`Deployment::plugins`].
    pub plugin: usize,
    /// The declared route, as the plugin spelled it.
    pub declared: String,
}

/// The routes in service: each plugin's declared routes, restricted to what
/// its `routes` in the config cover. A declared route inside a config route
/// is served as declared; a config route inside a declared one (a plugin
/// that declares `/v1/x/**`, granted only `GET /v1/x/list`) is served as
/// configured. A config route that reaches none of the declared routes is
/// an error naming it, so config and component cannot silently disagree.
/// `declared` holds each plugin's declared routes, in config order.
pub fn served_routes(config: &Config, declared: &[&[Route]]) -> anyhow::Result<RouteTable<ServedRoute>> {
    let mut table = RouteTable::default();
    for (i, (entry, declared)) in config.plugins.iter().zip(declared).enumerate() {
        for (j, text) in entry.routes.iter().enumerate() {
            let granted = Route::parse(text)?;
            let inside: Vec<&Route> = declared.iter().filter(|d| d.covered_by(&granted)).collect();
            for route in &inside {
                table.push((*route).clone(), ServedRoute { plugin: i, declared: route.as_str().to_owned() });
            }
            let around = declared.iter().filter(|d| granted.covered_by(d)).max_by_key(|d| d.specificity());
            match (inside.is_empty(), around) {
                (false, _) => {}
                (true, Some(route)) => {
                    table.push(granted.clone(), ServedRoute { plugin: i, declared: route.as_str().to_owned() });
                }
                (true, None) => {
                    let list: Vec<String> = declared.iter().map(|d| format!("`{d}`")).collect();
                    anyhow::bail!(
                        "{}: plugins[{i}].routes[{j}]: route `{text}` of plugin `{}` reaches none of the routes its \
                         component declares ({})",
                        config.source.display(),
                        entry.name,
                        list.join(", ")
                    );
                }
            }
        }
    }
    Ok(table)
}

impl Deployment {
    /// Gives each plugin's namespace the quota its entry names, as the
    /// deployment goes into service (not before: a deployment that is then
    /// refused must change nothing of the serving one).
    fn apply_quotas(&self) {
        for loaded in &self.plugins {
            loaded.plugin.namespace().set_quota(Some(loaded.config.limits.kv_bytes.0));
        }
    }

    /// The plugin version that serves a request to a route-table index.
    pub fn plugin(&self, index: usize, session: Option<&str>) -> &Plugin {
        self.plugins[index].choose(session)
    }
}

/// What one reload did to one plugin.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PluginChange {
    /// The plugin.
    pub name: String,
    /// `unchanged`, `loaded` (new or replaced), `removed` or `failed`.
    pub outcome: &'static str,
    /// Why it failed.
    pub error: Option<String>,
}

/// The result of a reload.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadReport {
    /// Whether the new deployment is serving.
    pub applied: bool,
    /// Per plugin.
    pub plugins: Vec<PluginChange>,
    /// Why nothing changed, when the whole config was refused.
    pub error: Option<String>,
}

/// Where the config comes from, to read it again on reload.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// The config file.
    pub file: PathBuf,
    /// `--data`, which outranks the file.
    pub data: Option<PathBuf>,
    /// `--listen`, which outranks the file.
    pub listen: Option<std::net::SocketAddr>,
}

impl ConfigSource {
    /// Loads the config with the overrides applied.
    pub fn load(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(&self.file)?;
        if let Some(listen) = self.listen {
            config.server.listen = listen;
        }
        if let Some(data) = &self.data {
            config.storage.path.clone_from(data);
        }
        Ok(config)
    }
}

/// The process-long serving state.
pub struct App {
    /// Listener and request bounds, fixed at start.
    pub server: ServerConfig,
    /// The current deployment; swapped whole by a reload.
    pub deployment: ArcSwap<Deployment>,
    /// The database.
    pub storage: Arc<dyn Storage>,
    /// The audit log.
    pub audit: Arc<AuditLog>,
    /// Registry and sessions.
    pub identity: Arc<Identity>,
    /// Sign-in through external providers, when `[auth]` names any.
    pub oidc: Option<Arc<crate::oidc::Oidc>>,
    /// Credentials-only emergency mode.
    pub emergency: Arc<crate::oidc::emergency::Emergency>,
    /// Password hashing pool.
    pub passwords: Arc<Passwords>,
    /// The mail queue; its worker runs while the server serves.
    pub outbox: Arc<Outbox>,
    /// Webhooks delivered for plugins.
    pub webhooks: Arc<crate::webhooks::Webhooks>,
    /// Root keys of plugins' signing keys.
    pub signing: Arc<SigningKeys>,
    /// Change feeds and the streams that follow them.
    pub events: Arc<Events>,
    /// Compiled JSON Schemas for plugins.
    pub schemas: Arc<crate::schemas::Schemas>,
    /// Files under `data/blobs`; its sweeper removes expired uploads.
    pub blobs: Arc<crate::blobs::Blobs>,
    /// The job queue; its dispatcher runs jobs on the workers.
    pub jobs: Arc<crate::jobs::Jobs>,
    /// Backups taken while serving, and the directory they go to.
    pub backups: Arc<crate::backup::Backups>,
    /// Service level objectives and the burn of their budgets.
    pub slo: crate::slo::Slos,
    /// Plugins' data namespaces, and the migration windows open on them.
    pub windows: Arc<crate::migrations::online::Windows>,
    /// Held by the admin API's migration task (a rehearsal, opening or
    /// closing a window), one at a time.
    pub migrating: Arc<tokio::sync::Mutex<()>>,
    /// Permits for requests being handled; bounds in-flight work (and so
    /// live instances, which the runtime's pool is sized for).
    pub in_flight: Arc<Semaphore>,
    /// Permits for requests streaming a large body (`server.max_streamed_bodies`).
    pub streamed_bodies: Arc<Semaphore>,
    /// Which edge refusals get an audit record (one per client and kind a minute).
    pub denials: crate::edge::denials::DenialSampler,
    /// Each client address's share of requests in progress (body upload
    /// included), so no one client can hold every permit.
    pub client_in_flight: Arc<PerClientLimit<ClientKey>>,
    /// The engine and its epoch ticker.
    pub runtime: Arc<Runtime>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Where a reload reads the config; none for apps built from a value.
    source: Option<ConfigSource>,
    /// One reload at a time; a change arriving meanwhile waits its turn.
    reloading: Arc<tokio::sync::Mutex<()>>,
    /// Each plugin's last load error, for `GET /admin/plugins`.
    last_errors: std::sync::Mutex<HashMap<String, String>>,
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

impl App {
    /// Opens storage, loads every plugin, and records the load in the audit log.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_from(config, None).await
    }

    /// Like [`App::build`], remembering where the config came from so that
    /// [`App::reload`] can read it again.
    pub async fn build_from(config: Config, source: Option<ConfigSource>) -> anyhow::Result<Self> {
        let storage: Arc<dyn Storage> = Arc::new(
            SledStorage::open(&config.storage.path)
                .with_context(|| format!("opening storage in {}", config.storage.path.display()))?,
        );
        let metrics = Arc::new(Metrics::default());
        let key = AuditKey::load_or_create(&config.audit.key_file)?;
        let audit = Arc::new(
            AuditLog::open(storage.as_ref(), config.audit.mirror.as_deref(), key).await?.with_metrics(metrics.clone()),
        );
        if let Err(broken) = audit.check_ends().await? {
            let message = format!(
                "the audit chain is broken at record {}: {} (check with `plinth audit verify`; \
                 a log from before audit keys is sealed once with `plinth audit seal`)",
                broken.id, broken.reason
            );
            match config.audit.on_broken {
                OnBroken::Refuse => anyhow::bail!("{message}; not starting (audit.on_broken = \"refuse\")"),
                OnBroken::Warn => tracing::error!("{message}; starting anyway (audit.on_broken = \"warn\")"),
            }
        }
        crate::backup::note_restore(storage.as_ref(), &audit).await?;
        let blobs = Arc::new(
            crate::blobs::Blobs::open(config.storage.path.join("blobs"), storage.clone(), &config.scanner)
                .await
                .context("opening the blob store")?,
        );
        let backups = Arc::new(crate::backup::Backups::new(
            config.storage.backups_dir(),
            crate::backup::BackupKey::of(&audit.key()),
        ));
        // The host's own data steps, before anything opens what they change.
        let bench = crate::migrations::run::Workbench {
            storage: storage.clone(),
            blobs: blobs.clone(),
            audit: audit.clone(),
            key: audit.key(),
            ledger: crate::migrations::Ledger::open(storage.as_ref())?,
            backups: backups.clone(),
            actor: crate::audit::Actor::System,
        };
        for applied in bench.bring_host_up(crate::migrations::host::STEPS).await.context("migrating the host's data")? {
            tracing::info!(
                step = applied.to,
                name = %applied.name,
                backup = %applied.backup,
                edits = applied.converted,
                "applied host data step"
            );
        }
        let lifetimes =
            Lifetimes { idle: config.sessions.idle_timeout.0, absolute: config.sessions.absolute_timeout.0 };
        let identity =
            Arc::new(Identity::open(storage.as_ref(), audit.clone(), lifetimes)?.with_metrics(metrics.clone()));
        let emergency =
            crate::oidc::emergency::Emergency::open(&config.auth, storage.as_ref(), audit.clone(), identity.clone())
                .await
                .context("opening the emergency mode")?;
        emergency.spawn_expiry();
        let oidc = crate::oidc::Oidc::open(
            &config,
            storage.as_ref(),
            (audit.clone(), metrics.clone()),
            Some(emergency.clone()),
        )
        .await?;
        let oidc = oidc.map(Arc::new);
        if let Some(oidc) = &oidc {
            oidc.spawn_probes();
        }
        // One core is left to the edge: a login flood then never delays other
        // requests by more than the scheduler's wake-up latency (measured in
        // BENCHMARKS.md); `Passwords` keeps at least one thread.
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let passwords = Arc::new(Passwords::new(cores.saturating_sub(1)).with_counter(metrics.password_hashes.clone()));
        let sink = match &config.mail.smtp {
            Some(smtp) => Sink::smtp(smtp)?,
            None => Sink::File(config.mail.file.clone().unwrap_or_else(|| config.storage.path.join("outbox.jsonl"))),
        };
        let retry = Retry { max_attempts: config.mail.max_attempts, base: config.mail.retry_base.0 };
        let outbox = Arc::new(Outbox::open(storage.clone(), sink, retry)?);
        let webhooks =
            Arc::new(crate::webhooks::Webhooks::open(storage.clone(), audit.clone(), config.webhooks.clone())?);
        let signing = Arc::new(SigningKeys::open(storage.as_ref()).await.context("opening the signing keys")?);
        let events = Arc::new(Events::new(config.streams.max_total, config.streams.max_per_client));
        let jobs =
            Arc::new(crate::jobs::Jobs::open(storage.clone(), blobs.clone()).await.context("opening the job queue")?);
        if config.sessions.dev_insecure_cookies {
            if config.server.tls.is_some() {
                tracing::warn!("sessions.dev_insecure_cookies is ignored: TLS is on, so cookies stay `Secure`");
            } else {
                tracing::warn!(
                    "sessions.dev_insecure_cookies is ON: session cookies lack `Secure` and `__Host-`; \
                     use this only for plain-HTTP development on localhost"
                );
            }
        }
        let max_in_flight = u32::try_from(config.server.max_in_flight).context("server.max_in_flight is too large")?;
        let runtime =
            Runtime::new(max_in_flight + crate::config::MAX_WORKER_SLOTS, Some(config.storage.compiled_dir()))?;
        let runtime = Arc::new(runtime);
        let windows = Arc::new(crate::migrations::online::Windows::new(
            storage.clone(),
            metrics.clone(),
            config.storage.backfill_rate,
        ));
        windows
            .resume(&runtime, crate::migrations::Ledger::open(storage.as_ref())?)
            .await
            .context("opening the migration windows")?;
        let mut app = Self {
            server: config.server.clone(),
            in_flight: Arc::new(Semaphore::new(config.server.max_in_flight)),
            streamed_bodies: Arc::new(Semaphore::new(config.server.streamed_bodies())),
            client_in_flight: PerClientLimit::new(config.server.in_flight_per_client()),
            denials: crate::edge::denials::DenialSampler::default(),
            deployment: ArcSwap::from_pointee(Deployment {
                config: config.clone(),
                plugins: Vec::new(),
                workers: Vec::new(),
                routes: RouteTable::default(),
                rate_limits: Arc::new(RateLimits::new(&config.rate_limits)),
                headers: SecurityHeaders::from_config(&config.headers, &config.rate_limits)
                    .map_err(|(key, message)| anyhow::anyhow!("{}: {key}: {message}", config.source.display()))?,
                cookies: CookiePolicy::for_config(&config),
            }),
            storage,
            audit,
            identity,
            oidc,
            emergency,
            passwords,
            outbox,
            webhooks,
            signing,
            events,
            schemas: Arc::default(),
            blobs,
            jobs,
            backups,
            slo: crate::slo::Slos::new(&config.slo),
            windows,
            migrating: Arc::default(),
            runtime,
            metrics,
            source,
            reloading: Arc::default(),
            last_errors: std::sync::Mutex::new(HashMap::new()),
        };
        let (deployment, _) = app.assemble(config, &[], &[]).await;
        let deployment = deployment?;
        app.jobs.set_workers(&deployment.config.workers);
        deployment.apply_quotas();
        app.deployment = ArcSwap::from_pointee(deployment);
        let loaded = app.deployment.load();
        let reason = Some(format!("plugins={}", loaded.plugins.len()));
        let source = loaded.config.source.display().to_string();
        app.audit.append(Envelope::system().draft("config.loaded", &source, Outcome::Success, reason)).await?;
        app.storage.flush().await?;
        Ok(app)
    }

    /// Builds a deployment for `config`, keeping plugins from `current`
    /// that did not change. Fails as a whole when anything fails.
    async fn assemble(
        &self,
        config: Config,
        current: &[Arc<LoadedPlugin>],
        current_workers: &[Arc<Worker>],
    ) -> (anyhow::Result<Deployment>, Vec<PluginChange>) {
        let mut changes = Vec::new();
        let mut plugins = Vec::with_capacity(config.plugins.len());
        let mut failed = None;
        let locales = match Locales::from_config(&config.i18n) {
            Ok(locales) => Arc::new(locales),
            Err((key, message)) => {
                return (Err(anyhow::anyhow!("{}: {key}: {message}", config.source.display())), changes);
            }
        };
        // Loaded side by side: a language runtime's component takes tens of
        // milliseconds to read, check and map even from the compiled cache
        // (each one's own records are its own; results keep config order).
        let loads = config.plugins.iter().map(|entry| self.load_plugin(entry, current, locales.clone()));
        let loaded = futures::future::join_all(loads).await;
        for (entry, load) in config.plugins.iter().zip(loaded) {
            match load {
                Ok((plugin, outcome)) => {
                    changes.push(PluginChange { name: entry.name.clone(), outcome, error: None });
                    plugins.push(plugin);
                }
                Err(e) => {
                    let error = format!("{e:#}");
                    changes.push(PluginChange {
                        name: entry.name.clone(),
                        outcome: "failed",
                        error: Some(error.clone()),
                    });
                    failed.get_or_insert(error);
                }
            }
        }
        for old in current {
            if !config.plugins.iter().any(|p| p.name == old.config.name) {
                changes.push(PluginChange { name: old.config.name.clone(), outcome: "removed", error: None });
            }
        }
        let mut workers = Vec::with_capacity(config.workers.len());
        for entry in &config.workers {
            let name = format!("workers.{}", entry.name);
            match self.load_worker(entry, current_workers).await {
                Ok((worker, outcome)) => {
                    changes.push(PluginChange { name, outcome, error: None });
                    workers.push(worker);
                }
                Err(e) => {
                    let error = format!("{e:#}");
                    changes.push(PluginChange { name, outcome: "failed", error: Some(error.clone()) });
                    failed.get_or_insert(error);
                }
            }
        }
        if let Some(error) = failed {
            return (Err(anyhow::anyhow!(error)), changes);
        }
        let deployment = (|| {
            let declared: Vec<&[Route]> = plugins.iter().map(|p| p.plugin.routes()).collect();
            let routes = served_routes(&config, &declared)?;
            for rule in config.policy.unused_rules(&routes) {
                tracing::warn!(rule = %rule.route, policies = %config.policy.source().display(), "policy rule matches no route");
            }
            let headers = SecurityHeaders::from_config(&config.headers, &config.rate_limits)
                .map_err(|(key, message)| anyhow::anyhow!("{}: {key}: {message}", config.source.display()))?;
            let current_limits = self.deployment.load();
            let rate_limits = if current_limits.config.rate_limits == config.rate_limits {
                current_limits.rate_limits.clone()
            } else {
                Arc::new(RateLimits::new(&config.rate_limits))
            };
            let cookies = CookiePolicy::for_config(&config);
            Ok(Deployment { config, plugins, workers, routes, rate_limits, headers, cookies })
        })();
        (deployment, changes)
    }

    /// Loads one plugin, or keeps the current one when nothing changed.
    async fn load_plugin(
        &self,
        entry: &PluginConfig,
        current: &[Arc<LoadedPlugin>],
        locales: Arc<Locales>,
    ) -> anyhow::Result<(Arc<LoadedPlugin>, &'static str)> {
        let read = |path: &std::path::Path| {
            let path = path.to_owned();
            let name = entry.name.clone();
            async move {
                tokio::fs::read(&path).await.with_context(|| format!("plugin `{name}`: reading {}", path.display()))
            }
        };
        let bytes = read(&entry.component).await?;
        let digest = crate::runtime::digest(&bytes);
        let canary_bytes = match &entry.canary {
            Some(canary) => Some(read(&canary.component).await?),
            None => None,
        };
        let canary_digest = canary_bytes.as_deref().map(crate::runtime::digest);
        let files = {
            let entry = entry.clone();
            Arc::new(tokio::task::spawn_blocking(move || PluginFiles::read(&entry, locales)).await??)
        };
        let existing = current.iter().find(|p| p.config.name == entry.name);
        if let Some(same) = existing.filter(|p| p.same_as(entry, &digest, canary_digest.as_deref(), &files)) {
            return Ok((Arc::new(LoadedPlugin { config: entry.clone(), ..LoadedPlugin::clone(same) }), "unchanged"));
        }
        let (plugin, origin) = self.bind_plugin(entry, &entry.settings, &files, bytes, digest, None).await?;
        let canary = match (&entry.canary, canary_bytes, canary_digest) {
            (Some(canary), Some(bytes), Some(digest)) => {
                let mut settings = entry.settings.clone();
                settings.extend(canary.settings.clone());
                let main = Some(plugin.data_version);
                let (canary_plugin, _) = self.bind_plugin(entry, &settings, &files, bytes, digest, main).await?;
                // Requests are routed by the main version's routes.
                anyhow::ensure!(
                    canary_plugin.routes() == plugin.routes(),
                    "plugin `{}`: its canary declares other routes than the main version; a canary may change \
                     behaviour, not routes (serve new routes from the main version first)",
                    entry.name
                );
                Some((Arc::new(canary_plugin), canary.weight))
            }
            _ => None,
        };
        let previous = existing.map(|p| Arc::new(LoadedPlugin { previous: None, ..LoadedPlugin::clone(p) }));
        let loaded = LoadedPlugin {
            plugin: Arc::new(plugin),
            config: entry.clone(),
            loaded_at: now_rfc3339(),
            origin,
            canary,
            previous,
            files,
        };
        Ok((Arc::new(loaded), "loaded"))
    }

    /// Loads one worker, or keeps the current one when nothing changed. A
    /// changed worker takes the jobs that start from now on; running ones
    /// finish on the version they started with.
    async fn load_worker(
        &self,
        entry: &crate::config::WorkerConfig,
        current: &[Arc<Worker>],
    ) -> anyhow::Result<(Arc<Worker>, &'static str)> {
        let bytes = tokio::fs::read(&entry.component)
            .await
            .with_context(|| format!("worker `{}`: reading {}", entry.name, entry.component.display()))?;
        let digest = crate::runtime::digest(&bytes);
        if let Some(same) = current.iter().find(|w| w.config == *entry && w.digest == digest) {
            return Ok((same.clone(), "unchanged"));
        }
        let worker = self.runtime.prepare_worker(entry, bytes, digest).await?;
        tracing::info!(worker = %entry.name, digest = %worker.digest, "worker loaded");
        let envelope = Envelope::system();
        let reason = Some(format!("sha256:{}", worker.digest));
        self.audit.append(envelope.draft("worker.loaded", &entry.name, Outcome::Success, reason)).await?;
        Ok((Arc::new(worker), "loaded"))
    }

    /// Compiles (or takes from the cache), links and binds one version; a
    /// canary must serve `main`, its main version's data version.
    async fn bind_plugin(
        &self,
        entry: &PluginConfig,
        settings: &std::collections::BTreeMap<String, String>,
        files: &PluginFiles,
        bytes: Vec<u8>,
        digest: String,
        main: Option<u32>,
    ) -> anyhow::Result<(Plugin, Origin)> {
        let prepared = self.runtime.prepare_bytes(entry, bytes, digest).await?;
        let data = crate::migrations::Ledger::open(self.storage.as_ref())?
            .serving(self.storage.as_ref(), &entry.name, prepared.data_version)
            .await?;
        let servable = self.windows.servable(&entry.name, data);
        if let Some(main) = main {
            anyhow::ensure!(
                prepared.data_version == main || servable.contains(&prepared.data_version),
                "plugin `{}`: its canary serves data version {}, its main version {main}; a canary serves the same \
                 data, or the next version while a migration window is open (rehearse, then `POST \
                 /admin/migrations/{}/apply`)",
                entry.name,
                prepared.data_version,
                entry.name
            );
        }
        anyhow::ensure!(
            servable.contains(&prepared.data_version),
            "plugin `{}`: its component serves data version {}, its stored data is at version {}: {}",
            entry.name,
            prepared.data_version,
            data.version,
            if prepared.data_version > data.version {
                "with the server stopped, `plinth migrate rehearse` then `plinth migrate apply` it (or, beside a \
                 canary, open a migration window: `POST /admin/migrations/{name}/apply`)"
            } else {
                "configure the component that migrated it, or take the data down with `plinth migrate down` first"
            }
        );
        let namespace = self.windows.handle(&entry.name, prepared.data_version, entry.limits.kv_bytes.0)?;
        let ctx = Arc::new(PluginContext {
            name: entry.name.as_str().into(),
            namespace,
            audit: self.audit.clone(),
            identity: self.identity.clone(),
            passwords: self.passwords.clone(),
            emergency: self.emergency.clone(),
            outbox: self.outbox.clone(),
            webhooks: self.webhooks.clone(),
            signing: self.signing.clone(),
            events: self.events.clone(),
            schemas: self.schemas.clone(),
            blobs: self.blobs.clone(),
            blob_quota: crate::runtime::state::BlobQuota {
                plugin_bytes: entry.limits.blob_bytes.0,
                owner_bytes: entry.limits.blob_bytes_per_owner.0,
            },
            jobs: self.jobs.clone(),
            job_limits: crate::jobs::JobLimits { plugin: entry.limits.jobs, owner: entry.limits.jobs_per_owner },
            metrics: self.metrics.clone(),
            settings: settings.clone(),
            locales: files.locales.clone(),
            messages: files.messages.clone(),
            assets: files.assets.clone(),
            egress: match entry.grants.contains(&crate::config::Grant::OutgoingHttp) {
                true => Some(Arc::new(crate::runtime::outgoing::Egress::new(
                    entry.name.as_str().into(),
                    &entry.outgoing_http,
                    self.metrics.clone(),
                )?)),
                false => None,
            },
        });
        let origin = prepared.origin;
        let plugin = prepared.bind(ctx, self.storage.clone(), self.metrics.clone());
        tracing::info!(plugin = %entry.name, digest = %plugin.digest, from_cache = origin == Origin::Cache, "plugin loaded");
        let envelope = Envelope { plugin: Some(entry.name.clone()), ..Envelope::system() };
        let reason = Some(format!("sha256:{}", plugin.digest));
        self.audit.append(envelope.draft("plugin.loaded", &entry.name, Outcome::Success, reason)).await?;
        Ok((plugin, origin))
    }

    /// Puts a plugin's previous version back in service (the current one
    /// becomes its previous, so a rollback can be undone the same way).
    pub async fn rollback(&self, name: &str, envelope: &Envelope) -> Result<(), String> {
        let _one_at_a_time = self.reloading.lock().await;
        let current = self.deployment.load_full();
        let index = current.plugins.iter().position(|p| p.config.name == name).ok_or(format!("no plugin `{name}`"))?;
        let active = &current.plugins[index];
        let Some(previous) = &active.previous else {
            return Err(format!("plugin `{name}` has no previous version loaded"));
        };
        let data = self.data_state(name).await.map_err(|e| e.to_string())?;
        let servable = self.windows.servable(name, data);
        let versions = std::iter::once(&previous.plugin).chain(previous.canary.iter().map(|(canary, _)| canary));
        if let Some(stale) = versions.map(|p| p.data_version).find(|v| !servable.contains(v)) {
            return Err(format!(
                "plugin `{name}`: its previous version serves data version {stale}, which the data is no longer at"
            ));
        }
        let restored = LoadedPlugin {
            previous: Some(Arc::new(LoadedPlugin { previous: None, ..LoadedPlugin::clone(active) })),
            loaded_at: now_rfc3339(),
            ..LoadedPlugin::clone(previous)
        };
        let mut plugins = current.plugins.clone();
        plugins[index] = Arc::new(restored);
        let declared: Vec<&[Route]> = plugins.iter().map(|p| p.plugin.routes()).collect();
        let routes = served_routes(&current.config, &declared).map_err(|e| format!("{e:#}"))?;
        let next = Deployment {
            config: current.config.clone(),
            plugins,
            workers: current.workers.clone(),
            routes,
            rate_limits: current.rate_limits.clone(),
            headers: current.headers.clone(),
            cookies: current.cookies,
        };
        let reason = Some(format!("sha256:{}", previous.plugin.digest));
        self.audit
            .append(envelope.draft("plugin.rolled_back", name, Outcome::Success, reason))
            .await
            .map_err(|e| e.to_string())?;
        next.apply_quotas();
        self.deployment.store(Arc::new(next));
        let _ = self.storage.flush().await;
        Ok(())
    }

    /// Where a plugin's data stands.
    pub async fn data_state(&self, plugin: &str) -> Result<crate::migrations::DataState, crate::storage::StorageError> {
        crate::migrations::Ledger::open(self.storage.as_ref())?.state(plugin).await
    }

    /// Closes a plugin's migration window (see
    /// [`crate::migrations::online::Windows::close`]) on a task of its own,
    /// so that a client that goes away does not cut it short, and between
    /// reloads, so that what its loaded versions serve cannot change
    /// meanwhile; the data version kept.
    pub async fn close_window(
        &self,
        bench: crate::migrations::run::Workbench,
        plugin: &str,
        keep_newer: bool,
    ) -> anyhow::Result<u32> {
        let one_at_a_time = self.reloading.clone().lock_owned().await;
        let serving: Vec<u32> = self
            .deployment
            .load()
            .plugins
            .iter()
            .filter(|p| p.config.name == plugin)
            .flat_map(|p| std::iter::once(p.plugin.data_version).chain(p.canary.iter().map(|(c, _)| c.data_version)))
            .collect();
        let (windows, plugin) = (self.windows.clone(), plugin.to_owned());
        tokio::spawn(async move {
            let _one_at_a_time = one_at_a_time;
            let window = windows.close(&bench, &plugin, keep_newer, &serving).await?;
            Ok(if keep_newer { window.to } else { window.from })
        })
        .await
        .expect("closing a window does not panic")
    }

    /// Reads the config again and swaps in what changed. A config that does
    /// not validate, or a plugin that does not load, changes nothing: the
    /// current deployment keeps serving and the error is reported (here, in
    /// the log, in the audit log, and per plugin in `GET /admin/plugins`).
    pub async fn reload(&self, envelope: &Envelope) -> ReloadReport {
        let _one_at_a_time = self.reloading.lock().await;
        let current = self.deployment.load_full();
        let loaded = match &self.source {
            Some(source) => source.load().map_err(|e| format!("{e:#}")),
            None => Err("this server was started from a config value, not a file".to_owned()),
        };
        let config = match loaded.and_then(|config| self.check_restart_only(&current.config, config)) {
            Ok(config) => config,
            Err(error) => return self.refused(envelope, error, Vec::new()).await,
        };
        let (deployment, changes) = self.assemble(config, &current.plugins, &current.workers).await;
        {
            let mut last_errors = self.last_errors.lock().expect("plugin error map poisoned");
            for change in &changes {
                match &change.error {
                    Some(error) => last_errors.insert(change.name.clone(), error.clone()),
                    None => last_errors.remove(&change.name),
                };
            }
        }
        let deployment = match deployment {
            Ok(deployment) => deployment,
            Err(e) => return self.refused(envelope, format!("{e:#}"), changes).await,
        };
        self.jobs.set_workers(&deployment.config.workers);
        self.slo.set(&deployment.config.slo);
        deployment.apply_quotas();
        self.deployment.store(Arc::new(deployment));
        self.jobs.wake.notify_one();
        Metrics::count(&self.metrics.reloads, "ok");
        let summary: Vec<String> = changes.iter().map(|c| format!("{}={}", c.name, c.outcome)).collect();
        tracing::info!(changes = %summary.join(" "), "config reloaded");
        let _ = self
            .audit
            .append(envelope.draft("config.reloaded", "plinth.toml", Outcome::Success, Some(summary.join(" "))))
            .await;
        let _ = self.storage.flush().await;
        ReloadReport { applied: true, plugins: changes, error: None }
    }

    async fn refused(&self, envelope: &Envelope, error: String, plugins: Vec<PluginChange>) -> ReloadReport {
        tracing::error!(%error, "reload refused; the current deployment keeps serving");
        Metrics::count(&self.metrics.reloads, "failed");
        let _ = self
            .audit
            .append(envelope.draft("config.reloaded", "plinth.toml", Outcome::Failure, Some(error.clone())))
            .await;
        let _ = self.storage.flush().await;
        ReloadReport { applied: false, plugins, error: Some(error) }
    }

    /// Settings fixed at start: a reload that changes them is refused.
    fn check_restart_only(&self, current: &Config, next: Config) -> Result<Config, String> {
        let fixed = [
            ("server", format!("{:?}", current.server) == format!("{:?}", next.server)),
            (
                "storage",
                current.storage.path == next.storage.path
                    && current.storage.backups == next.storage.backups
                    && current.storage.backfill_rate == next.storage.backfill_rate,
            ),
            ("sessions", format!("{:?}", current.sessions) == format!("{:?}", next.sessions)),
            ("mail", format!("{:?}", current.mail) == format!("{:?}", next.mail)),
            ("audit", format!("{:?}", current.audit) == format!("{:?}", next.audit)),
            ("scanner", format!("{:?}", current.scanner) == format!("{:?}", next.scanner)),
            ("webhooks", format!("{:?}", current.webhooks) == format!("{:?}", next.webhooks)),
        ];
        match fixed.iter().find(|(_, same)| !same) {
            Some((section, _)) => Err(format!("[{section}] changed; it takes effect only on restart")),
            None => Ok(next),
        }
    }

    /// Where the config came from, for reading it again.
    pub fn config_source(&self) -> Option<&ConfigSource> {
        self.source.as_ref()
    }

    /// The last load error of each plugin that has one.
    pub fn plugin_errors(&self) -> HashMap<String, String> {
        self.last_errors.lock().expect("plugin error map poisoned").clone()
    }
}
