//! The plugin's Fluent messages, formatted by the host in the locale it
//! negotiated for the request ([`crate::Request::locale`]).
//!
//! ```ignore
//! let text = messages::text(&req.locale(), "files-count", &[("count", Argument::Number(3.0))]);
//! ```

pub use crate::bindings::plinth::platform::messages::Argument;
#[cfg(target_arch = "wasm32")]
pub use crate::bindings::plinth::platform::messages::{is_rtl, locales};
#[cfg(not(target_arch = "wasm32"))]
pub use crate::testing::messages::{is_rtl, locales};

/// The message `key` in `locale` (the default locale's when `locale` is
/// not enabled), or none when the plugin has no such message.
pub fn format(locale: &str, key: &str, args: &[(&str, Argument)]) -> Option<String> {
    let args: Vec<(String, Argument)> = args.iter().map(|(n, v)| ((*n).to_owned(), v.clone())).collect();
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::plinth::platform::messages::format(locale, key, &args);
    #[cfg(not(target_arch = "wasm32"))]
    return crate::testing::messages::format(locale, key, &args);
}

/// Like [`format`], but the key itself when there is no such message, so
/// a missing translation shows up as its key instead of as nothing.
pub fn text(locale: &str, key: &str, args: &[(&str, Argument)]) -> String {
    format(locale, key, args).unwrap_or_else(|| key.to_owned())
}

/// Each `(locale, key)` of `keys` that some enabled locale lacks.
pub fn missing(keys: &[String]) -> Vec<(String, String)> {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::plinth::platform::messages::missing(keys);
    #[cfg(not(target_arch = "wasm32"))]
    return crate::testing::messages::missing(keys);
}
