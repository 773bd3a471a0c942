//! The forms plugin: versioned form definitions, one validation for client
//! and server, localized messages, quiet abuse controls and submissions.
//! See README.md for routes, definitions and settings.

mod admin;
mod attachments;
mod exports;
mod localize;
mod notify;
mod pages;
mod pow;
mod render;
mod store;
mod submissions;
mod submit;

use plinth_kit::prelude::*;

fn router() -> Router {
    Router::new()
        .get("/v1/forms/{id}", render::show)
        .get("/v1/forms/{id}/challenge", pow::serve)
        .post("/v1/forms/{id}/validate", submit::validate)
        .post("/v1/forms/{id}/submissions", submit::submit)
        .get("/v1/forms/{id}/submissions", submissions::list)
        .post("/v1/forms/{id}/exports", exports::create)
        .get("/v1/forms/{id}/exports/{export}", exports::get)
        .get("/v1/forms/{id}/exports/{export}/file", exports::file)
        .delete("/v1/forms/{id}/exports/{export}", exports::delete)
        .route("OPTIONS /v1/forms/{id}/uploads", attachments::options)
        .post("/v1/forms/{id}/uploads", attachments::create)
        .get("/v1/forms/{id}/uploads/{upload}", attachments::status)
        .patch("/v1/forms/{id}/uploads/{upload}", attachments::append)
        .delete("/v1/forms/{id}/uploads/{upload}", attachments::terminate)
        .get("/v1/forms/{id}/submissions/{submission}", submissions::get)
        .get("/v1/forms/{id}/submissions/{submission}/files/{file}", submissions::file)
        .get("/v1/forms/{id}/submissions/{submission}/files/{file}/variants/{name}", submissions::variant)
        .delete("/v1/forms/{id}/submissions/{submission}", submissions::erase)
        .get("/forms/page.js", pages::script)
        .get("/forms/{id}", pages::show)
        .post("/forms/{id}", pages::post)
        .get("/forms/{id}/sent", pages::sent)
        .get("/v1/admin/forms", admin::list)
        .get("/v1/admin/forms/{id}", admin::get)
        .put("/v1/admin/forms/{id}", admin::put)
        .get("/v1/admin/forms/{id}/webhooks", notify::list)
        .post("/v1/admin/forms/{id}/webhooks/{endpoint}/enable", notify::enable)
}

plinth_kit::plugin!(router);

#[cfg(test)]
mod tests;
