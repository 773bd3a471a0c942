//! An in-memory host for a plugin's unit tests: on any target but wasm32,
//! every host call the kit makes lands here instead of in the plinth host,
//! so handlers run in a plain `cargo test`.
//!
//! ```ignore
//! let host = TestHost::new(router());
//! let created = host.send(TestRequest::post("/v1/notes").signed_in("ada", &[]).json(&json!({"text": "hi"})));
//! assert_eq!(created.status, 201);
//! ```
//!
//! It keeps the host's rules where a plugin could come to rely on them
//! (route matching, `HEAD` as `GET`, 404 and 405, kv key and value limits
//! and scan pages), and fakes the rest plainly: passwords are not hashed,
//! sessions are counters. It is for unit tests only; integration tests run
//! the real component in the real host. State is per thread, and a new
//! [`TestHost`] starts empty, so tests running in parallel never meet.

use std::cell::RefCell;
use std::collections::BTreeMap;

use plinth_routes::Lookup;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::plinth::platform as wit;
use crate::request::{Principal, Request};
use crate::response::Response;
use crate::router::Router;

/// What the host tells a plugin about one request.
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestData {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) route: String,
    pub(crate) query: Option<String>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    pub(crate) trace_id: String,
    pub(crate) client_address: String,
    pub(crate) params: Vec<(String, String)>,
    pub(crate) principal: Option<Principal>,
    pub(crate) locale: Option<String>,
}

/// One line a plugin logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Its level.
    pub level: wit::log::Level,
    /// The message.
    pub message: String,
    /// Its `key = value` fields.
    pub fields: Vec<(String, String)>,
}

/// Everything the in-memory host holds.
#[derive(Default)]
struct State {
    kv: BTreeMap<String, Vec<u8>>,
    kv_quota: Option<u64>,
    audit: Vec<wit::audit::Event>,
    audit_fails: bool,
    logs: Vec<LogLine>,
    settings: BTreeMap<String, String>,
    /// Enabled locales, the default first; messages by (locale, key).
    locales: Vec<String>,
    messages: BTreeMap<(String, String), String>,
    assets: BTreeMap<String, Vec<u8>>,
    accounts: BTreeMap<String, wit::principals::Account>,
    sessions: Vec<(String, wit::sessions::SessionInfo)>,
    /// The session of the request being served.
    current_session: Option<String>,
    outbox: Vec<wit::outbox::Message>,
    /// Webhook endpoints by id, and what was sent: (endpoint id, event type, payload).
    endpoints: BTreeMap<String, wit::webhooks::Endpoint>,
    webhooks: Vec<(String, String, Vec<u8>)>,
    counter: u64,
    /// Published changes per key, the last [`events::RECENT`].
    changes: BTreeMap<String, std::collections::VecDeque<wit::events::Change>>,
    /// Blobs by id: owner, bytes, links, creation.
    blobs: BTreeMap<String, blobs::Stored>,
    /// Uploads by id, with their bytes so far.
    uploads: BTreeMap<String, (wit::blobs::Upload, Vec<u8>)>,
    /// Uploads a (pretend) request is writing to.
    busy: std::collections::BTreeSet<String>,
    /// Blob quota: the plugin's, one owner's.
    blob_quota: (u64, u64),
    /// Jobs by id, in submission order.
    jobs: BTreeMap<String, (wit::jobs::Job, Vec<String>, String)>,
    /// Unfinished jobs one owner may have (`limits.jobs_per_owner`).
    jobs_per_owner: Option<u32>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    STATE.with(|state| f(&mut state.borrow_mut()))
}

fn next_id(prefix: &str) -> String {
    with(|s| {
        s.counter += 1;
        format!("{prefix}{}", s.counter)
    })
}

/// A plugin's router with an in-memory host behind it.
pub struct TestHost {
    router: Router,
}

impl TestHost {
    /// A host serving `router`, with empty storage and no settings.
    ///
    /// # Panics
    ///
    /// When the router declares a malformed or ambiguous route, as the host
    /// would refuse it at load.
    pub fn new(router: Router) -> Self {
        router.declared();
        with(|s| *s = State { blob_quota: (u64::MAX, u64::MAX), locales: vec!["en".to_owned()], ..State::default() });
        Self { router }
    }

    /// What the plugin sent to webhooks: (endpoint URL, event type, payload).
    pub fn webhooks(&self) -> Vec<(String, String, Vec<u8>)> {
        with(|s| {
            s.webhooks
                .iter()
                .map(|(id, kind, payload)| (s.endpoints[id].url.clone(), kind.clone(), payload.clone()))
                .collect()
        })
    }

    /// Switches the endpoint for `url` off, as the host does after failures.
    pub fn disable_webhook(&self, url: &str) {
        with(|s| {
            for endpoint in s.endpoints.values_mut().filter(|e| e.url == url) {
                endpoint.enabled = false;
                endpoint.disabled_reason = Some("switched off by the test".into());
            }
        });
    }

    /// Sets one of the plugin's settings.
    pub fn setting(self, name: &str, value: &str) -> Self {
        with(|s| s.settings.insert(name.to_owned(), value.to_owned()));
        self
    }

    /// Enables these locales, the default first (`["en"]` unless set).
    pub fn locales(self, locales: &[&str]) -> Self {
        with(|s| s.locales = locales.iter().map(|l| (*l).to_owned()).collect());
        self
    }

    /// Adds a message in `locale`. The in-memory host fills `{ $name }`
    /// placeholders and nothing more: plural forms and the lint are the
    /// real host's, tested there.
    pub fn message(self, locale: &str, key: &str, text: &str) -> Self {
        with(|s| s.messages.insert((locale.to_owned(), key.to_owned()), text.to_owned()));
        self
    }

    /// Adds a read-only file.
    pub fn asset(self, name: &str, bytes: impl Into<Vec<u8>>) -> Self {
        with(|s| s.assets.insert(name.to_owned(), bytes.into()));
        self
    }

    /// Caps the kv namespace at `bytes` (keys and values counted).
    pub fn kv_quota(self, bytes: u64) -> Self {
        with(|s| s.kv_quota = Some(bytes));
        self
    }

    /// Sets the blob quotas: all blobs and reservations, and one owner's.
    pub fn blob_quota(self, plugin_bytes: u64, owner_bytes: u64) -> Self {
        with(|s| s.blob_quota = (plugin_bytes, owner_bytes));
        self
    }

    /// A stored blob's bytes.
    pub fn blob(&self, id: &str) -> Option<Vec<u8>> {
        with(|s| s.blobs.get(id).map(|b| b.bytes.clone()))
    }

    /// Bounds one owner's unfinished jobs, as `limits.jobs_per_owner` does.
    pub fn jobs_per_owner(self, limit: u32) -> Self {
        with(|s| s.jobs_per_owner = Some(limit));
        self
    }

    /// Jobs submitted and not forgotten, in submission order.
    pub fn jobs(&self) -> Vec<wit::jobs::Job> {
        with(|s| s.jobs.values().map(|(job, ..)| job.clone()).collect())
    }

    /// The inputs and parameters a job was given.
    pub fn job_request(&self, id: &str) -> Option<(Vec<String>, String)> {
        with(|s| s.jobs.get(id).map(|(_, inputs, params)| (inputs.clone(), params.clone())))
    }

    /// Stores bytes as a blob of `owner`, as a worker's `create` would;
    /// returns its id.
    pub fn store_blob(&self, owner: &str, bytes: &[u8]) -> String {
        blobs::create(owner, bytes).expect("stored").id
    }

    /// Ends a job as its worker would: done with the worker's answer and
    /// the blobs it made (see [`TestHost::store_blob`]), or failed with why.
    ///
    /// # Panics
    ///
    /// When there is no such job.
    pub fn finish_job(&self, id: &str, outcome: Result<&str, &str>, made: &[String]) {
        let state = match outcome {
            Ok(answer) => wit::jobs::State::Done(answer.to_owned()),
            Err(why) => wit::jobs::State::Failed(why.to_owned()),
        };
        with(|s| {
            let (job, ..) = s.jobs.get_mut(id).expect("no such job");
            job.state = state;
            job.outputs = made.to_vec();
        });
    }

    /// Sets a blob's scan state, as the host's scanner would.
    ///
    /// # Panics
    ///
    /// When there is no such blob.
    pub fn set_scan(&self, id: &str, scan: wit::blobs::ScanState) {
        with(|s| s.blobs.get_mut(id).expect("no such blob").scan = scan);
    }

    /// Marks upload `id` as written to by another request (as a slow PATCH
    /// would), or no longer: appends and cancels get `busy` meanwhile.
    pub fn hold_upload(&self, id: &str, held: bool) {
        with(|s| if held { s.busy.insert(id.to_owned()) } else { s.busy.remove(id) });
    }

    /// Moves every upload's expiry into the past, as time passing would.
    pub fn expire_uploads(&self) {
        with(|s| s.uploads.values_mut().for_each(|(upload, _)| upload.expires = 0));
    }

    /// Makes every audit record fail to store, as when the log is unavailable.
    pub fn audit_fails(&self, fails: bool) {
        with(|s| s.audit_fails = fails);
    }

    /// Serves one request as the host's edge would route it: the most
    /// specific declared route, `HEAD` as `GET` without a body, 404 when no
    /// route matches the path and 405 with `Allow` when none allows the method.
    pub fn send(&self, request: TestRequest) -> Response {
        let head = request.data.method == "HEAD";
        let method = if head { "GET".to_owned() } else { request.data.method.clone() };
        let table = self.router.table();
        let (route, params) = match table.lookup(&method, &request.data.path) {
            Lookup::Found { target, params, .. } => (target.clone(), params),
            Lookup::MethodNotAllowed(allowed) => {
                let error = crate::Error::new(405, "method_not_allowed", format!("{method} is not allowed here"));
                return error.with_header("allow", allowed.join(", ")).into_response(&request.data.trace_id);
            }
            Lookup::NotFound => {
                let error = crate::Error::not_found(format!("no route for {}", request.data.path));
                return error.into_response(&request.data.trace_id);
            }
        };
        let data = RequestData { method, route, params, ..request.data };
        with(|s| s.current_session = data.principal.as_ref().map(|p| p.session_id.clone()));
        let mut response = self.router.handle(&Request::from_test(data));
        if head {
            response.body.clear();
        }
        response
    }

    /// The raw value under a key.
    pub fn kv(&self, key: &str) -> Option<Vec<u8>> {
        with(|s| s.kv.get(key).cloned())
    }

    /// The JSON value under a key.
    pub fn kv_json<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        self.kv(key).map(|bytes| serde_json::from_slice(&bytes).expect("a JSON value"))
    }

    /// Stores a JSON value directly, to set up a test.
    pub fn put_kv_json<T: Serialize>(&self, key: &str, value: &T) {
        with(|s| s.kv.insert(key.to_owned(), serde_json::to_vec(value).expect("JSON")));
    }

    /// Every key, in order.
    pub fn kv_keys(&self) -> Vec<String> {
        with(|s| s.kv.keys().cloned().collect())
    }

    /// The audit events recorded so far.
    pub fn audit_events(&self) -> Vec<wit::audit::Event> {
        with(|s| s.audit.clone())
    }

    /// The log lines written so far.
    pub fn logs(&self) -> Vec<LogLine> {
        with(|s| s.logs.clone())
    }

    /// The changes published for a key that the host still holds.
    pub fn changes(&self, key: &str) -> Vec<wit::events::Change> {
        with(|s| s.changes.get(key).map(|c| c.iter().cloned().collect()).unwrap_or_default())
    }

    /// Forgets every published change, as a host restart does.
    pub fn forget_changes(&self) {
        with(|s| s.changes.clear());
    }

    /// The mail queued so far.
    pub fn outbox(&self) -> Vec<wit::outbox::Message> {
        with(|s| s.outbox.clone())
    }

    /// An account in the principal registry.
    pub fn account(&self, id: &str) -> Option<wit::principals::Account> {
        with(|s| s.accounts.get(id).cloned())
    }

    /// The live sessions of an account.
    pub fn sessions_of(&self, account_id: &str) -> Vec<wit::sessions::SessionInfo> {
        sessions::list(account_id).expect("the in-memory host does not fail")
    }
}

/// A request for [`TestHost::send`].
#[derive(Debug, Clone)]
pub struct TestRequest {
    data: RequestData,
}

impl TestRequest {
    /// A request with this method and canonical path (`/v1/x`, with a query
    /// after `?` if any).
    pub fn new(method: &str, target: &str) -> Self {
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query.to_owned())),
            None => (target, None),
        };
        Self {
            data: RequestData {
                method: method.to_ascii_uppercase(),
                path: path.to_owned(),
                query,
                trace_id: "0af7651916cd43dd8448eb211c80319c".to_owned(),
                client_address: "192.0.2.1".to_owned(),
                ..RequestData::default()
            },
        }
    }

    /// A `GET`.
    pub fn get(target: &str) -> Self {
        Self::new("GET", target)
    }

    /// A `POST`.
    pub fn post(target: &str) -> Self {
        Self::new("POST", target)
    }

    /// A `PUT`.
    pub fn put(target: &str) -> Self {
        Self::new("PUT", target)
    }

    /// A `PATCH`.
    pub fn patch(target: &str) -> Self {
        Self::new("PATCH", target)
    }

    /// A `DELETE`.
    pub fn delete(target: &str) -> Self {
        Self::new("DELETE", target)
    }

    /// Adds a header (the name lower-cased, as the host hands it over).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.data.headers.push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    /// A JSON body, with its content type.
    pub fn json<T: Serialize>(self, value: &T) -> Self {
        self.header("content-type", "application/json").body(serde_json::to_vec(value).expect("JSON"))
    }

    /// A raw body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.data.body = body.into();
        self
    }

    /// Served in `locale` (as if the host had negotiated it); the default
    /// locale otherwise.
    pub fn locale(mut self, locale: &str) -> Self {
        self.data.locale = Some(locale.to_owned());
        self
    }

    /// From `address` (the host's client address; `192.0.2.1` otherwise).
    pub fn from_address(mut self, address: &str) -> Self {
        address.clone_into(&mut self.data.client_address);
        self
    }

    /// Signed in as `account_id` with these roles (session `session-of-{id}`).
    pub fn signed_in(mut self, account_id: &str, roles: &[&str]) -> Self {
        self.data.principal = Some(Principal {
            account_id: account_id.to_owned(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            session_id: format!("session-of-{account_id}"),
        });
        self
    }
}

impl Response {
    /// The body as JSON, for assertions.
    pub fn body_json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// `plinth:platform/kv`, in memory, with the host's limits.
pub mod kv {
    use super::with;
    use crate::bindings::plinth::platform::kv::{Entry, Error, Op, Page, Quota, Swap, Versioned, WriteOutcome};

    const MAX_KEY_BYTES: usize = 1024;
    const MAX_VALUE_BYTES: usize = 4 << 20;

    fn check_key(key: &str) -> Result<(), Error> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(Error::InvalidKey(format!("a key is 1 to {MAX_KEY_BYTES} bytes; this one is {}", key.len())));
        }
        Ok(())
    }

    fn check_write(key: &str, value: Option<&[u8]>) -> Result<(), Error> {
        check_key(key)?;
        let Some(value) = value else { return Ok(()) };
        if value.len() > MAX_VALUE_BYTES {
            return Err(Error::ValueTooLarge(MAX_VALUE_BYTES as u64));
        }
        with(|s| {
            let Some(limit) = s.kv_quota else { return Ok(()) };
            let used: u64 = s.kv.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
            let old = s.kv.get(key).map_or(0, |v| (key.len() + v.len()) as u64);
            let requested = (key.len() + value.len()) as u64;
            if used - old + requested > limit {
                return Err(Error::QuotaExceeded(Quota { used, limit, requested }));
            }
            Ok(())
        })
    }

    /// See the WIT.
    pub fn get(key: &str) -> Result<Option<Vec<u8>>, Error> {
        check_key(key)?;
        Ok(with(|s| s.kv.get(key).cloned()))
    }

    /// See the WIT.
    pub fn set(key: &str, value: &[u8]) -> Result<(), Error> {
        check_write(key, Some(value))?;
        with(|s| s.kv.insert(key.to_owned(), value.to_vec()));
        Ok(())
    }

    /// See the WIT.
    pub fn delete(key: &str) -> Result<bool, Error> {
        check_key(key)?;
        Ok(with(|s| s.kv.remove(key).is_some()))
    }

    /// See the WIT.
    pub fn compare_and_swap(key: &str, expected: Option<&[u8]>, new: Option<&[u8]>) -> Result<Swap, Error> {
        check_write(key, new)?;
        with(|s| {
            let current = s.kv.get(key).cloned();
            if current.as_deref() != expected {
                return Ok(Swap::Conflict(current));
            }
            match new {
                Some(value) => s.kv.insert(key.to_owned(), value.to_vec()),
                None => s.kv.remove(key),
            };
            Ok(Swap::Swapped)
        })
    }

    /// See the WIT.
    pub fn scan_prefix(prefix: &str, start_after: Option<&str>, limit: u32) -> Result<Page, Error> {
        let limit = limit.clamp(1, crate::kv::MAX_SCAN_PAGE) as usize;
        with(|s| {
            let mut matching =
                s.kv.range(prefix.to_owned()..)
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .filter(|(k, _)| start_after.is_none_or(|after| k.as_str() > after));
            let entries: Vec<Entry> =
                matching.by_ref().take(limit).map(|(k, v)| Entry { key: k.clone(), value: v.clone() }).collect();
            let next = if matching.next().is_some() { entries.last().map(|e| e.key.clone()) } else { None };
            Ok(Page { entries, next })
        })
    }

    /// See the WIT: the version is stored in 8 bytes before the value.
    pub fn get_versioned(key: &str) -> Result<Option<Versioned>, Error> {
        check_key(key)?;
        with(|s| match s.kv.get(key) {
            None => Ok(None),
            Some(stored) if stored.len() < 8 => {
                Err(Error::InvalidKey(format!("`{key}` holds a plain value, not one written with a version")))
            }
            Some(stored) => {
                let (header, value) = stored.split_at(8);
                let version = u64::from_be_bytes(header.try_into().expect("eight bytes"));
                Ok(Some(Versioned { value: value.to_vec(), version }))
            }
        })
    }

    /// See the WIT.
    pub fn write_versioned(
        key: &str,
        expected: Option<u64>,
        value: Option<&[u8]>,
        also: &[Op],
    ) -> Result<WriteOutcome, Error> {
        if also.iter().any(|op| matches!(op, Op::Set(Entry { key: k, .. }) | Op::Delete(k) if k == key)) {
            return Err(Error::InvalidKey(format!("`{key}` is the versioned key; it cannot also be in the batch")));
        }
        let current = get_versioned(key)?.map(|v| v.version);
        if current != expected {
            return Ok(WriteOutcome::Conflict(current));
        }
        let version = super::with(|s| {
            s.counter += 1;
            s.counter
        });
        let mut ops = Vec::with_capacity(also.len() + 1);
        ops.push(match value {
            Some(value) => {
                let mut stored = version.to_be_bytes().to_vec();
                stored.extend_from_slice(value);
                Op::Set(Entry { key: key.to_owned(), value: stored })
            }
            None => Op::Delete(key.to_owned()),
        });
        ops.extend_from_slice(also);
        batch(&ops)?;
        Ok(WriteOutcome::Written(version))
    }

    /// See the WIT.
    pub fn batch(ops: &[Op]) -> Result<(), Error> {
        for op in ops {
            match op {
                Op::Set(entry) => check_write(&entry.key, Some(&entry.value))?,
                Op::Delete(key) => check_key(key)?,
            }
        }
        with(|s| {
            for op in ops {
                match op {
                    Op::Set(entry) => s.kv.insert(entry.key.clone(), entry.value.clone()),
                    Op::Delete(key) => s.kv.remove(key),
                };
            }
        });
        Ok(())
    }
}

/// `plinth:platform/events`: changes kept per key for
/// [`TestHost::changes`]; no streams (a response's
/// [`Response::followed`] says what it would stream).
pub mod events {
    use crate::bindings::plinth::platform::events::Change;
    use crate::bindings::plinth::platform::kv::{Error, Op, WriteOutcome};

    /// Changes the host holds per key.
    pub const RECENT: usize = 32;

    /// See the WIT.
    pub fn publish_write(
        key: &str,
        expected: Option<u64>,
        value: Option<&[u8]>,
        also: &[Op],
        data: &[u8],
    ) -> Result<WriteOutcome, Error> {
        if data.len() > crate::events::MAX_CHANGE_BYTES {
            return Err(Error::ValueTooLarge(crate::events::MAX_CHANGE_BYTES as u64));
        }
        let outcome = super::kv::write_versioned(key, expected, value, also)?;
        if let WriteOutcome::Written(version) = outcome {
            super::with(|s| {
                let held = s.changes.entry(key.to_owned()).or_default();
                if held.len() == RECENT {
                    held.pop_front();
                }
                held.push_back(Change { version, previous: expected, data: data.to_vec() });
            });
        }
        Ok(outcome)
    }

    /// See the WIT.
    pub fn since(key: &str, after: u64) -> Option<Vec<Change>> {
        super::with(|s| {
            let held = s.changes.get(key)?;
            match held.iter().position(|c| c.version > after) {
                None if held.back().is_some_and(|c| c.version == after) => Some(Vec::new()),
                Some(i) if held[i].previous == Some(after) => Some(held.range(i..).cloned().collect()),
                _ => None,
            }
        })
    }
}

/// `plinth:platform/blobs` in memory: ids are SHA-256 over the owner and
/// the bytes (so one owner's copies share an id and another's do not),
/// quotas count stored bytes and reservations as the host does, and an
/// upload expires when [`TestHost::expire_uploads`] says so.
pub mod blobs {
    use sha2::{Digest, Sha256};

    use super::{RequestData, with};
    use crate::bindings::plinth::platform::blobs::{Blob, Checksum, Error, QuotaExceeded, ScanState, Upload};

    /// A stored blob.
    pub(super) struct Stored {
        owner: String,
        pub(super) bytes: Vec<u8>,
        refs: u64,
        pub(super) scan: ScanState,
    }

    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
    }

    fn info(id: &str, stored: &Stored) -> Blob {
        Blob {
            id: id.to_owned(),
            owner: stored.owner.clone(),
            size: stored.bytes.len() as u64,
            refs: stored.refs,
            created: 0,
            scan: stored.scan.clone(),
        }
    }

    /// Stored plus reserved, for the plugin and for `owner`.
    fn used(s: &super::State, owner: &str) -> (u64, u64) {
        let stored = |o: Option<&str>| -> u64 {
            s.blobs.values().filter(|b| o.is_none_or(|o| b.owner == o)).map(|b| b.bytes.len() as u64).sum()
        };
        let reserved = |o: Option<&str>| -> u64 {
            s.uploads.values().filter(|(u, _)| o.is_none_or(|o| u.owner == o)).map(|(u, _)| u.length).sum()
        };
        (stored(None) + reserved(None), stored(Some(owner)) + reserved(Some(owner)))
    }

    fn reserve(s: &super::State, owner: &str, requested: u64) -> Result<(), Error> {
        let (plugin, own) = used(s, owner);
        for (scope, used, limit) in [("plugin", plugin, s.blob_quota.0), ("owner", own, s.blob_quota.1)] {
            if used.saturating_add(requested) > limit {
                return Err(Error::QuotaExceeded(QuotaExceeded { scope: scope.to_owned(), limit, used, requested }));
            }
        }
        Ok(())
    }

    fn store(s: &mut super::State, owner: &str, bytes: Vec<u8>) -> Blob {
        let mut hasher = Sha256::new();
        hasher.update(owner.as_bytes());
        hasher.update([0]);
        hasher.update(&bytes);
        let id: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        let stored = s.blobs.entry(id.clone()).and_modify(|b| b.refs += 1).or_insert(Stored {
            owner: owner.to_owned(),
            bytes,
            refs: 1,
            scan: ScanState::Unscanned,
        });
        info(&id, stored)
    }

    fn live_upload(s: &super::State, id: &str) -> Result<Upload, Error> {
        let (upload, _) = s.uploads.get(id).ok_or(Error::NotFound)?;
        if upload.expires <= now() {
            return Err(Error::Expired);
        }
        Ok(upload.clone())
    }

    /// See the WIT.
    pub fn create_upload(owner: &str, length: u64, ttl_seconds: u64) -> Result<Upload, Error> {
        with(|s| {
            reserve(s, owner, length)?;
            // Never reused, as the real host's random ids are not.
            s.counter += 1;
            let id = format!("{:032x}", s.counter);
            let upload =
                Upload { id: id.clone(), owner: owner.to_owned(), length, offset: 0, expires: now() + ttl_seconds };
            s.uploads.insert(id, (upload.clone(), Vec::new()));
            Ok(upload)
        })
    }

    /// See the WIT.
    pub fn get_upload(id: &str) -> Result<Upload, Error> {
        with(|s| live_upload(s, id))
    }

    /// See the WIT. The checksum, when given, must be `sha256`.
    pub(crate) fn append(req: &RequestData, id: &str, offset: u64, checksum: Option<&Checksum>) -> Result<u64, Error> {
        with(|s| {
            if s.busy.contains(id) {
                return Err(Error::Busy);
            }
            let upload = live_upload(s, id)?;
            if upload.offset != offset {
                return Err(Error::OffsetMismatch(upload.offset));
            }
            if offset + req.body.len() as u64 > upload.length {
                return Err(Error::TooLarge(upload.length));
            }
            if let Some(checksum) = checksum
                && (checksum.algorithm != "sha256" || Sha256::digest(&req.body).as_slice() != checksum.digest)
            {
                return Err(Error::ChecksumMismatch);
            }
            let (upload, bytes) = s.uploads.get_mut(id).expect("checked");
            bytes.extend_from_slice(&req.body);
            upload.offset = bytes.len() as u64;
            Ok(upload.offset)
        })
    }

    /// See the WIT.
    pub fn finish_upload(id: &str) -> Result<Blob, Error> {
        with(|s| {
            let upload = live_upload(s, id)?;
            if upload.offset != upload.length {
                return Err(Error::Incomplete(upload.offset));
            }
            let (upload, bytes) = s.uploads.remove(id).expect("checked");
            Ok(store(s, &upload.owner, bytes))
        })
    }

    /// See the WIT.
    pub fn cancel_upload(id: &str) -> Result<(), Error> {
        with(|s| {
            if s.busy.contains(id) {
                return Err(Error::Busy);
            }
            s.uploads.remove(id).map(drop).ok_or(Error::NotFound)
        })
    }

    /// See the WIT.
    pub(crate) fn ingest(req: &RequestData, owner: &str, max: u64) -> Result<Blob, Error> {
        if req.body.len() as u64 > max {
            return Err(Error::TooLarge(max));
        }
        with(|s| {
            reserve(s, owner, req.body.len() as u64)?;
            Ok(store(s, owner, req.body.clone()))
        })
    }

    /// See the WIT.
    pub fn create(owner: &str, bytes: &[u8]) -> Result<Blob, Error> {
        with(|s| {
            reserve(s, owner, bytes.len() as u64)?;
            Ok(store(s, owner, bytes.to_vec()))
        })
    }

    /// See the WIT.
    pub fn get(id: &str) -> Result<Blob, Error> {
        with(|s| s.blobs.get(id).map(|b| info(id, b)).ok_or(Error::NotFound))
    }

    /// See the WIT.
    pub fn read(id: &str, offset: u64, len: u64) -> Result<Vec<u8>, Error> {
        if len > 1 << 20 {
            return Err(Error::Invalid("a read returns at most 1048576 bytes".to_owned()));
        }
        with(|s| {
            let bytes = &s.blobs.get(id).ok_or(Error::NotFound)?.bytes;
            let start = (offset as usize).min(bytes.len());
            let end = (start + len as usize).min(bytes.len());
            Ok(bytes[start..end].to_vec())
        })
    }

    /// See the WIT.
    pub fn link(id: &str) -> Result<Blob, Error> {
        with(|s| {
            let stored = s.blobs.get_mut(id).ok_or(Error::NotFound)?;
            stored.refs += 1;
            Ok(info(id, stored))
        })
    }

    /// See the WIT.
    pub fn unlink(id: &str) -> Result<u64, Error> {
        with(|s| {
            let stored = s.blobs.get_mut(id).ok_or(Error::NotFound)?;
            stored.refs -= 1;
            let left = stored.refs;
            if left == 0 {
                s.blobs.remove(id);
            }
            Ok(left)
        })
    }

    /// See the WIT.
    pub fn usage(owner: Option<&str>) -> Result<(u64, u64), Error> {
        with(|s| {
            let stored = s.blobs.values().filter(|b| owner.is_none_or(|o| b.owner == o)).map(|b| b.bytes.len() as u64);
            let reserved =
                s.uploads.values().filter(|(u, _)| owner.is_none_or(|o| u.owner == o)).map(|(u, _)| u.length);
            Ok((stored.sum(), reserved.sum()))
        })
    }
}

/// `plinth:platform/jobs` in memory: jobs stay queued until the test ends
/// them with [`TestHost::finish_job`]; any worker name is taken.
pub mod jobs {
    use super::{blobs, with};
    use crate::bindings::plinth::platform::jobs::{Error, Job, QueueFull, State};

    /// See the WIT.
    pub fn submit(worker: &str, owner: &str, inputs: &[String], params: &str) -> Result<String, Error> {
        if inputs.is_empty() {
            return Err(Error::Invalid("inputs: 1 to 16 blob ids, not 0".into()));
        }
        queue(worker, owner, inputs, params)
    }

    /// See the WIT (the prefix is not kept: the in-memory host runs no worker).
    pub fn submit_reading(
        worker: &str,
        owner: &str,
        inputs: &[String],
        params: &str,
        read_prefix: &str,
    ) -> Result<String, Error> {
        if read_prefix.is_empty() || read_prefix.len() > 1024 {
            return Err(Error::Invalid("read-prefix: 1 to 1024 bytes".into()));
        }
        queue(worker, owner, inputs, params)
    }

    fn queue(worker: &str, owner: &str, inputs: &[String], params: &str) -> Result<String, Error> {
        if inputs.len() > 16 {
            return Err(Error::Invalid(format!("inputs: at most 16 blob ids, not {}", inputs.len())));
        }
        if let Some(missing) = inputs.iter().find(|id| blobs::get(id).is_err()) {
            return Err(Error::Invalid(format!("inputs: no blob `{missing}`")));
        }
        with(|s| {
            let unfinished = s
                .jobs
                .values()
                .filter(|(job, ..)| job.owner == owner && matches!(job.state, State::Queued | State::Running))
                .count();
            if let Some(limit) = s.jobs_per_owner.filter(|limit| unfinished >= *limit as usize) {
                return Err(Error::QueueFull(QueueFull { scope: "owner".into(), limit }));
            }
            s.counter += 1;
            let id = format!("{:032x}", s.counter);
            let job = Job {
                id: id.clone(),
                worker: worker.to_owned(),
                owner: owner.to_owned(),
                state: State::Queued,
                outputs: Vec::new(),
                submitted: s.counter,
            };
            s.jobs.insert(id.clone(), (job, inputs.to_vec(), params.to_owned()));
            Ok(id)
        })
    }

    /// See the WIT.
    pub fn get(id: &str) -> Result<Job, Error> {
        with(|s| s.jobs.get(id).map(|(job, ..)| job.clone()).ok_or(Error::NotFound))
    }

    /// See the WIT.
    pub fn forget(id: &str) -> Result<(), Error> {
        let (job, ..) = with(|s| s.jobs.remove(id)).ok_or(Error::NotFound)?;
        for blob in &job.outputs {
            let _ = blobs::unlink(blob);
        }
        Ok(())
    }
}

/// `plinth:platform/signing`, faked plainly: `t1.<hex body>.<hex tag>`,
/// the tag a SHA-256 over a fixed test secret, the purpose and the body,
/// so altered and cross-purpose tokens fail as with the host.
pub mod signing {
    use sha2::{Digest, Sha256};

    use crate::bindings::plinth::platform::signing::Error;

    fn tag(purpose: &str, body: &str) -> String {
        hex(&Sha256::digest(format!("test-secret\0{purpose}\0{body}").as_bytes()))
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn unhex(text: &str) -> Option<Vec<u8>> {
        if !text.len().is_multiple_of(2) {
            return None;
        }
        (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
    }

    /// See the WIT.
    pub fn sign(purpose: &str, payload: &[u8], expires_at: Option<u64>) -> Result<String, String> {
        let mut body = expires_at.unwrap_or(0).to_be_bytes().to_vec();
        body.extend_from_slice(payload);
        let body = hex(&body);
        Ok(format!("t1.{body}.{}", tag(purpose, &body)))
    }

    /// See the WIT.
    pub fn verify(purpose: &str, token: &str) -> Result<Vec<u8>, Error> {
        let malformed = || Error::Malformed("not a test token".to_owned());
        let mut parts = token.split('.');
        let (Some("t1"), Some(body), Some(tag_text), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed());
        };
        let bytes = unhex(body).filter(|b| b.len() >= 8).ok_or_else(malformed)?;
        if tag(purpose, body) != tag_text {
            return Err(Error::BadSignature);
        }
        let (expiry, payload) = bytes.split_at(8);
        let expires_at = u64::from_be_bytes(expiry.try_into().expect("eight bytes"));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if expires_at != 0 && now >= expires_at {
            return Err(Error::Expired(expires_at));
        }
        Ok(payload.to_vec())
    }
}

/// `plinth:platform/schemas`, with the same library and options as the host.
pub mod schemas {
    use crate::bindings::plinth::platform::schemas::{Error, Violation};

    /// See the WIT.
    pub fn validate(schema: &str, document: &str) -> Result<Vec<Violation>, Error> {
        let schema: serde_json::Value =
            serde_json::from_str(schema).map_err(|e| Error::InvalidSchema(e.to_string()))?;
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .with_pattern_options(jsonschema::PatternOptions::regex())
            .build(&schema)
            .map_err(|e| Error::InvalidSchema(e.to_string()))?;
        let document: serde_json::Value =
            serde_json::from_str(document).map_err(|e| Error::InvalidDocument(e.to_string()))?;
        Ok(validator
            .iter_errors(&document)
            .take(100)
            .map(|e| Violation {
                path: e.instance_path.to_string(),
                keyword: e.schema_path.to_string().rsplit('/').next().unwrap_or_default().to_owned(),
                message: e.to_string(),
            })
            .collect())
    }
}

/// `plinth:platform/log`, kept for [`TestHost::logs`].
pub mod log {
    use crate::bindings::plinth::platform::log::Level;

    /// See the WIT.
    pub fn log(level: Level, message: &str, fields: &[(String, String)]) {
        let line = super::LogLine { level, message: message.to_owned(), fields: fields.to_vec() };
        super::with(|s| s.logs.push(line));
    }
}

/// `plinth:platform/audit`, kept for [`TestHost::audit_events`].
pub mod audit {
    use crate::bindings::plinth::platform::audit::Event;

    /// See the WIT; fails when [`super::TestHost::audit_fails`] says so.
    pub fn emit(event: &Event) -> Result<(), String> {
        super::with(|s| {
            if s.audit_fails {
                return Err("the audit log is unavailable (TestHost::audit_fails)".to_owned());
            }
            s.audit.push(event.clone());
            Ok(())
        })
    }
}

/// `plinth:platform/settings`, from [`super::TestHost::setting`].
pub mod settings {
    /// See the WIT.
    pub fn get(name: &str) -> Option<String> {
        super::with(|s| s.settings.get(name).cloned())
    }
}

/// `plinth:platform/messages`, in memory: `{ $name }` filled, nothing more.
pub mod messages {
    use super::wit::messages::Argument;

    /// See the WIT.
    pub fn format(locale: &str, key: &str, args: &[(String, Argument)]) -> Option<String> {
        super::with(|s| {
            let default = s.locales.first().cloned().unwrap_or_default();
            let text = s
                .messages
                .get(&(locale.to_owned(), key.to_owned()))
                .or_else(|| s.messages.get(&(default, key.to_owned())))?;
            let mut text = text.clone();
            for (name, value) in args {
                let value = match value {
                    Argument::Text(t) => t.clone(),
                    Argument::Number(n) => n.to_string(),
                };
                text = text.replace(&format!("{{ ${name} }}"), &value);
            }
            Some(text)
        })
    }

    /// See the WIT.
    pub fn missing(keys: &[String]) -> Vec<(String, String)> {
        super::with(|s| {
            let mut missing = Vec::new();
            for locale in &s.locales {
                for key in keys {
                    if !s.messages.contains_key(&(locale.clone(), key.clone())) {
                        missing.push((locale.clone(), key.clone()));
                    }
                }
            }
            missing
        })
    }

    /// See the WIT.
    pub fn locales() -> Vec<String> {
        super::with(|s| s.locales.clone())
    }

    /// See the WIT (the in-memory host knows Arabic, Hebrew, Persian and Urdu).
    pub fn is_rtl(locale: &str) -> bool {
        let language = locale.split(['-', '_']).next().unwrap_or_default();
        ["ar", "he", "fa", "ur"].contains(&language)
    }
}

/// `plinth:platform/assets`, in memory.
pub mod assets {
    /// See the WIT.
    pub fn get(name: &str) -> Option<Vec<u8>> {
        super::with(|s| s.assets.get(name).cloned())
    }

    /// See the WIT.
    pub fn names() -> Vec<String> {
        super::with(|s| s.assets.keys().cloned().collect())
    }
}

/// `plinth:platform/principals`, in memory.
pub mod principals {
    use crate::bindings::plinth::platform::principals::{Account, Error, Status};

    /// See the WIT.
    pub fn get(id: &str) -> Result<Option<Account>, Error> {
        Ok(super::with(|s| s.accounts.get(id).cloned()))
    }

    /// See the WIT; a status other than active ends the account's sessions.
    pub fn put(account: &Account) -> Result<(), Error> {
        let id_ok = (1..=128).contains(&account.id.len())
            && account.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !id_ok {
            return Err(Error::Invalid(format!("id `{}`: 1 to 128 of a-z, A-Z, 0-9, `-`, `_`", account.id)));
        }
        super::with(|s| {
            if account.status != Status::Active {
                s.sessions.retain(|(owner, _)| *owner != account.id);
            }
            s.accounts.insert(account.id.clone(), account.clone());
        });
        Ok(())
    }
}

/// `plinth:platform/sessions`, as counters: no tokens, no cookies.
pub mod sessions {
    use crate::bindings::plinth::platform::principals::Status;
    use crate::bindings::plinth::platform::sessions::{Error, Issued, IssuedToken, PasswordPolicy, SessionInfo};

    /// See the WIT; always available in the test host.
    pub fn password_sign_in() -> PasswordPolicy {
        PasswordPolicy::Available
    }

    /// See the WIT; the account must exist and be active.
    pub fn issue(account_id: &str) -> Result<Issued, Error> {
        let active = super::with(|s| s.accounts.get(account_id).is_some_and(|a| a.status == Status::Active));
        if !active {
            return Err(Error::AccountNotActive);
        }
        let session_id = super::next_id("session-");
        let info = SessionInfo {
            session_id: session_id.clone(),
            created_at: 0,
            last_seen_at: 0,
            client_address: "192.0.2.1".to_owned(),
            user_agent: "test".to_owned(),
            current: false,
        };
        super::with(|s| s.sessions.push((account_id.to_owned(), info)));
        Ok(Issued { csrf_token: format!("csrf-{session_id}"), session_id, expires_at: 43_200 })
    }

    /// See the WIT; the token is `token-{session id}`.
    pub fn issue_token(account_id: &str) -> Result<IssuedToken, Error> {
        let session = issue(account_id)?;
        Ok(IssuedToken { token: format!("token-{}", session.session_id), session })
    }

    /// See the WIT.
    pub fn revoke_current() -> Result<bool, Error> {
        let current = super::with(|s| s.current_session.clone());
        Ok(current.is_some_and(|id| remove(|_, info| info.session_id == id) > 0))
    }

    /// See the WIT.
    pub fn revoke(account_id: &str, session_id: &str) -> Result<bool, Error> {
        Ok(remove(|owner, info| owner == account_id && info.session_id == session_id) > 0)
    }

    /// See the WIT.
    pub fn revoke_all(account_id: &str, except: Option<&str>) -> Result<u32, Error> {
        Ok(remove(|owner, info| owner == account_id && except != Some(info.session_id.as_str())))
    }

    /// See the WIT.
    pub fn list(account_id: &str) -> Result<Vec<SessionInfo>, Error> {
        Ok(super::with(|s| {
            let current = s.current_session.clone();
            s.sessions
                .iter()
                .filter(|(owner, _)| owner == account_id)
                .map(|(_, info)| SessionInfo { current: Some(&info.session_id) == current.as_ref(), ..info.clone() })
                .collect()
        }))
    }

    fn remove(matches: impl Fn(&str, &SessionInfo) -> bool) -> u32 {
        super::with(|s| {
            let before = s.sessions.len();
            s.sessions.retain(|(owner, info)| !matches(owner, info));
            u32::try_from(before - s.sessions.len()).expect("few sessions")
        })
    }
}

/// `plinth:platform/passwords`, without hashing: fast, and plainly fake.
pub mod passwords {
    use crate::bindings::plinth::platform::passwords::Verdict;

    const PREFIX: &str = "$test-not-hashed$";

    /// See the WIT.
    pub fn hash(password: &str) -> Result<String, String> {
        Ok(format!("{PREFIX}{password}"))
    }

    /// See the WIT.
    pub fn verify(password: &str, stored: Option<&str>) -> Verdict {
        let valid = stored.and_then(|s| s.strip_prefix(PREFIX)) == Some(password);
        Verdict { valid, needs_rehash: false }
    }

    /// See the WIT: 8 to 128 characters, and not one of the `related` words.
    pub fn check_strength(password: &str, related: &[String]) -> Result<(), String> {
        let count = password.chars().count();
        if !(8..=128).contains(&count) {
            return Err("use 8 to 128 characters".to_owned());
        }
        let lower = password.to_lowercase();
        if related.iter().any(|word| !word.is_empty() && lower.contains(&word.to_lowercase())) {
            return Err("do not build the password from your name or address".to_owned());
        }
        Ok(())
    }
}

/// `plinth:platform/webhooks`, in memory: endpoints by URL (any http or
/// https URL), messages kept for [`TestHost::webhooks`], nothing delivered.
pub mod webhooks {
    use crate::bindings::plinth::platform::webhooks::{Delivery, Endpoint, Error};

    /// See the WIT.
    pub fn endpoint_for(url: &str) -> Result<Endpoint, Error> {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(Error::InvalidUrl(format!("`{url}`: a webhook URL is http or https")));
        }
        super::with(|s| {
            let id = format!("ep_{:032x}", s.endpoints.len() + 1);
            let found = s.endpoints.values().find(|e| e.url == url).cloned();
            Ok(found.unwrap_or_else(|| {
                let endpoint = Endpoint {
                    id: id.clone(),
                    url: url.to_owned(),
                    secret: "whsec_dGVzdA==".into(),
                    enabled: true,
                    failures: 0,
                    disabled_reason: None,
                };
                s.endpoints.insert(id, endpoint.clone());
                endpoint
            }))
        })
    }

    /// See the WIT.
    pub fn send(id: &str, event_type: &str, payload: &[u8]) -> Result<String, Error> {
        super::with(|s| match s.endpoints.get(id) {
            None => Err(Error::NotFound),
            Some(endpoint) if !endpoint.enabled => Err(Error::Disabled),
            Some(_) => {
                s.webhooks.push((id.to_owned(), event_type.to_owned(), payload.to_vec()));
                Ok(format!("msg_{}", s.webhooks.len()))
            }
        })
    }

    /// See the WIT: the in-memory host delivers nothing, so logs nothing.
    pub fn deliveries(id: &str) -> Result<Vec<Delivery>, Error> {
        super::with(|s| if s.endpoints.contains_key(id) { Ok(Vec::new()) } else { Err(Error::NotFound) })
    }

    /// See the WIT.
    pub fn enable(id: &str) -> Result<Endpoint, Error> {
        super::with(|s| {
            let endpoint = s.endpoints.get_mut(id).ok_or(Error::NotFound)?;
            endpoint.enabled = true;
            endpoint.failures = 0;
            endpoint.disabled_reason = None;
            Ok(endpoint.clone())
        })
    }
}

/// `plinth:platform/outbox`, kept for [`TestHost::outbox`].
pub mod outbox {
    use crate::bindings::plinth::platform::outbox::Message;

    /// See the WIT.
    pub fn send(message: &Message) -> Result<String, String> {
        super::with(|s| s.outbox.push(message.clone()));
        Ok(super::next_id("mail-"))
    }
}
