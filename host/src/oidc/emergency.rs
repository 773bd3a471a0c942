//! Credentials-only emergency mode (`[auth.emergency]`): while the sign-in
//! providers fail, accounts holding the break-glass role sign in with a
//! password and admins can send single-use sign-in links, for a bounded
//! time. Sessions issued so are tagged, shorter-lived and revoked when the
//! mode ends; sign-in through a provider creates no account meanwhile.
//!
//! An admin switches it on (with `approvals = 2`, a second admin confirms
//! the first one's request), or the drift monitor does when a provider goes
//! down and `on_provider_down` is set; it ends at its deadline, or earlier
//! when an admin ends it. Every change is audited first: when the audit
//! record cannot be written, the mode does not change. The state is kept
//! in the system namespace `oidc` (`emergency`, `elink/{sha256 of token}`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::config::{AuthConfig, PasswordSignIn};
use crate::audit::{AuditLog, Envelope, Outcome};
use crate::identity::Identity;
use crate::storage::{Namespace, NamespaceId, Storage, Swap};

/// A request waiting for its second admin expires after this long.
const PENDING_TTL: u64 = 600;
/// A sign-in link works this long.
const LINK_TTL: u64 = 900;
const STATE_KEY: &str = "emergency";

/// Where the mode stands, as `GET /admin/auth/emergency` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeState {
    /// It is on.
    pub on: bool,
    /// Since when (Unix seconds).
    pub since: Option<u64>,
    /// Until when (Unix seconds); it ends by itself then.
    pub until: Option<u64>,
    /// Why it was switched on.
    pub reason: Option<String>,
    /// Who switched it on (admins' principals, or `system`).
    pub by: Vec<String>,
    /// A request waiting for a second admin.
    pub pending: Option<Pending>,
}

/// A first admin's request, waiting for a second one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// Who asked.
    pub by: String,
    /// When (Unix seconds).
    pub at: u64,
    /// Why.
    pub reason: String,
    /// For how long, seconds.
    pub seconds: u64,
}

/// Why a change of mode was refused; each has a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmergencyError {
    /// On already.
    #[error("emergency mode is on already, until {0}")]
    AlreadyOn(u64),
    /// Off already, or a link outside it.
    #[error("emergency mode is off")]
    Off,
    /// The same admin asked twice.
    #[error("emergency mode needs a second admin to confirm this request")]
    SecondAdminNeeded,
    /// A bad input, named.
    #[error("{0}")]
    Invalid(String),
    /// A link unknown, used or expired.
    #[error("this sign-in link is unknown, used or expired")]
    LinkInvalid,
    /// Audit log or storage.
    #[error("{0}")]
    Unavailable(String),
}

impl EmergencyError {
    /// The stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            EmergencyError::AlreadyOn(_) => "emergency_on",
            EmergencyError::Off => "emergency_off",
            EmergencyError::SecondAdminNeeded => "second_admin_needed",
            EmergencyError::Invalid(_) => "invalid_request",
            EmergencyError::LinkInvalid => "link_invalid",
            EmergencyError::Unavailable(_) => "audit_unavailable",
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> EmergencyError {
    EmergencyError::Unavailable(e.to_string())
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[derive(Serialize, Deserialize)]
struct Link {
    account: String,
    expires_at: u64,
}

/// The mode, and who may sign in with a password now.
pub struct Emergency {
    config: AuthConfig,
    ns: Arc<dyn Namespace>,
    audit: Arc<AuditLog>,
    identity: Arc<Identity>,
    state: Mutex<ModeState>,
    /// One change at a time.
    changing: tokio::sync::Mutex<()>,
}

impl Emergency {
    /// The mode as stored; one past its deadline ends now.
    pub async fn open(
        config: &AuthConfig,
        storage: &dyn Storage,
        audit: Arc<AuditLog>,
        identity: Arc<Identity>,
    ) -> anyhow::Result<Arc<Self>> {
        let ns = storage.namespace(NamespaceId::System("oidc"), None)?;
        let state = match ns.get(STATE_KEY).await? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| anyhow::anyhow!("the emergency mode's stored state is unreadable: {e}"))?,
            None => ModeState::default(),
        };
        identity.set_emergency(state.since.filter(|_| state.on).unwrap_or(0), state.until.unwrap_or(0));
        let emergency = Arc::new(Self {
            config: config.clone(),
            ns,
            audit,
            identity,
            state: Mutex::new(state),
            changing: tokio::sync::Mutex::new(()),
        });
        emergency.end_if_due().await?;
        Ok(emergency)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ModeState> {
        self.state.lock().expect("emergency state poisoned")
    }

    /// Where the mode stands.
    pub fn status(&self) -> ModeState {
        self.state().clone()
    }

    /// It is on now.
    pub fn is_on(&self) -> bool {
        let state = self.state();
        state.on && state.until.is_some_and(|until| now() < until)
    }

    /// The role break-glass accounts hold.
    pub fn break_glass_role(&self) -> &str {
        &self.config.emergency.break_glass_role
    }

    /// What password sign-in is now: `available`, `break_glass_only` or `off`.
    pub fn password_sign_in(&self) -> &'static str {
        match (self.config.password_sign_in, self.is_on()) {
            (PasswordSignIn::Always, _) => "available",
            (PasswordSignIn::EmergencyOnly, true) => "break_glass_only",
            (PasswordSignIn::EmergencyOnly, false) => "off",
        }
    }

    /// Whether a session may follow a plugin's own credential check for an
    /// account holding `roles`: `Ok(None)` a normal session, `Ok(Some(ttl))`
    /// an emergency one, `Err` why not.
    pub fn password_session(&self, roles: &[String]) -> Result<Option<Duration>, String> {
        match self.password_sign_in() {
            "available" => Ok(None),
            "break_glass_only" if roles.contains(&self.config.emergency.break_glass_role) => {
                Ok(Some(self.config.emergency.session_ttl.0))
            }
            "break_glass_only" => Err(format!(
                "emergency mode is on: only accounts holding the `{}` role sign in with a password",
                self.config.emergency.break_glass_role
            )),
            _ => Err("password sign-in is off: sign in through a provider (GET /v1/auth/status)".to_owned()),
        }
    }

    async fn save(&self, state: ModeState) -> Result<(), EmergencyError> {
        self.ns.set(STATE_KEY, serde_json::to_vec(&state).expect("serializes")).await.map_err(unavailable)?;
        self.identity.set_emergency(state.since.filter(|_| state.on).unwrap_or(0), state.until.unwrap_or(0));
        *self.state() = state;
        Ok(())
    }

    async fn record(&self, envelope: &Envelope, action: &str, reason: String) -> Result<(), EmergencyError> {
        self.audit
            .append(envelope.draft(action, "emergency", Outcome::Success, Some(reason)))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// An admin asks for it (`seconds`: how long, at most `max_duration`);
    /// on, or waiting for a second admin.
    pub async fn request(
        &self,
        envelope: &Envelope,
        reason: &str,
        seconds: Option<u64>,
    ) -> Result<ModeState, EmergencyError> {
        let max = self.config.emergency.max_duration.0.as_secs();
        let seconds = seconds.unwrap_or(max);
        if seconds == 0 || seconds > max {
            return Err(EmergencyError::Invalid(format!("duration: 1 to {max} seconds (auth.emergency.max_duration)")));
        }
        let reason = reason.trim();
        if reason.is_empty() || reason.len() > 500 {
            return Err(EmergencyError::Invalid("reason: 1 to 500 bytes, saying why".to_owned()));
        }
        // A mode past its deadline ends (its sessions revoked) before a new one.
        self.end_if_due().await.map_err(unavailable)?;
        let _one = self.changing.lock().await;
        let mut state = self.status();
        if self.is_on() {
            return Err(EmergencyError::AlreadyOn(state.until.unwrap_or_default()));
        }
        let who = envelope.actor.to_string();
        let now = now();
        let pending = state.pending.take().filter(|p| now.saturating_sub(p.at) < PENDING_TTL);
        if self.config.emergency.approvals > 1 {
            match pending {
                Some(first) if first.by == who => return Err(EmergencyError::SecondAdminNeeded),
                // The second admin confirms the first one's request as it was.
                Some(first) => {
                    let reason = format!("{} (confirmed: {reason})", first.reason);
                    return self.switch_on(envelope, &reason, first.seconds, vec![first.by, who]).await;
                }
                None => {
                    let pending = Pending { by: who, at: now, reason: reason.to_owned(), seconds };
                    self.record(envelope, "auth.emergency_requested", format!("{seconds} s: {reason}")).await?;
                    return self
                        .save(ModeState { pending: Some(pending), ..ModeState::default() })
                        .await
                        .map(|()| self.status());
                }
            }
        }
        self.switch_on(envelope, reason, seconds, vec![who]).await
    }

    /// Switched on from the command line, with the server stopped: whoever
    /// can do that holds the server itself, so no second admin is asked.
    pub async fn switch_on_offline(&self, reason: &str, seconds: u64) -> Result<ModeState, EmergencyError> {
        let max = self.config.emergency.max_duration.0.as_secs();
        if seconds == 0 || seconds > max || reason.trim().is_empty() {
            return Err(EmergencyError::Invalid(format!("a reason, and a duration of 1 to {max} seconds")));
        }
        let _one = self.changing.lock().await;
        if self.is_on() {
            return Err(EmergencyError::AlreadyOn(self.status().until.unwrap_or_default()));
        }
        let envelope = Envelope { actor: crate::audit::Actor::Cli, ..Envelope::system() };
        self.switch_on(&envelope, reason.trim(), seconds, vec!["cli".to_owned()]).await
    }

    async fn switch_on(
        &self,
        envelope: &Envelope,
        reason: &str,
        seconds: u64,
        by: Vec<String>,
    ) -> Result<ModeState, EmergencyError> {
        let now = now();
        self.record(envelope, "auth.emergency_on", format!("{seconds} s by {}: {reason}", by.join(" and "))).await?;
        let state = ModeState {
            on: true,
            since: Some(now),
            until: Some(now + seconds),
            reason: Some(reason.to_owned()),
            by,
            pending: None,
        };
        self.save(state).await?;
        Ok(self.status())
    }

    /// The drift monitor found a provider down: on, for `max_duration`,
    /// when `on_provider_down` is set and it is not on already.
    pub async fn provider_down(&self, provider: &str, why: &str) -> Result<(), EmergencyError> {
        if !self.config.emergency.on_provider_down || self.is_on() {
            return Ok(());
        }
        let _one = self.changing.lock().await;
        if self.is_on() {
            return Ok(());
        }
        let reason = format!("provider `{provider}` is down: {why}");
        let seconds = self.config.emergency.max_duration.0.as_secs();
        self.switch_on(&Envelope::system(), &reason, seconds, vec!["system".to_owned()]).await.map(drop)
    }

    /// Ends it (an admin, or the deadline): every emergency session is
    /// revoked. How many were.
    pub async fn end(&self, envelope: &Envelope, why: &str) -> Result<u32, EmergencyError> {
        let _one = self.changing.lock().await;
        let state = self.status();
        if !state.on && state.pending.is_some() {
            self.record(envelope, "auth.emergency_cancelled", why.to_owned()).await?;
            self.save(ModeState::default()).await?;
            return Ok(0);
        }
        if !state.on {
            return Err(EmergencyError::Off);
        }
        self.record(envelope, "auth.emergency_off", why.to_owned()).await?;
        let revoked = self.identity.revoke_emergency(envelope).await.map_err(unavailable)?;
        // Links not used yet die with the mode.
        loop {
            let links = self.ns.scan_prefix("elink/", None, 1000).await.map_err(unavailable)?;
            if links.entries.is_empty() {
                break;
            }
            let stale = links.entries.into_iter().map(|(key, _)| crate::storage::Op::Delete(key)).collect();
            self.ns.batch(stale).await.map_err(unavailable)?;
        }
        self.save(ModeState::default()).await?;
        Ok(revoked)
    }

    async fn end_if_due(&self) -> anyhow::Result<()> {
        let state = self.status();
        if state.on && state.until.is_some_and(|until| now() >= until) {
            match self.end(&Envelope::system(), "its time was up").await {
                Ok(_) | Err(EmergencyError::Off) => {}
                Err(e) => anyhow::bail!("ending emergency mode: {e}"),
            }
        }
        Ok(())
    }

    /// Ends the mode at its deadline (checked every second), for as long
    /// as the server holds it.
    pub fn spawn_expiry(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let Some(emergency) = weak.upgrade() else { return };
                if let Err(e) = emergency.end_if_due().await {
                    tracing::error!(error = %e, "emergency mode could not end at its deadline; retrying");
                }
            }
        });
    }

    /// A single-use sign-in link's token for an account, while on.
    pub async fn link(&self, envelope: &Envelope, account: &str) -> Result<(String, u64), EmergencyError> {
        let _one = self.changing.lock().await;
        if !self.is_on() {
            return Err(EmergencyError::Off);
        }
        crate::identity::check_account_id(account).map_err(|e| EmergencyError::Invalid(format!("account: {e}")))?;
        let mut bytes = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
        let token = hex::encode(bytes);
        let expires_at = now() + LINK_TTL;
        self.record(envelope, "auth.emergency_link", format!("for {account}, until {expires_at}")).await?;
        let link = serde_json::to_vec(&Link { account: account.to_owned(), expires_at }).expect("serializes");
        self.ns.set(&link_key(&token), link).await.map_err(unavailable)?;
        Ok((token, expires_at))
    }

    /// Takes a link (once): the account it signs in, while on.
    pub async fn redeem(&self, token: &str) -> Result<String, EmergencyError> {
        if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(EmergencyError::LinkInvalid);
        }
        let key = link_key(token);
        let stored = self.ns.get(&key).await.map_err(unavailable)?.ok_or(EmergencyError::LinkInvalid)?;
        if self.ns.compare_and_swap(&key, Some(stored.clone()), None).await.map_err(unavailable)? != Swap::Swapped {
            return Err(EmergencyError::LinkInvalid);
        }
        let link: Link = serde_json::from_slice(&stored).map_err(unavailable)?;
        if now() >= link.expires_at {
            return Err(EmergencyError::LinkInvalid);
        }
        if !self.is_on() {
            return Err(EmergencyError::Off);
        }
        Ok(link.account)
    }

    /// How long an emergency session lasts.
    pub fn session_ttl(&self) -> Duration {
        self.config.emergency.session_ttl.0
    }
}

fn link_key(token: &str) -> String {
    format!("elink/{}", hex::encode(Sha256::digest(token.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Actor, AuditKey};
    use crate::identity::Lifetimes;
    use crate::storage::SledStorage;

    #[tokio::test]
    async fn the_mode_does_not_change_when_its_audit_record_cannot_be_written() {
        let dir = tempfile::tempdir().unwrap();
        let storage = SledStorage::open(dir.path()).unwrap();
        let key = AuditKey::from_bytes([3; 32]);
        let audit = Arc::new(AuditLog::open(&storage, Some(std::path::Path::new("/dev/full")), key).await.unwrap());
        let lifetimes = Lifetimes { idle: Duration::from_secs(60), absolute: Duration::from_secs(600) };
        let identity = Arc::new(Identity::open(&storage, audit.clone(), lifetimes).unwrap());
        let mode = Emergency::open(&AuthConfig::default(), &storage, audit, identity).await.unwrap();
        let admin = Envelope { actor: Actor::Principal("ada".into()), ..Envelope::system() };
        let refused = mode.request(&admin, "provider outage", None).await.unwrap_err();
        assert_eq!(refused.code(), "audit_unavailable");
        assert!(!mode.is_on());
        assert_eq!(mode.status(), ModeState::default());
        let stored = storage.namespace(NamespaceId::System("oidc"), None).unwrap().get(STATE_KEY).await.unwrap();
        assert_eq!(stored, None, "nothing stored either");
        assert_eq!(mode.password_session(&["break-glass".to_owned()]), Ok(None), "password sign-in unchanged");
    }
}
