//! `plinth:platform/job-kv`: what a worker reads of the submitting
//! plugin's storage: the keys under the prefix its job was submitted with,
//! read only.

use crate::runtime::bindings::worker::job_kv::{Entry, Error, Host, Page};
use crate::runtime::worker::WorkerState;

/// Most entries one scan returns.
const MAX_PAGE: u32 = 1000;

impl Host for WorkerState {
    async fn scan(&mut self, start_after: Option<String>, limit: u32) -> wasmtime::Result<Result<Page, Error>> {
        let Some((namespace, prefix)) = &self.job.read else { return Ok(Err(Error::NotGranted)) };
        if start_after.as_ref().is_some_and(|after| !after.starts_with(prefix.as_str())) {
            return Ok(Err(Error::Invalid(format!("start-after: a key under `{prefix}`"))));
        }
        let limit = limit.clamp(1, MAX_PAGE) as usize;
        let page = match namespace.scan_prefix(prefix, start_after.as_deref(), limit).await {
            Ok(page) => page,
            Err(e) => return Ok(Err(Error::Unavailable(e.to_string()))),
        };
        let entries = page.entries.into_iter().map(|(key, value)| Entry { key, value }).collect();
        Ok(Ok(Page { entries, next: page.next }))
    }
}
