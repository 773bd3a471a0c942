//! docs/plugins.md, run as written: every command in its `sh` blocks, in
//! order, in a fresh directory, with this build's `plinth` on the PATH: a
//! Rust plugin, then one in JavaScript and one in Python.

use std::process::Command;

use crate::support::sh_blocks;

#[test]
fn the_plugin_guide_runs_as_written() {
    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/plugins.md")).unwrap();
    let script = sh_blocks(&guide);
    assert!(script.contains("plinth new plugin greeter") && script.contains("curl"), "{script}");
    // The guide's ports, moved to free ones.
    let mut script = script;
    for guide_port in ["8080", "8081", "8082"] {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        script = script.replace(&format!("127.0.0.1:{guide_port}"), &format!("127.0.0.1:{port}"));
    }

    let dir = tempfile::tempdir().unwrap();
    let plinth = std::path::Path::new(env!("CARGO_BIN_EXE_plinth"));
    let path = format!("{}:{}", plinth.parent().unwrap().display(), std::env::var("PATH").unwrap());
    let output = Command::new("timeout")
        .args(["1200", "bash", "-c", &script])
        .current_dir(dir.path())
        .env("PATH", path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the guide failed:\n{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(stdout.contains(r#"{"hello":"world","plugin":"greeter"}"#), "{stdout}");
    assert!(stdout.contains("route: GET /v1/greeter"), "plinth check lists the route: {stdout}");
    assert!(stdout.contains("test tests::greets_whoever_calls ... ok"), "{stdout}");
    assert!(
        stdout.contains("test the_component_answers_over_http ... ok"),
        "the scaffold's integration test ran: {stdout}"
    );
    for (plugin, test_passed) in [("tally", "# pass 1"), ("meter", "Ran 1 test")] {
        let answer = format!(r#"{{"hello":"world","plugin":"{plugin}","visits":1}}"#);
        assert!(stdout.contains(&answer), "{plugin} answered: {stdout}");
        assert!(
            stdout.contains(test_passed) || stderr.contains(test_passed),
            "{plugin}'s test passed: {stdout}{stderr}"
        );
    }
}
