//! Image variants (thumbnails), made off the request path by a worker
//! component: an admitted image of a purpose with `variants` gets one job,
//! whose blobs the job holds until the item is deleted. Which worker, and
//! the decoder limits it is given, come from the settings
//! `variant_worker` (default `images`) and `variant_limits`.
//!
//! A variant is read like its item (same readers, same links) and served
//! by the host; while the job runs it is 503 `variant_pending`, and when
//! the worker refused the image (a decompression bomb, an unreadable file)
//! it is 422 `variant_failed` with the worker's reason.

use std::collections::BTreeMap;

use plinth_kit::blobs::ScanState;
use plinth_kit::{Error, Request, Response, Result, jobs, settings};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::items::{self, Access, Item};
use crate::origin::Urls;
use crate::purposes::Purpose;

/// Types the worker makes variants of; others (SVG above all) get none.
const RASTER_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];
/// The worker asked when `variant_worker` is not set.
const DEFAULT_WORKER: &str = "images";

/// An item's variants: the names asked for, and the job making them (or
/// why none could be queued).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variants {
    /// Variant names, as the purpose named them.
    pub names: Vec<String>,
    /// The worker's job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Why no job was queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One variant the worker made, from its answer.
#[derive(Debug, Clone, Deserialize)]
struct Made {
    blob: String,
    #[serde(rename = "type")]
    media_type: String,
    width: u32,
    height: u32,
}

/// The worker's answer.
#[derive(Debug, Clone, Deserialize)]
struct Answer {
    variants: BTreeMap<String, Made>,
}

/// Where an item's variants stand.
enum Standing {
    Pending,
    Ready(Answer),
    Failed(String),
}

/// Queues the variants `sizes` asks for of an admitted image; none for
/// other types. A job that cannot be queued leaves the item without
/// variants, saying why (the upload itself stands).
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
            plinth_kit::log::warn("image variants could not be queued", &[("reason", &why)]);
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

/// Queues again the variants of an item whose job could not be queued
/// (the queue may have room now): the item is written with its job only
/// if no one changed it meanwhile, or the job is forgotten again.
pub fn requeue(item: Item, purpose: &Purpose) -> Result<Item> {
    if item.variants.as_ref().is_none_or(|v| v.job.is_some()) {
        return Ok(item);
    }
    let fresh = request(&item.owner, &item.blob, &item.media_type, &purpose.variants);
    if fresh.as_ref().is_none_or(|v| v.job.is_none()) {
        return Ok(item);
    }
    let next = Item { variants: fresh, ..item.clone() };
    if items::swap(&item, &next)? {
        Ok(next)
    } else {
        forget(next.variants.as_ref())?;
        Ok(item)
    }
}

/// Drops the job of a deleted item (and so its variants' blobs).
pub fn forget(variants: Option<&Variants>) -> Result<()> {
    match variants.and_then(|v| v.job.as_deref()).map(jobs::forget) {
        None | Some(Ok(()) | Err(jobs::Error::NotFound)) => Ok(()),
        Some(Err(e)) => Err(e.into()),
    }
}

fn standing(variants: &Variants) -> Result<Standing> {
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

/// The `variants` part of an item's description: their state, and each
/// one's URL and size once ready.
pub fn describe(item: &Item, purpose: &Purpose, urls: &Urls, access: &Access) -> Result<serde_json::Value> {
    let Some(variants) = &item.variants else { return Ok(serde_json::Value::Null) };
    Ok(match standing(variants)? {
        Standing::Pending => json!({ "state": "pending", "names": variants.names }),
        Standing::Failed(why) => json!({ "state": "failed", "names": variants.names, "reason": why }),
        Standing::Ready(answer) => {
            let made = answer
                .variants
                .iter()
                .map(|(name, made)| {
                    let url = urls.file(item, purpose, Some(name), access)?;
                    let view =
                        json!({ "url": url, "type": made.media_type, "width": made.width, "height": made.height });
                    Ok((name.clone(), view))
                })
                .collect::<Result<serde_json::Map<String, serde_json::Value>>>()?;
            json!({ "state": "ready", "names": variants.names, "variants": made })
        }
    })
}

/// `GET /v1/media/{id}/variants/{name}`: the variant, served by the host,
/// to whoever may read the item.
pub fn get(req: &Request) -> Result<Response> {
    let name: String = req.param("name")?;
    let (item, purpose, _) = items::readable(req, Some(&name))?;
    let item = requeue(item, &purpose)?;
    let no_variant = || Error::not_found(format!("media item `{}` has no variant `{name}`", item.id));
    let variants = item.variants.as_ref().filter(|v| v.names.contains(&name)).ok_or_else(no_variant)?;
    // A variant is served only when its item would be: the scanner's
    // verdict on the original stands for its thumbnails too.
    let held = match plinth_kit::blobs::get(&item.blob)?.scan {
        ScanState::Clean | ScanState::Unscanned => None,
        ScanState::Pending => Some(
            Error::new(503, "scan_pending", "the file is waiting for its virus scan; retry shortly")
                .with_header("retry-after", "5"),
        ),
        ScanState::Failed(_) => {
            Some(Error::new(503, "scan_failed", "the virus scanner could not check this file, so it is not served"))
        }
        ScanState::Infected(_) => {
            Some(Error::new(403, "file_infected", "the virus scanner found malware in this file"))
        }
    };
    if let Some(refusal) = held {
        return Err(refusal);
    }
    match standing(variants)? {
        Standing::Pending => Err(Error::new(503, "variant_pending", "the variant is being made; try again shortly")
            .with_header("retry-after", "2")),
        Standing::Failed(why) => Err(Error::new(422, "variant_failed", format!("the image got no variants: {why}"))),
        Standing::Ready(answer) => {
            let made = answer.variants.get(&name).ok_or_else(no_variant)?;
            Ok(Response::blob(&made.blob, &made.media_type)
                .header("content-disposition", "inline")
                .header("cache-control", items::caching(&purpose)))
        }
    }
}
