//! `plinth.toml` and the policy file: any text is a config or an error
//! naming the file (for `plinth.toml`, it or the policy file it names),
//! never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use plinth::Config;
use plinth::policy::Policy;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = Config::parse(text, Path::new("/fuzz/plinth.toml")) {
        let message = e.to_string();
        let named = message.split(": ").next().unwrap_or_default();
        let policy_file = named.rsplit('/').next().is_some_and(|name| text.contains(name));
        assert!(named == "/fuzz/plinth.toml" || policy_file, "{e}");
    }
    if let Err(e) = Policy::parse(text, Path::new("/fuzz/routes.toml")) {
        assert!(e.to_string().starts_with("/fuzz/routes.toml"), "{e}");
    }
});
