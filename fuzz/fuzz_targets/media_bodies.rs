//! The real media component (built by `make plugins`, path in
//! `PLINTH_MEDIA_WASM`) over a real blob store, fed arbitrary tus headers
//! (`Upload-Length`, `Upload-Metadata`, `Upload-Offset`, `Upload-Checksum`)
//! and bodies on its write routes, as a signed-in user: every answer is a
//! response below 500 (or 507, a full disk), never a trap or a timeout.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use plinth::runtime::bindings::types::Principal;

#[path = "component.rs"]
mod component;

const PURPOSES: &str = r#"{"attachment": {"types": ["image/*", "text/plain", "application/pdf"], "max_bytes": 65536},
    "avatar": {"types": ["image/png"], "max_bytes": 4096, "read": "public"}}"#;
const PROVIDERS: &str = r#"{"youtube": {"hosts": ["www.youtube.com", "youtu.be"], "paths": ["/watch?v={id}", "/{id}"],
    "id": {"chars": "A-Za-z0-9_-", "min": 11, "max": 11}, "embed": "https://www.youtube-nocookie.com/embed/{id}"}}"#;

fn fuzzer() -> Option<Principal> {
    Some(Principal { account_id: "fuzz".into(), roles: vec![], session_id: "s".into() })
}

/// The harness and the path of an upload made at start.
static HARNESS: LazyLock<(component::Harness, String)> = LazyLock::new(|| {
    let component = std::env::var("PLINTH_MEDIA_WASM").expect("PLINTH_MEDIA_WASM names media.wasm");
    let harness = component::Harness::load(
        &format!(
            "name = \"media\"\ncomponent = {component:?}\nroutes = [\"/v1/media/**\"]\n\
             grants = [\"kv\", \"audit\", \"blobs\", \"signing\", \"jobs\"]\n\
             limits = {{ kv_bytes = \"1GiB\", blob_bytes = \"8GiB\", blob_bytes_per_owner = \"8GiB\" }}\n\
             [plugins.settings]\npurposes = '''{PURPOSES}'''\nembed_providers = '''{PROVIDERS}'''\n"
        ),
        ("GET", "/v1/media/usage"),
    );
    let headers = vec![("tus-resumable".into(), "1.0.0".into()), ("upload-length".into(), "65536".into())];
    let (status, answer, _) =
        harness.serve_with_headers("POST", "/v1/media/uploads?purpose=attachment", headers, b"", fuzzer());
    assert_eq!(status, 201);
    let upload = answer.into_iter().find(|(name, _)| name == "location").expect("the upload's location").1;
    (harness, upload)
});

// Loading compiles the component: done before the first input is timed.
fuzz_target!(init: { LazyLock::force(&HARNESS); }, |data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    // A header value, then the body.
    let (value, body) = match rest.iter().position(|&b| b == 0) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    let value = String::from_utf8_lossy(value).replace(['\r', '\n'], " ");
    let (harness, upload) = &*HARNESS;
    let tus = |name: &str| {
        vec![
            ("tus-resumable".to_owned(), "1.0.0".to_owned()),
            ("content-type".to_owned(), "application/offset+octet-stream".to_owned()),
            (name.to_owned(), value.clone()),
        ]
    };
    let (method, path, headers) = match selector % 6 {
        0 => ("POST", "/v1/media/uploads".to_owned(), {
            let mut headers = tus("upload-metadata");
            headers.push(("upload-length".to_owned(), "10".to_owned()));
            headers
        }),
        1 => ("POST", "/v1/media/uploads?purpose=attachment".to_owned(), tus("upload-length")),
        2 => ("PATCH", upload.clone(), tus("upload-offset")),
        3 => ("PATCH", upload.clone(), {
            let mut headers = tus("upload-checksum");
            headers.push(("upload-offset".to_owned(), "0".to_owned()));
            headers
        }),
        4 => {
            ("POST", format!("/v1/media?purpose={}", if selector & 64 == 0 { "attachment" } else { "avatar" }), vec![])
        }
        _ => ("POST", "/v1/media/embeds".to_owned(), vec![("content-type".to_owned(), "application/json".to_owned())]),
    };
    let (status, answer) = harness.serve(method, &path, headers, body, fuzzer());
    assert!(status < 500 || status == 507, "{method} {path} answered {status}: {}", String::from_utf8_lossy(&answer));
});
