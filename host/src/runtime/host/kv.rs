//! `plinth:platform/kv`: the plugin's own namespace. The namespace is fixed
//! when the plugin loads; nothing a guest passes can name another one.

use crate::metrics::Metrics;
use crate::runtime::bindings::kv::{Entry, Error, Host, Op, Page, Quota, Swap, Versioned, WriteOutcome};
use crate::runtime::state::{HostState, PluginContext};
use crate::storage::{self, StorageError};

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::QuotaExceeded { used, limit, requested } => {
                Error::QuotaExceeded(Quota { used, limit, requested })
            }
            StorageError::InvalidKey(why) => Error::InvalidKey(why),
            StorageError::ValueTooLarge => Error::ValueTooLarge(storage::MAX_VALUE_BYTES as u64),
            StorageError::Backend(why) => {
                tracing::error!(error = %why, "kv backend failure");
                Error::Storage(why)
            }
            StorageError::SnapshotRunning => Error::Storage("a backup is reading the data".into()),
            StorageError::Conversion(why) => Error::Storage(format!("migration conversion failed: {why}")),
        }
    }
}

/// The storage's batch ops for the WIT's.
pub(crate) fn ops(ops: Vec<Op>) -> Vec<storage::Op> {
    ops.into_iter()
        .map(|op| match op {
            Op::Set(Entry { key, value }) => storage::Op::Set(key, value),
            Op::Delete(key) => storage::Op::Delete(key),
        })
        .collect()
}

impl PluginContext {
    /// Counts a versioned write's outcome and converts it.
    pub(crate) fn count(&self, write: storage::VersionedWrite) -> WriteOutcome {
        let (outcome, name) = match write {
            storage::VersionedWrite::Written(version) => (WriteOutcome::Written(version), "written"),
            storage::VersionedWrite::Conflict(current) => (WriteOutcome::Conflict(current), "conflict"),
        };
        Metrics::count(&self.metrics.versioned_writes, name);
        outcome
    }
}

impl HostState {
    /// Records that this request wrote, so the response waits for a flush.
    pub(crate) fn wrote<T>(&mut self, result: Result<T, StorageError>) -> Result<T, Error> {
        if result.is_ok() {
            self.wrote = true;
        }
        self.read(result)
    }

    /// A storage result for the guest. A record that could not be converted
    /// between data versions fails the request with
    /// `migration_conversion_failed`, whatever the plugin makes of it.
    pub(crate) fn read<T>(&mut self, result: Result<T, StorageError>) -> Result<T, Error> {
        if let Err(StorageError::Conversion(why)) = &result {
            tracing::error!(plugin = %self.plugin.name, error = %why, "a record could not be converted");
            self.host_failure.get_or_insert_with(|| {
                crate::error::ApiError::new(
                    hyper::StatusCode::INTERNAL_SERVER_ERROR,
                    "migration_conversion_failed",
                    "a record this request needs could not be converted to this version's data format; the \
                     operator is told",
                )
            });
        }
        result.map_err(Error::from)
    }
}

impl Host for HostState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        let result = self.plugin.namespace.get(&key).await;
        Ok(self.read(result))
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), Error>> {
        let result = self.plugin.namespace.set(&key, value).await;
        Ok(self.wrote(result))
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<bool, Error>> {
        let result = self.plugin.namespace.delete(&key).await;
        Ok(self.wrote(result))
    }

    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> wasmtime::Result<Result<Swap, Error>> {
        let result = self.plugin.namespace.compare_and_swap(&key, expected, new).await;
        Ok(self.wrote(result).map(|swap| match swap {
            storage::Swap::Swapped => Swap::Swapped,
            storage::Swap::Conflict(current) => Swap::Conflict(current),
        }))
    }

    async fn scan_prefix(
        &mut self,
        prefix: String,
        start_after: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<Result<Page, Error>> {
        let ns = &self.plugin.namespace;
        let page = ns.scan_prefix(&prefix, start_after.as_deref(), limit as usize).await;
        Ok(self.read(page).map(|page| Page {
            entries: page.entries.into_iter().map(|(key, value)| Entry { key, value }).collect(),
            next: page.next,
        }))
    }

    async fn batch(&mut self, ops: Vec<Op>) -> wasmtime::Result<Result<(), Error>> {
        let result = self.plugin.namespace.batch(self::ops(ops)).await;
        Ok(self.wrote(result))
    }

    async fn get_versioned(&mut self, key: String) -> wasmtime::Result<Result<Option<Versioned>, Error>> {
        let found = self.plugin.namespace.get_versioned(&key).await;
        Ok(found.map_err(Error::from).map(|v| v.map(|(version, value)| Versioned { value, version })))
    }

    async fn write_versioned(
        &mut self,
        key: String,
        expected: Option<u64>,
        value: Option<Vec<u8>>,
        also: Vec<Op>,
    ) -> wasmtime::Result<Result<WriteOutcome, Error>> {
        let op = storage::VersionedOp { key, expected, value, also: ops(also) };
        let result = self.plugin.namespace.write_versioned(op, &|_| {}).await;
        let ctx = self.plugin.clone();
        Ok(self.wrote(result).map(|write| ctx.count(write)))
    }
}
