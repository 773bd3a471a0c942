//! Integration tests: the real server over real sockets, real sled on disk,
//! and real wasm components built from source by `plinth-test-guests`.

mod account_abuse;
mod accounts;
mod audit;
mod browser;
mod chromium;
mod config_errors;
mod dev;
mod exhaustion;
mod feedback_desk;
mod form_attachments;
mod forms;
mod guide;
mod h2_abuse;
mod headers;
mod hello;
mod http_limits;
mod jobs;
mod logging;
mod mail;
mod media;
mod metrics;
mod notes;
mod openapi;
mod paths;
mod plugin_routes;
mod policies;
mod rate_limits;
mod reload;
mod sandbox;
mod sessions;
mod shutdown;
mod state;
mod support;
mod tls;
mod variants;
