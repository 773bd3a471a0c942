//! Data migrations: the steps between a plugin's data versions, each a pair
//! of conversions of one stored record (up and down), declared once beside
//! the router and exported by [`plugin!`](crate::plugin):
//!
//! ```ignore
//! fn migrations() -> Migrations {
//!     Migrations::new().step("structured-name", &["acct/"], split_name, join_name)
//! }
//! plinth_kit::plugin!(router, migrations = migrations);
//! ```
//!
//! The host runs a conversion in an instance of the component that reaches
//! nothing but `log`, one record at a time: a conversion reads only the
//! record it is given, and gives the same answer every time.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::migrating_bindings::exports::plinth::platform::migrations as wit;

pub use wit::{Direction, Entry, Step as DeclaredStep};

/// One stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its key in the plugin's namespace.
    pub key: String,
    /// Its bytes.
    pub value: Vec<u8>,
}

impl Record {
    /// A record holding `value` as JSON.
    pub fn json<T: Serialize>(key: impl Into<String>, value: &T) -> Self {
        Self { key: key.into(), value: serde_json::to_vec(value).expect("serializable") }
    }

    /// The value read as JSON.
    pub fn read<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_slice(&self.value).map_err(|e| format!("`{}` is not the JSON expected: {e}", self.key))
    }
}

impl From<Entry> for Record {
    fn from(entry: Entry) -> Self {
        Self { key: entry.key, value: entry.value }
    }
}

impl From<Record> for Entry {
    fn from(record: Record) -> Self {
        Self { key: record.key, value: record.value }
    }
}

/// A conversion of one record.
pub type Convert = fn(Record) -> Result<Record, String>;

/// A plugin's own check of a record at a data version.
pub type Check = fn(u32, &Record) -> Result<(), String>;

struct Step {
    name: &'static str,
    families: &'static [&'static str],
    up: Convert,
    down: Convert,
}

/// A plugin's steps, in order: step `n` leads from data version `n - 1`
/// to `n`.
#[derive(Default)]
pub struct Migrations {
    steps: Vec<Step>,
    check: Option<Check>,
}

impl Migrations {
    /// No steps: data version 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next step: its name (as its file in the plugin's `migrations`
    /// directory), the key prefixes of the records it converts, and its two
    /// conversions, which must undo each other.
    pub fn step(mut self, name: &'static str, families: &'static [&'static str], up: Convert, down: Convert) -> Self {
        self.steps.push(Step { name, families, up, down });
        self
    }

    /// The plugin's own check of a record at a data version (a rehearsal
    /// runs it on every record after converting).
    pub fn check(mut self, check: Check) -> Self {
        self.check = Some(check);
        self
    }

    /// The data version these steps lead to.
    pub fn version(&self) -> u32 {
        self.steps.len() as u32
    }

    /// Converts one record across step `to`; a record outside the step's
    /// families keeps its bytes.
    pub fn convert(&self, to: u32, direction: Direction, record: Record) -> Result<Record, String> {
        let step = to
            .checked_sub(1)
            .and_then(|i| self.steps.get(i as usize))
            .ok_or_else(|| format!("there is no step {to}; the steps lead to version {}", self.version()))?;
        if !step.families.iter().any(|family| record.key.starts_with(family)) {
            return Ok(record);
        }
        match direction {
            Direction::Up => (step.up)(record),
            Direction::Down => (step.down)(record),
        }
    }

    /// The plugin's check of a record at `version` (none declared: passes).
    pub fn check_record(&self, version: u32, record: &Record) -> Result<(), String> {
        self.check.map_or(Ok(()), |check| check(version, record))
    }

    #[doc(hidden)]
    pub fn declared(&self) -> Vec<DeclaredStep> {
        self.steps
            .iter()
            .enumerate()
            .map(|(i, step)| DeclaredStep {
                to: i as u32 + 1,
                name: step.name.to_owned(),
                families: step.families.iter().map(|f| (*f).to_owned()).collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upper(mut record: Record) -> Result<Record, String> {
        record.value.make_ascii_uppercase();
        Ok(record)
    }

    fn lower(mut record: Record) -> Result<Record, String> {
        record.value.make_ascii_lowercase();
        Ok(record)
    }

    #[test]
    fn steps_are_numbered_and_convert_their_families_only() {
        let migrations = Migrations::new().step("shout", &["note/"], upper, lower);
        assert_eq!(migrations.version(), 1);
        let declared = migrations.declared();
        assert_eq!((declared[0].to, declared[0].name.as_str()), (1, "shout"));
        let note = Record { key: "note/1".into(), value: b"hi".to_vec() };
        let up = migrations.convert(1, Direction::Up, note.clone()).unwrap();
        assert_eq!(up.value, b"HI");
        assert_eq!(migrations.convert(1, Direction::Down, up).unwrap(), note);
        let other = Record { key: "count".into(), value: b"hi".to_vec() };
        assert_eq!(migrations.convert(1, Direction::Up, other.clone()).unwrap(), other);
        assert!(migrations.convert(2, Direction::Up, other).unwrap_err().contains("no step 2"));
    }
}
