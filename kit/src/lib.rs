//! The plinth plugin kit: write a plugin as a [`Router`] of handlers that
//! take a [`Request`] and return a [`Response`] or an [`Error`], which is
//! already in the platform's error shape.
//!
//! ```ignore
//! use plinth_kit::prelude::*;
//!
//! fn router() -> Router {
//!     Router::new().get("/v1/greeting/{name}", greet)
//! }
//!
//! fn greet(req: &Request) -> Result<Response> {
//!     let name: String = req.param("name")?;
//!     Ok(Response::json(200, &serde_json::json!({ "hello": name })))
//! }
//!
//! plinth_kit::plugin!(router);
//! ```
//!
//! The routes are declared once, in the router: the host asks the component
//! for them at load and dispatches each request to the route it matched, so
//! the kit never reads the path a second time. Everything the WIT offers
//! stays reachable: [`bindings`] is the generated code, and each interface
//! module ([`kv`], [`audit`], [`sessions`]...) re-exports its types and
//! functions beside the kit's helpers.
//!
//! On the developer's machine (any target but wasm32) the same calls go to
//! an in-memory host, [`testing::TestHost`], so a plugin's handlers run in a
//! plain `cargo test`. Integration tests still run the real component.

mod error;
mod request;
mod response;
mod router;

pub mod assets;
pub mod audit;
pub mod blobs;
pub mod events;
pub mod files;
pub mod images;
pub mod jobs;
pub mod kv;
pub mod log;
pub mod messages;
pub mod migrations;
pub mod outbox;
pub mod passwords;
pub mod principals;
pub mod schemas;
pub mod sessions;
pub mod settings;
pub mod signing;
pub mod sniff;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
pub mod tus;
pub mod webhooks;

/// The code `wit-bindgen` generates for `plinth:platform/plugin`.
#[allow(missing_docs, unsafe_code, reason = "generated; the WIT documents it")]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "plinth:platform/plugin",
        pub_export_macro: true,
        export_macro_name: "export_bindings",
        default_bindings_module: "plinth_kit::bindings",
    });
}

/// The `migrations` export (world `plinth:platform/migrating`), exported
/// beside the handler only by a plugin that declares steps, so that the
/// others carry no migration code (each instance pays for it).
#[allow(missing_docs, unsafe_code, reason = "generated; the WIT documents it")]
pub mod migrating_bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "plinth:platform/migrating",
        pub_export_macro: true,
        export_macro_name: "export_migrations",
        default_bindings_module: "plinth_kit::migrating_bindings",
        with: { "plinth:platform/log@0.1.0": crate::bindings::plinth::platform::log },
    });
}

/// The `external-sign-in` export (world `plinth:platform/external-signing`),
/// exported by the plugin that owns accounts ([`external_sign_in!`]).
#[allow(missing_docs, unsafe_code, reason = "generated; the WIT documents it")]
pub mod external_signing_bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "plinth:platform/external-signing",
        pub_export_macro: true,
        export_macro_name: "export_external_sign_in",
        default_bindings_module: "plinth_kit::external_signing_bindings",
    });
}

/// Who an external provider says signed in, and the refusal a plugin
/// answers with ([`external_sign_in!`]).
pub mod external_sign_in {
    pub use crate::external_signing_bindings::exports::plinth::platform::external_sign_in::{Identity, Refusal};

    impl Refusal {
        /// A refusal with a stable code and a message for people.
        pub fn new(code: &str, message: impl Into<String>) -> Self {
            Self { code: code.to_owned(), message: message.into() }
        }
    }
}

pub use error::{Error, Problem, Result};
pub use request::{Principal, Request};
pub use response::Response;
pub use router::{Handler, Router};

/// What a plugin module usually needs.
pub mod prelude {
    pub use crate::{Error, Principal, Request, Response, Result, Router, kv};
}

/// A random id: 22 characters of URL-safe base64 (128 bits), for records.
pub fn new_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the host provides randomness");
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits: u128 = u128::from_le_bytes(bytes);
    (0..22)
        .map(|_| {
            let c = ALPHABET[(bits & 63) as usize] as char;
            bits >>= 6;
            c
        })
        .collect()
}

/// Exports the plugin's decision on sign-ins through external providers:
/// `plinth_kit::external_sign_in!(admit)` where `admit` is a
/// `fn(Identity) -> Result<String, Refusal>` answering with the account id
/// the person signs in as. Only the plugin `[auth] accounts_plugin` names
/// is asked.
#[macro_export]
macro_rules! external_sign_in {
    ($admit:path) => {
        #[doc(hidden)]
        pub struct PlinthKitExternalSignIn;

        impl $crate::external_signing_bindings::exports::plinth::platform::external_sign_in::Guest
            for PlinthKitExternalSignIn
        {
            fn admit(
                identity: $crate::external_sign_in::Identity,
            ) -> ::std::result::Result<::std::string::String, $crate::external_sign_in::Refusal> {
                $admit(identity)
            }
        }

        $crate::external_signing_bindings::export_external_sign_in!(
            PlinthKitExternalSignIn with_types_in $crate::external_signing_bindings
        );
    };
}

/// Exports a router as the plugin: `plinth_kit::plugin!(router)` where
/// `router` is a `fn() -> Router`. Declares the router's routes to the host
/// and serves each request with the handler of the route the host matched.
/// `plinth_kit::plugin!(router, migrations = migrations)`, with `migrations`
/// a `fn() -> Migrations`, also exports the plugin's data migrations.
#[macro_export]
macro_rules! plugin {
    ($router:path) => {
        #[doc(hidden)]
        pub struct PlinthKitPlugin;

        impl $crate::bindings::exports::plinth::platform::handler::Guest for PlinthKitPlugin {
            fn routes() -> ::std::vec::Vec<::std::string::String> {
                $router().declared()
            }

            fn handle(
                req: $crate::bindings::plinth::platform::types::Request,
            ) -> $crate::bindings::plinth::platform::types::Response {
                $router().serve_host(req)
            }
        }

        $crate::bindings::export_bindings!(PlinthKitPlugin with_types_in $crate::bindings);
    };
    ($router:path, migrations = $migrations:path) => {
        $crate::plugin!($router);

        impl $crate::migrating_bindings::exports::plinth::platform::migrations::Guest for PlinthKitPlugin {
            fn steps() -> ::std::vec::Vec<$crate::migrations::DeclaredStep> {
                $migrations().declared()
            }

            fn convert(
                to: u32,
                direction: $crate::migrations::Direction,
                record: $crate::migrations::Entry,
            ) -> ::std::result::Result<$crate::migrations::Entry, ::std::string::String> {
                $migrations().convert(to, direction, record.into()).map(::std::convert::Into::into)
            }

            fn check(
                version: u32,
                record: $crate::migrations::Entry,
            ) -> ::std::result::Result<(), ::std::string::String> {
                $migrations().check_record(version, &record.into())
            }
        }

        $crate::migrating_bindings::export_migrations!(PlinthKitPlugin with_types_in $crate::migrating_bindings);
    };
}
