//! Backups of a real sled database and blob store on disk.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::audit::{AuditKey, AuditLog, Envelope, Outcome};
use crate::blobs::{Scope, Whole};
use crate::storage::{NamespaceId, SledStorage};

struct Data {
    dir: tempfile::TempDir,
    storage: Arc<SledStorage>,
    blobs: Arc<Blobs>,
    audit: AuditLog,
    key: AuditKey,
}

const SCOPE: Scope<'static> = Scope { plugin: "media", plugin_bytes: 1 << 20, owner_bytes: 1 << 20 };

/// A data directory with two plugin namespaces, audit records, a blob and
/// an upload half sent.
async fn data() -> Data {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let storage = Arc::new(SledStorage::open(&data).unwrap());
    let dyn_storage: Arc<dyn Storage> = storage.clone();
    let key = AuditKey::from_bytes([7; 32]);
    let audit = AuditLog::open(storage.as_ref(), None, key.clone()).await.unwrap();
    let scanner = crate::config::ScannerConfig { clamd: None, unscanned: crate::config::Unscanned::Serve };
    let blobs = Arc::new(Blobs::open(data.join("blobs"), dyn_storage, &scanner).await.unwrap());
    let notes = storage.namespace(NamespaceId::Plugin("notes".into()), None).unwrap();
    for i in 0..20 {
        notes.set(&format!("note/{i:02}"), format!("note number {i}").into_bytes()).await.unwrap();
    }
    let other = storage.namespace(NamespaceId::Plugin("other".into()), None).unwrap();
    other.set("k", b"v".to_vec()).await.unwrap();
    for i in 0..3 {
        audit.append(Envelope::system().draft("test.event", &i.to_string(), Outcome::Success, None)).await.unwrap();
    }
    let bytes: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
    blobs.create(&SCOPE, "alice", bytes.into()).await.unwrap();
    let upload = blobs.create_upload(&SCOPE, "alice", 10, Duration::from_secs(600)).await.unwrap();
    blobs.append("media", &upload.id, 0, &mut Whole(Some(b"hello".as_slice().into())), None).await.unwrap();
    storage.flush().await.unwrap();
    Data { dir, storage, blobs, audit, key }
}

impl Data {
    async fn backup(&self) -> Summary {
        let backups = Backups::new(self.dir.path().join("backups"), BackupKey::of(&self.key));
        let id = backups.start().unwrap();
        backups.take(&id, self.storage.as_ref(), &self.blobs).await.unwrap()
    }
}

#[tokio::test]
async fn every_flipped_bit_is_found_and_named() {
    let data = data().await;
    let summary = data.backup().await;
    let manifest = verify(&summary.file, Some(&BackupKey::of(&data.key))).unwrap();
    let other = BackupKey::of(&AuditKey::from_bytes([9; 32]));
    assert!(
        matches!(verify(&summary.file, Some(&other)), Err(ArchiveError::Forged { .. })),
        "another deployment's key"
    );
    assert_eq!(
        manifest.namespaces.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["plugin/notes", "plugin/other", "system/audit", "system/blobs"]
    );
    assert_eq!(
        manifest.files.iter().map(|f| f.bytes).collect::<Vec<_>>(),
        [3000, 5],
        "the blob and the upload's bytes"
    );
    assert_eq!(manifest.audit.as_ref().map(|end| end.next_id), Some(4));
    let original = std::fs::read(&summary.file).unwrap();
    let damaged = data.dir.path().join("damaged");
    let mut named_notes = false;
    for at in 0..original.len() {
        let mut bytes = original.clone();
        bytes[at] ^= 1 << (at % 8);
        std::fs::write(&damaged, &bytes).unwrap();
        let error = verify(&damaged, Some(&BackupKey::of(&data.key)))
            .expect_err(&format!("a flipped bit at byte {at} goes unnoticed"));
        named_notes |= error.to_string().contains("namespace `plugin/notes` does not match its digest");
    }
    assert!(named_notes, "a flip in a namespace's data names the namespace");
    let mut cut = original.clone();
    cut.truncate(original.len() - 1);
    std::fs::write(&damaged, &cut).unwrap();
    assert!(verify(&damaged, None).is_err(), "a cut file is damaged");
}

#[tokio::test]
async fn a_restore_puts_back_the_cut_and_never_reissues_a_version() {
    let data = data().await;
    let notes = data.storage.namespace(NamespaceId::Plugin("notes".into()), None).unwrap();
    let doc =
        crate::storage::VersionedOp { key: "doc".into(), expected: None, value: Some(b"1".to_vec()), also: vec![] };
    let crate::storage::VersionedWrite::Written(v1) = notes.write_versioned(doc, &|_| {}).await.unwrap() else {
        panic!("created")
    };
    let summary = data.backup().await;
    notes.set("note/00", b"changed after the backup".to_vec()).await.unwrap();
    let doc =
        crate::storage::VersionedOp { key: "doc".into(), expected: Some(v1), value: Some(b"2".to_vec()), also: vec![] };
    let crate::storage::VersionedWrite::Written(v2) = notes.write_versioned(doc, &|_| {}).await.unwrap() else {
        panic!("replaced")
    };
    data.audit.append(Envelope::system().draft("test.after", "x", Outcome::Success, None)).await.unwrap();
    let replaced_end = data.audit.end().await;
    let data_dir = data.dir.path().join("data");
    let Data { dir, storage, blobs, audit, key } = data;
    drop((notes, blobs, audit));
    assert!(restore(&summary.file, &data_dir, &key).await.is_err(), "a restore while the database is open is refused");
    drop(storage);

    let wrong = restore(&summary.file, &data_dir, &AuditKey::from_bytes([8; 32])).await.unwrap_err();
    assert!(format!("{wrong:#}").contains("was not written by this deployment"), "{wrong:#}");
    let beside: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(!beside.iter().any(|n| n.to_string_lossy().starts_with("data.")), "nothing left behind: {beside:?}");

    let restored = restore(&summary.file, &data_dir, &key).await.unwrap();
    let replaced = restored.replaced.expect("the old directory is kept");
    assert!(replaced.join("db").exists());
    let storage = SledStorage::open(&data_dir).unwrap();
    let notes = storage.namespace(NamespaceId::Plugin("notes".into()), None).unwrap();
    assert_eq!(notes.get("note/00").await.unwrap().as_deref(), Some(&b"note number 0"[..]));
    assert_eq!(notes.get_versioned("doc").await.unwrap(), Some((v1, b"1".to_vec())));
    let doc =
        crate::storage::VersionedOp { key: "doc".into(), expected: Some(v1), value: Some(b"3".to_vec()), also: vec![] };
    let crate::storage::VersionedWrite::Written(v3) = notes.write_versioned(doc, &|_| {}).await.unwrap() else {
        panic!("replaced")
    };
    assert!(v3 > v2, "a version issued before the restore ({v2}) is never issued again ({v3})");
    let audit = AuditLog::open(&storage, None, key.clone()).await.unwrap();
    note_restore(&storage, &audit).await.unwrap();
    note_restore(&storage, &audit).await.unwrap();
    let records = audit.records(0, 100).await.unwrap();
    let noted: Vec<_> = records.iter().filter(|r| r.action == "backup.restored").collect();
    assert_eq!(noted.len(), 1, "one record, however many starts");
    let reason = noted[0].reason.as_deref().unwrap();
    assert!(reason.contains(&replaced_end.last_hash), "the record names the replaced chain's end: {reason}");
    assert!(audit.verify().await.unwrap().broken.is_none());
    let scanner = crate::config::ScannerConfig { clamd: None, unscanned: crate::config::Unscanned::Serve };
    let storage: Arc<dyn Storage> = Arc::new(storage);
    let blobs = Blobs::open(data_dir.join("blobs"), storage, &scanner).await.unwrap();
    assert_eq!(blobs.plugin_usage("media").await.unwrap(), (3000, 10), "stored and reserved, as at the cut");
}

#[tokio::test]
async fn files_removed_during_a_backup_stay_until_it_ends() {
    let data = data().await;
    let bytes: Vec<u8> = b"kept for the backup".to_vec();
    let blob = data.blobs.create(&SCOPE, "alice", bytes.clone().into()).await.unwrap();
    let file = data.dir.path().join("data/blobs").join(crate::blobs::object_path("media", &blob.id));
    let hold = data.blobs.hold_files().unwrap();
    assert!(data.blobs.hold_files().is_err(), "one hold at a time");
    data.blobs.unlink("media", &blob.id).await.unwrap();
    assert!(file.exists(), "held while the backup may copy it");
    hold.release().await;
    assert!(!file.exists(), "removed when the hold ends");

    let blob = data.blobs.create(&SCOPE, "alice", bytes.clone().into()).await.unwrap();
    let hold = data.blobs.hold_files().unwrap();
    data.blobs.unlink("media", &blob.id).await.unwrap();
    let again = data.blobs.create(&SCOPE, "alice", bytes.clone().into()).await.unwrap();
    assert_eq!(again.id, blob.id, "the same bytes, stored anew while held");
    hold.release().await;
    assert_eq!(std::fs::read(&file).unwrap(), bytes, "a file a record names again is kept");
}

#[test]
fn a_backup_written_without_the_key_or_with_a_crafted_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let write = |id: &str, key: &BackupKey| {
        let path = dir.path().join(format!("{}.plinth-backup", id.replace('/', "_")));
        let mut writer = archive::ArchiveWriter::new(std::fs::File::create(&path).unwrap()).unwrap();
        let mut digest = writer.begin_namespace("plugin/p").unwrap();
        writer.entry(&mut digest, b"k", b"forged").unwrap();
        let section = writer.end_namespace(digest, "plugin/p").unwrap();
        let manifest = Manifest {
            format: 1,
            id: id.to_owned(),
            created: "2026-11-26T00:00:00Z".into(),
            plinth: "0.1.0".into(),
            versions_issued: 1,
            write_pause_us: 0,
            audit: None,
            namespaces: vec![section],
            files: vec![],
        };
        writer.finish(&manifest, key).unwrap();
        path
    };
    let ours = BackupKey::of(&AuditKey::from_bytes([1; 32]));
    let theirs = BackupKey::of(&AuditKey::from_bytes([2; 32]));
    let forged = write("20261126T000000Z-abcdef", &theirs);
    assert!(verify(&forged, None).is_ok(), "whole, as far as digests go");
    assert!(matches!(verify(&forged, Some(&ours)), Err(ArchiveError::Forged { .. })));
    let crafted = write("x/../victim", &ours);
    let error = verify(&crafted, Some(&ours)).unwrap_err().to_string();
    assert!(error.contains("not a backup id"), "{error}");
    assert!(archive::read_manifest(&crafted).is_err());
}
