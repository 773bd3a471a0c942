//! The blob store against a real sled database and real files.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::storage::SledStorage;

const PLUGIN: &str = "media";

fn scope(plugin_bytes: u64, owner_bytes: u64) -> Scope<'static> {
    Scope { plugin: PLUGIN, plugin_bytes, owner_bytes }
}

async fn store(dir: &tempfile::TempDir) -> Arc<Blobs> {
    let storage: Arc<dyn Storage> = Arc::new(SledStorage::open(&dir.path().join("db")).unwrap());
    let scanner = crate::config::ScannerConfig { clamd: None, unscanned: crate::config::Unscanned::Serve };
    Arc::new(Blobs::open(dir.path().join("blobs"), storage, &scanner).await.unwrap())
}

/// A body in pieces, optionally failing after them.
struct Pieces(Vec<Bytes>, Option<ApiError>);

#[async_trait::async_trait]
impl Chunks for Pieces {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, ApiError> {
        if self.0.is_empty() {
            return match self.1.take() {
                Some(e) => Err(e),
                None => Ok(None),
            };
        }
        Ok(Some(self.0.remove(0)))
    }
}

fn pieces(parts: &[&[u8]]) -> Pieces {
    Pieces(parts.iter().map(|p| Bytes::copy_from_slice(p)).collect(), None)
}

fn cut_off() -> ApiError {
    ApiError::new(http::StatusCode::BAD_REQUEST, "body_unreadable", "gone")
}

#[tokio::test]
async fn an_upload_in_two_writes_becomes_a_blob_with_its_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = store(&dir).await;
    let upload = blobs.create_upload(&scope(100, 100), "alice", 10, Duration::from_secs(60)).await.unwrap();
    assert_eq!(blobs.plugin_usage(PLUGIN).await.unwrap(), (0, 10));
    assert_eq!(blobs.append(PLUGIN, &upload.id, 0, &mut pieces(&[b"hello"]), None).await.unwrap(), 5);
    let early = blobs.finish_upload(PLUGIN, &upload.id).await.unwrap_err();
    assert!(matches!(early, BlobError::Incomplete { offset: 5, length: 10 }), "{early:?}");
    let wrong = blobs.append(PLUGIN, &upload.id, 0, &mut pieces(&[b"world"]), None).await.unwrap_err();
    assert!(matches!(wrong, BlobError::OffsetMismatch { current: 5, requested: 0 }), "{wrong:?}");
    assert_eq!(blobs.append(PLUGIN, &upload.id, 5, &mut pieces(&[b"wor", b"ld"]), None).await.unwrap(), 10);
    let blob = blobs.finish_upload(PLUGIN, &upload.id).await.unwrap();
    assert_eq!((blob.size, blob.refs, blob.owner.as_str()), (10, 1, "alice"));
    assert_eq!(blobs.read(PLUGIN, &blob.id, 3, 4).await.unwrap(), b"lowo");
    assert_eq!(blobs.read(PLUGIN, &blob.id, 8, 100).await.unwrap(), b"ld");
    assert_eq!(blobs.plugin_usage(PLUGIN).await.unwrap(), (10, 0));
    assert!(matches!(blobs.upload(PLUGIN, &upload.id).await, Err(BlobError::NotFound("upload"))));
}

#[tokio::test]
async fn the_same_bytes_share_a_file_within_an_owner_and_not_across_owners() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = store(&dir).await;
    let s = scope(1000, 1000);
    let a1 = blobs.create(&s, "alice", Bytes::from_static(b"same bytes")).await.unwrap();
    let a2 = blobs.create(&s, "alice", Bytes::from_static(b"same bytes")).await.unwrap();
    let b1 = blobs.create(&s, "bob", Bytes::from_static(b"same bytes")).await.unwrap();
    assert_eq!(a1.id, a2.id);
    assert_eq!(a2.refs, 2);
    assert_ne!(a1.id, b1.id, "another owner's copy is another blob");
    assert_eq!(b1.refs, 1);
    assert_eq!(blobs.owner_usage(PLUGIN, "alice").await.unwrap(), (10, 0), "stored once");
    assert_eq!(blobs.plugin_usage(PLUGIN).await.unwrap(), (20, 0));
    assert_eq!(blobs.unlink(PLUGIN, &a1.id).await.unwrap(), 1);
    assert_eq!(blobs.read(PLUGIN, &a1.id, 0, 4).await.unwrap(), b"same");
    assert_eq!(blobs.unlink(PLUGIN, &a1.id).await.unwrap(), 0);
    assert!(matches!(blobs.info(PLUGIN, &a1.id).await, Err(BlobError::NotFound("blob"))));
    assert_eq!(blobs.owner_usage(PLUGIN, "alice").await.unwrap(), (0, 0));
    assert_eq!(blobs.read(PLUGIN, &b1.id, 0, 4).await.unwrap(), b"same", "bob's copy is untouched");
    let objects = dir.path().join("blobs/objects/media");
    let files = walk(&objects);
    assert_eq!(files, 1, "only bob's file is left");
}

fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| {
                    let path = e.unwrap().path();
                    if path.is_dir() { walk(&path) } else { 1 }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn quotas_count_reservations_so_uploads_cannot_overshoot_together() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = store(&dir).await;
    let racers = (0..8).map(|_| {
        let blobs = blobs.clone();
        tokio::spawn(async move { blobs.create_upload(&scope(1000, 300), "alice", 100, Duration::from_secs(60)).await })
    });
    let mut created = 0;
    for racer in racers {
        match racer.await.unwrap() {
            Ok(_) => created += 1,
            Err(BlobError::QuotaExceeded { scope: "owner", limit: 300, .. }) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(created, 3);
    assert_eq!(blobs.owner_usage(PLUGIN, "alice").await.unwrap(), (0, 300));
    let refused = blobs.create(&scope(1000, 300), "alice", Bytes::from_static(b"x")).await.unwrap_err();
    assert!(matches!(refused, BlobError::QuotaExceeded { scope: "owner", used: 300, requested: 1, .. }));
    let plugin_wide = blobs.create(&scope(350, 1000), "bob", Bytes::from(vec![0; 51])).await.unwrap_err();
    assert!(matches!(plugin_wide, BlobError::QuotaExceeded { scope: "plugin", .. }), "{plugin_wide:?}");
}

#[tokio::test]
async fn a_cut_off_body_keeps_what_arrived_unless_a_checksum_was_sent() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = store(&dir).await;
    let upload = blobs.create_upload(&scope(100, 100), "alice", 10, Duration::from_secs(60)).await.unwrap();
    let mut body = Pieces(vec![Bytes::from_static(b"abcd")], Some(cut_off()));
    let e = blobs.append(PLUGIN, &upload.id, 0, &mut body, None).await.unwrap_err();
    assert!(matches!(e, BlobError::Body(_)), "{e:?}");
    assert_eq!(blobs.upload(PLUGIN, &upload.id).await.unwrap().offset, 4, "the four bytes are kept");

    let sha1 = |bytes: &[u8]| {
        use sha1::Digest as _;
        sha1::Sha1::digest(bytes).to_vec()
    };
    let checksum = Checksum { algorithm: ChecksumAlgorithm::Sha1, expected: sha1(b"efgh") };
    let mut body = Pieces(vec![Bytes::from_static(b"efgh")], Some(cut_off()));
    blobs.append(PLUGIN, &upload.id, 4, &mut body, Some(checksum.clone())).await.unwrap_err();
    assert_eq!(blobs.upload(PLUGIN, &upload.id).await.unwrap().offset, 4, "a checked write is all or nothing");

    let bad = Checksum { algorithm: ChecksumAlgorithm::Sha1, expected: sha1(b"nope") };
    let e = blobs.append(PLUGIN, &upload.id, 4, &mut pieces(&[b"efgh"]), Some(bad)).await.unwrap_err();
    assert!(matches!(e, BlobError::ChecksumMismatch("sha1")), "{e:?}");
    assert_eq!(blobs.append(PLUGIN, &upload.id, 4, &mut pieces(&[b"efgh"]), Some(checksum)).await.unwrap(), 8);

    let e = blobs.append(PLUGIN, &upload.id, 8, &mut pieces(&[b"ijk"]), None).await.unwrap_err();
    assert!(matches!(e, BlobError::TooLarge { limit: 2 }), "{e:?}");
    assert_eq!(blobs.append(PLUGIN, &upload.id, 8, &mut pieces(&[b"ij"]), None).await.unwrap(), 10);
    let blob = blobs.finish_upload(PLUGIN, &upload.id).await.unwrap();
    assert_eq!(blobs.read(PLUGIN, &blob.id, 0, 10).await.unwrap(), b"abcdefghij");
}

#[tokio::test]
async fn bytes_past_the_recorded_offset_are_dropped_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = store(&dir).await;
    let upload = blobs.create_upload(&scope(100, 100), "alice", 6, Duration::from_secs(60)).await.unwrap();
    blobs.append(PLUGIN, &upload.id, 0, &mut pieces(&[b"abc"]), None).await.unwrap();
    // What a crash between writing bytes and recording the offset leaves.
    let partial = dir.path().join("blobs/partial/media").join(&upload.id);
    std::fs::write(&partial, b"abcXXXXX").unwrap();
    blobs.append(PLUGIN, &upload.id, 3, &mut pieces(&[b"def"]), None).await.unwrap();
    let blob = blobs.finish_upload(PLUGIN, &upload.id).await.unwrap();
    assert_eq!(blobs.read(PLUGIN, &blob.id, 0, 100).await.unwrap(), b"abcdef");
}

#[tokio::test]
async fn one_write_at_a_time_per_upload() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = store(&dir).await;
    let upload = blobs.create_upload(&scope(100, 100), "alice", 6, Duration::from_secs(60)).await.unwrap();
    let _held = blobs.mark_busy(PLUGIN, &upload.id).unwrap();
    let e = blobs.append(PLUGIN, &upload.id, 0, &mut pieces(&[b"abc"]), None).await.unwrap_err();
    assert!(matches!(e, BlobError::Busy), "{e:?}");
    assert!(matches!(blobs.cancel_upload(PLUGIN, &upload.id).await, Err(BlobError::Busy)));
}

#[tokio::test]
async fn expired_and_cancelled_uploads_give_their_reservation_back() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = store(&dir).await;
    let s = scope(100, 100);
    // Expiry is kept in whole seconds: a 2 s lifetime leaves at least 1 s for the append below.
    let short = blobs.create_upload(&s, "alice", 30, Duration::from_secs(2)).await.unwrap();
    let long = blobs.create_upload(&s, "alice", 40, Duration::from_secs(600)).await.unwrap();
    let cancelled = blobs.create_upload(&s, "bob", 20, Duration::from_secs(600)).await.unwrap();
    blobs.append(PLUGIN, &short.id, 0, &mut pieces(&[b"partial"]), None).await.unwrap();
    blobs.cancel_upload(PLUGIN, &cancelled.id).await.unwrap();
    assert_eq!(blobs.owner_usage(PLUGIN, "bob").await.unwrap(), (0, 0));
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert!(matches!(blobs.upload(PLUGIN, &short.id).await, Err(BlobError::Expired)));
    assert_eq!(blobs.sweep_expired().await.unwrap(), 1);
    assert_eq!(blobs.plugin_usage(PLUGIN).await.unwrap(), (0, 40));
    assert!(matches!(blobs.upload(PLUGIN, &short.id).await, Err(BlobError::NotFound("upload"))));
    assert!(!dir.path().join("blobs/partial/media").join(&short.id).exists());
    assert!(blobs.upload(PLUGIN, &long.id).await.is_ok());
}

#[tokio::test]
async fn ids_from_a_plugin_never_leave_its_directories() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = store(&dir).await;
    for id in ["../../etc/passwd", "", "ABCDEF", &"a".repeat(63), &format!("{}/", "a".repeat(63))] {
        assert!(matches!(blobs.info(PLUGIN, id).await, Err(BlobError::NotFound("blob"))), "{id}");
        assert!(matches!(blobs.upload(PLUGIN, id).await, Err(BlobError::NotFound("upload"))), "{id}");
    }
    let blob = blobs.create(&scope(100, 100), "alice", Bytes::from_static(b"mine")).await.unwrap();
    assert!(matches!(blobs.info("other", &blob.id).await, Err(BlobError::NotFound("blob"))));
}

#[tokio::test]
async fn ingest_refuses_a_body_past_its_limit_and_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = store(&dir).await;
    let s = scope(100, 100);
    let e = blobs.ingest(&s, "alice", &mut pieces(&[b"abcdef", b"ghij"]), None, 8).await.unwrap_err();
    assert!(matches!(e, BlobError::TooLarge { limit: 8 }), "{e:?}");
    let e = blobs.ingest(&s, "alice", &mut pieces(&[b"ab"]), Some(9), 8).await.unwrap_err();
    assert!(matches!(e, BlobError::TooLarge { limit: 8 }), "{e:?}");
    let e = blobs.ingest(&s, "alice", &mut Pieces(vec![Bytes::from_static(b"ab")], Some(cut_off())), None, 8).await;
    assert!(matches!(e, Err(BlobError::Body(_))));
    assert_eq!(blobs.plugin_usage(PLUGIN).await.unwrap(), (0, 0));
    assert_eq!(walk(&dir.path().join("blobs/partial/media")), 0);
    let blob = blobs.ingest(&s, "alice", &mut pieces(&[b"abc", b"def"]), None, 8).await.unwrap();
    assert_eq!(blob.size, 6);
    assert_eq!(blobs.plugin_usage(PLUGIN).await.unwrap(), (6, 0), "the unused reservation is given back");
}

/// A body whose first piece arrives and then nothing more.
struct Stalls(Option<Bytes>);

#[async_trait::async_trait]
impl Chunks for Stalls {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, ApiError> {
        match self.0.take() {
            Some(piece) => Ok(Some(piece)),
            None => std::future::pending().await,
        }
    }
}

#[tokio::test]
async fn an_ingest_dropped_mid_body_gives_its_reservation_and_file_back() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = store(&dir).await;
    let task = {
        let blobs = blobs.clone();
        tokio::spawn(async move {
            let mut body = Stalls(Some(Bytes::from_static(b"first piece")));
            blobs.ingest(&scope(1000, 1000), "alice", &mut body, None, 500).await
        })
    };
    for _ in 0..100 {
        if blobs.plugin_usage(PLUGIN).await.unwrap() == (0, 500) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(blobs.plugin_usage(PLUGIN).await.unwrap(), (0, 500), "reserved while the body arrives");
    // What hyper does to a request whose HTTP/2 stream is reset.
    task.abort();
    let _ = task.await;
    let partial = dir.path().join("blobs/partial/media");
    for _ in 0..100 {
        if blobs.plugin_usage(PLUGIN).await.unwrap() == (0, 0) && walk(&partial) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(blobs.plugin_usage(PLUGIN).await.unwrap(), (0, 0));
    assert_eq!(walk(&partial), 0, "no partial file is left");
}

#[tokio::test]
async fn a_hash_carried_between_writes_names_the_bytes_as_a_fresh_hash_does() {
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn Storage> = Arc::new(SledStorage::open(&dir.path().join("db")).unwrap());
    let scanner = crate::config::ScannerConfig { clamd: None, unscanned: crate::config::Unscanned::Serve };
    let open = || Blobs::open(dir.path().join("blobs"), storage.clone(), &scanner);
    let blobs = Arc::new(open().await.unwrap());
    let s = scope(1000, 1000);
    // Carried across two writes.
    let carried = blobs.create_upload(&s, "alice", 6, Duration::from_secs(60)).await.unwrap();
    blobs.append(PLUGIN, &carried.id, 0, &mut pieces(&[b"abc"]), None).await.unwrap();
    blobs.append(PLUGIN, &carried.id, 3, &mut pieces(&[b"def"]), None).await.unwrap();
    let carried = blobs.finish_upload(PLUGIN, &carried.id).await.unwrap();
    // Lost halfway (a restart), so the file is hashed again at the end.
    let resumed = blobs.create_upload(&s, "alice", 6, Duration::from_secs(60)).await.unwrap();
    blobs.append(PLUGIN, &resumed.id, 0, &mut pieces(&[b"abc"]), None).await.unwrap();
    let reopened = Arc::new(open().await.unwrap());
    reopened.append(PLUGIN, &resumed.id, 3, &mut pieces(&[b"def"]), None).await.unwrap();
    let resumed = reopened.finish_upload(PLUGIN, &resumed.id).await.unwrap();
    // A write refused by its checksum saw bytes it did not keep.
    let refused = reopened.create_upload(&s, "alice", 6, Duration::from_secs(60)).await.unwrap();
    let wrong = Checksum { algorithm: ChecksumAlgorithm::Sha256, expected: vec![0; 32] };
    reopened.append(PLUGIN, &refused.id, 0, &mut pieces(&[b"xyz"]), Some(wrong)).await.unwrap_err();
    reopened.append(PLUGIN, &refused.id, 0, &mut pieces(&[b"abcdef"]), None).await.unwrap();
    let refused = reopened.finish_upload(PLUGIN, &refused.id).await.unwrap();
    let whole = reopened.create(&s, "alice", Bytes::from_static(b"abcdef")).await.unwrap();
    assert_eq!(carried.id, resumed.id);
    assert_eq!(carried.id, refused.id);
    assert_eq!(carried.id, whole.id);
    assert_eq!(whole.refs, 4);
}

#[tokio::test]
async fn an_upload_that_brings_no_bytes_holds_its_reservation_for_an_hour_at_most() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = store(&dir).await;
    let day = Duration::from_secs(24 * 3600);
    let upload = blobs.create_upload(&scope(100, 100), "alice", 10, day).await.unwrap();
    assert!(upload.expires <= now() + 3600, "no bytes yet: an hour at most");
    blobs.append(PLUGIN, &upload.id, 0, &mut pieces(&[b"abc"]), None).await.unwrap();
    let started = blobs.upload(PLUGIN, &upload.id).await.unwrap();
    assert!(started.expires >= now() + day.as_secs() - 5, "its first bytes give it its whole lifetime");
    // The sweep finds it under its new expiry, not the old one.
    assert_eq!(blobs.sweep_expired().await.unwrap(), 0);
    assert_eq!(blobs.upload(PLUGIN, &upload.id).await.unwrap().offset, 3);
}
