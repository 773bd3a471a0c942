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

use plinth_kit::images::{self, Standing};
pub use plinth_kit::images::{Variants, forget, request};
use plinth_kit::{Error, Request, Response, Result};
use serde_json::json;

use crate::items::{self, Access, Item};
use crate::origin::Urls;
use crate::purposes::Purpose;

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

/// The `variants` part of an item's description: their state, and each
/// one's URL and size once ready.
pub fn describe(item: &Item, purpose: &Purpose, urls: &Urls, access: &Access) -> Result<serde_json::Value> {
    let Some(variants) = &item.variants else { return Ok(serde_json::Value::Null) };
    Ok(match images::standing(variants)? {
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
    Ok(images::serve(&item.blob, variants, &name)?.header("cache-control", items::caching(&purpose)))
}
