//! Runs queued jobs on the workers of the current deployment, oldest first,
//! each worker at most its `limits.concurrency` at once. A job whose worker
//! is gone, or no longer takes its plugin's jobs, fails with that reason.

use std::sync::Arc;
use std::time::Duration;

use crate::app::App;
use crate::jobs::Queued;
use crate::metrics::Metrics;
use crate::runtime::state::BlobQuota;
use crate::runtime::worker::JobScope;

/// How often the queue is looked at when nothing wakes the dispatcher.
const IDLE_POLL: Duration = Duration::from_secs(5);

/// Starts queued jobs until `stop` resolves. Runs in progress then are
/// left to the process's end; the next start queues them again.
pub async fn run_until(app: Arc<App>, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        start_ready(&app).await;
        tokio::select! {
            () = &mut stop => return,
            () = app.jobs.wake.notified() => {}
            () = tokio::time::sleep(IDLE_POLL) => {}
        }
    }
}

/// Starts every queued job whose worker has a free slot.
async fn start_ready(app: &Arc<App>) {
    let queued = match app.jobs.queued().await {
        Ok(queued) => queued,
        Err(e) => {
            tracing::error!(error = %e, "reading the job queue failed");
            return;
        }
    };
    let deployment = app.deployment.load();
    for Queued { plugin, worker, id } in queued {
        let taker = deployment
            .workers
            .iter()
            .find(|w| *w.name == *worker)
            .filter(|w| w.config.plugins.contains(&plugin))
            .cloned();
        let submitter = deployment.plugins.iter().find(|p| p.config.name == plugin);
        let quota = submitter.map(|p| BlobQuota {
            plugin_bytes: p.config.limits.blob_bytes.0,
            owner_bytes: p.config.limits.blob_bytes_per_owner.0,
        });
        let namespace = submitter.map(|p| p.plugin.namespace());
        let (worker, quota, namespace) = match (taker, quota, namespace) {
            (Some(taker), Some(quota), Some(namespace)) => (taker, quota, namespace),
            _ => {
                let why = format!("no worker `{worker}` takes plugin `{plugin}`'s jobs any more");
                if let Ok(Some(claimed)) = app.jobs.claim(&plugin, &id).await {
                    let _ = app.jobs.finish(&claimed, Err(why), None).await;
                }
                continue;
            }
        };
        let Ok(slot) = worker.slots.clone().try_acquire_owned() else { continue };
        let claimed = match app.jobs.claim(&plugin, &id).await {
            Ok(Some(claimed)) => claimed,
            Ok(None) => continue,
            Err(e) => {
                tracing::error!(plugin, job = id, error = %e, "claiming a job failed");
                continue;
            }
        };
        let app = app.clone();
        tokio::spawn(async move {
            let scope = JobScope {
                worker: worker.name.clone(),
                plugin: claimed.plugin.clone(),
                id: claimed.id.clone(),
                owner: claimed.record.owner.clone(),
                inputs: claimed.record.inputs.clone(),
                quota,
                blobs: app.blobs.clone(),
                jobs: app.jobs.clone(),
                read: claimed.record.read_prefix.clone().map(|prefix| (namespace, prefix)),
            };
            let (outcome, ran) = worker.run(&claimed, scope).await;
            let result = if outcome.is_ok() { "done" } else { "failed" };
            Metrics::count(&app.metrics.jobs, result);
            Metrics::observe(&app.metrics.job_seconds, Duration::from_micros(ran.micros));
            let ms = ran.micros / 1000;
            match &outcome {
                Ok(_) => tracing::info!(worker = %worker.name, plugin = claimed.plugin, job = claimed.id, ms,
                    peak_memory = ran.peak_memory, "job done"),
                Err(why) => tracing::warn!(worker = %worker.name, plugin = claimed.plugin, job = claimed.id, ms,
                    reason = why, "job failed"),
            }
            if let Err(e) = app.jobs.finish(&claimed, outcome, Some(ran)).await {
                tracing::error!(job = claimed.id, error = %e, "recording a job's end failed; it runs again after a restart");
            }
            drop(slot);
            app.jobs.wake.notify_one();
        });
    }
}
