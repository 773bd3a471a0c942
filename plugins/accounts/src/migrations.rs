//! The plugin's data versions. Step 1, `verified-at`: an account records
//! when its address was proven; accounts already past `pending` get their
//! creation time, the best that is known (an invite proves the address at
//! creation, a signup soon after it), and pending ones none.

use plinth_kit::migrations::{Migrations, Record};
use serde::{Deserialize, Serialize};

use crate::model::{Account, State};

/// The steps, with their files in `plugins/accounts/migrations/`.
#[cfg(not(feature = "data-v0"))]
pub fn migrations() -> Migrations {
    Migrations::new().step("verified-at", &["account/"], verified_at_up, verified_at_down).check(check)
}

/// None yet (the `data-v0` build).
#[cfg(feature = "data-v0")]
pub fn migrations() -> Migrations {
    Migrations::new().check(check)
}

/// An account as data version 0 stores it: the fields, in this order, that
/// `Account` had then, so that down gives back the very bytes up read.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountV0 {
    id: String,
    email: String,
    display_name: String,
    locale: Option<String>,
    password_hash: String,
    state: State,
    roles: Vec<String>,
    version: u64,
    created_at: u64,
}

#[cfg(not(feature = "data-v0"))]
fn verified_at_up(record: Record) -> Result<Record, String> {
    let old: AccountV0 = record.read()?;
    let verified_at = (old.state != State::Pending).then_some(old.created_at);
    let account = Account {
        id: old.id,
        email: old.email,
        display_name: old.display_name,
        locale: old.locale,
        password_hash: old.password_hash,
        state: old.state,
        roles: old.roles,
        version: old.version,
        created_at: old.created_at,
        verified_at,
    };
    Ok(Record::json(record.key, &account))
}

#[cfg(not(feature = "data-v0"))]
fn verified_at_down(record: Record) -> Result<Record, String> {
    let new: Account = record.read()?;
    let account = AccountV0 {
        id: new.id,
        email: new.email,
        display_name: new.display_name,
        locale: new.locale,
        password_hash: new.password_hash,
        state: new.state,
        roles: new.roles,
        version: new.version,
        created_at: new.created_at,
    };
    Ok(Record::json(record.key, &account))
}

/// At version 1 an account past `pending` says when it was verified, and
/// a pending one does not.
fn check(version: u32, record: &Record) -> Result<(), String> {
    if !record.key.starts_with("account/") {
        return Ok(());
    }
    match version {
        0 => record.read::<AccountV0>().map(drop),
        _ => {
            let account: Account = record.read()?;
            match (account.state, account.verified_at) {
                (State::Pending, Some(_)) => Err(format!("`{}` is pending but has `verified_at`", record.key)),
                (State::Active | State::Suspended | State::Deactivated, None) => {
                    Err(format!("`{}` is {} but has no `verified_at`", record.key, account.state.name()))
                }
                _ => Ok(()),
            }
        }
    }
}

#[cfg(all(test, not(feature = "data-v0")))]
mod tests {
    use super::*;

    fn stored(state: State) -> Record {
        let account = AccountV0 {
            id: "a1".into(),
            email: "ada@example.com".into(),
            display_name: "Ada".into(),
            locale: None,
            password_hash: "$argon2id$x".into(),
            state,
            roles: vec!["admin".into()],
            version: 2,
            created_at: 1_764_000_000,
        };
        Record::json("account/a1", &account)
    }

    #[test]
    fn up_adds_when_the_address_was_proven_and_down_gives_the_same_bytes_back() {
        let migrations = migrations();
        for (state, verified) in [(State::Active, Some(1_764_000_000)), (State::Pending, None)] {
            let before = stored(state);
            let up = migrations.convert(1, plinth_kit::migrations::Direction::Up, before.clone()).unwrap();
            assert_eq!(up.read::<Account>().unwrap().verified_at, verified);
            migrations.check_record(1, &up).unwrap();
            let down = migrations.convert(1, plinth_kit::migrations::Direction::Down, up).unwrap();
            assert_eq!(down, before, "byte for byte");
            migrations.check_record(0, &down).unwrap();
        }
        let other = Record { key: "email/ada@example.com".into(), value: b"a1".to_vec() };
        assert_eq!(migrations.convert(1, plinth_kit::migrations::Direction::Up, other.clone()).unwrap(), other);
    }

    #[test]
    fn the_check_finds_an_active_account_without_a_verification_time() {
        let mut account: Account = migrations()
            .convert(1, plinth_kit::migrations::Direction::Up, stored(State::Active))
            .unwrap()
            .read()
            .unwrap();
        account.verified_at = None;
        let error = migrations().check_record(1, &Record::json("account/a1", &account)).unwrap_err();
        assert!(error.contains("has no `verified_at`"), "{error}");
    }
}
