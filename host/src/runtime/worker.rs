//! Worker components: a fresh instance per job, in the worker's own memory
//! and time limits, reaching only the blobs of the job it runs
//! (`plinth:platform/job-blobs`), the WASI baseline with nothing inherited,
//! and `log`. A decoder that blows up in there fails the job, not the host.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::blobs::Blobs;
use crate::config::WorkerConfig;
use crate::jobs::{Claimed, Jobs, MAX_TEXT, Ran};
use crate::runtime::bindings::log;
use crate::runtime::bindings::worker::{WorkerBindingsPre, job_blobs, job_kv, work};
use crate::runtime::epoch::{Running, Ticking};
use crate::runtime::host::log::{LogBudget, MAX_LINES_PER_JOB};
use crate::runtime::state::{BlobQuota, MemoryCap, sandboxed_wasi};
use crate::runtime::{LoadError, Runtime, grants};

/// What one job's instance reaches.
pub struct JobScope {
    /// The worker's name, for logs.
    pub worker: Arc<str>,
    /// The plugin that submitted the job; its blobs are the ones reached.
    pub plugin: String,
    /// The job's id.
    pub id: String,
    /// Who the blobs the worker makes belong to.
    pub owner: String,
    /// The only blobs the worker may read.
    pub inputs: Vec<String>,
    /// The submitting plugin's blob quotas, which new blobs count against.
    pub quota: BlobQuota,
    /// The blob store.
    pub blobs: Arc<Blobs>,
    /// The job store, which records each blob the worker makes.
    pub jobs: Arc<Jobs>,
    /// The submitting plugin's namespace and the prefix of it the job may
    /// read, when it was submitted with one.
    pub read: Option<(Arc<dyn crate::storage::Namespace>, String)>,
}

/// The data of one job's store.
pub struct WorkerState {
    /// Resources the guest holds handles to (WASI streams).
    pub table: ResourceTable,
    /// WASI with no preopens, no environment, no network.
    wasi: Option<WasiCtx>,
    /// The worker's memory limit.
    pub memory: MemoryCap,
    /// The job.
    pub job: JobScope,
    /// Uploads of writers not finished: removed when the job's store goes.
    pub open_writers: Vec<String>,
    /// The lines the guest may still log.
    log: LogBudget,
    /// Keeps the epoch moving while the guest may run.
    _running: Running,
}

impl Drop for WorkerState {
    fn drop(&mut self) {
        if self.open_writers.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (uploads, blobs, plugin) =
            (std::mem::take(&mut self.open_writers), self.job.blobs.clone(), self.job.plugin.clone());
        runtime.spawn(async move {
            for upload in uploads {
                if let Err(e) = blobs.cancel_upload(&plugin, &upload).await {
                    tracing::error!(plugin, upload, error = %e, "a worker's unfinished blob stays until it expires");
                }
            }
        });
    }
}

impl WasiView for WorkerState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let ctx = self.wasi.get_or_insert_with(|| sandboxed_wasi(&self.job.worker));
        WasiCtxView { ctx, table: &mut self.table }
    }
}

impl log::Host for WorkerState {
    fn log(&mut self, level: log::Level, message: String, fields: Vec<(String, String)>) -> wasmtime::Result<()> {
        self.log.emit(&self.job.worker, level, &message, &fields);
        Ok(())
    }
}

/// A compiled, linked worker.
pub struct Worker {
    /// Its name.
    pub name: Arc<str>,
    /// The config entry it was loaded from.
    pub config: WorkerConfig,
    /// SHA-256 of the component file.
    pub digest: String,
    pre: WorkerBindingsPre<WorkerState>,
    /// Jobs it may run at once.
    pub slots: Arc<Semaphore>,
    /// Keeps the epoch moving while its jobs run.
    ticking: Ticking,
}

impl Runtime {
    /// Prepares a worker: compile, check that it imports only the base and
    /// its job's blobs and exports `work`, link, pre-instantiate.
    pub async fn prepare_worker(
        &self,
        config: &WorkerConfig,
        bytes: Vec<u8>,
        digest: String,
    ) -> Result<Worker, LoadError> {
        let name = format!("worker {}", config.name);
        let (component, _) = self.compile_bytes(&name, &config.component, bytes, &digest).await?;
        let surface = grants::surface(self.engine(), &component);
        grants::check_worker(&surface).map_err(|problem| LoadError::Grants { plugin: name.clone(), problem })?;
        let link_error = |e: wasmtime::Error| LoadError::Link { plugin: name.clone(), reason: format!("{e:#}") };
        let mut linker = Linker::<WorkerState>::new(self.engine());
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(link_error)?;
        log::add_to_linker::<_, HasSelf<WorkerState>>(&mut linker, |s| s).map_err(link_error)?;
        job_blobs::add_to_linker::<_, HasSelf<WorkerState>>(&mut linker, |s| s).map_err(link_error)?;
        job_kv::add_to_linker::<_, HasSelf<WorkerState>>(&mut linker, |s| s).map_err(link_error)?;
        let pre = linker.instantiate_pre(&component).map_err(link_error)?;
        let pre = WorkerBindingsPre::new(pre).map_err(link_error)?;
        Ok(Worker {
            name: config.name.as_str().into(),
            config: config.clone(),
            digest,
            pre,
            slots: Arc::new(Semaphore::new(config.limits.concurrency as usize)),
            ticking: self.ticking(),
        })
    }
}

impl Worker {
    /// Runs one job in a fresh instance; the answer, or why it failed.
    pub async fn run(&self, claimed: &Claimed, scope: JobScope) -> (Result<String, String>, Ran) {
        let limits = &self.config.limits;
        let memory_limit = limits.memory.0 as usize;
        let timeout = Duration::from_millis(limits.timeout_ms);
        let state = WorkerState {
            table: ResourceTable::new(),
            wasi: None,
            memory: MemoryCap::new(memory_limit),
            job: scope,
            open_writers: Vec::new(),
            log: LogBudget::new(MAX_LINES_PER_JOB, "a job"),
            _running: self.ticking.running(),
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|s| &mut s.memory);
        let deadline = tokio::time::Instant::now() + timeout;
        crate::runtime::yield_until(&mut store, deadline);
        let job = work::Job {
            id: claimed.id.clone(),
            owner: claimed.record.owner.clone(),
            inputs: claimed.record.inputs.clone(),
            params: claimed.record.params.clone(),
        };
        let started = Instant::now();
        let call = async {
            let instance = self.pre.instantiate_async(&mut store).await?;
            instance.plinth_platform_work().call_run(&mut store, &job).await
        };
        let outcome = tokio::time::timeout_at(deadline, call).await;
        let ran = Ran {
            micros: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            peak_memory: store.data().memory.peak as u64,
        };
        let mib = memory_limit >> 20;
        let outcome = match outcome {
            Err(_) => Err(format!("the worker ran past its {timeout:?} limit")),
            Ok(Ok(Ok(answer))) if answer.len() > MAX_TEXT => {
                Err(format!("the worker's answer is {} bytes; at most {MAX_TEXT}", answer.len()))
            }
            Ok(Ok(Ok(answer))) => Ok(answer),
            Ok(Ok(Err(refusal))) => Err(bounded(refusal)),
            Ok(Err(_)) if store.data().memory.hit => Err(format!("the worker passed its memory limit of {mib} MiB")),
            Ok(Err(e)) if matches!(e.downcast_ref::<Trap>(), Some(Trap::Interrupt)) => {
                Err(format!("the worker ran past its {timeout:?} limit"))
            }
            Ok(Err(e)) => Err(bounded(format!("the worker trapped: {e:#}"))),
        };
        (outcome, ran)
    }
}

/// A failure text cut to [`MAX_TEXT`] bytes.
fn bounded(mut text: String) -> String {
    if text.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}
