//! In-process costs on the request path: a plugin call from `InstancePre`
//! (instantiate + call + drop; the Rust hello, the same counters in
//! JavaScript and Python, the `wasmtime serve` hello as a wasi:http
//! component), what wasmtime alone costs for the same (the floor), kv,
//! audit append, session lookup, policy match and
//! rate-limit check. Results and the machine: BENCHMARKS.md.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use plinth::audit::{AuditLog, Envelope, Outcome};
use plinth::identity::{Account, Identity, Lifetimes, Status};
use plinth::runtime::host::types::RequestData;
use plinth::storage::{NamespaceId, SledStorage, Storage};
use wasmtime::Store;
use wasmtime::component::{Component, Linker};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// A deployment with the hello plugin (first), the counters plugins in
/// JavaScript and Python and the wasi:http hello, built in a temp dir.
fn hello_app(rt: &tokio::runtime::Runtime) -> (tempfile::TempDir, Arc<plinth::App>) {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[[plugins]]\nname = \"hello\"\ncomponent = {:?}\nroutes = [\"GET /v1/hello\", \"POST /v1/hello/count\"]\ngrants = [\"kv\"]\n\n\
         [[plugins]]\nname = \"counters-js\"\ncomponent = {:?}\nroutes = [\"/v1/js/**\"]\ngrants = [\"kv\"]\n\n\
         [[plugins]]\nname = \"counters-py\"\ncomponent = {:?}\nroutes = [\"/v1/py/**\"]\ngrants = [\"kv\"]\n\
         limits = {{ memory = \"128MiB\" }}\n\n\
         [[plugins]]\nname = \"wasi-hello\"\ncomponent = {:?}\nroutes = [\"GET /wasi/v1/hello\"]\nstrip_prefix = \"/wasi\"\n",
        plinth_test_guests::HELLO,
        plinth_test_guests::COUNTERS_JS,
        plinth_test_guests::COUNTERS_PY,
        plinth_test_guests::WASI_HELLO,
    );
    std::fs::write(dir.path().join("plinth.toml"), config).unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/routes.toml"), "[[route]]\nroute = \"/**\"\nallow = \"public\"\n")
        .unwrap();
    let config = plinth::Config::load(&dir.path().join("plinth.toml")).unwrap();
    let app = rt.block_on(plinth::App::build(config)).unwrap();
    (dir, Arc::new(app))
}

fn request(method: &str, path: &str) -> RequestData {
    RequestData {
        method: method.into(),
        path: path.into(),
        query: None,
        headers: vec![("accept".into(), "application/json".into())],
        body: bytes::Bytes::new().into(),
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        client_address: "127.0.0.1".into(),
        // The hello plugin declares each of its routes with one method.
        route: format!("{method} {path}"),
        params: Vec::new(),
        principal: None,
        csrf_token: None,
        revalidation: false,
    }
}

fn plugin_calls(c: &mut Criterion) {
    let rt = runtime();
    let (_dir, app) = hello_app(&rt);
    let plugin = app.deployment.load().plugins[0].plugin.clone();
    c.bench_function("plugin/hello GET (instantiate + call + drop)", |b| {
        b.to_async(&rt).iter(|| async {
            let out = plugin
                .handle(request("GET", "/v1/hello"), String::new(), plinth::audit::Actor::Anonymous, Default::default())
                .await;
            black_box(out.unwrap());
        })
    });
    c.bench_function("plugin/hello POST count (CAS write + flush)", |b| {
        b.to_async(&rt).iter(|| async {
            let out = plugin
                .handle(
                    request("POST", "/v1/hello/count"),
                    String::new(),
                    plinth::audit::Actor::Anonymous,
                    Default::default(),
                )
                .await;
            black_box(out.unwrap());
        })
    });
}

/// A component of one function that returns a number.
const ONE_FUNCTION: &str = r#"(component
  (core module $m (memory (export "memory") 1) (func (export "f") (result i32) i32.const 42))
  (core instance $i (instantiate $m))
  (func (export "f") (result u32) (canon lift (core func $i "f"))))"#;

/// The floor under the plugin call, on the host's own engine and pool:
/// wasmtime's instantiate + call + drop of a one-function component, and
/// the hello component instantiated and dropped with every import a stub
/// and nothing called (its shape alone: three core modules, the WASI and
/// platform imports it links).
fn plugin_call_floor(c: &mut Criterion) {
    let rt = runtime();
    let (_dir, app) = hello_app(&rt);
    let engine = app.runtime.engine().clone();
    let one_function = Component::new(&engine, wat::parse_str(ONE_FUNCTION).unwrap()).unwrap();
    let pre = Linker::<()>::new(&engine).instantiate_pre(&one_function).unwrap();
    c.bench_function("wasmtime/one-function component (instantiate + call + drop)", |b| {
        b.to_async(&rt).iter(|| async {
            let mut store = Store::new(&engine, ());
            store.set_epoch_deadline(1_000_000);
            let instance = pre.instantiate_async(&mut store).await.unwrap();
            let f = instance.get_typed_func::<(), (u32,)>(&mut store, "f").unwrap();
            black_box(f.call_async(&mut store, ()).await.unwrap());
        })
    });
    let hello = Component::from_file(&engine, plinth_test_guests::HELLO).unwrap();
    let mut linker = Linker::<()>::new(&engine);
    linker.define_unknown_imports_as_traps(&hello).unwrap();
    let pre = linker.instantiate_pre(&hello).unwrap();
    c.bench_function("plugin/hello instantiate + drop (imports stubbed, no call)", |b| {
        b.to_async(&rt).iter(|| async {
            let mut store = Store::new(&engine, ());
            store.set_epoch_deadline(1_000_000);
            black_box(pre.instantiate_async(&mut store).await.unwrap());
        })
    });
}

/// One GET to each kind of plugin: the same work (a JSON answer; the
/// counters read one key) through each language's runtime.
fn plugin_calls_by_language(c: &mut Criterion) {
    let rt = runtime();
    let (_dir, app) = hello_app(&rt);
    let plugins = app.deployment.load().plugins.clone();
    let reader = plinth::runtime::bindings::types::Principal {
        account_id: "bench".into(),
        roles: Vec::new(),
        session_id: "bench-session".into(),
    };
    let counter = |language: &str| RequestData {
        route: format!("GET,POST,DELETE /v1/{language}/counters/{{name}}"),
        params: vec![("name".into(), "visits".into())],
        principal: Some(reader.clone()),
        ..request("GET", &format!("/v1/{language}/counters/visits"))
    };
    let cases = [
        ("plugin/counters-js GET (JavaScript: instantiate + call + drop)", 1, counter("js")),
        ("plugin/counters-py GET (Python: instantiate + call + drop)", 2, counter("py")),
        (
            "plugin/wasi-hello GET (wasi:http component: instantiate + call + drop)",
            3,
            RequestData { route: "GET /wasi/v1/hello".into(), ..request("GET", "/wasi/v1/hello") },
        ),
    ];
    for (name, index, template) in cases {
        let plugin = plugins[index].plugin.clone();
        c.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let request = RequestData {
                    body: bytes::Bytes::new().into(),
                    headers: template.headers.clone(),
                    params: template.params.clone(),
                    principal: template.principal.clone(),
                    route: template.route.clone(),
                    ..request("GET", &template.path)
                };
                let out =
                    plugin.handle(request, String::new(), plinth::audit::Actor::Anonymous, Default::default()).await;
                let out = out.unwrap();
                assert_eq!(out.response.status, 200);
                black_box(out);
            })
        });
    }
}

fn storage_and_audit(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let storage = SledStorage::open(dir.path()).unwrap();
    let ns = storage.namespace(NamespaceId::Plugin("bench".into()), Some(1 << 30)).unwrap();
    rt.block_on(ns.set("key", vec![7; 64])).unwrap();
    c.bench_function("kv/get 64 B", |b| b.to_async(&rt).iter(|| async { black_box(ns.get("key").await.unwrap()) }));
    c.bench_function("kv/set 64 B", |b| b.to_async(&rt).iter(|| async { ns.set("key", vec![7; 64]).await.unwrap() }));
    let audit =
        Arc::new(rt.block_on(AuditLog::open(&storage, None, plinth::audit::AuditKey::from_bytes([1; 32]))).unwrap());
    let envelope = Envelope::system();
    c.bench_function("audit/append", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(audit.append(envelope.draft("bench.event", "target", Outcome::Success, None)).await.unwrap())
        })
    });
    let lifetimes = Lifetimes { idle: Duration::from_secs(3600), absolute: Duration::from_secs(7200) };
    let identity = Identity::open(&storage, audit.clone(), lifetimes).unwrap();
    let account = Account { id: "bench".into(), roles: vec!["user".into()], status: Status::Active };
    rt.block_on(identity.put_account(&account, &envelope)).unwrap();
    let (token, _) = rt.block_on(identity.issue("bench", "127.0.0.1", "bench", &envelope)).unwrap();
    c.bench_function("identity/authenticate (session + registry lookup)", |b| {
        b.to_async(&rt).iter(|| async { black_box(identity.authenticate(&token.0).await.unwrap().unwrap()) })
    });
    let keys = rt.block_on(plinth::signing::SigningKeys::open(&storage)).unwrap();
    let view = br#"{"k":"notes","v":{"filter":{"done":false},"sort":"-updated","page":2}}"#;
    c.bench_function("signing/sign + verify (view-sized payload)", |b| {
        b.iter(|| {
            let token = keys.sign("state", "state.view", view, None).unwrap();
            black_box(keys.verify("state", "state.view", &token).unwrap())
        })
    });
}

fn policy_and_limits(c: &mut Criterion) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/routes.toml");
    let policy = plinth::policy::Policy::load(std::path::Path::new(root)).unwrap().unwrap();
    let me = plinth::routes::Route::parse("PATCH /v1/me").unwrap();
    c.bench_function("policy/lookup (example policy)", |b| {
        b.iter(|| black_box(policy.lookup(&me, "PATCH", black_box("/v1/me")).unwrap()))
    });
    let limits = plinth::edge::rate_limit::RateLimits::new(&plinth::config::RateLimitConfig::default());
    let mut i = 0u32;
    c.bench_function("rate_limit/check (address + principal)", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let address = plinth::edge::client::ClientKey::V4([10, 0, (i >> 8) as u8, i as u8].into());
            black_box(limits.check("default", address, Some("user")))
        })
    });
}

criterion_group!(
    benches,
    plugin_calls,
    plugin_call_floor,
    plugin_calls_by_language,
    storage_and_audit,
    policy_and_limits
);
criterion_main!(benches);
