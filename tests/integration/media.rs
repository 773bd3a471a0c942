//! The media plugin as a real component behind the real edge, over the
//! host's blob store on disk: tus uploads (resume, offsets, checksums,
//! termination, expiry, `kill -9`), a real tus client, types from bytes,
//! safe serving with ranges and validators, access and signed links,
//! quotas under concurrency, and deduplication that other owners cannot see.

use std::time::Duration;

use base64::Engine as _;
use reqwest::{Client, Method, StatusCode};
use serde_json::Value;
use sha1::Digest as _;

use crate::support::{
    Deployment, ISSUER_POLICY, LOOSE_LIMITS, ServerProcess, SignedIn, TestServer, assert_error, issuer_plugin, plugin,
    sign_in,
};

const PURPOSES: &str = r#"{
  "avatar": {"types": ["image/png", "image/gif"], "max_bytes": 65536, "read": "public"},
  "attachment": {"types": ["image/*", "text/plain", "application/pdf"], "max_bytes": 16777216, "read": ["support"]}
}"#;

const PROVIDERS: &str = r#"{"youtube": {"hosts": ["www.youtube.com", "youtu.be"], "paths": ["/watch?v={id}", "/{id}"],
  "id": {"chars": "A-Za-z0-9_-", "min": 11, "max": 11}, "embed": "https://www.youtube-nocookie.com/embed/{id}"}}"#;

/// The media plugin's rules, as `policies/routes.toml` has them.
pub const MEDIA_POLICY: &str = r#"
[[route]]
route = "/v1/media/**"
allow = "authenticated"

[[route]]
route = "OPTIONS /v1/media/uploads"
allow = "public"

[[route]]
route = "PATCH /v1/media/uploads/{id}"
allow = "authenticated"
class = "upload"

[[route]]
route = "POST /v1/media"
allow = "authenticated"
class = "upload"

[[route]]
route = "GET /v1/media/{id}"
allow = "public"
class = "media"

[[route]]
route = "GET /v1/media/usage"
allow = "authenticated"

[[route]]
route = "GET /v1/media/{id}/info"
allow = "public"

[[route]]
route = "GET /v1/media/{id}/variants/{name}"
allow = "public"
class = "media"
"#;

/// The media plugin (owner quota `owner_bytes`, uploads living `ttl`
/// seconds), the issuer, a 1 MiB buffered body limit, 64 MiB uploads, and
/// files served unscanned.
fn deployment(owner_bytes: &str, ttl: u64) -> Deployment {
    deployment_timed(owner_bytes, ttl, "", 5000, "unscanned = \"serve\"")
}

/// [`deployment`] with `server` lines added to `[server]`, this plugin
/// timeout and `[scanner]`.
fn deployment_timed(owner_bytes: &str, ttl: u64, server: &str, plugin_timeout_ms: u64, scanner: &str) -> Deployment {
    let media = plugin(
        "media",
        plinth_test_guests::MEDIA,
        &["/v1/media/**"],
        &["kv", "audit", "blobs", "signing", "jobs"],
        &format!(
            "memory = \"32MiB\", timeout_ms = {plugin_timeout_ms}, blob_bytes = \"1GiB\", \
             blob_bytes_per_owner = \"{owner_bytes}\""
        ),
    );
    let config = format!(
        "[server]\nmax_body = \"1MiB\"\n{server}\n\n{media}[plugins.settings]\nupload_ttl = \"{ttl}\"\npurposes = '''{PURPOSES}'''\n\
         embed_providers = '''{PROVIDERS}'''\n\n\
         {}[body_limits]\nupload = \"64MiB\"\n\n{LOOSE_LIMITS}[rate_limits.classes.default]\nper_address = \"100000/min\"\n\
         per_principal = \"100000/min\"\n\n[rate_limits.classes.upload]\nper_address = \"100000/min\"\n\
         per_principal = \"100000/min\"\n\n[rate_limits.classes.media]\nper_address = \"100000/min\"\n\
         per_principal = \"100000/min\"\n\n[scanner]\n{scanner}\n",
        issuer_plugin()
    );
    Deployment::with_policy(&config, &format!("{MEDIA_POLICY}{ISSUER_POLICY}"))
}

/// Requests as one signed-in account (or nobody).
struct As {
    client: Client,
    base: String,
    bearer: Option<String>,
}

impl As {
    fn new(base: &str, who: Option<&SignedIn>) -> Self {
        // A connection per request: an upload route answered before its
        // body was read (a refused PATCH) ends its connection, and a pooled
        // client could hand that connection to the next request.
        let client = Client::builder().pool_max_idle_per_host(0).build().unwrap();
        Self { client, base: base.to_owned(), bearer: who.map(SignedIn::bearer) }
    }

    fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, format!("{}{path}", self.base));
        match &self.bearer {
            Some(bearer) => request.header("authorization", bearer),
            None => request,
        }
    }

    fn tus(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.req(method, path).header("tus-resumable", "1.0.0")
    }

    /// A new upload of `length` bytes; returns its path.
    async fn create(&self, length: usize, purpose: &str, filename: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let response = self
            .tus(Method::POST, "/v1/media/uploads")
            .header("upload-length", length.to_string())
            .header("upload-metadata", format!("purpose {},filename {}", b64(purpose), b64(filename)))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED, "{}", response.text().await.unwrap());
        assert!(response.headers().contains_key("upload-expires"));
        response.headers()["location"].to_str().unwrap().to_owned()
    }

    async fn patch(&self, upload: &str, offset: usize, bytes: &[u8]) -> reqwest::Response {
        self.tus(Method::PATCH, upload)
            .header("upload-offset", offset.to_string())
            .header("content-type", "application/offset+octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap()
    }

    async fn offset(&self, upload: &str) -> u64 {
        let response = self.tus(Method::HEAD, upload).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["cache-control"], "no-store");
        response.headers()["upload-offset"].to_str().unwrap().parse().unwrap()
    }

    /// A whole file in one request; returns the item.
    async fn post(&self, purpose: &str, bytes: &[u8]) -> reqwest::Response {
        self.req(Method::POST, &format!("/v1/media?purpose={purpose}&filename=f.bin"))
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap()
    }

    async fn usage(&self) -> (u64, u64) {
        let usage: Value = self.req(Method::GET, "/v1/media/usage").send().await.unwrap().json().await.unwrap();
        (usage["stored"].as_u64().unwrap(), usage["reserved"].as_u64().unwrap())
    }
}

/// A PNG header and then `len` bytes of a pattern: typed by its first bytes.
fn png(len: usize) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    bytes.extend((0..len).map(|i| (i * 7 % 251) as u8));
    bytes
}

/// The last 100 audit records, read by an administrator.
async fn audit_records(server: &TestServer) -> Vec<Value> {
    let root = sign_in(&server.url(""), "root", &["admin"], None).await;
    let audit: Value = As::new(&server.url(""), Some(&root))
        .req(Method::GET, "/admin/audit?limit=100")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    audit["records"].as_array().unwrap().clone()
}

/// The server on `deployment`, with alice signed in.
async fn alice_on(deployment: &Deployment) -> (TestServer, SignedIn, As) {
    let server = TestServer::start(deployment).await;
    let alice = sign_in(&server.url(""), "alice", &[], None).await;
    let me = As::new(&server.url(""), Some(&alice));
    (server, alice, me)
}

fn item_path(response: &reqwest::Response) -> String {
    response.headers()["content-location"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_resumable_upload_larger_than_the_body_limit_resumes_and_is_served_whole() {
    let deployment = deployment("64MiB", 3600);
    let (_server, _alice, me) = alice_on(&deployment).await;
    let file = png(3 << 20);
    let upload = me.create(file.len(), "attachment", "scan.png").await;

    let half = file.len() / 2;
    let response = me.patch(&upload, 0, &file[..half]).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(response.headers()["upload-offset"], half.to_string().as_str());
    assert_eq!(response.headers()["tus-resumable"], "1.0.0");

    let wrong = me.patch(&upload, 10, &file[10..20]).await;
    assert_eq!(wrong.headers()["upload-offset"], half.to_string().as_str());
    assert_error(wrong, 409, "offset_mismatch").await;

    let bad_sum = me
        .tus(Method::PATCH, &upload)
        .header("upload-offset", half.to_string())
        .header("content-type", "application/offset+octet-stream")
        .header("upload-checksum", format!("sha1 {}", base64::engine::general_purpose::STANDARD.encode([0u8; 20])))
        .body(file[half..].to_vec())
        .send()
        .await
        .unwrap();
    assert_error(bad_sum, 460, "checksum_mismatch").await;
    assert_eq!(me.offset(&upload).await, half as u64, "a refused checked write keeps nothing");

    let sum = base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(&file[half..]));
    let done = me
        .tus(Method::PATCH, &upload)
        .header("upload-offset", half.to_string())
        .header("content-type", "application/offset+octet-stream")
        .header("upload-checksum", format!("sha1 {sum}"))
        .body(file[half..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::NO_CONTENT);
    let item = item_path(&done);
    assert_eq!(me.offset(&upload).await, file.len() as u64, "a finished upload reports its whole length");

    let whole = me.req(Method::GET, &item).send().await.unwrap();
    assert_eq!(whole.status(), StatusCode::OK);
    let headers = whole.headers().clone();
    assert_eq!(headers["content-type"], "image/png");
    assert_eq!(headers["content-length"], file.len().to_string().as_str());
    assert_eq!(headers["accept-ranges"], "bytes");
    assert_eq!(headers["content-disposition"], "inline; filename=\"scan.png\"; filename*=UTF-8''scan.png");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers["content-security-policy"].to_str().unwrap().ends_with("sandbox"));
    assert!(whole.bytes().await.unwrap() == file, "the bytes served are the bytes sent");

    let info: Value = me.req(Method::GET, &format!("{item}/info")).send().await.unwrap().json().await.unwrap();
    assert_eq!((info["type"].as_str(), info["size"].as_u64()), (Some("image/png"), Some(file.len() as u64)));
}

/// A served file may hold what hyper's own refusal looks like: it goes out
/// byte for byte, never swapped for the edge's answer mid-body
/// (THREATS.md F15). The look-alike starts every 4 KiB, so it begins each
/// 64 KiB frame a download is written in, and any write cut at a page.
#[tokio::test]
async fn a_file_that_looks_like_a_refusal_is_served_as_it_is() {
    let deployment = deployment("64MiB", 3600);
    let (_server, _alice, me) = alice_on(&deployment).await;
    let mut file = png(1 << 20);
    let refusal = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
    for at in (4096..file.len() - refusal.len()).step_by(4096) {
        file[at..at + refusal.len()].copy_from_slice(refusal);
    }
    let upload = me.create(file.len(), "attachment", "refusals.png").await;
    let done = me.patch(&upload, 0, &file).await;
    assert_eq!(done.status(), StatusCode::NO_CONTENT);
    let item = item_path(&done);
    // Over one kept-alive connection: a swap would also break the next
    // download's framing.
    for _ in 0..3 {
        let served = me.req(Method::GET, &item).send().await.unwrap();
        assert_eq!(served.status(), StatusCode::OK);
        assert!(served.bytes().await.unwrap() == file, "the bytes served are the bytes stored");
    }
}

#[tokio::test]
async fn ranges_validators_and_head_follow_rfc_9110() {
    let deployment = deployment("64MiB", 3600);
    let (_server, _alice, me) = alice_on(&deployment).await;
    let file = png(100_000);
    let size = file.len();
    let created = me.post("attachment", &file).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let item = created.headers()["location"].to_str().unwrap().to_owned();
    let get = |range: Option<&str>| {
        let request = me.req(Method::GET, &item);
        match range {
            Some(range) => request.header("range", range),
            None => request,
        }
    };
    let etag = get(None).send().await.unwrap().headers()["etag"].to_str().unwrap().to_owned();

    for (range, first, last) in [
        ("bytes=0-0", 0, 0),
        ("bytes=100-199", 100, 199),
        ("bytes=-10", size - 10, size - 1),
        ("bytes=99990-", 99990, size - 1),
        ("bytes=5-999999999", 5, size - 1),
    ] {
        let response = get(Some(range)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(response.headers()["content-range"], format!("bytes {first}-{last}/{size}").as_str());
        assert_eq!(response.headers()["content-length"], (last - first + 1).to_string().as_str());
        assert_eq!(response.bytes().await.unwrap(), file[first..=last], "{range}");
    }
    let past = get(Some(&format!("bytes={size}-"))).send().await.unwrap();
    assert_eq!(past.headers()["content-range"], format!("bytes */{size}").as_str());
    assert_error(past, 416, "range_not_satisfiable").await;
    assert_error(get(Some("bytes=9-2")).send().await.unwrap(), 416, "range_invalid").await;
    assert_error(get(Some("bytes=abc")).send().await.unwrap(), 416, "range_invalid").await;
    let other_unit = get(Some("items=0-1")).send().await.unwrap();
    assert_eq!(other_unit.status(), StatusCode::OK, "an unknown unit is ignored");

    let current = get(Some("bytes=0-9")).header("if-range", &etag).send().await.unwrap();
    assert_eq!(current.status(), StatusCode::PARTIAL_CONTENT);
    let stale = get(Some("bytes=0-9")).header("if-range", "\"stale\"").send().await.unwrap();
    assert_eq!(stale.status(), StatusCode::OK);
    assert_eq!(stale.bytes().await.unwrap().len(), size);

    let cached = get(None).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
    assert!(cached.bytes().await.unwrap().is_empty());

    let head = me.req(Method::HEAD, &item).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["content-length"], size.to_string().as_str());
    assert!(head.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn types_come_from_the_bytes_and_active_ones_are_attachments() {
    let deployment = deployment("64MiB", 3600);
    let (_server, _alice, me) = alice_on(&deployment).await;
    let svg = b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(document.cookie)'/>";

    let lying = me
        .req(Method::POST, "/v1/media?purpose=avatar")
        .header("content-type", "image/png")
        .body(svg.to_vec())
        .send()
        .await
        .unwrap();
    let body = assert_error(lying, 415, "type_not_allowed").await;
    assert!(body["error"]["message"].as_str().unwrap().contains("image/svg+xml"), "{body}");

    let polyglot = me.post("attachment", b"GIF89a\x01\x00\x01\x00<script>alert(1)</script>").await;
    assert_error(polyglot, 422, "polyglot_file").await;
    assert_eq!(me.usage().await, (0, 0), "refused files are not kept");

    let stored = me.post("attachment", svg).await;
    assert_eq!(stored.status(), StatusCode::CREATED);
    let item = stored.headers()["location"].to_str().unwrap().to_owned();
    let served = me.req(Method::GET, &item).send().await.unwrap();
    assert_eq!(served.headers()["content-type"], "image/svg+xml");
    assert!(served.headers()["content-disposition"].to_str().unwrap().starts_with("attachment"));
    assert!(served.headers()["content-security-policy"].to_str().unwrap().contains("sandbox"));
    assert_eq!(served.headers()["x-content-type-options"], "nosniff");

    let empty = me.post("attachment", b"").await;
    assert_error(empty, 400, "empty_upload").await;
    let unknown = me.post("banner", &png(10)).await;
    assert_error(unknown, 422, "unknown_purpose").await;
    let too_big = me.post("avatar", &png(70_000)).await;
    assert_error(too_big, 413, "too_large").await;
}

#[tokio::test]
async fn items_are_read_by_their_owner_their_purposes_readers_and_signed_links_only() {
    let deployment = deployment("64MiB", 3600);
    let server = TestServer::start(&deployment).await;
    let base = server.url("");
    let alice = sign_in(&base, "alice", &[], None).await;
    let bob = sign_in(&base, "bob", &[], None).await;
    let agent = sign_in(&base, "agent", &["support"], None).await;
    let (alice_as, bob_as, agent_as, nobody) =
        (As::new(&base, Some(&alice)), As::new(&base, Some(&bob)), As::new(&base, Some(&agent)), As::new(&base, None));
    let private = alice_as.post("attachment", b"private words").await;
    let private = private.headers()["location"].to_str().unwrap().to_owned();
    let public = alice_as.post("avatar", &png(100)).await;
    let public = public.headers()["location"].to_str().unwrap().to_owned();
    let other = alice_as.post("attachment", b"other words").await;
    let other = other.headers()["location"].to_str().unwrap().to_owned();

    assert_error(bob_as.req(Method::GET, &private).send().await.unwrap(), 404, "not_found").await;
    assert_error(nobody.req(Method::GET, &private).send().await.unwrap(), 404, "not_found").await;
    assert_eq!(agent_as.req(Method::GET, &private).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(nobody.req(Method::GET, &public).send().await.unwrap().status(), StatusCode::OK);
    assert_error(bob_as.req(Method::DELETE, &public).send().await.unwrap(), 404, "not_found").await;

    let link: Value = alice_as
        .req(Method::POST, &format!("{private}/links"))
        .json(&serde_json::json!({"ttl": 60}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = link["url"].as_str().unwrap();
    let shared = nobody.req(Method::GET, url).send().await.unwrap();
    assert_eq!(shared.status(), StatusCode::OK);
    assert_eq!(shared.text().await.unwrap(), "private words");
    let tampered = url.replace("token=v1.", "token=v1.x");
    assert_eq!(nobody.req(Method::GET, &tampered).send().await.unwrap().status(), StatusCode::BAD_REQUEST);
    let token = url.split("token=").nth(1).unwrap();
    let info: Value =
        nobody.req(Method::GET, &format!("{private}/info?token={token}")).send().await.unwrap().json().await.unwrap();
    assert_eq!(info["size"], 13, "a link opens the item's description too");
    // A bad token gets one answer whether the id exists or not.
    for path in [private.as_str(), "/v1/media/AAAAAAAAAAAAAAAAAAAAAA"] {
        let junk = nobody.req(Method::GET, &format!("{path}?token=junk")).send().await.unwrap();
        assert_error(junk, 400, "token_malformed").await;
    }
    let other_item = format!("{other}?token={token}");
    assert_error(nobody.req(Method::GET, &other_item).send().await.unwrap(), 404, "not_found").await;
    assert_error(bob_as.req(Method::POST, &format!("{private}/links")).send().await.unwrap(), 404, "not_found").await;

    assert_eq!(alice_as.req(Method::DELETE, &private).send().await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_error(nobody.req(Method::GET, url).send().await.unwrap(), 404, "not_found").await;
    let audit = audit_records(&server).await;
    let actions: Vec<&str> = audit.iter().filter_map(|r| r["action"].as_str()).collect();
    assert!(actions.contains(&"media.uploaded") && actions.contains(&"media.deleted"), "{actions:?}");
}

#[tokio::test]
async fn the_same_bytes_dedupe_within_an_owner_and_never_show_across_owners() {
    let deployment = deployment("64MiB", 3600);
    let server = TestServer::start(&deployment).await;
    let base = server.url("");
    let alice = sign_in(&base, "alice", &[], None).await;
    let bob = sign_in(&base, "bob", &[], None).await;
    let (alice_as, bob_as) = (As::new(&base, Some(&alice)), As::new(&base, Some(&bob)));
    let bytes = png(5000);
    let etag_of = |who: &As, response: reqwest::Response| {
        let item = response.headers()["location"].to_str().unwrap().to_owned();
        let request = who.req(Method::GET, &item);
        async move { request.send().await.unwrap().headers()["etag"].to_str().unwrap().to_owned() }
    };
    let first = etag_of(&alice_as, alice_as.post("attachment", &bytes).await).await;
    let again = etag_of(&alice_as, alice_as.post("attachment", &bytes).await).await;
    let bobs = etag_of(&bob_as, bob_as.post("attachment", &bytes).await).await;
    assert_eq!(first, again, "one owner's copies are one file");
    assert_ne!(first, bobs, "another owner's copy shares nothing visible");
    assert_eq!(alice_as.usage().await, (bytes.len() as u64, 0), "stored once");
    assert_eq!(bob_as.usage().await, (bytes.len() as u64, 0));
}

#[tokio::test]
async fn uploads_racing_past_the_quota_are_refused_and_the_quota_stays_exact() {
    let deployment = deployment("1000", 1);
    let (_server, _alice, me) = alice_on(&deployment).await;
    let racers = (0..6).map(|_| {
        let request =
            me.tus(Method::POST, "/v1/media/uploads?purpose=attachment").header("upload-length", "400").send();
        tokio::spawn(request)
    });
    let mut created = Vec::new();
    for racer in racers {
        let response = racer.await.unwrap().unwrap();
        match response.status() {
            StatusCode::CREATED => created.push(response.headers()["location"].to_str().unwrap().to_owned()),
            _ => {
                assert_error(response, 413, "file_quota_exceeded").await;
            }
        }
    }
    assert_eq!(created.len(), 2, "two 400-byte uploads fit in 1000 bytes");
    assert_eq!(me.usage().await, (0, 800));
    let response = me.tus(Method::DELETE, &created[0]).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(me.usage().await, (0, 400), "termination gives the space back");

    // The other one expires (1 s); its space comes back for the next.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(me.tus(Method::HEAD, &created[1]).send().await.unwrap().status(), StatusCode::GONE);
    let late = me.patch(&created[1], 0, &png(10)).await;
    assert_eq!(late.status().as_u16(), 404, "an expired upload is gone");
    let big = me.tus(Method::POST, "/v1/media/uploads?purpose=attachment").header("upload-length", "900").send().await;
    assert_eq!(big.unwrap().status(), StatusCode::CREATED, "expired reservations are swept before refusing");
    assert_eq!(me.usage().await, (0, 900));
}

#[tokio::test]
async fn tus_requests_that_break_the_protocol_get_its_answers() {
    let deployment = deployment("64MiB", 3600);
    let server = TestServer::start(&deployment).await;
    let alice = sign_in(&server.url(""), "alice", &[], None).await;
    let bob = sign_in(&server.url(""), "bob", &[], None).await;
    let me = As::new(&server.url(""), Some(&alice));
    let options = As::new(&server.url(""), None).req(Method::OPTIONS, "/v1/media/uploads").send().await.unwrap();
    assert_eq!(options.status(), StatusCode::NO_CONTENT);
    assert_eq!(options.headers()["tus-version"], "1.0.0");
    assert!(options.headers()["tus-extension"].to_str().unwrap().contains("termination"));

    let old = me.req(Method::POST, "/v1/media/uploads").header("upload-length", "5").send().await.unwrap();
    assert_eq!(old.headers()["tus-version"], "1.0.0");
    assert_error(old, 412, "tus_version_unsupported").await;
    let no_length = me.tus(Method::POST, "/v1/media/uploads?purpose=attachment").send().await.unwrap();
    assert_error(no_length, 400, "upload_length_required").await;
    let too_long = me.tus(Method::POST, "/v1/media/uploads?purpose=avatar").header("upload-length", "70000");
    assert_error(too_long.send().await.unwrap(), 413, "too_large").await;
    let bad_meta = me.tus(Method::POST, "/v1/media/uploads").header("upload-length", "5");
    let bad_meta = bad_meta.header("upload-metadata", "purpose !!!").send().await.unwrap();
    assert_error(bad_meta, 400, "invalid_metadata").await;

    let upload = me.create(20, "attachment", "a.txt").await;
    let plain = me.tus(Method::PATCH, &upload).header("upload-offset", "0").body("hello").send().await.unwrap();
    assert_error(plain, 415, "unsupported_media_type").await;
    let over = me.patch(&upload, 0, &[b'a'; 21]).await;
    assert_error(over, 413, "too_large").await;
    let algorithm = me
        .tus(Method::PATCH, &upload)
        .header("upload-offset", "0")
        .header("content-type", "application/offset+octet-stream")
        .header("upload-checksum", "md5 AAAA")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_error(algorithm, 400, "checksum_algorithm_unsupported").await;
    let theirs = As::new(&server.url(""), Some(&bob));
    assert_error(theirs.patch(&upload, 0, b"hello").await, 404, "not_found").await;
    assert_eq!(theirs.tus(Method::HEAD, &upload).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(me.offset(&upload).await, 0);
}

#[tokio::test]
async fn a_client_that_vanishes_mid_patch_keeps_what_arrived() {
    use tokio::io::AsyncWriteExt;
    let deployment = deployment("64MiB", 3600);
    let (server, alice, me) = alice_on(&deployment).await;
    let file = png(2 << 20);
    let upload = me.create(file.len(), "attachment", "big.png").await;
    let mut stream = start_patch(&server, &alice, &upload, file.len(), &file[..1 << 20]).await;
    stream.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(stream);
    let mut offset = 0;
    for _ in 0..50 {
        offset = me.offset(&upload).await;
        if offset == 1 << 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(offset, 1 << 20, "the bytes that arrived are kept");
    // The cut request may still hold the upload a moment after its bytes
    // are recorded: 423, and the client tries again (as tus clients do).
    let mut rest = me.patch(&upload, offset as usize, &file[offset as usize..]).await;
    for _ in 0..50 {
        if rest.status() != StatusCode::LOCKED {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        rest = me.patch(&upload, offset as usize, &file[offset as usize..]).await;
    }
    assert_eq!(rest.status(), StatusCode::NO_CONTENT);
    let item = item_path(&rest);
    assert!(me.req(Method::GET, &item).send().await.unwrap().bytes().await.unwrap() == file);
}

#[test]
fn an_upload_resumes_after_kill_9() {
    let deployment = deployment("64MiB", 3600);
    let file = png(1 << 20);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut server = ServerProcess::start(&deployment);
    let (alice, upload) = runtime.block_on(async {
        let alice = sign_in(&server.url(""), "alice", &[], None).await;
        let me = As::new(&server.url(""), Some(&alice));
        let upload = me.create(file.len(), "attachment", "k.png").await;
        assert_eq!(me.patch(&upload, 0, &file[..300_000]).await.status(), StatusCode::NO_CONTENT);
        (alice, upload)
    });
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let restarted = ServerProcess::start(&deployment);
    runtime.block_on(async {
        let me = As::new(&restarted.url(""), Some(&alice));
        assert_eq!(me.offset(&upload).await, 300_000);
        let rest = me.patch(&upload, 300_000, &file[300_000..]).await;
        assert_eq!(rest.status(), StatusCode::NO_CONTENT);
        let item = item_path(&rest);
        assert!(me.req(Method::GET, &item).send().await.unwrap().bytes().await.unwrap() == file);
    });
}

#[test]
fn a_full_disk_is_507_and_keeps_nothing_it_cannot_hold() {
    let deployment = deployment("64MiB", 3600);
    // Files the server writes may grow to 12 MiB: a file 100 KB larger
    // cannot be stored, as on a disk with 12 MiB free. (Only a little
    // larger, so that the whole body has been sent when the server answers;
    // a client still sending when it closes would see a reset, not a 507.)
    let server = ServerProcess::start_with_file_size_limit(&deployment, 12 << 10);
    let file = png((12 << 20) + 100_000);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let alice = sign_in(&server.url(""), "alice", &[], None).await;
        let me = As::new(&server.url(""), Some(&alice));
        let upload = me.create(file.len(), "attachment", "big.png").await;
        assert_error(me.patch(&upload, 0, &file).await, 507, "disk_full").await;
        let kept = me.offset(&upload).await;
        assert!(kept <= 12 << 20, "only bytes that fit are recorded: {kept}");
        let response = me.tus(Method::DELETE, &upload).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert_eq!(me.usage().await, (0, 0));

        let whole = me.req(Method::POST, "/v1/media?purpose=attachment").body(file.clone()).send().await.unwrap();
        assert_error(whole, 507, "disk_full").await;
        assert_eq!(me.usage().await, (0, 0), "the failed file is neither stored nor reserved");

        let small = png(100_000);
        let stored = me.req(Method::POST, "/v1/media?purpose=attachment").body(small.clone()).send().await.unwrap();
        assert_eq!(stored.status(), StatusCode::CREATED, "the server goes on storing what fits");
        let item = stored.headers()["location"].to_str().unwrap().to_owned();
        assert!(me.req(Method::GET, &item).send().await.unwrap().bytes().await.unwrap() == small);
    });
}

#[tokio::test]
async fn with_a_media_origin_files_are_fetched_there_by_signed_urls() {
    let deployment = deployment("64MiB", 3600);
    let config = std::fs::read_to_string(deployment.config_path()).unwrap();
    let config = config.replace("upload_ttl = \"3600\"", "upload_ttl = \"3600\"\norigin = \"http://media.localhost\"");
    std::fs::write(deployment.config_path(), config).unwrap();
    let (server, _alice, me) = alice_on(&deployment).await;
    let file = png(5000);
    let created = me.req(Method::POST, "/v1/media?purpose=attachment").body(file.clone()).send().await.unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let view: Value = created.json().await.unwrap();
    let url = view["url"].as_str().unwrap();
    let path = url.strip_prefix("http://media.localhost").expect("an absolute URL at the media origin");
    assert!(path.contains("?token="), "a private item's URL carries a link: {url}");
    // The same server answers for the media origin; no cookie or bearer goes there.
    let anonymous = Client::new();
    let fetched = anonymous.get(server.url(path)).header("host", "media.localhost").send().await.unwrap();
    assert_eq!(fetched.status(), StatusCode::OK);
    assert!(fetched.bytes().await.unwrap() == file);
    let bare = path.split_once('?').unwrap().0;
    let refused = anonymous.get(server.url(bare)).header("host", "media.localhost").send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::NOT_FOUND, "without the link it is nobody's to read");
}

#[tokio::test]
async fn a_real_tus_client_uploads_in_chunks() {
    let deployment = deployment("64MiB", 3600);
    let (server, alice, me) = alice_on(&deployment).await;
    let file = png(5 << 20);
    let path = deployment.data_path().with_extension("upload.png");
    std::fs::write(&path, &file).unwrap();
    let script = r#"
import sys
from tusclient import client
tus = client.TusClient(sys.argv[1], headers={"Authorization": sys.argv[2]})
uploader = tus.uploader(sys.argv[3], chunk_size=1024 * 1024, upload_checksum=True,
                        metadata={"purpose": "attachment", "filename": "from-tuspy.png"})
uploader.upload()
print(uploader.url)
"#;
    let mut python = std::process::Command::new("python3");
    python.args(["-c", script, &server.url("/v1/media/uploads"), &alice.bearer()]).arg(&path);
    // Off the test's runtime, which serves the requests.
    let output = tokio::task::spawn_blocking(move || python.output().expect("python3 runs")).await.unwrap();
    assert!(output.status.success(), "tuspy failed: {}", String::from_utf8_lossy(&output.stderr));
    let url = String::from_utf8(output.stdout).unwrap();
    let upload = url.trim().trim_start_matches(&server.url("")).to_owned();
    let status = me.tus(Method::HEAD, &upload).send().await.unwrap();
    assert_eq!(status.headers()["upload-offset"], file.len().to_string().as_str());
    let item = status.headers()["content-location"].to_str().unwrap().to_owned();
    let served = me.req(Method::GET, &item).send().await.unwrap();
    assert!(served.headers()["content-disposition"].to_str().unwrap().contains("from-tuspy.png"));
    assert!(served.bytes().await.unwrap() == file);
}

#[tokio::test]
async fn embeds_name_a_listed_provider_or_are_refused() {
    let deployment = deployment("64MiB", 3600);
    let (_server, _alice, me) = alice_on(&deployment).await;
    let embed = |url: &str| me.req(Method::POST, "/v1/media/embeds").json(&serde_json::json!({ "url": url })).send();
    let ok: Value = embed("https://www.youtube.com/watch?v=dQw4w9WgXcQ").await.unwrap().json().await.unwrap();
    assert_eq!(ok["embed_url"], "https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ");
    for refused in ["javascript:alert(1)", "data:text/html,hi", "https://youtu.be.evil.example/dQw4w9WgXcQ"] {
        assert_error(embed(refused).await.unwrap(), 422, "embed_refused").await;
    }
    let frames: Value = me.req(Method::GET, "/v1/media/embeds/frame-src").send().await.unwrap().json().await.unwrap();
    assert_eq!(frames["directive"], "frame-src https://www.youtube-nocookie.com");
}

#[tokio::test]
async fn a_streamed_body_is_bounded_by_the_minimum_rate_not_by_the_deadlines() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deployment = deployment_timed("64MiB", 3600, "request_timeout_ms = 1000", 500, "unscanned = \"serve\"");
    let (server, alice, me) = alice_on(&deployment).await;
    let file = png(40_000);
    let upload = me.create(file.len(), "attachment", "slow.png").await;
    let send = |offset: usize, bytes: Vec<u8>, pause: Duration, pieces: usize| {
        let head = format!(
            "PATCH {upload} HTTP/1.1\r\nhost: x\r\nauthorization: {}\r\ntus-resumable: 1.0.0\r\n\
             upload-offset: {offset}\r\ncontent-type: application/offset+octet-stream\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n",
            alice.bearer(),
            bytes.len()
        );
        let addr = server.addr;
        async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.write_all(head.as_bytes()).await.unwrap();
            for piece in bytes.chunks(bytes.len().div_ceil(pieces)) {
                if stream.write_all(piece).await.is_err() {
                    break;
                }
                tokio::time::sleep(pause).await;
            }
            let mut answer = String::new();
            let _ = stream.read_to_string(&mut answer).await;
            answer
        }
    };
    // Two seconds of body, well past both deadlines, at 10 KiB/s.
    let answer = send(0, file[..20_000].to_vec(), Duration::from_millis(400), 5).await;
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    assert_eq!(me.offset(&upload).await, 20_000);
    // A trickle below the minimum rate (1 KiB/s after 5 s) is cut off.
    let answer = send(20_000, file[20_000..].to_vec(), Duration::from_millis(1000), 20_000).await;
    assert!(answer.starts_with("HTTP/1.1 408") && answer.contains("body_too_slow"), "{answer}");
}

/// A clamd of our own: a socket in a temporary directory and a signature
/// database holding only the EICAR test file's hash (ClamAV's mirror is
/// out of reach, and a small database starts in a second).
struct Clamd {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl Clamd {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("db")).unwrap();
        let eicar = hex::encode(sha2::Sha256::digest(EICAR));
        std::fs::write(dir.path().join("db/plinth.hsb"), format!("{eicar}:{}:Plinth-EICAR\n", EICAR.len())).unwrap();
        let socket = dir.path().join("clamd.sock");
        let config = format!(
            "Foreground yes\nLocalSocket {}\nDatabaseDirectory {}\nLogFile {}\nStreamMaxLength 16M\n",
            socket.display(),
            dir.path().join("db").display(),
            dir.path().join("clamd.log").display()
        );
        std::fs::write(dir.path().join("clamd.conf"), config).unwrap();
        let clamd = Self {
            child: std::process::Command::new("clamd")
                .arg(format!("--config-file={}", dir.path().join("clamd.conf").display()))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("clamd runs (make test installs clamav-daemon)"),
            dir,
        };
        for _ in 0..300 {
            if socket.exists() {
                return clamd;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(clamd.dir.path().join("clamd.log")).unwrap_or_default();
        panic!("clamd did not open its socket: {log}");
    }

    fn socket(&self) -> String {
        self.dir.path().join("clamd.sock").display().to_string()
    }
}

impl Drop for Clamd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The EICAR anti-virus test file: harmless, and found by every scanner.
const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

async fn scan_state(me: &As, item: &str) -> String {
    for _ in 0..100 {
        let info: Value = me.req(Method::GET, &format!("{item}/info")).send().await.unwrap().json().await.unwrap();
        let state = info["scan"].as_str().unwrap().to_owned();
        if state != "pending" {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    "pending".to_owned()
}

#[tokio::test]
async fn only_files_the_scanner_passed_are_served() {
    let clamd = Clamd::start();
    let deployment = deployment_timed("64MiB", 3600, "", 5000, &format!("clamd = {:?}", clamd.socket()));
    let (server, _alice, me) = alice_on(&deployment).await;
    let infected = me.post("attachment", EICAR).await;
    assert_eq!(infected.status(), StatusCode::CREATED);
    let infected = infected.headers()["location"].to_str().unwrap().to_owned();
    let clean = me.post("attachment", b"an ordinary note").await;
    let clean = clean.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(scan_state(&me, &infected).await, "infected");
    assert_eq!(scan_state(&me, &clean).await, "clean");
    assert_error(me.req(Method::GET, &infected).send().await.unwrap(), 403, "file_infected").await;
    assert_eq!(me.req(Method::GET, &clean).send().await.unwrap().text().await.unwrap(), "an ordinary note");
    let audit = audit_records(&server).await;
    let found = audit.iter().any(|r| {
        r["action"] == "blob.infected" && r["reason"].as_str().is_some_and(|reason| reason.contains("Plinth-EICAR"))
    });
    assert!(found, "{audit:?}");
}

#[tokio::test]
async fn without_a_scanner_held_files_are_not_served() {
    let deployment = deployment_timed("64MiB", 3600, "", 5000, "unscanned = \"hold\"");
    let (_server, _alice, me) = alice_on(&deployment).await;
    let item = me.post("attachment", b"held").await;
    let item = item.headers()["location"].to_str().unwrap().to_owned();
    let held = me.req(Method::GET, &item).send().await.unwrap();
    assert_eq!(held.headers()["retry-after"], "5");
    assert_error(held, 503, "scan_pending").await;
    assert_eq!(scan_state(&me, &item).await, "pending");
}

#[tokio::test]
async fn a_blob_stored_by_a_request_that_never_answers_is_taken_back() {
    let guest = plugin(
        "blobtrap",
        plinth_test_guests::BLOBTRAP,
        &["POST /v1/blobtrap/**", "GET /v1/blobtrap/**"],
        &["blobs", "jobs"],
        "blob_bytes = \"1MiB\", blob_bytes_per_owner = \"1MiB\"",
    );
    let probe = format!(
        "[[workers]]\nname = \"probe\"\ncomponent = {:?}\nplugins = [\"blobtrap\"]\n",
        plinth_test_guests::JOBPROBE
    );
    let deployment = Deployment::with_policy(
        &format!("{guest}{probe}[scanner]\nunscanned = \"serve\"\n"),
        "[[route]]\nroute = \"/v1/blobtrap/**\"\nallow = \"public\"\n",
    );
    let server = TestServer::start(&deployment).await;
    let client = Client::new();
    let usage = async || client.get(server.url("/v1/blobtrap/usage")).send().await.unwrap().text().await.unwrap();
    let kept = client.post(server.url("/v1/blobtrap/keep")).body("kept").send().await.unwrap();
    assert_eq!(kept.status(), StatusCode::OK);
    assert_eq!(usage().await, "4 0");
    let trapped = client.post(server.url("/v1/blobtrap/trap")).body("lost bytes").send().await.unwrap();
    assert_error(trapped, 500, "plugin_trap").await;
    let mut seen = String::new();
    for _ in 0..50 {
        seen = usage().await;
        if seen == "4 0" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, "4 0", "the trapped request's blob is unlinked and its bytes leave the quota");
    // A job it submitted is forgotten too: its worker's blob (which it
    // would make within milliseconds) never stays.
    let trapped = client.post(server.url("/v1/blobtrap/job-trap")).body("job input").send().await.unwrap();
    assert_error(trapped, 500, "plugin_trap").await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(usage().await, "4 0", "the trapped request's job and what its worker made are gone");
}

#[tokio::test]
async fn deletes_racing_each_other_remove_one_item_and_unlink_its_bytes_once() {
    let deployment = deployment("64MiB", 3600);
    let server = TestServer::start(&deployment).await;
    let alice = sign_in(&server.url(""), "alice", &[], None).await;
    let root = sign_in(&server.url(""), "root", &["admin"], None).await;
    let me = As::new(&server.url(""), Some(&alice));
    let bytes = png(3000);
    let first = me.post("attachment", &bytes).await.headers()["location"].to_str().unwrap().to_owned();
    let twin = me.post("attachment", &bytes).await.headers()["location"].to_str().unwrap().to_owned();
    let deletes: Vec<_> = (0..8).map(|_| tokio::spawn(me.req(Method::DELETE, &first).send())).collect();
    let mut statuses = Vec::new();
    for delete in deletes {
        statuses.push(delete.await.unwrap().unwrap().status().as_u16());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [204, 404, 404, 404, 404, 404, 404, 404]);
    let served = me.req(Method::GET, &twin).send().await.unwrap();
    assert_eq!(served.status(), StatusCode::OK, "the twin's bytes, shared with the deleted item, stay");
    assert!(served.bytes().await.unwrap() == bytes);
    assert_eq!(me.usage().await, (bytes.len() as u64, 0));

    // An administrator may delete an item, not mint a link that reads it.
    let admin = As::new(&server.url(""), Some(&root));
    assert_error(admin.req(Method::POST, &format!("{twin}/links")).send().await.unwrap(), 404, "not_found").await;
    // A validator date in the future is no date: the file is sent.
    let future = me.req(Method::GET, &twin).header("if-modified-since", "Fri, 01 Jan 2100 00:00:00 GMT");
    assert_eq!(future.send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(admin.req(Method::DELETE, &twin).send().await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(me.usage().await, (0, 0));
}

/// Sends a PATCH of `declared` bytes at offset 0 to `upload` with `sent`
/// first, then holds the connection; returns the stream.
async fn start_patch(
    server: &TestServer,
    who: &SignedIn,
    upload: &str,
    declared: usize,
    sent: &[u8],
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "PATCH {upload} HTTP/1.1\r\nhost: x\r\nauthorization: {}\r\ntus-resumable: 1.0.0\r\nupload-offset: 0\r\n\
         content-type: application/offset+octet-stream\r\ncontent-length: {declared}\r\n\r\n",
        who.bearer()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(sent).await.unwrap();
    stream
}

#[tokio::test]
async fn bytes_sent_early_buy_no_long_silence_and_slow_uploads_have_a_cap_of_their_own() {
    use tokio::io::AsyncReadExt;
    let deployment = deployment_timed("64MiB", 3600, "max_streamed_bodies = 1", 5000, "unscanned = \"serve\"");
    let (server, alice, me) = alice_on(&deployment).await;
    let upload = me.create(1 << 20, "attachment", "a.txt").await;
    // 200 KiB at once, then silence: the average since the start would
    // allow minutes; the span rule cuts it after one span.
    let mut held = start_patch(&server, &alice, &upload, 1 << 20, &[b'x'; 200 << 10]).await;

    // Meanwhile another upload finds the one streaming slot taken, while
    // everything else is served.
    let second = me.create(10, "attachment", "b.txt").await;
    let refused = me.patch(&second, 0, b"0123456789").await;
    assert_eq!(refused.headers()["retry-after"], "5");
    assert_error(refused, 503, "too_many_uploads").await;
    assert_eq!(me.req(Method::GET, "/v1/media/usage").send().await.unwrap().status(), StatusCode::OK);

    let mut answer = String::new();
    let read = tokio::time::timeout(Duration::from_secs(30), held.read_to_string(&mut answer)).await;
    assert!(read.is_ok(), "the stalled body was not cut off within 30 s");
    assert!(answer.starts_with("HTTP/1.1 408") && answer.contains("body_too_slow"), "{answer}");
    assert_eq!(me.offset(&upload).await, 200 << 10, "the bytes that came are kept");
    let now_free = me.patch(&second, 0, b"0123456789").await;
    assert_eq!(now_free.status(), StatusCode::NO_CONTENT, "the slot is free again");
}
