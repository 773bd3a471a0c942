//! The host's own data steps: numbered files in `migrations/` at the
//! repository's root, each compiled into the binary with the conversion it
//! describes. A plugin's steps come with its component and wait for an
//! operator; the host's come with the binary that needs them, so a start
//! applies the ones its data lacks (a backup first, when the namespaces
//! they change hold data), and `plinth migrate down --host` takes them back
//! for an older binary. A start refuses data from a newer binary, and an
//! applied step whose file changed.
//!
//! A step edits its system namespace in place, page by page. Its
//! conversion is idempotent and ignores what it writes, so a step cut off
//! by a crash is rerun whole at the next start; the ledger records it once
//! it is done.
//!
//! A step file:
//!
//! ```toml
//! description = "What changes, and why."
//! namespace = "sessions"
//!
//! [[fixtures]]
//! before = { "i/s1" = "9f86…", "a/ada/s1" = "9f86…" }
//! after = { "a/ada/s1" = "9f86…" }
//! ```
//!
//! Values are UTF-8 text. Its canonical checksum survives reformatting,
//! as a plugin step's does; its semantic checksum is over what up makes
//! of the fixtures; up must turn each `before` into its `after` and down
//! each `after` back into its `before`.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::run::{Workbench, digest, now_rfc3339};
use super::steps::canonical_json;
use super::{Applied, HostState};
use crate::audit::{Envelope, Outcome};
use crate::storage::{Namespace, NamespaceId, Op};

/// What a step makes of one record: the edits to its namespace.
type Convert = fn(&str, &[u8]) -> Vec<Op>;

/// One step of the host's data.
#[derive(Clone, Copy)]
pub struct HostStep {
    /// Its number: the host data version it leads to.
    pub to: u32,
    /// Its file's name in `migrations/`.
    pub file: &'static str,
    /// The file's text, as built in.
    text: &'static str,
    /// The system namespace it changes.
    pub namespace: &'static str,
    up: Convert,
    down: Convert,
}

/// Every host step, in order.
pub static STEPS: &[HostStep] = &[HostStep {
    to: 1,
    file: "0001-session-id-index.toml",
    text: include_str!("../../../migrations/0001-session-id-index.toml"),
    namespace: "sessions",
    up: session_id_index::up,
    down: session_id_index::down,
}];

/// Step 1: sessions drop the `i/{session id}` → token hash index nothing read.
mod session_id_index {
    use crate::storage::Op;

    pub fn up(key: &str, _value: &[u8]) -> Vec<Op> {
        if key.starts_with("i/") { vec![Op::Delete(key.to_owned())] } else { Vec::new() }
    }

    /// From `a/{account}/{session id}` → token hash (account ids hold no `/`).
    pub fn down(key: &str, value: &[u8]) -> Vec<Op> {
        match key.strip_prefix("a/").and_then(|rest| rest.rsplit_once('/')) {
            Some((_, session)) => vec![Op::Set(format!("i/{session}"), value.to_vec())],
            None => Vec::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    description: String,
    namespace: String,
    fixtures: Vec<RawFixture>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFixture {
    before: BTreeMap<String, String>,
    after: BTreeMap<String, String>,
}

type Records = BTreeMap<String, Vec<u8>>;

/// A step's file, read and its fixtures run through its conversions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// What the step does, for people.
    pub description: String,
    /// SHA-256 (hex) of the file's canonical form.
    pub canonical: String,
    /// SHA-256 (hex) of what up makes of the fixtures.
    pub semantic: String,
}

/// `records` with each of them (in key order) converted.
fn convert(records: &Records, conversion: Convert) -> Records {
    let mut out = records.clone();
    for (key, value) in records {
        for op in conversion(key, value) {
            match op {
                Op::Set(k, v) => {
                    out.insert(k, v);
                }
                Op::Delete(k) => {
                    out.remove(&k);
                }
            }
        }
    }
    out
}

fn as_json(records: &Records) -> serde_json::Value {
    records.iter().map(|(k, v)| (k.clone(), serde_json::Value::from(String::from_utf8_lossy(v)))).collect()
}

impl HostStep {
    /// Reads the built-in file, checks it against the step and runs its
    /// fixtures; a problem names the file.
    pub fn check(&self) -> Result<Checked, String> {
        let at = format!("migrations/{}", self.file);
        let number = format!("{:04}-", self.to);
        if !self.file.starts_with(&number) {
            return Err(format!("{at}: host step {} is in a file named `{number}…`", self.to));
        }
        let raw: RawFile = toml::from_str(self.text).map_err(|e| format!("{at}: {e}"))?;
        if raw.namespace != self.namespace {
            return Err(format!("{at}: the step changes `{}`, the file says `{}`", self.namespace, raw.namespace));
        }
        if raw.fixtures.is_empty() {
            return Err(format!("{at}: a step needs at least one `[[fixtures]]`, before and after"));
        }
        let bytes =
            |map: BTreeMap<String, String>| -> Records { map.into_iter().map(|(k, v)| (k, v.into_bytes())).collect() };
        let mut document = Vec::new();
        let mut made = Vec::new();
        for (i, fixture) in raw.fixtures.into_iter().enumerate() {
            let (before, after) = (bytes(fixture.before), bytes(fixture.after));
            document.push(serde_json::json!({ "before": as_json(&before), "after": as_json(&after) }));
            for (direction, conversion, from, to, names) in [
                ("up", self.up, &before, &after, ("before", "after")),
                ("down", self.down, &after, &before, ("after", "before")),
            ] {
                let made = convert(from, conversion);
                if made != *to {
                    let made = canonical_json(&as_json(&made));
                    let (from, to) = names;
                    return Err(format!("{at}: fixture {}: {direction} makes {made} of `{from}`, not `{to}`", i + 1));
                }
            }
            made.push(as_json(&convert(&before, self.up)));
        }
        let file = serde_json::json!({
            "description": raw.description, "namespace": raw.namespace, "fixtures": document,
        });
        let hash = |value: &serde_json::Value| hex::encode(Sha256::digest(canonical_json(value).as_bytes()));
        Ok(Checked {
            description: raw.description.trim().to_owned(),
            canonical: hash(&file),
            semantic: hash(&serde_json::Value::Array(made)),
        })
    }
}

/// Each step's file checked, in order; numbered from 1 without gaps.
pub fn check_all(steps: &[HostStep]) -> anyhow::Result<Vec<Checked>> {
    steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            anyhow::ensure!(step.to == i as u32 + 1, "host step {} is numbered {}", i + 1, step.to);
            step.check().map_err(anyhow::Error::msg)
        })
        .collect()
}

/// Applies `conversion` to every record of `ns`, page by page; the edits
/// made.
async fn convert_in_place(ns: &dyn Namespace, conversion: Convert) -> anyhow::Result<u64> {
    let mut edits = 0;
    let mut after: Option<String> = None;
    loop {
        let page = ns.scan_prefix("", after.as_deref(), 1000).await?;
        let ops: Vec<Op> = page.entries.iter().flat_map(|(key, value)| conversion(key, value)).collect();
        edits += ops.len() as u64;
        if !ops.is_empty() {
            ns.batch(ops).await?;
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(edits),
        }
    }
}

impl Workbench {
    /// Brings the host's data to the newest of `steps`; the steps applied.
    /// Data no step has anything to convert in (a new data directory) is
    /// simply recorded at the newest version.
    pub async fn bring_host_up(&self, steps: &[HostStep]) -> anyhow::Result<Vec<Applied>> {
        let (checked, state) = self.host_checked(steps).await?;
        let newest = steps.len() as u32;
        let version = state.as_ref().map_or(0, |s| s.version);
        let pending: Vec<(&HostStep, &Checked)> = steps.iter().zip(&checked).skip(version as usize).collect();
        if pending.is_empty() {
            if state.is_none() {
                self.ledger.commit_host(HostState { version, backup: None }, &[], &[]).await?;
            }
            return Ok(Vec::new());
        }
        // A start after one that failed or was cut off reuses its backup.
        let backup = match state.and_then(|s| s.backup) {
            Some(backup) => backup,
            None => {
                let holding = self.storage.namespaces_holding_data()?;
                if !pending.iter().any(|(step, _)| holding.contains(&format!("system/{}", step.namespace))) {
                    self.ledger.commit_host(HostState { version: newest, backup: None }, &[], &[]).await?;
                    return Ok(Vec::new());
                }
                let backup = self.backup().await?.id;
                self.ledger.commit_host(HostState { version, backup: Some(backup.clone()) }, &[], &[]).await?;
                backup
            }
        };
        let mut done = Vec::new();
        for (step, checked) in pending {
            let applied = self.run_host_step(step, checked, &backup).await?;
            let still = (step.to < newest).then(|| backup.clone());
            let state = HostState { version: step.to, backup: still };
            self.ledger.commit_host(state, std::slice::from_ref(&applied), &[]).await?;
            done.push(applied);
        }
        Ok(done)
    }

    /// Each step's file checked, and where the data stands, refused when
    /// a newer plinth wrote it or an applied step's file changed since.
    async fn host_checked(&self, steps: &[HostStep]) -> anyhow::Result<(Vec<Checked>, Option<HostState>)> {
        let checked = check_all(steps)?;
        let newest = steps.len() as u32;
        let state = self.ledger.host_state().await?;
        let version = state.as_ref().map_or(0, |s| s.version);
        anyhow::ensure!(
            version <= newest,
            "the host's data is at version {version}, written by a newer plinth (this one knows steps up to \
             {newest}): run that one, or take the data down with it first (`plinth migrate down --host --to \
             {newest}`)"
        );
        for applied in self.ledger.host_applied().await? {
            let Some(now) = applied.to.checked_sub(1).and_then(|i| checked.get(i as usize)) else { continue };
            anyhow::ensure!(
                now.canonical == applied.canonical,
                "migrations/{}: host step {} was applied with canonical checksum {}, this build's file has {}: an \
                 applied step is never edited (add a new one)",
                applied.file,
                applied.to,
                applied.canonical,
                now.canonical
            );
        }
        Ok((checked, state))
    }

    async fn run_host_step(&self, step: &HostStep, checked: &Checked, backup: &str) -> anyhow::Result<Applied> {
        let name = format!("system/{}", step.namespace);
        let ns = self.storage.namespace(NamespaceId::System(step.namespace), None)?;
        let started = Instant::now();
        let before = digest(ns.as_ref(), &name).await?;
        let converted = match convert_in_place(ns.as_ref(), step.up).await {
            Ok(edits) => edits,
            Err(e) => {
                self.record_host("migration.host_applied", step, Outcome::Failure, format!("{e:#}")).await?;
                return Err(e.context(format!("host step {} (migrations/{})", step.to, step.file)));
            }
        };
        let after = digest(ns.as_ref(), &name).await?;
        let reason = format!("{name} after backup {backup}: {converted} edits, digest {}", after.blake3);
        self.record_host("migration.host_applied", step, Outcome::Success, reason).await?;
        Ok(Applied {
            to: step.to,
            name: step.file.trim_end_matches(".toml")[5..].to_owned(),
            file: step.file.to_owned(),
            canonical: checked.canonical.clone(),
            semantic: checked.semantic.clone(),
            backup: backup.to_owned(),
            records: before.entries,
            converted,
            before,
            after,
            duration_ms: started.elapsed().as_millis() as u64,
            by: self.actor.to_string(),
            at: now_rfc3339(),
            receipt: None,
            override_reason: None,
        })
    }

    /// Takes the host's data down to version `to` with the steps' down
    /// conversions, newest first, after a backup: for running an older
    /// plinth on it (this one would bring it up again at its next start).
    pub async fn host_down(&self, steps: &[HostStep], to: u32) -> anyhow::Result<()> {
        let (_, state) = self.host_checked(steps).await?;
        let version = state.map_or(0, |s| s.version);
        anyhow::ensure!(to < version, "the host's data is at version {version}; down goes to a lower one");
        let backup = self.backup().await?;
        let taken: Vec<&HostStep> = steps[to as usize..version as usize].iter().rev().collect();
        for step in &taken {
            let ns = self.storage.namespace(NamespaceId::System(step.namespace), None)?;
            if let Err(e) = convert_in_place(ns.as_ref(), step.down).await {
                self.record_host("migration.host_down", step, Outcome::Failure, format!("{e:#}")).await?;
                return Err(e);
            }
            let removed = [step.to];
            self.ledger.commit_host(HostState { version: step.to - 1, backup: None }, &[], &removed).await?;
            let reason = format!("{} → {} after backup {}", step.to, step.to - 1, backup.id);
            self.record_host("migration.host_down", step, Outcome::Success, reason).await?;
        }
        Ok(())
    }

    async fn record_host(&self, action: &str, step: &HostStep, outcome: Outcome, reason: String) -> anyhow::Result<()> {
        let envelope = Envelope { actor: self.actor.clone(), ..Envelope::system() };
        self.audit.append(envelope.draft(action, &format!("host/{}", step.to), outcome, Some(reason))).await?;
        self.storage.flush().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::audit::{Actor, AuditKey, AuditLog};
    use crate::backup::{BackupKey, Backups};
    use crate::blobs::Blobs;
    use crate::config::{ScannerConfig, Unscanned};
    use crate::migrations::Ledger;
    use crate::storage::{SledStorage, Storage};

    async fn bench(dir: &std::path::Path) -> Workbench {
        let storage: Arc<dyn Storage> = Arc::new(SledStorage::open(&dir.join("db")).unwrap());
        let scanner = ScannerConfig { clamd: None, unscanned: Unscanned::Serve };
        let blobs = Arc::new(Blobs::open(dir.join("blobs"), storage.clone(), &scanner).await.unwrap());
        let key = AuditKey::from_bytes([7; 32]);
        Workbench {
            audit: Arc::new(AuditLog::open(storage.as_ref(), None, key.clone()).await.unwrap()),
            ledger: Ledger::open(storage.as_ref()).unwrap(),
            backups: Arc::new(Backups::new(dir.join("backups"), BackupKey::of(&key))),
            key,
            actor: Actor::Cli,
            blobs,
            storage,
        }
    }

    /// Two sessions of `ada` as host data version 0 kept them.
    const SESSIONS_AT_0: [(&str, &str); 5] =
        [("a/ada/s1", "h1"), ("a/ada/s2", "h2"), ("i/s1", "h1"), ("i/s2", "h2"), ("t/h1", "{\"id\":\"s1\"}")];

    async fn sessions(bench: &Workbench) -> Vec<(String, String)> {
        let ns = bench.storage.namespace(NamespaceId::System("sessions"), None).unwrap();
        let page = ns.scan_prefix("", None, 100).await.unwrap();
        page.entries.into_iter().map(|(k, v)| (k, String::from_utf8(v).unwrap())).collect()
    }

    fn backups(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir.join("backups")).map_or(0, |d| d.count())
    }

    #[test]
    fn every_file_in_migrations_is_a_step_and_every_step_has_its_file() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(".toml"))
            .collect();
        files.sort();
        let steps: Vec<&str> = STEPS.iter().map(|s| s.file).collect();
        assert_eq!(files, steps, "each migrations/*.toml is in STEPS, in order");
        for step in STEPS {
            assert_eq!(std::fs::read_to_string(dir.join(step.file)).unwrap(), step.text);
        }
    }

    #[test]
    fn every_step_file_reads_and_its_fixtures_go_up_and_down() {
        let checked = check_all(STEPS).unwrap();
        assert_eq!(checked.len(), STEPS.len());
        assert!(checked[0].description.starts_with("Sessions no longer keep"), "{:?}", checked[0]);
    }

    #[test]
    fn a_fixture_a_conversion_does_not_meet_is_named_with_the_file() {
        let step = HostStep { up: |_, _| Vec::new(), ..STEPS[0] };
        let error = step.check().unwrap_err();
        assert!(error.starts_with("migrations/0001-session-id-index.toml: fixture 1: up makes"), "{error}");
        let misnumbered = HostStep { to: 2, ..STEPS[0] };
        assert!(misnumbered.check().unwrap_err().contains("in a file named `0002-…`"));
    }

    #[test]
    fn reformatting_a_step_keeps_its_canonical_checksum_and_editing_it_does_not() {
        let reformatted = STEPS[0].text.replace("namespace = \"sessions\"", "namespace   =   'sessions'  # where");
        let edited = STEPS[0].text.replace("Up removes its entries", "Up removes every entry");
        let with = |text: String| HostStep { text: Box::leak(text.into_boxed_str()), ..STEPS[0] };
        let original = STEPS[0].check().unwrap();
        assert_eq!(with(reformatted).check().unwrap(), original);
        let changed = with(edited).check().unwrap();
        assert_ne!(changed.canonical, original.canonical);
        assert_eq!(changed.semantic, original.semantic, "the conversions did not change");
    }

    #[tokio::test]
    async fn old_data_is_brought_up_after_a_backup_once_and_down_gives_it_back_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let bench = bench(dir.path()).await;
        let ns = bench.storage.namespace(NamespaceId::System("sessions"), None).unwrap();
        for (key, value) in SESSIONS_AT_0 {
            ns.set(key, value.as_bytes().to_vec()).await.unwrap();
        }
        let at_0 = sessions(&bench).await;

        let applied = bench.bring_host_up(STEPS).await.unwrap();
        assert_eq!(applied.len(), 1);
        assert_eq!((applied[0].name.as_str(), applied[0].converted, applied[0].records), ("session-id-index", 2, 5));
        assert_eq!(backups(dir.path()), 1, "a backup first");
        let kept: Vec<_> = at_0.iter().filter(|(k, _)| !k.starts_with("i/")).cloned().collect();
        assert_eq!(sessions(&bench).await, kept);
        assert_eq!(bench.ledger.host_state().await.unwrap(), Some(HostState { version: 1, backup: None }));
        assert_eq!(bench.ledger.host_applied().await.unwrap(), applied);

        assert!(bench.bring_host_up(STEPS).await.unwrap().is_empty(), "nothing is applied twice");
        assert_eq!(backups(dir.path()), 1);

        bench.host_down(STEPS, 0).await.unwrap();
        assert_eq!(sessions(&bench).await, at_0);
        assert_eq!(bench.ledger.host_state().await.unwrap(), Some(HostState { version: 0, backup: None }));
        assert!(bench.ledger.host_applied().await.unwrap().is_empty());
        let error = bench.host_down(STEPS, 0).await.unwrap_err().to_string();
        assert!(error.contains("down goes to a lower one"), "{error}");
    }

    #[tokio::test]
    async fn a_start_after_one_cut_off_mid_step_reuses_its_backup() {
        let dir = tempfile::tempdir().unwrap();
        let bench = bench(dir.path()).await;
        let ns = bench.storage.namespace(NamespaceId::System("sessions"), None).unwrap();
        ns.set("i/s1", b"h1".to_vec()).await.unwrap();
        let cut_off = HostState { version: 0, backup: Some("20261127T000000Z-before".into()) };
        bench.ledger.commit_host(cut_off, &[], &[]).await.unwrap();
        let applied = bench.bring_host_up(STEPS).await.unwrap();
        assert_eq!(applied[0].backup, "20261127T000000Z-before");
        assert_eq!(backups(dir.path()), 0, "no backup of half-converted data");
        assert_eq!(bench.ledger.host_state().await.unwrap(), Some(HostState { version: 1, backup: None }));
    }

    #[tokio::test]
    async fn a_new_data_directory_starts_at_the_newest_version_without_a_backup() {
        let dir = tempfile::tempdir().unwrap();
        let bench = bench(dir.path()).await;
        assert!(bench.bring_host_up(STEPS).await.unwrap().is_empty());
        assert_eq!(
            bench.ledger.host_state().await.unwrap(),
            Some(HostState { version: STEPS.len() as u32, backup: None })
        );
        assert_eq!(backups(dir.path()), 0);
    }

    #[tokio::test]
    async fn data_from_a_newer_plinth_and_an_edited_applied_step_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let bench = bench(dir.path()).await;
        let ns = bench.storage.namespace(NamespaceId::System("sessions"), None).unwrap();
        ns.set("i/s1", b"h1".to_vec()).await.unwrap();
        bench.bring_host_up(STEPS).await.unwrap();

        let error = bench.bring_host_up(&[]).await.unwrap_err().to_string();
        assert!(error.contains("at version 1, written by a newer plinth (this one knows steps up to 0)"), "{error}");
        let text = STEPS[0].text.replace("Up removes its entries", "Up removes every entry");
        let edited = [HostStep { text: Box::leak(text.into_boxed_str()), ..STEPS[0] }];
        let error = bench.bring_host_up(&edited).await.unwrap_err().to_string();
        assert!(
            error.starts_with("migrations/0001-session-id-index.toml: host step 1 was applied with canonical checksum"),
            "{error}"
        );
    }
}
