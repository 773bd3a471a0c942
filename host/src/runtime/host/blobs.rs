//! `plinth:platform/blobs`: the blob store, scoped to the calling plugin
//! (its name comes from the host) and held to its quotas.

use std::time::Duration;

use bytes::Bytes;
use wasmtime::component::Resource;

use crate::blobs::{
    self as store, BlobError, BlobInfo, Checksum as StoreChecksum, ChecksumAlgorithm, Chunks, ScanState,
};
use crate::runtime::bindings::blobs::{Blob, Checksum, Error, Host, QuotaExceeded, ScanState as Scan, Upload};
use crate::runtime::host::types::{RequestBody, RequestData, ResponseData};
use crate::runtime::state::HostState;

/// Most bytes `create` takes from the plugin's memory.
const MAX_CREATE_BYTES: usize = 16 << 20;

fn blob(info: BlobInfo) -> Blob {
    let scan = match info.scan {
        ScanState::Pending => Scan::Pending,
        ScanState::Clean => Scan::Clean,
        ScanState::Infected(signature) => Scan::Infected(signature),
        ScanState::Failed(why) => Scan::Failed(why),
        ScanState::Unscanned => Scan::Unscanned,
    };
    Blob { id: info.id, owner: info.owner, size: info.size, refs: info.refs, created: info.created, scan }
}

fn upload(info: store::UploadInfo) -> Upload {
    Upload { id: info.id, owner: info.owner, length: info.length, offset: info.offset, expires: info.expires }
}

impl HostState {
    fn scope(&self) -> store::Scope<'_> {
        store::Scope {
            plugin: &self.plugin.name,
            plugin_bytes: self.plugin.blob_quota.plugin_bytes,
            owner_bytes: self.plugin.blob_quota.owner_bytes,
        }
    }

    /// The WIT error for a store error; a failed body is kept for the edge,
    /// which answers the request with it.
    fn blob_error(&mut self, e: BlobError) -> Error {
        match e {
            BlobError::NotFound(_) => Error::NotFound,
            BlobError::Expired => Error::Expired,
            BlobError::OffsetMismatch { current, .. } => Error::OffsetMismatch(current),
            BlobError::TooLarge { limit } => Error::TooLarge(limit),
            BlobError::QuotaExceeded { scope, limit, used, requested } => {
                Error::QuotaExceeded(QuotaExceeded { scope: scope.to_owned(), limit, used, requested })
            }
            BlobError::ChecksumMismatch(_) => Error::ChecksumMismatch,
            BlobError::Busy => Error::Busy,
            BlobError::Incomplete { offset, .. } => Error::Incomplete(offset),
            BlobError::DiskFull => Error::DiskFull,
            BlobError::Invalid(why) => Error::Invalid(why),
            BlobError::Body(failure) => {
                self.host_failure = Some(failure);
                Error::BodyFailed
            }
            BlobError::Storage(why) => {
                tracing::error!(plugin = %self.plugin.name, error = %why, "blob storage failed");
                Error::Unavailable(why)
            }
        }
    }

    /// The request's body as a source of chunks, taken from the request.
    fn take_body(&mut self, req: &Resource<RequestData>) -> wasmtime::Result<Result<Box<dyn Chunks>, Error>> {
        let body = std::mem::replace(&mut self.table.get_mut(req)?.body, RequestBody::Taken);
        Ok(match body {
            RequestBody::Read(bytes) => Ok(Box::new(store::Whole(Some(bytes)))),
            RequestBody::Pending { reader, .. } => Ok(Box::new(reader)),
            RequestBody::Taken => Err(Error::Invalid("the request body was streamed already".into())),
        })
    }

    fn settled<T, U>(&mut self, result: Result<T, BlobError>, map: impl FnOnce(T) -> U) -> Result<U, Error> {
        result.map(map).map_err(|e| self.blob_error(e))
    }

    /// A call that made a link: kept in mind until the plugin answers.
    fn linked(&mut self, result: Result<BlobInfo, BlobError>) -> Result<Blob, Error> {
        if let Ok(info) = &result {
            self.unanswered_links.push(info.id.clone());
        }
        self.settled(result, blob)
    }
}

impl Host for HostState {
    async fn create_upload(
        &mut self,
        owner: String,
        length: u64,
        ttl_seconds: u64,
    ) -> wasmtime::Result<Result<Upload, Error>> {
        let ctx = self.plugin.clone();
        let result = ctx.blobs.create_upload(&self.scope(), &owner, length, Duration::from_secs(ttl_seconds)).await;
        Ok(self.settled(result, upload))
    }

    async fn get_upload(&mut self, id: String) -> wasmtime::Result<Result<Upload, Error>> {
        let ctx = self.plugin.clone();
        let result = ctx.blobs.upload(&ctx.name, &id).await;
        Ok(self.settled(result, upload))
    }

    async fn append(
        &mut self,
        req: Resource<RequestData>,
        id: String,
        offset: u64,
        checksum: Option<Checksum>,
    ) -> wasmtime::Result<Result<u64, Error>> {
        let checksum = match checksum {
            None => None,
            Some(c) => match ChecksumAlgorithm::from_name(&c.algorithm) {
                Some(algorithm) => Some(StoreChecksum { algorithm, expected: c.digest }),
                None => {
                    return Ok(Err(Error::Invalid(format!(
                        "checksum algorithm `{}`; the host knows sha1 and sha256",
                        c.algorithm
                    ))));
                }
            },
        };
        let mut body = match self.take_body(&req)? {
            Ok(body) => body,
            Err(e) => return Ok(Err(e)),
        };
        let ctx = self.plugin.clone();
        let result = ctx.blobs.append(&ctx.name, &id, offset, body.as_mut(), checksum).await;
        Ok(self.settled(result, |offset| offset))
    }

    async fn finish_upload(&mut self, id: String) -> wasmtime::Result<Result<Blob, Error>> {
        let ctx = self.plugin.clone();
        // Hashing a large file is the host's work, not the plugin's time.
        let wait = self.request.body_wait.clone();
        let result = wait.counting(ctx.blobs.finish_upload(&ctx.name, &id)).await;
        Ok(self.linked(result))
    }

    async fn cancel_upload(&mut self, id: String) -> wasmtime::Result<Result<(), Error>> {
        let ctx = self.plugin.clone();
        let result = ctx.blobs.cancel_upload(&ctx.name, &id).await;
        Ok(self.settled(result, |()| ()))
    }

    async fn ingest(
        &mut self,
        req: Resource<RequestData>,
        owner: String,
        max: u64,
    ) -> wasmtime::Result<Result<Blob, Error>> {
        let declared = match &self.table.get(&req)?.body {
            RequestBody::Read(bytes) => Some(bytes.len() as u64),
            RequestBody::Pending { reader, .. } => reader.declared(),
            RequestBody::Taken => None,
        };
        let mut body = match self.take_body(&req)? {
            Ok(body) => body,
            Err(e) => return Ok(Err(e)),
        };
        let ctx = self.plugin.clone();
        let result = ctx.blobs.ingest(&self.scope(), &owner, body.as_mut(), declared, max).await;
        Ok(self.linked(result))
    }

    async fn create(&mut self, owner: String, bytes: Vec<u8>) -> wasmtime::Result<Result<Blob, Error>> {
        if bytes.len() > MAX_CREATE_BYTES {
            return Ok(Err(Error::TooLarge(MAX_CREATE_BYTES as u64)));
        }
        let ctx = self.plugin.clone();
        let result = ctx.blobs.create(&self.scope(), &owner, Bytes::from(bytes)).await;
        Ok(self.linked(result))
    }

    async fn get(&mut self, id: String) -> wasmtime::Result<Result<Blob, Error>> {
        let ctx = self.plugin.clone();
        let result = ctx.blobs.info(&ctx.name, &id).await;
        Ok(self.settled(result, blob))
    }

    async fn read(&mut self, id: String, offset: u64, len: u64) -> wasmtime::Result<Result<Vec<u8>, Error>> {
        let ctx = self.plugin.clone();
        let result = ctx.blobs.read(&ctx.name, &id, offset, len).await;
        Ok(self.settled(result, |bytes| bytes))
    }

    async fn link(&mut self, id: String) -> wasmtime::Result<Result<Blob, Error>> {
        let ctx = self.plugin.clone();
        let result = ctx.blobs.link(&ctx.name, &id).await;
        Ok(self.linked(result))
    }

    async fn unlink(&mut self, id: String) -> wasmtime::Result<Result<u64, Error>> {
        let ctx = self.plugin.clone();
        let result = ctx.blobs.unlink(&ctx.name, &id).await;
        Ok(self.settled(result, |refs| refs))
    }

    async fn usage(&mut self, owner: Option<String>) -> wasmtime::Result<Result<(u64, u64), Error>> {
        let ctx = self.plugin.clone();
        let result = match owner {
            Some(owner) => ctx.blobs.owner_usage(&ctx.name, &owner).await,
            None => ctx.blobs.plugin_usage(&ctx.name).await,
        };
        Ok(self.settled(result, |usage| usage))
    }

    async fn serve(&mut self, response: Resource<ResponseData>, id: String) -> wasmtime::Result<Result<(), Error>> {
        let ctx = self.plugin.clone();
        match ctx.blobs.info(&ctx.name, &id).await {
            Ok(info) => {
                self.table.get_mut(&response)?.blob = Some(info);
                Ok(Ok(()))
            }
            Err(e) => Ok(Err(self.blob_error(e))),
        }
    }
}
