//! Work handed to a worker component (grant `jobs`): run off the request
//! path in the worker's own sandbox and limits, reading the blobs the job
//! names and making blobs for its owner, which the job holds until the
//! plugin forgets it. A plugin submits, then reads the state when asked.

pub use crate::bindings::plinth::platform::jobs::{Error, Job, QueueFull, State};

#[cfg(target_arch = "wasm32")]
use crate::bindings::plinth::platform::jobs as host;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::jobs as host;

/// Queues a job for `worker`, which may read `inputs` (the plugin's blob
/// ids) and make blobs for `owner`; `params` is the worker's to read.
/// Returns the job's id.
pub fn submit(worker: &str, owner: &str, inputs: &[String], params: &str) -> Result<String, Error> {
    host::submit(worker, owner, inputs, params)
}

/// Queues a job over the plugin's own records (an export): the worker may
/// also read the plugin's keys under `read_prefix`, and `inputs` may be
/// empty.
pub fn submit_reading(
    worker: &str,
    owner: &str,
    inputs: &[String],
    params: &str,
    read_prefix: &str,
) -> Result<String, Error> {
    host::submit_reading(worker, owner, inputs, params, read_prefix)
}

/// A job.
pub fn get(id: &str) -> Result<Job, Error> {
    host::get(id)
}

/// Drops a job and unlinks the blobs it made.
pub fn forget(id: &str) -> Result<(), Error> {
    host::forget(id)
}

impl From<Error> for crate::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound => crate::Error::not_found("no such job"),
            Error::QueueFull(full) if full.scope == "owner" => {
                crate::Error::new(429, "jobs_busy", "you have too much work queued; try again when it is done")
                    .with_header("retry-after", "30")
            }
            Error::QueueFull(_) => crate::Error::new(503, "jobs_busy", "too much work is queued; try again later")
                .with_header("retry-after", "30"),
            Error::UnknownWorker(worker) => {
                crate::Error::new(500, "worker_missing", format!("no worker `{worker}` takes this service's jobs"))
            }
            Error::Invalid(why) => crate::Error::new(500, "invalid_job", why),
            Error::Unavailable(_) => crate::Error::new(503, "storage_unavailable", "the job queue is unavailable"),
        }
    }
}
