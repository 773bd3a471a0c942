//! One file per WIT interface the host implements for plugins (and for
//! workers: `job_blobs`).

pub mod assets;
pub mod audit;
pub mod blobs;
pub mod events;
pub mod job_blobs;
pub mod job_kv;
pub mod jobs;
pub mod kv;
pub mod log;
pub mod messages;
pub mod outbox;
pub mod passwords;
pub mod principals;
pub mod schemas;
pub mod sessions;
pub mod settings;
pub mod signing;
pub mod types;
pub mod webhooks;
