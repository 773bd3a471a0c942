//! Image variants (thumbnails, copies without metadata) made off the
//! request path by an image worker such as `plugins/images` (grant `jobs`,
//! and a `[[workers]]` entry listing the plugin): one job per image, whose
//! blobs the job holds until the plugin forgets it. Which worker, and the
//! decoder limits it is given, come from the settings `variant_worker`
//! (default `images`) and `variant_limits`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::blobs::{self, ScanState};
use crate::{Error, Response, Result, jobs, settings};

/// Types the worker makes variants of; others (SVG above all) get none.
pub const RASTER_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];
/// The worker asked when `variant_worker` is not set.
const DEFAULT_WORKER: &str = "images";
/// Largest box a variant may fit in (the worker's own bound).
pub const MAX_BOX: u32 = 4096;

/// An image's variants: the names asked for, and the job making them (or
/// why none could be queued).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variants {
    /// Variant names.
    pub names: Vec<String>,
    /// The worker's job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Why no job was queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One variant the worker made.
#[derive(Debug, Clone, Deserialize)]
pub struct Made {
    /// The blob holding it (held by the job).
    pub blob: String,
    /// Its media type.
    #[serde(rename = "type")]
    pub media_type: String,
    /// Its width in pixels.
    pub width: u32,
    /// Its height in pixels.
    pub height: u32,
}

/// The worker's answer.
#[derive(Debug, Clone, Deserialize)]
pub struct Answer {
    /// Each variant made, by name.
    pub variants: BTreeMap<String, Made>,
}

/// Where an image's variants stand.
pub enum Standing {
    /// The job is queued or running.
    Pending,
    /// Made.
    Ready(Answer),
    /// Refused (a decompression bomb, an unreadable file) or never queued: why.
    Failed(String),
}

/// Whether `name` may name a variant: 1 to 32 of `a-z 0-9 - _`.
pub fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Queues the variants `sizes` asks for (name → the square box it fits
/// in) of image `blob` of `owner`; none for other types. A job that cannot
/// be queued leaves the image without variants, saying why.
pub fn request(owner: &str, blob: &str, media_type: &str, sizes: &BTreeMap<String, u32>) -> Option<Variants> {
    if sizes.is_empty() || !RASTER_TYPES.contains(&media_type) {
        return None;
    }
    let names = sizes.keys().cloned().collect();
    let outcome = params(sizes).and_then(|params| {
        let worker = settings::get("variant_worker").unwrap_or_else(|| DEFAULT_WORKER.to_owned());
        jobs::submit(&worker, owner, &[blob.to_owned()], &params).map_err(|e| Error::from(e).message)
    });
    Some(match outcome {
        Ok(job) => Variants { names, job: Some(job), error: None },
        Err(why) => {
            crate::log::warn("image variants could not be queued", &[("reason", &why)]);
            Variants { names, job: None, error: Some(format!("variants could not be queued: {why}")) }
        }
    })
}

/// The worker's parameters: the sizes, and the limits from `variant_limits`.
fn params(sizes: &BTreeMap<String, u32>) -> std::result::Result<String, String> {
    let mut params = match settings::get("variant_limits") {
        Some(text) => serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&text)
            .map_err(|e| format!("setting `variant_limits`: {e}"))?,
        None => serde_json::Map::new(),
    };
    params.insert("sizes".into(), json!(sizes));
    Ok(serde_json::Value::Object(params).to_string())
}

/// Drops the job of an image that is gone (and so its variants' blobs).
pub fn forget(variants: Option<&Variants>) -> Result<()> {
    match variants.and_then(|v| v.job.as_deref()).map(jobs::forget) {
        None | Some(Ok(()) | Err(jobs::Error::NotFound)) => Ok(()),
        Some(Err(e)) => Err(e.into()),
    }
}

/// Where `variants` stand, from their job.
pub fn standing(variants: &Variants) -> Result<Standing> {
    let Some(job) = &variants.job else {
        return Ok(Standing::Failed(variants.error.clone().unwrap_or_default()));
    };
    Ok(match jobs::get(job)?.state {
        jobs::State::Queued | jobs::State::Running => Standing::Pending,
        jobs::State::Failed(why) => Standing::Failed(why),
        jobs::State::Done(answer) => match serde_json::from_str(&answer) {
            Ok(answer) => Standing::Ready(answer),
            Err(e) => Standing::Failed(format!("the worker's answer is unreadable: {e}")),
        },
    })
}

/// Variant `name` of an image whose original is blob `original`, served by
/// the host: only when the original would be (the scanner's verdict on it
/// stands for its variants), 503 `variant_pending` while the job runs, 422
/// `variant_failed` when the worker refused the image, 404 `no_variant`.
pub fn serve(original: &str, variants: &Variants, name: &str) -> Result<Response> {
    let no_variant = || Error::new(404, "no_variant", format!("no variant `{name}`"));
    if !variants.names.iter().any(|n| n == name) {
        return Err(no_variant());
    }
    servable(original)?;
    match standing(variants)? {
        Standing::Pending => Err(Error::new(503, "variant_pending", "the variant is being made; try again shortly")
            .with_header("retry-after", "2")),
        Standing::Failed(why) => Err(Error::new(422, "variant_failed", format!("the image got no variants: {why}"))),
        Standing::Ready(answer) => {
            let made = answer.variants.get(name).ok_or_else(no_variant)?;
            Ok(Response::blob(&made.blob, &made.media_type).header("content-disposition", "inline"))
        }
    }
}

/// Whether the host serves blob `id` now, as its scan stands: 503
/// `scan_pending` or `scan_failed`, 403 `file_infected` otherwise.
pub fn servable(id: &str) -> Result<()> {
    match blobs::get(id)?.scan {
        ScanState::Clean | ScanState::Unscanned => Ok(()),
        ScanState::Pending => {
            Err(Error::new(503, "scan_pending", "the file is waiting for its virus scan; retry shortly")
                .with_header("retry-after", "5"))
        }
        ScanState::Failed(_) => {
            Err(Error::new(503, "scan_failed", "the virus scanner could not check this file, so it is not served"))
        }
        ScanState::Infected(_) => Err(Error::new(403, "file_infected", "the virus scanner found malware in this file")),
    }
}
