//! Everything one config describes, built and ready to serve: storage, the
//! audit log, the runtime, the loaded plugins and the route table.

use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::Semaphore;

use crate::audit::{AuditLog, Envelope, Outcome};
use crate::config::Config;
use crate::edge::auth::CookiePolicy;
use crate::edge::headers::SecurityHeaders;
use crate::edge::rate_limit::RateLimits;
use crate::identity::{Identity, Lifetimes};
use crate::outbox::{Outbox, Retry, Sink};
use crate::passwords::Passwords;
use crate::routes::RouteTable;
use crate::runtime::state::PluginContext;
use crate::runtime::{Plugin, Runtime};
use crate::storage::{NamespaceId, SledStorage, Storage};

/// The serving state.
pub struct App {
    /// The config it was built from (overrides applied).
    pub config: Config,
    /// The database.
    pub storage: Arc<dyn Storage>,
    /// The audit log.
    pub audit: Arc<AuditLog>,
    /// Loaded plugins, indexed by the route table.
    pub plugins: Vec<Arc<Plugin>>,
    /// Every plugin route.
    pub routes: RouteTable<usize>,
    /// Registry and sessions.
    pub identity: Arc<Identity>,
    /// Password hashing pool.
    pub passwords: Arc<Passwords>,
    /// Rate limiters per class.
    pub rate_limits: RateLimits,
    /// Security headers per class.
    pub headers: SecurityHeaders,
    /// Session cookie attributes.
    pub cookies: CookiePolicy,
    /// The mail queue; its worker runs while the server serves.
    pub outbox: Arc<Outbox>,
    /// Permits for requests being handled; bounds in-flight work (and so
    /// live instances, which the runtime's pool is sized for).
    pub in_flight: Arc<Semaphore>,
    /// The engine and its epoch ticker.
    pub runtime: Runtime,
}

impl App {
    /// Opens storage, loads every plugin, and records the load in the audit log.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let storage: Arc<dyn Storage> = Arc::new(
            SledStorage::open(&config.storage.path)
                .with_context(|| format!("opening storage in {}", config.storage.path.display()))?,
        );
        let audit = Arc::new(AuditLog::open(storage.as_ref(), config.audit.mirror.as_deref()).await?);
        let routes = config.route_table()?;
        let lifetimes =
            Lifetimes { idle: config.sessions.idle_timeout.0, absolute: config.sessions.absolute_timeout.0 };
        let identity = Arc::new(Identity::open(storage.as_ref(), audit.clone(), lifetimes)?);
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let passwords = Arc::new(Passwords::new(cores));
        let headers = SecurityHeaders::from_config(&config.headers, &config.rate_limits)
            .map_err(|(key, message)| anyhow::anyhow!("{}: {key}: {message}", config.source.display()))?;
        let sink = match &config.mail.smtp {
            Some(smtp) => Sink::smtp(smtp)?,
            None => Sink::File(config.mail.file.clone().unwrap_or_else(|| config.storage.path.join("outbox.jsonl"))),
        };
        let retry = Retry { max_attempts: config.mail.max_attempts, base: config.mail.retry_base.0 };
        let outbox = Arc::new(Outbox::open(storage.clone(), sink, retry)?);
        if config.sessions.dev_insecure_cookies {
            tracing::warn!(
                "sessions.dev_insecure_cookies is ON: session cookies lack `Secure` and `__Host-`; \
                 use this only for plain-HTTP development on localhost"
            );
        }
        let max_in_flight = u32::try_from(config.server.max_in_flight).context("server.max_in_flight is too large")?;
        let runtime = Runtime::new(max_in_flight)?;
        let mut plugins = Vec::with_capacity(config.plugins.len());
        for plugin in &config.plugins {
            let namespace =
                storage.namespace(NamespaceId::Plugin(plugin.name.clone()), Some(plugin.limits.kv_bytes.0))?;
            let ctx = Arc::new(PluginContext {
                name: plugin.name.as_str().into(),
                namespace,
                audit: audit.clone(),
                identity: identity.clone(),
                passwords: passwords.clone(),
                outbox: outbox.clone(),
                settings: plugin.settings.clone(),
            });
            let loaded = runtime.prepare(plugin).await?.bind(ctx, storage.clone());
            tracing::info!(plugin = %plugin.name, digest = %loaded.digest, "plugin loaded");
            let envelope = Envelope { plugin: Some(plugin.name.clone()), ..Envelope::system() };
            let reason = Some(format!("sha256:{}", loaded.digest));
            audit.append(envelope.draft("plugin.loaded", &plugin.name, Outcome::Success, reason)).await?;
            plugins.push(Arc::new(loaded));
        }
        let reason = Some(format!("plugins={}", config.plugins.len()));
        let source = config.source.display().to_string();
        audit.append(Envelope::system().draft("config.loaded", &source, Outcome::Success, reason)).await?;
        storage.flush().await?;
        Ok(Self {
            outbox,
            identity,
            passwords,
            rate_limits: RateLimits::new(&config.rate_limits),
            headers,
            cookies: CookiePolicy { insecure: config.sessions.dev_insecure_cookies },
            in_flight: Arc::new(Semaphore::new(config.server.max_in_flight)),
            config,
            storage,
            audit,
            plugins,
            routes,
            runtime,
        })
    }
}
