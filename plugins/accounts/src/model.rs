//! Accounts, their states, and the one place transitions are decided.

use serde::{Deserialize, Serialize};

/// Lifecycle state, mirrored into the host's principal registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Active,
    Suspended,
    Deactivated,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Active => "active",
            State::Suspended => "suspended",
            State::Deactivated => "deactivated",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [State::Pending, State::Active, State::Suspended, State::Deactivated].into_iter().find(|s| s.name() == text)
    }

    /// The only transitions there are: verification `pending → active`,
    /// `active ⇄ suspended`, `active | suspended → deactivated`. Anything
    /// else is refused with both states named.
    pub fn apply(self, action: Action) -> Result<State, String> {
        use State::*;
        let next = action.target();
        match (action, self) {
            (Action::Verify, Pending)
            | (Action::Suspend, Active)
            | (Action::Reactivate, Suspended)
            | (Action::Deactivate, Active | Suspended) => Ok(next),
            _ => Err(format!("an account cannot go from `{}` to `{}` ({})", self.name(), next.name(), action.name())),
        }
    }
}

/// What moves an account between states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Verify,
    Suspend,
    Reactivate,
    Deactivate,
}

impl Action {
    pub fn target(self) -> State {
        match self {
            Action::Verify | Action::Reactivate => State::Active,
            Action::Suspend => State::Suspended,
            Action::Deactivate => State::Deactivated,
        }
    }

    /// The audit and e-mail wording.
    pub fn name(self) -> &'static str {
        match self {
            Action::Verify => "verification",
            Action::Suspend => "suspension",
            Action::Reactivate => "reactivation",
            Action::Deactivate => "deactivation",
        }
    }
}

/// One account as the plugin stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: String,
    /// Normalized (trimmed, lower-case).
    pub email: String,
    pub display_name: String,
    pub locale: Option<String>,
    /// argon2id PHC string.
    pub password_hash: String,
    pub state: State,
    pub roles: Vec<String>,
    /// Bumped on every change; the profile's ETag.
    pub version: u64,
    /// Unix seconds.
    pub created_at: u64,
    /// When the address was proven (verification, an accepted invite or a
    /// reset): Unix seconds; none while pending. Since data version 1.
    #[cfg_attr(feature = "data-v0", serde(skip))]
    pub verified_at: Option<u64>,
}

impl Account {
    pub fn etag(&self) -> String {
        format!("\"v{}\"", self.version)
    }

    /// Changes whenever the password or the address does; tokens carry
    /// it so that a reset or a password change voids every older link. A
    /// pending account's stamp is its address alone: a new signup for it
    /// (anyone may make one) must not void the owner's links.
    pub fn credential_stamp(&self) -> String {
        use sha2::{Digest, Sha256};
        let credentials = match self.state {
            State::Pending => format!("pending\n{}", self.email),
            _ => format!("{}\n{}", self.password_hash, self.email),
        };
        let digest = Sha256::digest(credentials.as_bytes());
        digest[..16].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// What the owner (and admins) see.
    pub fn profile(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "email": self.email,
            "display_name": self.display_name,
            "locale": self.locale,
            "state": self.state.name(),
            "roles": self.roles,
            "created_at": self.created_at,
            "verified_at": self.verified_at,
        })
    }
}

/// What a single-use token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    Verify,
    Invite,
    Reset,
    EmailChange,
}

/// A stored token (under the hash of the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    pub purpose: Purpose,
    /// The account it acts on (all but invites).
    pub account_id: Option<String>,
    /// The invited or new address.
    pub email: Option<String>,
    /// Roles an invite grants.
    pub roles: Vec<String>,
    /// Unix seconds.
    pub expires_at: u64,
    /// The account's [`Account::credential_stamp`] when the token was
    /// issued: a token acting on an account is void once its password or
    /// address has changed since.
    #[serde(default)]
    pub stamp: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_are_exactly_the_designed_ones() {
        use State::*;
        let actions = [Action::Verify, Action::Suspend, Action::Reactivate, Action::Deactivate];
        let allowed = [
            (Pending, Action::Verify),
            (Active, Action::Suspend),
            (Suspended, Action::Reactivate),
            (Active, Action::Deactivate),
            (Suspended, Action::Deactivate),
        ];
        for from in [Pending, Active, Suspended, Deactivated] {
            for action in actions {
                match from.apply(action) {
                    Ok(to) => {
                        assert!(allowed.contains(&(from, action)), "{from:?} {action:?}");
                        assert_eq!(to, action.target());
                    }
                    Err(message) => {
                        assert!(!allowed.contains(&(from, action)), "{from:?} {action:?}");
                        assert!(message.contains(from.name()) && message.contains(action.target().name()), "{message}");
                    }
                }
            }
        }
    }
}
