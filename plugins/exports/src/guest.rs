//! The worker's export: reads the job's records a page at a time, writes
//! their rows into a blob for the job's owner in pieces, and answers with
//! the blob and how many rows and bytes it holds.

#[allow(missing_docs, unsafe_code, reason = "generated; the WIT documents it")]
mod bindings {
    wit_bindgen::generate!({
        path: "../../kit/wit",
        world: "plinth:platform/worker",
    });
}

use bindings::exports::plinth::platform::work::{Guest, Job};
use bindings::plinth::platform::{job_blobs, job_kv};

use crate::{Params, Rows};

/// Records read per page.
const PAGE: u32 = 500;
/// Bytes gathered before they are handed to the blob.
const PIECE: usize = 256 * 1024;

struct Worker;

impl Guest for Worker {
    fn run(job: Job) -> Result<String, String> {
        let params: Params = serde_json::from_str(&job.params).map_err(|e| format!("params: {e}"))?;
        let writer = job_blobs::create_writer(params.max_bytes).map_err(|e| format!("starting the file: {e:?}"))?;
        let rows = Rows::new(params);
        let mut piece = rows.header();
        let (mut count, mut written) = (0u64, 0u64);
        let mut after: Option<String> = None;
        loop {
            let page = job_kv::scan(after.as_deref(), PAGE).map_err(|e| format!("reading the records: {e:?}"))?;
            for entry in &page.entries {
                let row = rows.row(&entry.value)?;
                if row.is_empty() {
                    continue;
                }
                piece.extend(row);
                count += 1;
                if piece.len() >= PIECE {
                    writer.append(&piece).map_err(|e| format!("writing the file: {e:?}"))?;
                    written += piece.len() as u64;
                    piece.clear();
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        if !piece.is_empty() {
            writer.append(&piece).map_err(|e| format!("writing the file: {e:?}"))?;
            written += piece.len() as u64;
        }
        let blob = writer.finish().map_err(|e| format!("finishing the file: {e:?}"))?;
        Ok(serde_json::json!({ "blob": blob, "rows": count, "bytes": written }).to_string())
    }
}

bindings::export!(Worker with_types_in bindings);
