//! The media plugin: uploads (tus and single requests) into the host's blob
//! store, items typed by their bytes and checked against their purpose,
//! served by the host with ranges and validators, image variants made by a
//! worker, signed links, and video embeds from a registry of providers. See
//! README.md for routes and settings.

mod embeds;
mod items;
mod origin;
mod purposes;
mod uploads;
mod variants;

use plinth_kit::prelude::*;

fn router() -> Router {
    Router::new()
        .route("OPTIONS /v1/media/uploads", uploads::options)
        .post("/v1/media/uploads", uploads::create)
        .get("/v1/media/uploads/{id}", uploads::status)
        .patch("/v1/media/uploads/{id}", uploads::append)
        .delete("/v1/media/uploads/{id}", uploads::terminate)
        .post("/v1/media", uploads::upload_whole)
        .get("/v1/media/usage", items::usage)
        .post("/v1/media/embeds", embeds::create)
        .get("/v1/media/embeds/frame-src", embeds::frame_src)
        .get("/v1/media/{id}", items::get)
        .get("/v1/media/{id}/info", items::info)
        .get("/v1/media/{id}/variants/{name}", variants::get)
        .delete("/v1/media/{id}", items::delete)
        .post("/v1/media/{id}/links", items::link)
}

plinth_kit::plugin!(router);

#[cfg(test)]
mod tests;
