//! A plugin's data migrations, called in instances of its component that
//! reach nothing but `log` (every other import, WASI included, traps), a
//! fresh one per call, within the plugin's memory cap and deadline: a
//! conversion sees only the record it is given and cannot tell time or
//! draw randomness, so it gives the same answer every time.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Store, Trap};

use crate::runtime::bindings::log;
use crate::runtime::bindings::migrating::{MigratingBindingsPre, migrations};
use crate::runtime::epoch::{Running, Ticking};
use crate::runtime::host::log::{LogBudget, MAX_LINES_PER_CONVERSION};
use crate::runtime::state::MemoryCap;
use crate::runtime::{LoadError, Runtime, grants};

pub use migrations::{Direction, Entry, Step};

/// The export a component with migrations has.
pub const MIGRATIONS_EXPORT: &str = "plinth:platform/migrations@0.1.0";

/// The data of one conversion's store.
pub struct ConverterState {
    plugin: Arc<str>,
    memory: MemoryCap,
    /// The lines the guest may still log.
    log: LogBudget,
    /// Keeps the epoch moving while the guest may run.
    _running: Running,
}

impl log::Host for ConverterState {
    fn log(&mut self, level: log::Level, message: String, fields: Vec<(String, String)>) -> wasmtime::Result<()> {
        self.log.emit(&self.plugin, level, &message, &fields);
        Ok(())
    }
}

/// Why a call into a plugin's migrations gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// The plugin refused the record (its conversion or check said why).
    #[error("the plugin refused it: {0}")]
    Refused(String),
    /// The call trapped (a bug, or a reach for an import it does not get).
    #[error("the conversion trapped: {0}")]
    Trap(String),
    /// The call ran past the plugin's deadline.
    #[error("the conversion ran past {0} ms")]
    Deadline(u64),
    /// A record of a versioned step's families was written without a version.
    #[error("{0} (the step's families are written with versions)")]
    NotVersioned(String),
    /// The call grew its memory past the plugin's cap.
    #[error("the conversion grew past {0} bytes of memory")]
    Memory(usize),
}

/// A plugin component's migrations, ready to call.
pub struct Converter {
    plugin: Arc<str>,
    pre: MigratingBindingsPre<ConverterState>,
    memory: usize,
    timeout: Duration,
    /// Keeps the epoch moving while its conversions run.
    ticking: Ticking,
}

impl Runtime {
    /// The migrations `component` exports, linked to `log` alone; `None`
    /// when it exports none (its data version is 0).
    pub fn converter(
        &self,
        plugin: &str,
        component: &Component,
        memory: usize,
        timeout: Duration,
    ) -> Result<Option<Converter>, LoadError> {
        if !grants::surface(self.engine(), component).exports.iter().any(|e| e == MIGRATIONS_EXPORT) {
            return Ok(None);
        }
        let link_error = |e: wasmtime::Error| LoadError::Link {
            plugin: plugin.to_owned(),
            reason: format!("linking its migrations: {e:#}"),
        };
        let mut linker = Linker::<ConverterState>::new(self.engine());
        log::add_to_linker::<_, HasSelf<ConverterState>>(&mut linker, |s| s).map_err(link_error)?;
        linker.define_unknown_imports_as_traps(component).map_err(link_error)?;
        let pre = linker.instantiate_pre(component).map_err(link_error)?;
        let pre = MigratingBindingsPre::new(pre).map_err(link_error)?;
        Ok(Some(Converter { plugin: plugin.into(), pre, memory, timeout, ticking: self.ticking() }))
    }
}

impl Converter {
    /// Runs `call` in a fresh instance.
    async fn call<T>(
        &self,
        call: impl AsyncFnOnce(&migrations::Guest, &mut Store<ConverterState>) -> wasmtime::Result<T>,
    ) -> Result<T, ConvertError> {
        let mut store = Store::new(
            self.pre.engine(),
            ConverterState {
                plugin: self.plugin.clone(),
                memory: MemoryCap::new(self.memory),
                log: LogBudget::new(MAX_LINES_PER_CONVERSION, "a conversion"),
                _running: self.ticking.running(),
            },
        );
        store.limiter(|state| &mut state.memory);
        // Yields at every tick like a request, so a slow conversion (one a
        // write waits for, in a migration window) holds no thread to itself.
        crate::runtime::yield_until(&mut store, tokio::time::Instant::now() + self.timeout);
        let result = async {
            let instance = self.pre.instantiate_async(&mut store).await?;
            call(instance.plinth_platform_migrations(), &mut store).await
        }
        .await;
        result.map_err(|e| {
            if store.data().memory.hit {
                ConvertError::Memory(self.memory)
            } else if matches!(e.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
                ConvertError::Deadline(self.timeout.as_millis() as u64)
            } else {
                ConvertError::Trap(format!("{e:#}"))
            }
        })
    }

    /// The steps the component declares, in order.
    pub async fn steps(&self) -> Result<Vec<Step>, ConvertError> {
        self.call(async |guest, store| guest.call_steps(store).await).await
    }

    /// One record across step `to`.
    pub async fn convert(&self, to: u32, direction: Direction, entry: Entry) -> Result<Entry, ConvertError> {
        self.call(async |guest, store| guest.call_convert(store, to, direction, &entry).await)
            .await?
            .map_err(ConvertError::Refused)
    }

    /// The plugin's own check of a record at data version `version`.
    pub async fn check(&self, version: u32, entry: Entry) -> Result<(), ConvertError> {
        self.call(async |guest, store| guest.call_check(store, version, &entry).await)
            .await?
            .map_err(ConvertError::Refused)
    }
}
