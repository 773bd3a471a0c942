//! Integration tests: the real server over real sockets, real sled on disk,
//! and real wasm components built from source by `plinth-test-guests`.

mod config_errors;
mod hello;
mod http_limits;
mod logging;
mod sandbox;
mod shutdown;
mod support;
mod tls;
