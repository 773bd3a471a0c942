//! The host's view of who is who: the principal registry (account id, roles,
//! status) and the sessions bound to it.
//!
//! Session tokens are 256 random bits; only their SHA-256 is stored. Layout
//! of the `sessions` system namespace: `t/{token hash}` → the session,
//! `a/{account}/{session id}` → token hash, `e/{session id}` →
//! `{account}/{token hash}` for sessions issued in emergency mode (host data version 1 dropped an
//! `i/{session id}` index nothing read: `migrations/0001-session-id-index.toml`).
//! Every security change is audited first and not made when the audit
//! record cannot be written.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::audit::{AuditError, AuditLog, Envelope, Outcome};
use crate::storage::{Namespace, NamespaceId, Op, Storage, StorageError, Swap};

/// Longest account id.
const MAX_ACCOUNT_ID: usize = 128;
/// Most roles one account holds.
const MAX_ROLES: usize = 32;
/// Most live sessions one account holds; signing in once more ends the
/// oldest, so an account's sessions can always be listed and revoked whole.
pub const MAX_SESSIONS_PER_ACCOUNT: usize = 100;
/// Index entries read per storage call when walking an account's sessions.
const SESSION_PAGE: usize = 256;
/// `last_seen_at` is written at most this often per session, so a busy
/// session does not cost a write per request.
const LAST_SEEN_GRANULARITY: Duration = Duration::from_secs(60);

/// Lifecycle state of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Signed up, not verified.
    Pending,
    /// May sign in.
    Active,
    /// Temporarily barred.
    Suspended,
    /// Gone for good.
    Deactivated,
}

/// One account in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Chosen by the plugin that owns accounts.
    pub id: String,
    /// Roles, checked by route policies.
    pub roles: Vec<String>,
    /// Only `active` accounts have sessions.
    pub status: Status,
}

/// A stored session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Public id (not the token), for listing and revoking.
    pub id: String,
    /// Whose.
    pub account_id: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds, updated at most every [`LAST_SEEN_GRANULARITY`].
    pub last_seen_at: u64,
    /// Absolute expiry, unix seconds.
    pub expires_at: u64,
    /// Sent back in `X-CSRF-Token`; bound to this session.
    pub csrf_token: String,
    /// Where it was issued to.
    pub client_address: String,
    /// The `User-Agent` it was issued to (bounded).
    pub user_agent: String,
    /// Issued in emergency mode: shorter-lived, and revoked when it ends.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub emergency: bool,
    /// For an emergency session, when the mode it was issued in began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency_since: Option<u64>,
}

/// A request's resolved identity.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The session presented.
    pub session: Session,
    /// The account as the registry has it now.
    pub account: Account,
}

/// Why an identity operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Bad input; the text names the field.
    #[error("{0}")]
    Invalid(String),
    /// Sessions are only for active accounts.
    #[error("the account is not active")]
    NotActive,
    /// The audit record could not be written, so nothing was done.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Session lifetimes.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    /// A session unused this long expires.
    pub idle: Duration,
    /// A session expires this long after issue, however used.
    pub absolute: Duration,
}

/// Registry and sessions.
pub struct Identity {
    principals: Arc<dyn Namespace>,
    sessions: Arc<dyn Namespace>,
    audit: Arc<AuditLog>,
    lifetimes: Lifetimes,
    /// Counts sessions issued and revoked, when set.
    metrics: Option<Arc<crate::metrics::Metrics>>,
    /// When the emergency mode in force began and ends (Unix seconds; 0:
    /// none is on). An emergency session of another mode, or past its
    /// mode's end, is void even before `revoke_emergency` reaches it.
    emergency: std::sync::Mutex<(u64, u64)>,
    /// Held by one account's issue from making room to writing the session
    /// (one lock per shard of accounts), so that sign-ins at once cannot
    /// each find room for one more.
    issuing: Vec<tokio::sync::Mutex<()>>,
}

/// Shards of [`Identity::issuing`].
const ISSUING_SHARDS: usize = 16;

/// A fresh session token; the caller puts it in the cookie.
pub struct IssuedToken(pub String);

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// The stored form of a token.
fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn decode<T: for<'de> Deserialize<'de>>(what: &str, bytes: &[u8]) -> Result<T, StorageError> {
    serde_json::from_slice(bytes).map_err(|e| StorageError::Backend(format!("corrupt {what}: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("identity records serialize")
}

/// Checks an account id's shape.
pub fn check_account_id(id: &str) -> Result<(), IdentityError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ACCOUNT_ID
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(IdentityError::Invalid(format!("account id `{id}`: use 1 to {MAX_ACCOUNT_ID} of a-z, A-Z, 0-9, `-`, `_`")))
    }
}

impl Identity {
    /// Opens the registry and session namespaces.
    pub fn open(storage: &dyn Storage, audit: Arc<AuditLog>, lifetimes: Lifetimes) -> Result<Self, StorageError> {
        Ok(Self {
            principals: storage.namespace(NamespaceId::System("principals"), None)?,
            sessions: storage.namespace(NamespaceId::System("sessions"), None)?,
            audit,
            lifetimes,
            metrics: None,
            emergency: std::sync::Mutex::new((0, 0)),
            issuing: (0..ISSUING_SHARDS).map(|_| tokio::sync::Mutex::new(())).collect(),
        })
    }

    /// Counts sessions issued and revoked in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn count(&self, event: &str, n: u64) {
        if let Some(metrics) = &self.metrics {
            metrics.sessions.get_or_create(&crate::metrics::Named { name: event.to_owned() }).inc_by(n);
        }
    }

    /// An account by id.
    pub async fn account(&self, id: &str) -> Result<Option<Account>, IdentityError> {
        check_account_id(id)?;
        match self.principals.get(id).await? {
            Some(bytes) => Ok(Some(decode("account", &bytes)?)),
            None => Ok(None),
        }
    }

    /// Creates or replaces an account; leaving `active` revokes its sessions.
    pub async fn put_account(&self, account: &Account, envelope: &Envelope) -> Result<(), IdentityError> {
        check_account_id(&account.id)?;
        if account.roles.len() > MAX_ROLES {
            return Err(IdentityError::Invalid(format!("roles: at most {MAX_ROLES}")));
        }
        if let Some(role) = account.roles.iter().find(|r| !crate::policy::valid_role(r)) {
            return Err(IdentityError::Invalid(format!("role `{role}`: use 1 to 64 of a-z, A-Z, 0-9, `-`, `_`")));
        }
        let reason = format!("status={:?} roles=[{}]", account.status, account.roles.join(",")).to_lowercase();
        self.audit.append(envelope.draft("principal.updated", &account.id, Outcome::Success, Some(reason))).await?;
        self.principals.set(&account.id, encode(account)).await?;
        if account.status != Status::Active {
            self.revoke_all(&account.id, None, envelope).await?;
        }
        Ok(())
    }

    /// Resolves a presented token: the session must exist and be within its
    /// idle and absolute lifetimes, and its account must be active now.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Authenticated>, IdentityError> {
        if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let hash = token_hash(token);
        let Some(bytes) = self.sessions.get(&format!("t/{hash}")).await? else {
            return Ok(None);
        };
        let mut session: Session = decode("session", &bytes)?;
        let now = now();
        let idle_deadline = session.last_seen_at + self.lifetimes.idle.as_secs();
        let (since, until) = *self.emergency.lock().expect("emergency window poisoned");
        let void = session.emergency && (since == 0 || session.emergency_since != Some(since) || now >= until);
        if now >= session.expires_at || now >= idle_deadline || void {
            self.delete_session(&hash, &session).await?;
            return Ok(None);
        }
        let Some(account) = self.account(&session.account_id).await? else {
            return Ok(None);
        };
        if account.status != Status::Active {
            return Ok(None);
        }
        let granularity = LAST_SEEN_GRANULARITY.min(self.lifetimes.idle / 4).as_secs();
        if now.saturating_sub(session.last_seen_at) >= granularity.max(1) {
            session.last_seen_at = now;
            if !self.touch(&hash, bytes, &session).await? {
                return Ok(None);
            }
        }
        Ok(Some(Authenticated { session, account }))
    }

    /// Writes a session's new `last_seen_at` only over the record `read`:
    /// a session revoked since it was read stays revoked (an unconditional
    /// write would bring it back, out of its account's index). False when
    /// it is gone.
    async fn touch(&self, hash: &str, read: Vec<u8>, session: &Session) -> Result<bool, IdentityError> {
        let key = format!("t/{hash}");
        Ok(match self.sessions.compare_and_swap(&key, Some(read), Some(encode(session))).await? {
            Swap::Swapped => true,
            Swap::Conflict(now) => now.is_some(),
        })
    }

    /// Issues a session to an active account.
    pub async fn issue(
        &self,
        account_id: &str,
        client_address: &str,
        user_agent: &str,
        envelope: &Envelope,
    ) -> Result<(IssuedToken, Session), IdentityError> {
        self.issue_as(account_id, (client_address, user_agent), envelope, None).await
    }

    /// Issues a session; with `emergency`, an emergency-mode session that
    /// lasts at most that long and is indexed for [`Identity::revoke_emergency`].
    pub async fn issue_as(
        &self,
        account_id: &str,
        (client_address, user_agent): (&str, &str),
        envelope: &Envelope,
        emergency: Option<Duration>,
    ) -> Result<(IssuedToken, Session), IdentityError> {
        match self.account(account_id).await? {
            Some(account) if account.status == Status::Active => {}
            _ => return Err(IdentityError::NotActive),
        }
        let shard = Sha256::digest(account_id.as_bytes())[0] as usize % ISSUING_SHARDS;
        let issuing = self.issuing[shard].lock().await;
        self.make_room(account_id, envelope).await?;
        let token = random_hex(32);
        let hash = token_hash(&token);
        let now = now();
        let session = Session {
            id: random_hex(16),
            account_id: account_id.to_owned(),
            created_at: now,
            last_seen_at: now,
            expires_at: now
                + emergency.map_or(self.lifetimes.absolute, |ttl| ttl.min(self.lifetimes.absolute)).as_secs(),
            csrf_token: random_hex(32),
            client_address: client_address.to_owned(),
            user_agent: user_agent.chars().take(256).collect(),
            emergency: emergency.is_some(),
            emergency_since: emergency.map(|_| self.emergency.lock().expect("emergency window poisoned").0),
        };
        self.audit
            .append(envelope.draft(
                "session.issued",
                account_id,
                Outcome::Success,
                Some(format!("session={}{}", session.id, if session.emergency { " emergency" } else { "" })),
            ))
            .await?;
        let mut ops = vec![Op::Set(format!("t/{hash}"), encode(&session))];
        if session.emergency {
            ops.push(Op::Set(format!("e/{}", session.id), format!("{account_id}/{hash}").into_bytes()));
        }
        ops.push(Op::Set(format!("a/{account_id}/{}", session.id), hash.into_bytes()));
        self.sessions.batch(ops).await?;
        drop(issuing);
        // A suspension that landed after the check above revoked the
        // sessions it could see, not yet this one: look again.
        if !matches!(self.account(account_id).await?, Some(account) if account.status == Status::Active) {
            self.revoke(account_id, &session.id, envelope).await?;
            return Err(IdentityError::NotActive);
        }
        self.count("issued", 1);
        Ok((IssuedToken(token), session))
    }

    /// Revokes one session of an account; false when it was not there.
    pub async fn revoke(&self, account_id: &str, session_id: &str, envelope: &Envelope) -> Result<bool, IdentityError> {
        check_account_id(account_id)?;
        let Some(hash) = self.sessions.get(&format!("a/{account_id}/{session_id}")).await? else {
            return Ok(false);
        };
        let hash = String::from_utf8_lossy(&hash).into_owned();
        let reason = Some(format!("session={session_id}"));
        self.audit.append(envelope.draft("session.revoked", account_id, Outcome::Success, reason)).await?;
        self.sessions
            .batch(vec![
                Op::Delete(format!("t/{hash}")),
                Op::Delete(format!("e/{session_id}")),
                Op::Delete(format!("a/{account_id}/{session_id}")),
            ])
            .await?;
        self.count("revoked", 1);
        Ok(true)
    }

    /// Every session index entry of an account (`a/{account}/{session}` →
    /// token hash), however many there are.
    async fn index(&self, account_id: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let prefix = format!("a/{account_id}/");
        let mut entries = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.sessions.scan_prefix(&prefix, after.as_deref(), SESSION_PAGE).await?;
            entries.extend(page.entries);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(entries),
            }
        }
    }

    /// Ends the oldest sessions of an account until one more fits under
    /// [`MAX_SESSIONS_PER_ACCOUNT`].
    async fn make_room(&self, account_id: &str, envelope: &Envelope) -> Result<(), IdentityError> {
        let index = self.index(account_id).await?;
        if index.len() < MAX_SESSIONS_PER_ACCOUNT {
            return Ok(());
        }
        let mut by_age = Vec::with_capacity(index.len());
        for (key, hash) in index {
            let session_id = key.rsplit('/').next().unwrap_or_default().to_owned();
            let created_at = match self.sessions.get(&format!("t/{}", String::from_utf8_lossy(&hash))).await? {
                Some(bytes) => decode::<Session>("session", &bytes)?.created_at,
                None => 0,
            };
            by_age.push((created_at, session_id));
        }
        by_age.sort();
        let excess = by_age.len() + 1 - MAX_SESSIONS_PER_ACCOUNT;
        for (_, session_id) in by_age.into_iter().take(excess) {
            self.revoke(account_id, &session_id, envelope).await?;
        }
        Ok(())
    }

    /// Revokes every session of an account but `except`; returns how many.
    pub async fn revoke_all(
        &self,
        account_id: &str,
        except: Option<&str>,
        envelope: &Envelope,
    ) -> Result<u32, IdentityError> {
        let index = self.index(account_id).await?;
        let mut ops = Vec::new();
        for (key, hash) in &index {
            let session_id = key.rsplit('/').next().unwrap_or_default();
            if Some(session_id) == except {
                continue;
            }
            ops.push(Op::Delete(format!("t/{}", String::from_utf8_lossy(hash))));
            ops.push(Op::Delete(format!("e/{session_id}")));
            ops.push(Op::Delete(key.clone()));
        }
        let count = (ops.len() / 3) as u32;
        if count > 0 {
            let reason = Some(format!("sessions={count}"));
            self.audit.append(envelope.draft("session.revoked_all", account_id, Outcome::Success, reason)).await?;
            self.sessions.batch(ops).await?;
            self.count("revoked", u64::from(count));
        }
        Ok(count)
    }

    /// Tells it when the emergency mode in force began and ends (0, 0:
    /// none is on).
    pub fn set_emergency(&self, since: u64, until: u64) {
        *self.emergency.lock().expect("emergency window poisoned") = (since, until);
    }

    /// Revokes every session issued in emergency mode (as it ends); how many.
    pub async fn revoke_emergency(&self, envelope: &Envelope) -> Result<u32, IdentityError> {
        let mut ops = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.sessions.scan_prefix("e/", after.as_deref(), SESSION_PAGE).await?;
            for (key, value) in &page.entries {
                let session_id = &key[2..];
                let value = String::from_utf8_lossy(value);
                if let Some((account_id, hash)) = value.split_once('/') {
                    ops.push(Op::Delete(format!("t/{hash}")));
                    ops.push(Op::Delete(format!("a/{account_id}/{session_id}")));
                }
                ops.push(Op::Delete(key.clone()));
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let count = ops.iter().filter(|op| matches!(op, Op::Delete(k) if k.starts_with("e/"))).count() as u32;
        if count > 0 {
            let reason = Some(format!("sessions={count}"));
            self.audit
                .append(envelope.draft("session.revoked_emergency", "emergency", Outcome::Success, reason))
                .await?;
            self.sessions.batch(ops).await?;
            self.count("revoked", u64::from(count));
        }
        Ok(count)
    }

    /// An account's live sessions.
    pub async fn list(&self, account_id: &str) -> Result<Vec<Session>, IdentityError> {
        check_account_id(account_id)?;
        let index = self.index(account_id).await?;
        let mut sessions = Vec::with_capacity(index.len());
        let now = now();
        for (_, hash) in index {
            let key = format!("t/{}", String::from_utf8_lossy(&hash));
            if let Some(bytes) = self.sessions.get(&key).await? {
                let session: Session = decode("session", &bytes)?;
                let idle_deadline = session.last_seen_at + self.lifetimes.idle.as_secs();
                if now < session.expires_at && now < idle_deadline {
                    sessions.push(session);
                }
            }
        }
        Ok(sessions)
    }

    async fn delete_session(&self, hash: &str, session: &Session) -> Result<(), StorageError> {
        self.sessions
            .batch(vec![
                Op::Delete(format!("t/{hash}")),
                Op::Delete(format!("e/{}", session.id)),
                Op::Delete(format!("a/{}/{}", session.account_id, session.id)),
            ])
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::SledStorage;

    /// An identity store with these lifetimes (seconds) and audit mirror.
    async fn identity_with(idle: u64, absolute: u64, mirror: Option<&str>) -> (tempfile::TempDir, Identity) {
        let dir = tempfile::tempdir().unwrap();
        let storage = SledStorage::open(dir.path()).unwrap();
        let audit = Arc::new(
            AuditLog::open(&storage, mirror.map(std::path::Path::new), crate::audit::AuditKey::from_bytes([1; 32]))
                .await
                .unwrap(),
        );
        let lifetimes = Lifetimes { idle: Duration::from_secs(idle), absolute: Duration::from_secs(absolute) };
        (dir, Identity::open(&storage, audit, lifetimes).unwrap())
    }

    async fn identity(idle: u64) -> (tempfile::TempDir, Identity) {
        identity_with(idle, 3600, None).await
    }

    /// Issues a session for a new account, and checks that it works now and
    /// no longer does three seconds later. Lifetimes are kept in whole
    /// seconds, so the tests give 2 s: at least one is left for the first use.
    async fn session_is_gone_after_three_seconds(ids: &Identity, id: &str) {
        let env = Envelope::system();
        ids.put_account(&active(id), &env).await.unwrap();
        let (token, _) = ids.issue(id, "127.0.0.1", "", &env).await.unwrap();
        assert!(ids.authenticate(&token.0).await.unwrap().is_some());
        tokio::time::sleep(Duration::from_millis(3100)).await;
        assert!(ids.authenticate(&token.0).await.unwrap().is_none());
    }

    fn active(id: &str) -> Account {
        Account { id: id.to_owned(), roles: vec!["user".into()], status: Status::Active }
    }

    #[tokio::test]
    async fn tokens_resolve_until_revoked_and_only_their_hash_is_stored() {
        let (_dir, ids) = identity(600).await;
        let env = Envelope::system();
        ids.put_account(&active("ann"), &env).await.unwrap();
        let (token, session) = ids.issue("ann", "127.0.0.1", "test", &env).await.unwrap();
        assert!(ids.sessions.get(&format!("t/{}", token.0)).await.unwrap().is_none());
        let auth = ids.authenticate(&token.0).await.unwrap().unwrap();
        assert_eq!((auth.account.id.as_str(), auth.session.id.as_str()), ("ann", session.id.as_str()));
        assert!(ids.revoke("ann", &session.id, &env).await.unwrap());
        assert!(ids.authenticate(&token.0).await.unwrap().is_none());
        assert!(!ids.revoke("ann", &session.id, &env).await.unwrap());
    }

    #[tokio::test]
    async fn a_session_revoked_while_a_request_reads_it_stays_revoked() {
        let (_dir, ids) = identity(600).await;
        let env = Envelope::system();
        ids.put_account(&active("eve"), &env).await.unwrap();
        let (token, session) = ids.issue("eve", "127.0.0.1", "", &env).await.unwrap();
        let hash = token_hash(&token.0);
        let read = ids.sessions.get(&format!("t/{hash}")).await.unwrap().unwrap();
        // A request read the session; its owner signs it out; the request
        // then moves `last_seen_at` over what it read.
        assert!(ids.revoke("eve", &session.id, &env).await.unwrap());
        let seen = Session { last_seen_at: session.last_seen_at + 60, ..session.clone() };
        assert!(!ids.touch(&hash, read, &seen).await.unwrap(), "the request learns the session is gone");
        assert!(ids.sessions.get(&format!("t/{hash}")).await.unwrap().is_none());
        assert!(ids.authenticate(&token.0).await.unwrap().is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_session_issued_while_its_account_is_suspended_does_not_outlive_it() {
        let (_dir, ids) = identity(600).await;
        let (ids, env) = (Arc::new(ids), Envelope::system());
        for round in 0..100 {
            let id = format!("sue{round}");
            ids.put_account(&active(&id), &env).await.unwrap();
            let issuing = tokio::spawn({
                let (ids, id) = (ids.clone(), id.clone());
                async move { ids.issue(&id, "127.0.0.1", "", &Envelope::system()).await }
            });
            ids.put_account(&Account { status: Status::Suspended, ..active(&id) }, &env).await.unwrap();
            let _ = issuing.await.unwrap();
            assert!(ids.list(&id).await.unwrap().is_empty(), "round {round}: a session outlived the suspension");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sign_ins_at_once_do_not_take_an_account_past_its_sessions() {
        let (_dir, ids) = identity(600).await;
        let (ids, env) = (Arc::new(ids), Envelope::system());
        ids.put_account(&active("dot"), &env).await.unwrap();
        for _ in 0..MAX_SESSIONS_PER_ACCOUNT - 1 {
            ids.issue("dot", "127.0.0.1", "", &env).await.unwrap();
        }
        let mut issuing = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let ids = ids.clone();
            issuing.spawn(async move { ids.issue("dot", "127.0.0.1", "", &Envelope::system()).await.map(|_| ()) });
        }
        assert!(issuing.join_all().await.iter().all(Result::is_ok));
        assert_eq!(ids.list("dot").await.unwrap().len(), MAX_SESSIONS_PER_ACCOUNT);
    }

    #[tokio::test]
    async fn an_account_holds_a_bounded_number_of_sessions_and_loses_them_all() {
        let (_dir, ids) = identity(600).await;
        let env = Envelope::system();
        ids.put_account(&active("cat"), &env).await.unwrap();
        let mut tokens = Vec::new();
        for _ in 0..MAX_SESSIONS_PER_ACCOUNT + 5 {
            tokens.push(ids.issue("cat", "127.0.0.1", "", &env).await.unwrap().0);
        }
        assert_eq!(ids.list("cat").await.unwrap().len(), MAX_SESSIONS_PER_ACCOUNT, "the oldest made room");
        assert!(ids.authenticate(&tokens.last().unwrap().0).await.unwrap().is_some());
        let suspended = Account { status: Status::Suspended, ..active("cat") };
        ids.put_account(&suspended, &env).await.unwrap();
        ids.put_account(&active("cat"), &env).await.unwrap();
        for token in &tokens {
            assert!(ids.authenticate(&token.0).await.unwrap().is_none(), "no session comes back on reactivation");
        }
        assert!(ids.sessions.scan_prefix("a/cat/", None, 10).await.unwrap().entries.is_empty());
    }

    #[tokio::test]
    async fn leaving_active_kills_every_session() {
        let (_dir, ids) = identity(600).await;
        let env = Envelope::system();
        ids.put_account(&active("bob"), &env).await.unwrap();
        let (a, _) = ids.issue("bob", "127.0.0.1", "", &env).await.unwrap();
        let (b, _) = ids.issue("bob", "127.0.0.1", "", &env).await.unwrap();
        assert_eq!(ids.list("bob").await.unwrap().len(), 2);
        let suspended = Account { status: Status::Suspended, ..active("bob") };
        ids.put_account(&suspended, &env).await.unwrap();
        for token in [a, b] {
            assert!(ids.authenticate(&token.0).await.unwrap().is_none());
        }
        assert!(matches!(ids.issue("bob", "127.0.0.1", "", &env).await, Err(IdentityError::NotActive)));
        assert!(ids.list("bob").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn idle_sessions_expire() {
        let (_dir, ids) = identity(2).await;
        session_is_gone_after_three_seconds(&ids, "cy").await;
    }

    #[tokio::test]
    async fn sessions_expire_at_their_absolute_deadline_however_used() {
        let (_dir, ids) = identity_with(600, 2, None).await;
        session_is_gone_after_three_seconds(&ids, "eve").await;
    }

    #[tokio::test]
    async fn malformed_tokens_and_ids_are_refused() {
        let (_dir, ids) = identity(600).await;
        assert!(ids.authenticate("short").await.unwrap().is_none());
        assert!(ids.authenticate(&"z".repeat(64)).await.unwrap().is_none());
        assert!(matches!(ids.account("a/b").await, Err(IdentityError::Invalid(_))));
    }

    #[tokio::test]
    async fn nothing_happens_when_the_audit_record_cannot_be_written() {
        let (_dir, ids) = identity_with(60, 60, Some("/dev/full")).await;
        let env = Envelope::system();
        assert!(matches!(ids.put_account(&active("dan"), &env).await, Err(IdentityError::Audit(_))));
        assert_eq!(ids.account("dan").await.unwrap(), None, "the account was not created");
        // An account written behind the log's back still gets no session.
        ids.principals.set("dan", encode(&active("dan"))).await.unwrap();
        assert!(matches!(ids.issue("dan", "127.0.0.1", "", &env).await, Err(IdentityError::Audit(_))));
        assert!(ids.list("dan").await.unwrap().is_empty());
    }
}
