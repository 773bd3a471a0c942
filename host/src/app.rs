//! Everything one config describes, built and ready to serve: storage, the
//! audit log, the runtime, the loaded plugins and the route table.

use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::Semaphore;

use crate::audit::{Actor, AuditLog, Outcome, RecordDraft};
use crate::config::Config;
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
        let audit = Arc::new(AuditLog::open(storage.as_ref()).await?);
        let routes = config.route_table()?;
        let max_in_flight = u32::try_from(config.server.max_in_flight).context("server.max_in_flight is too large")?;
        let runtime = Runtime::new(max_in_flight)?;
        let mut plugins = Vec::with_capacity(config.plugins.len());
        for plugin in &config.plugins {
            let namespace =
                storage.namespace(NamespaceId::Plugin(plugin.name.clone()), Some(plugin.limits.kv_bytes.0))?;
            let ctx = Arc::new(PluginContext { name: plugin.name.as_str().into(), namespace, audit: audit.clone() });
            let loaded = runtime.prepare(plugin).await?.bind(ctx, storage.clone());
            tracing::info!(plugin = %plugin.name, digest = %loaded.digest, "plugin loaded");
            audit
                .append(RecordDraft {
                    actor: Actor::System,
                    action: "plugin.loaded".into(),
                    target: plugin.name.clone(),
                    outcome: Outcome::Success,
                    reason: Some(format!("sha256:{}", loaded.digest)),
                    client_address: None,
                    trace_id: None,
                    plugin: Some(plugin.name.clone()),
                })
                .await?;
            plugins.push(Arc::new(loaded));
        }
        storage.flush().await?;
        Ok(Self {
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
