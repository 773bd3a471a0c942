//! The state plugin: versioned JSON documents of configured kinds, with
//! atomic patches, live change feeds, sharing, and signed URL-state tokens.
//! See README.md for routes, settings and kinds.

mod changes;
mod documents;
mod idempotency;
mod kinds;
mod links;
mod sharing;
mod store;
mod views;

use plinth_kit::prelude::*;

fn router() -> Router {
    Router::new()
        .post("/v1/state/views", views::create)
        .get("/v1/state/views/{token}", views::open)
        .get("/v1/state/links/{token}", links::get)
        .get("/v1/state/links/{token}/changes", links::changes)
        .get("/v1/state/{kind}", documents::list)
        .post("/v1/state/{kind}", documents::create)
        .get("/v1/state/{kind}/{id}", documents::get)
        .put("/v1/state/{kind}/{id}", documents::put)
        .patch("/v1/state/{kind}/{id}", documents::patch)
        .delete("/v1/state/{kind}/{id}", documents::delete)
        .get("/v1/state/{kind}/{id}/changes", changes::changes)
        .get("/v1/state/{kind}/{id}/grants", sharing::list)
        .put("/v1/state/{kind}/{id}/grants/{account}", sharing::grant)
        .delete("/v1/state/{kind}/{id}/grants/{account}", sharing::revoke)
        .post("/v1/state/{kind}/{id}/links", links::create)
        .delete("/v1/state/{kind}/{id}/links", links::revoke)
}

plinth_kit::plugin!(router);

#[cfg(test)]
mod tests;
