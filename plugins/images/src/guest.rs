//! The worker's export: reads the job's one input, makes the variants,
//! stores each as a blob for the job's owner, and answers with their ids.

#[allow(missing_docs, unsafe_code, reason = "generated; the WIT documents it")]
mod bindings {
    wit_bindgen::generate!({
        path: "../../kit/wit",
        world: "plinth:platform/worker",
    });
}

use crate::{Params, make};
use bindings::exports::plinth::platform::work::{Guest, Job};
use bindings::plinth::platform::job_blobs;

/// Bytes asked for per read (the host's most).
const READ_CHUNK: u64 = 1 << 20;

struct Worker;

impl Guest for Worker {
    fn run(job: Job) -> Result<String, String> {
        let params: Params = serde_json::from_str(&job.params).map_err(|e| format!("params: {e}"))?;
        let [input] = job.inputs.as_slice() else {
            return Err(format!("a job names one image, not {}", job.inputs.len()));
        };
        let bytes = read(input, params.max_bytes)?;
        let made = make(&bytes, &params)?;
        drop(bytes);
        let mut variants = serde_json::Map::new();
        for variant in made.variants {
            let blob =
                job_blobs::create(&variant.bytes).map_err(|e| format!("storing variant `{}`: {e:?}", variant.name))?;
            variants.insert(
                variant.name,
                serde_json::json!({
                    "blob": blob,
                    "type": variant.content_type,
                    "width": variant.width,
                    "height": variant.height,
                    "size": variant.bytes.len(),
                }),
            );
        }
        let answer = serde_json::json!({ "width": made.width, "height": made.height, "variants": variants });
        Ok(answer.to_string())
    }
}

/// An input blob's bytes, refused past `max` before any is read.
fn read(id: &str, max: u64) -> Result<Vec<u8>, String> {
    let size = job_blobs::size(id).map_err(|e| format!("reading the image: {e:?}"))?;
    if size > max {
        return Err(format!("the file is {size} bytes; images of at most {max} bytes get variants"));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    while (bytes.len() as u64) < size {
        let chunk =
            job_blobs::read(id, bytes.len() as u64, READ_CHUNK).map_err(|e| format!("reading the image: {e:?}"))?;
        if chunk.is_empty() {
            break;
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

bindings::export!(Worker with_types_in bindings);
