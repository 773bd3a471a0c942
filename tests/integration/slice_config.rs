//! A feature slice's `plinth.toml` (examples/{slice}) with the components
//! built for tests and absolute paths to the slice's files: shared by the
//! slices' tests (`slices.rs`) and their benchmark (`host/benches/slices.rs`
//! includes this file).

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The config text; `own` is the slice's own plugin and its component,
/// `policies` where the policy file is to be found, and the data goes to
/// `data` beside the config.
pub fn config(slice: &str, own: (&str, &str), policies: &str) -> String {
    let dir = format!("{ROOT}/examples/{slice}");
    let mut config = std::fs::read_to_string(format!("{dir}/plinth.toml")).unwrap();
    for (plugin, component) in [
        ("accounts", plinth_test_guests::ACCOUNTS),
        ("state", plinth_test_guests::STATE),
        ("forms", plinth_test_guests::FORMS),
        ("media", plinth_test_guests::MEDIA),
        ("images", plinth_test_guests::IMAGES),
        ("exports", plinth_test_guests::EXPORTS),
        own,
    ] {
        config = config.replace(&format!("../../target/plugins/{plugin}.wasm"), component);
    }
    config
        .replace("\"../../plugins/forms/locales\"", &format!("{:?}", format!("{ROOT}/plugins/forms/locales")))
        .replace(
            "\"../../plugins/accounts/migrations\"",
            &format!("{:?}", format!("{ROOT}/plugins/accounts/migrations")),
        )
        .replace("\"forms/locales\"", &format!("{:?}", format!("{dir}/forms/locales")))
        .replace("assets = \"forms\"", &format!("assets = {:?}", format!("{dir}/forms")))
        .replace("policies = \"policies.toml\"", &format!("policies = {policies:?}"))
        .replace(&format!("path = \"../../data/{slice}\""), "path = \"data\"")
        .replace(&format!("source = \"{}\"", own.0), &format!("source = {:?}", format!("{dir}/{}", own.0)))
}

/// examples/{slice}/policies.toml.
pub fn policies_path(slice: &str) -> String {
    format!("{ROOT}/examples/{slice}/policies.toml")
}
