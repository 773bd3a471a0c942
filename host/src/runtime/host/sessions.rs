//! `plinth:platform/sessions`: sessions for accounts the plugin verified.
//! The token stays in the host; the cookie change rides on the response.

use crate::identity::IdentityError;
use crate::identity::{IssuedToken as Token, Session};
use crate::runtime::bindings::sessions::{Error, Host, Issued, IssuedToken, PasswordPolicy, SessionInfo};
use crate::runtime::state::{HostState, SessionEffect};

impl From<IdentityError> for Error {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::NotActive => Error::AccountNotActive,
            IdentityError::Audit(_) => Error::AuditUnavailable,
            other => {
                tracing::error!(error = %other, "session store failure");
                Error::Storage(other.to_string())
            }
        }
    }
}

impl HostState {
    /// Issues a session, first revoking the one the request came with (no
    /// fixation).
    /// Only when password sign-in is on for the account now; in emergency
    /// mode, an emergency session.
    async fn new_session(&mut self, account_id: &str) -> Result<(Token, Session), Error> {
        let envelope = self.envelope();
        let identity = self.plugin.identity.clone();
        let roles = identity.account(account_id).await?.map(|a| a.roles).unwrap_or_default();
        let emergency = self.plugin.emergency.password_session(&roles).map_err(Error::Refused)?;
        self.wrote = true;
        if let Some(current) = &self.request.principal {
            identity.revoke(&current.account_id, &current.session_id, &envelope).await?;
        }
        let client = (self.request.client_address.as_str(), self.request.user_agent.as_str());
        Ok(identity.issue_as(account_id, client, &envelope, emergency).await?)
    }
}

fn issued(session: Session) -> Issued {
    Issued { session_id: session.id, csrf_token: session.csrf_token, expires_at: session.expires_at }
}

impl Host for HostState {
    async fn issue(&mut self, account_id: String) -> wasmtime::Result<Result<Issued, Error>> {
        Ok(self.new_session(&account_id).await.map(|(token, session)| {
            self.session_effect = Some(SessionEffect::Issued {
                token: token.0,
                max_age: session.expires_at.saturating_sub(session.created_at),
            });
            issued(session)
        }))
    }

    async fn issue_token(&mut self, account_id: String) -> wasmtime::Result<Result<IssuedToken, Error>> {
        Ok(self.new_session(&account_id).await.map(|(token, session)| {
            self.session_effect = Some(SessionEffect::TokenIssued);
            IssuedToken { session: issued(session), token: token.0 }
        }))
    }

    async fn revoke_current(&mut self) -> wasmtime::Result<Result<bool, Error>> {
        let Some(current) = self.request.principal.clone() else {
            return Ok(Ok(false));
        };
        let envelope = self.envelope();
        self.wrote = true;
        let revoked = self.plugin.identity.revoke(&current.account_id, &current.session_id, &envelope).await;
        if revoked.is_ok() {
            self.session_effect = Some(SessionEffect::Cleared);
        }
        Ok(revoked.map_err(Error::from))
    }

    async fn revoke(&mut self, account_id: String, session_id: String) -> wasmtime::Result<Result<bool, Error>> {
        let envelope = self.envelope();
        self.wrote = true;
        Ok(self.plugin.identity.revoke(&account_id, &session_id, &envelope).await.map_err(Error::from))
    }

    async fn revoke_all(&mut self, account_id: String, except: Option<String>) -> wasmtime::Result<Result<u32, Error>> {
        let envelope = self.envelope();
        self.wrote = true;
        let revoked = self.plugin.identity.revoke_all(&account_id, except.as_deref(), &envelope).await;
        Ok(revoked.map_err(Error::from))
    }

    async fn password_sign_in(&mut self) -> wasmtime::Result<PasswordPolicy> {
        let emergency = &self.plugin.emergency;
        Ok(match emergency.password_sign_in() {
            "available" => PasswordPolicy::Available,
            "break_glass_only" => PasswordPolicy::BreakGlassOnly(emergency.break_glass_role().to_owned()),
            _ => PasswordPolicy::Off,
        })
    }

    async fn list(&mut self, account_id: String) -> wasmtime::Result<Result<Vec<SessionInfo>, Error>> {
        let current = self.request.principal.as_ref().map(|p| p.session_id.clone());
        let sessions = self.plugin.identity.list(&account_id).await;
        Ok(sessions.map_err(Error::from).map(|sessions| {
            sessions
                .into_iter()
                .map(|s| SessionInfo {
                    current: current.as_deref() == Some(s.id.as_str()),
                    session_id: s.id,
                    created_at: s.created_at,
                    last_seen_at: s.last_seen_at,
                    client_address: s.client_address,
                    user_agent: s.user_agent,
                })
                .collect()
        }))
    }
}
