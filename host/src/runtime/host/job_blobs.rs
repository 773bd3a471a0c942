//! `plinth:platform/job-blobs`: what a worker reaches of the submitting
//! plugin's blobs while it runs one job: that job's inputs, read only, and
//! new blobs for the job's owner (whole, or written in pieces through a
//! writer, which is an upload of the blob store), each recorded on the job
//! before the worker learns its id.

use std::time::Duration;

use wasmtime::component::Resource;

use crate::blobs::{BlobError, Scope};
use crate::runtime::bindings::worker::job_blobs::{Error, Host, HostWriter};
use crate::runtime::worker::WorkerState;

/// Most bytes one `read` returns.
const MAX_READ: u64 = 1 << 20;
/// Most bytes `create` takes from the worker's memory.
const MAX_CREATE_BYTES: usize = 16 << 20;
/// Most bytes one `append` takes.
const MAX_APPEND_BYTES: usize = 1 << 20;
/// How long a writer's upload lives if its job never finishes it (a crash):
/// then the blob store removes it and gives its reservation back.
const WRITER_TTL: Duration = Duration::from_secs(6 * 3600);

/// A blob being written in pieces: an upload of the blob store.
#[derive(Debug)]
pub struct WriterData {
    /// The upload.
    upload: String,
    /// Bytes written so far.
    offset: u64,
    /// Most bytes it may hold.
    max: u64,
    /// Finished: no more pieces.
    done: bool,
}

fn error(e: BlobError) -> Error {
    match e {
        BlobError::NotFound(_) => Error::NotFound,
        BlobError::QuotaExceeded { .. } => Error::QuotaExceeded(e.to_string()),
        BlobError::Invalid(why) => Error::Invalid(why),
        other => Error::Unavailable(other.to_string()),
    }
}

impl WorkerState {
    /// `id` when it is one of the job's inputs.
    fn input(&self, id: &str) -> Result<(), Error> {
        if self.job.inputs.iter().any(|input| input == id) { Ok(()) } else { Err(Error::NotFound) }
    }
}

impl Host for WorkerState {
    async fn size(&mut self, id: String) -> wasmtime::Result<Result<u64, Error>> {
        if let Err(e) = self.input(&id) {
            return Ok(Err(e));
        }
        Ok(self.job.blobs.info(&self.job.plugin, &id).await.map(|info| info.size).map_err(error))
    }

    async fn read(&mut self, id: String, offset: u64, len: u64) -> wasmtime::Result<Result<Vec<u8>, Error>> {
        if let Err(e) = self.input(&id) {
            return Ok(Err(e));
        }
        if len > MAX_READ {
            return Ok(Err(Error::Invalid(format!("len: at most {MAX_READ} bytes per read, not {len}"))));
        }
        Ok(self.job.blobs.read(&self.job.plugin, &id, offset, len).await.map_err(error))
    }

    async fn create_writer(&mut self, max: u64) -> wasmtime::Result<Result<Resource<WriterData>, Error>> {
        let job = &self.job;
        let scope =
            Scope { plugin: &job.plugin, plugin_bytes: job.quota.plugin_bytes, owner_bytes: job.quota.owner_bytes };
        let upload = match job.blobs.create_upload(&scope, &job.owner, max, WRITER_TTL).await {
            Ok(upload) => upload,
            Err(e) => return Ok(Err(error(e))),
        };
        self.open_writers.push(upload.id.clone());
        Ok(Ok(self.table.push(WriterData { upload: upload.id, offset: 0, max, done: false })?))
    }

    async fn create(&mut self, bytes: Vec<u8>) -> wasmtime::Result<Result<String, Error>> {
        if bytes.len() > MAX_CREATE_BYTES {
            return Ok(Err(Error::Invalid(format!("at most {MAX_CREATE_BYTES} bytes per blob, not {}", bytes.len()))));
        }
        let job = &self.job;
        let (blobs, jobs) = (job.blobs.clone(), job.jobs.clone());
        let (plugin, owner, id, quota) = (job.plugin.clone(), job.owner.clone(), job.id.clone(), job.quota);
        // Stored and recorded on the job in a task of its own, so that a
        // run cut off at its deadline between the two cannot leave a blob
        // the job does not name; recorded before the worker learns the id,
        // so a crash or a forgotten job cannot either.
        let stored = tokio::spawn(async move {
            let scope = Scope { plugin: &plugin, plugin_bytes: quota.plugin_bytes, owner_bytes: quota.owner_bytes };
            let info = blobs.create(&scope, &owner, bytes.into()).await.map_err(error)?;
            jobs.made(&plugin, &id, &info.id)
                .await
                .map_err(|e| Error::Unavailable(format!("the job could not hold the blob: {e}")))?;
            Ok(info.id)
        });
        Ok(stored.await.unwrap_or_else(|e| Err(Error::Unavailable(format!("storing the blob failed: {e}")))))
    }
}

impl HostWriter for WorkerState {
    async fn append(&mut self, writer: Resource<WriterData>, bytes: Vec<u8>) -> wasmtime::Result<Result<(), Error>> {
        let data = self.table.get(&writer)?;
        if data.done {
            return Ok(Err(Error::Invalid("the writer is finished".into())));
        }
        if bytes.len() > MAX_APPEND_BYTES {
            return Ok(Err(Error::Invalid(format!(
                "at most {MAX_APPEND_BYTES} bytes per append, not {}",
                bytes.len()
            ))));
        }
        if data.offset + bytes.len() as u64 > data.max {
            return Ok(Err(Error::QuotaExceeded(format!("the writer holds at most {} bytes", data.max))));
        }
        let (upload, offset) = (data.upload.clone(), data.offset);
        match self.job.blobs.append_bytes(&self.job.plugin, &upload, offset, bytes.into()).await {
            Ok(new_offset) => {
                self.table.get_mut(&writer)?.offset = new_offset;
                Ok(Ok(()))
            }
            Err(e) => Ok(Err(error(e))),
        }
    }

    async fn finish(&mut self, writer: Resource<WriterData>) -> wasmtime::Result<Result<String, Error>> {
        let data = self.table.get_mut(&writer)?;
        if data.done {
            return Ok(Err(Error::Invalid("the writer is finished".into())));
        }
        data.done = true;
        let (upload, size) = (data.upload.clone(), data.offset);
        let job = &self.job;
        let (blobs, jobs) = (job.blobs.clone(), job.jobs.clone());
        let (plugin, id, finishing) = (job.plugin.clone(), job.id.clone(), upload.clone());
        // As `create`: finished and recorded on the job in a task of its own.
        let stored = tokio::spawn(async move {
            let info = blobs.finish_at(&plugin, &finishing, size).await.map_err(error)?;
            jobs.made(&plugin, &id, &info.id)
                .await
                .map_err(|e| Error::Unavailable(format!("the job could not hold the blob: {e}")))?;
            Ok(info.id)
        });
        let stored = stored.await.unwrap_or_else(|e| Err(Error::Unavailable(format!("storing the blob failed: {e}"))));
        // Finished, it is a blob the job holds; otherwise its upload stays
        // among the open ones and goes (with its reservation) when the run ends.
        if stored.is_ok() {
            self.open_writers.retain(|open| *open != upload);
        }
        Ok(stored)
    }

    async fn drop(&mut self, writer: Resource<WriterData>) -> wasmtime::Result<()> {
        self.table.delete(writer)?;
        Ok(())
    }
}
