//! `plinth:platform/principals`: the host's account registry.

use crate::identity::{self, IdentityError};
use crate::runtime::bindings::principals::{Account, Error, Host, Status};
use crate::runtime::state::HostState;

impl From<IdentityError> for Error {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::Invalid(why) => Error::Invalid(why),
            IdentityError::NotActive => Error::Invalid(e.to_string()),
            IdentityError::Audit(_) => Error::AuditUnavailable,
            IdentityError::Storage(why) => {
                tracing::error!(error = %why, "principal registry failure");
                Error::Storage(why.to_string())
            }
        }
    }
}

fn to_wit(account: identity::Account) -> Account {
    Account {
        id: account.id,
        roles: account.roles,
        status: match account.status {
            identity::Status::Pending => Status::Pending,
            identity::Status::Active => Status::Active,
            identity::Status::Suspended => Status::Suspended,
            identity::Status::Deactivated => Status::Deactivated,
        },
    }
}

fn from_wit(account: Account) -> identity::Account {
    identity::Account {
        id: account.id,
        roles: account.roles,
        status: match account.status {
            Status::Pending => identity::Status::Pending,
            Status::Active => identity::Status::Active,
            Status::Suspended => identity::Status::Suspended,
            Status::Deactivated => identity::Status::Deactivated,
        },
    }
}

impl Host for HostState {
    async fn get(&mut self, id: String) -> wasmtime::Result<Result<Option<Account>, Error>> {
        Ok(self.plugin.identity.account(&id).await.map(|a| a.map(to_wit)).map_err(Error::from))
    }

    async fn put(&mut self, account: Account) -> wasmtime::Result<Result<(), Error>> {
        let envelope = self.envelope();
        let result = self.plugin.identity.put_account(&from_wit(account), &envelope).await;
        self.wrote = true;
        Ok(result.map_err(Error::from))
    }
}
