//! Bad config files each give a message naming the file, the key and what
//! is valid.

use crate::support::{Deployment, hello_plugin, plinth_cli, plugin};

fn load_error(toml: &str) -> String {
    let deployment = Deployment::new(toml);
    let err = deployment.load().expect_err("the config should be refused");
    let file = deployment.config_path().display().to_string();
    assert!(err.starts_with(&file), "the message names the file: {err}");
    err
}

#[test]
fn unknown_key() {
    let err = load_error(&format!("{}[server]\nlisten = \"127.0.0.1:0\"\nmax_conections = 5\n", hello_plugin()));
    assert!(err.contains("max_conections"), "{err}");
    assert!(err.contains("max_connections"), "lists the valid keys: {err}");
}

#[test]
fn missing_component_file() {
    let err = load_error(&plugin("ghost", "/nonexistent/ghost.wasm", &["/v1/ghost"], &[], ""));
    assert!(err.contains("plugins[0].component"), "{err}");
    assert!(err.contains("/nonexistent/ghost.wasm") && err.contains("does not exist"), "{err}");
}

#[test]
fn overlapping_routes_in_one_plugin() {
    let hello = plinth_test_guests::HELLO;
    let err = load_error(&plugin("things", hello, &["/v1/things/{id}", "GET /v1/things/new"], &[], ""));
    assert!(err.contains("plugins[0].routes[1]"), "{err}");
    assert!(err.contains("`GET /v1/things/new` overlaps route `/v1/things/{id}`"), "{err}");
}

#[test]
fn a_route_in_two_plugins() {
    let hello = plinth_test_guests::HELLO;
    let err = load_error(&format!(
        "{}{}",
        plugin("first", hello, &["/v1/shared/**"], &[], ""),
        plugin("second", hello, &["POST /v1/shared/x"], &[], "")
    ));
    assert!(err.contains("plugins[1].routes[0]"), "{err}");
    assert!(err.contains("of plugin `second` overlaps route `/v1/shared/**` of plugin `first`"), "{err}");
}

#[test]
fn malformed_route_and_bad_size() {
    let hello = plinth_test_guests::HELLO;
    let err = load_error(&plugin("bad", hello, &["/v1/x{id}"], &[], ""));
    assert!(err.contains("plugins[0].routes[0]") && err.contains("`{name}`"), "{err}");
    let err = load_error(&plugin("bad", hello, &["/v1/x"], &[], "memory = \"lots\""));
    assert!(err.contains("lots") && err.contains("MiB"), "{err}");
}

#[test]
fn service_level_objectives_are_percentages_and_a_latency() {
    let err = load_error("[slo.classes.login]\navailability = 100.0\nlatency_ms = 500\nlatency_target = 99.0\n");
    assert!(err.contains("slo.classes.login.availability") && err.contains("below 100"), "{err}");
    let err = load_error("[slo.default]\navailability = 99.9\nlatency_ms = 0\nlatency_target = 99.0\n");
    assert!(err.contains("slo.default.latency_ms"), "{err}");
    let err = load_error("[slo.default]\navailability = 99.9\nlatency = 5\n");
    assert!(err.contains("latency"), "an unknown key is named: {err}");
}

#[test]
fn check_command_reports_and_fails() {
    let good = Deployment::new(&hello_plugin());
    let (ok, stdout, _) = plinth_cli(&["check", "--config", good.config_path().to_str().unwrap()]);
    assert!(ok, "{stdout}");
    assert!(stdout.contains("ok: plugin `hello` sha256:"), "{stdout}");

    let ungranted = Deployment::new(&plugin("sneaky", plinth_test_guests::KVPROBE, &["/v1/k/{key}"], &[], ""));
    let (ok, _, stderr) = plinth_cli(&["check", "--config", ungranted.config_path().to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("plugin `sneaky`") && stderr.contains("grant `kv`"), "{stderr}");
}

#[test]
fn inspect_lists_imports_and_needed_grants() {
    let (ok, stdout, stderr) = plinth_cli(&["plugin", "inspect", plinth_test_guests::HELLO]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("plinth:platform/kv@0.1.0  (grant `kv`)"), "{stdout}");
    assert!(stdout.contains("exports:\n  plinth:platform/handler@0.1.0"), "{stdout}");
    assert!(stdout.contains("grants needed: [\"kv\"]"), "{stdout}");
}

/// No plugin can take a path the host serves itself (THREATS.md A18), and
/// the new server settings are checked like the rest.
#[test]
fn host_routes_and_shares_cannot_be_claimed_or_overdrawn() {
    let hello = plinth_test_guests::HELLO;
    for route in ["/admin/**", "GET /admin/audit", "/healthz", "/metrics", "/**"] {
        let err = load_error(&plugin("grabby", hello, &[route], &[], ""));
        assert!(err.contains("plugins[0].routes[0]") && err.contains("host"), "{route}: {err}");
    }
    let err = load_error(&format!("[server]\nmax_in_flight = 8\nmax_in_flight_per_client = 9\n\n{}", hello_plugin()));
    assert!(err.contains("server.max_in_flight_per_client") && err.contains("max_in_flight (8)"), "{err}");
    let err = load_error(&format!("[sessions]\nallowed_origins = [\"app.example.com\"]\n\n{}", hello_plugin()));
    assert!(err.contains("sessions.allowed_origins[0]") && err.contains("scheme://host"), "{err}");
    let err = load_error(&format!("[proxies]\nheader = \"x-real-ip\"\n\n{}", hello_plugin()));
    assert!(err.contains("x-forwarded-for") && err.contains("forwarded"), "{err}");
    let err = load_error(&format!("[audit]\non_broken = \"ignore\"\n\n{}", hello_plugin()));
    assert!(err.contains("refuse") && err.contains("warn"), "{err}");
}

#[test]
fn workers_name_plugins_that_may_submit_and_stay_within_their_slots() {
    let hello = plinth_test_guests::HELLO;
    let images = plinth_test_guests::IMAGES;
    let worker = |plugins: &str, limits: &str| {
        format!(
            "[[workers]]\nname = \"images\"\ncomponent = {images:?}\nplugins = [{plugins}]\nlimits = {{ {limits} }}\n"
        )
    };
    let submitter = plugin("media", hello, &["/v1/media"], &["blobs", "jobs"], "");
    let err = load_error(&format!("{submitter}{}", worker("\"ghost\"", "")));
    assert!(err.contains("workers[0].plugins[0]") && err.contains("no plugin `ghost`"), "{err}");
    let plain = plugin("plain", hello, &["/v1/plain"], &["blobs"], "");
    let err = load_error(&format!("{plain}{}", worker("\"plain\"", "")));
    assert!(err.contains("workers[0].plugins[0]") && err.contains("add \"jobs\""), "{err}");
    let err = load_error(&format!("{submitter}{}", worker("\"media\"", "concurrency = 17")));
    assert!(err.contains("workers[0].limits.concurrency") && err.contains("at most 16"), "{err}");
    let err = load_error(&plugin("media", hello, &["/v1/media"], &["jobs"], ""));
    assert!(err.contains("plugins[0].grants") && err.contains("needs grant `blobs`"), "{err}");
    let err = load_error(&format!("{submitter}{}{}", worker("\"media\"", ""), worker("\"media\"", "")));
    assert!(err.contains("workers[1].name") && err.contains("defined twice"), "{err}");
}

#[test]
fn relative_paths_are_read_from_the_config_files_directory() {
    // As examples/plinth.toml names its components: relative to itself,
    // whatever directory plinth runs in.
    let media = plugin("media", plinth_test_guests::HELLO, &["/v1/media"], &["blobs", "jobs"], "");
    let worker = "[[workers]]\nname = \"images\"\ncomponent = \"images.wasm\"\nplugins = [\"media\"]\n";
    let deployment = Deployment::new(&format!("{media}{worker}"));
    let dir = deployment.config_path().parent().unwrap().to_owned();
    std::fs::copy(plinth_test_guests::IMAGES, dir.join("images.wasm")).unwrap();
    let config = deployment.load().expect("the worker's component is found beside the config");
    assert_eq!(config.workers[0].component, dir.join("images.wasm"));
}
