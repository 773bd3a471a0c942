//! `plinth:platform/jobs`: work a plugin hands to the workers that take its
//! jobs, scoped to the calling plugin (its name comes from the host).

use crate::jobs::{JobError, JobRecord, JobState, Work};
use crate::runtime::bindings::jobs::{Error, Host, Job, QueueFull, State};
use crate::runtime::state::HostState;

fn error(e: JobError) -> Error {
    match e {
        JobError::NotFound => Error::NotFound,
        JobError::UnknownWorker(worker) => Error::UnknownWorker(worker),
        JobError::QueueFull { scope, limit } => Error::QueueFull(QueueFull { scope: scope.to_owned(), limit }),
        JobError::Invalid(why) => Error::Invalid(why),
        JobError::Storage(why) => Error::Unavailable(why),
    }
}

fn job(id: String, record: JobRecord) -> Job {
    let state = match record.state {
        JobState::Queued => State::Queued,
        JobState::Running => State::Running,
        JobState::Done(answer) => State::Done(answer),
        JobState::Failed(why) => State::Failed(why),
    };
    // Only a finished job's blobs are its outputs; a run's are not yet.
    let outputs = if matches!(state, State::Done(_)) { record.made } else { Vec::new() };
    Job { id, worker: record.worker, owner: record.owner, state, outputs, submitted: record.submitted }
}

impl Host for HostState {
    async fn submit(
        &mut self,
        worker: String,
        owner: String,
        inputs: Vec<String>,
        params: String,
    ) -> wasmtime::Result<Result<String, Error>> {
        let plugin = &self.plugin;
        let submitted =
            plugin.jobs.submit(&plugin.name, &worker, &owner, Work::on(inputs, params), plugin.job_limits).await;
        if let Ok(id) = &submitted {
            self.unanswered_jobs.push(id.clone());
        }
        Ok(submitted.map_err(error))
    }

    async fn submit_reading(
        &mut self,
        worker: String,
        owner: String,
        inputs: Vec<String>,
        params: String,
        read_prefix: String,
    ) -> wasmtime::Result<Result<String, Error>> {
        let plugin = &self.plugin;
        let work = Work { inputs, params, read_prefix: Some(read_prefix) };
        let submitted = plugin.jobs.submit(&plugin.name, &worker, &owner, work, plugin.job_limits).await;
        if let Ok(id) = &submitted {
            self.unanswered_jobs.push(id.clone());
        }
        Ok(submitted.map_err(error))
    }

    async fn get(&mut self, id: String) -> wasmtime::Result<Result<Job, Error>> {
        Ok(self.plugin.jobs.get(&self.plugin.name, &id).await.map(|record| job(id, record)).map_err(error))
    }

    async fn forget(&mut self, id: String) -> wasmtime::Result<Result<(), Error>> {
        Ok(self.plugin.jobs.forget(&self.plugin.name, &id).await.map_err(error))
    }
}
