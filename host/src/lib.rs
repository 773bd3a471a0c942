//! plinth: a hardened HTTP edge that hosts application features as
//! sandboxed WebAssembly components.
//!
//! Map of the crate (see ARCHITECTURE.md for the invariants):
//!
//! - [`config`]: `plinth.toml`, parsed and validated; [`path`]: the one
//!   canonical reading of a request path; [`routes`]: route patterns and
//!   the table that finds a request's plugin.
//! - [`server`]: listener, TLS ([`tls`]), connections (admission, idle
//!   and shedding), graceful shutdown; [`per_client`]: one client's share
//!   of a capacity.
//! - [`edge`]: one request from headers to response; [`error`] is the JSON
//!   error shape and [`trace`] the trace ids.
//! - [`runtime`]: wasmtime engine, plugin loading and grants, the host side
//!   of each WIT interface, one instance per request.
//! - [`storage`]: the storage trait and its sled backend; [`audit`]: the
//!   hash-chained audit log on top of it; [`blobs`]: files keyed per
//!   owner, with quotas and resumable uploads.
//! - [`identity`]: principal registry and sessions; [`passwords`]: argon2id
//!   and strength checks; [`policy`]: route rules; [`outbox`]: e-mail queue
//!   and delivery.
//! - [`app`]: everything one config describes, built and ready to serve.
//! - [`watch`]: reload when a config, policy or component file changes.
//! - [`cli`]: the `plinth` subcommands, called by the thin `main.rs`.

pub mod app;
pub mod assets;
pub mod audit;
pub mod backup;
pub mod blobs;
pub mod body;
pub mod cli;
pub mod config;
pub mod dev;
pub mod edge;
pub mod egress;
pub mod error;
pub mod events;
pub mod i18n;
pub mod identity;
pub mod jobs;
pub mod log_text;
pub mod log_writer;
pub mod metrics;
pub mod migrations;
pub mod oidc;
pub mod openapi;
pub mod outbox;
pub mod passwords;
pub mod path;
pub use plinth_routes as routes;
pub mod per_client;
pub mod policy;
pub mod runtime;
pub mod scaffold;
pub mod schemas;
pub mod server;
pub mod shape;
pub mod signing;
pub mod slo;
pub mod storage;
mod tls;
pub mod trace;
pub mod watch;
pub mod webhooks;

pub use app::App;
pub use config::Config;
pub use server::run;
