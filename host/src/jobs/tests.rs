//! The queue's state changes over a real sled database and blob store:
//! what survives a stop, what a forget racing a run leaves, the limit.

use std::sync::Arc;

use super::*;
use crate::blobs::{BlobError, Scope};
use crate::config::{ScannerConfig, Unscanned, WorkerConfig};
use crate::storage::SledStorage;

const LOOSE: JobLimits = JobLimits { plugin: 100, owner: 100 };
const SCOPE: Scope<'static> = Scope { plugin: "p", plugin_bytes: 1 << 20, owner_bytes: 1 << 20 };

struct Fixture {
    _dir: tempfile::TempDir,
    storage: Arc<dyn Storage>,
    blobs: Arc<Blobs>,
}

impl Fixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(SledStorage::open(&dir.path().join("db")).unwrap());
        let scanner = ScannerConfig { clamd: None, unscanned: Unscanned::Serve };
        let blobs = Arc::new(Blobs::open(dir.path().join("blobs"), storage.clone(), &scanner).await.unwrap());
        Self { _dir: dir, storage, blobs }
    }

    /// The queue as a (re)started server opens it.
    async fn jobs(&self) -> Jobs {
        let jobs = Jobs::open(self.storage.clone(), self.blobs.clone()).await.unwrap();
        let worker = WorkerConfig {
            name: "w".into(),
            component: "w.wasm".into(),
            plugins: vec!["p".into()],
            limits: Default::default(),
        };
        jobs.set_workers(&[worker]);
        jobs
    }

    async fn blob(&self, bytes: &[u8]) -> String {
        self.blobs.create(&SCOPE, "o", bytes.to_vec().into()).await.unwrap().id
    }

    async fn gone(&self, blob: &str) -> bool {
        matches!(self.blobs.info("p", blob).await, Err(BlobError::NotFound(_)))
    }
}

#[tokio::test]
async fn a_run_cut_short_by_a_stop_runs_again_without_what_it_made() {
    let fixture = Fixture::new().await;
    let input = fixture.blob(b"input").await;
    let jobs = fixture.jobs().await;
    let id = jobs.submit("p", "w", "o", Work::on(vec![input.clone()], "{}"), LOOSE).await.unwrap();
    for attempt in 1..=MAX_ATTEMPTS {
        let claimed = jobs.claim("p", &id).await.unwrap().expect("queued");
        assert_eq!(claimed.record.attempts, attempt);
        let half = fixture.blob(format!("half of run {attempt}").as_bytes()).await;
        jobs.made("p", &id, &half).await.unwrap();
        // The server stops mid-run; the next start finds the job running.
        let jobs_after = fixture.jobs().await;
        assert!(fixture.gone(&half).await, "what the cut run made is unlinked");
        let record = jobs_after.get("p", &id).await.unwrap();
        assert!(record.made.is_empty());
        if attempt < MAX_ATTEMPTS {
            assert_eq!(record.state, JobState::Queued);
            assert_eq!(jobs_after.queued().await.unwrap().len(), 1);
        } else {
            assert_eq!(record.state, JobState::Failed("the server stopped while it ran, 3 times".into()));
            assert!(jobs_after.queued().await.unwrap().is_empty());
        }
    }
    assert!(!fixture.gone(&input).await, "the input is the plugin's, never the job's");
}

#[tokio::test]
async fn a_job_forgotten_while_it_runs_keeps_none_of_its_blobs() {
    let fixture = Fixture::new().await;
    let input = fixture.blob(b"input").await;
    let jobs = fixture.jobs().await;
    let id = jobs.submit("p", "w", "o", Work::on(vec![input], "{}"), LOOSE).await.unwrap();
    let claimed = jobs.claim("p", &id).await.unwrap().unwrap();
    let before = fixture.blob(b"made before the forget").await;
    jobs.made("p", &id, &before).await.unwrap();
    jobs.forget("p", &id).await.unwrap();
    assert!(fixture.gone(&before).await);
    let after = fixture.blob(b"made after the forget").await;
    assert!(matches!(jobs.made("p", &id, &after).await, Err(JobError::NotFound)));
    assert!(fixture.gone(&after).await);
    jobs.finish(&claimed, Ok("{}".into()), None).await.unwrap();
    assert!(matches!(jobs.get("p", &id).await, Err(JobError::NotFound)), "a finish does not bring it back");
    assert!(jobs.claim("p", &id).await.unwrap().is_none());
}

#[tokio::test]
async fn unfinished_jobs_are_bounded_per_plugin_and_their_arguments_checked() {
    let fixture = Fixture::new().await;
    let input = fixture.blob(b"input").await;
    let jobs = fixture.jobs().await;
    let limits = JobLimits { plugin: 3, owner: 2 };
    let submit = |owner: &'static str, params: &'static str| {
        jobs.submit("p", "w", owner, Work::on(vec![input.clone()], params.to_owned()), limits)
    };
    let first = submit("o", "1").await.unwrap();
    submit("o", "2").await.unwrap();
    assert!(matches!(submit("o", "3").await, Err(JobError::QueueFull { scope: "owner", limit: 2 })));
    submit("other", "3").await.unwrap();
    assert!(matches!(submit("third", "4").await, Err(JobError::QueueFull { scope: "plugin", limit: 3 })));
    jobs.forget("p", &first).await.unwrap();
    submit("o", "3").await.unwrap();
    assert_eq!(fixture.jobs().await.queued().await.unwrap().len(), 3, "counted again at open");
    let reopened = fixture.jobs().await;
    let again = reopened.submit("p", "w", "o", Work::on(vec![input.clone()], String::new()), limits).await;
    assert!(matches!(again, Err(JobError::QueueFull { scope: "plugin", .. })), "{again:?}");
    assert!(matches!(
        jobs.submit("q", "w", "o", Work::on(vec![input.clone()], String::new()), LOOSE).await,
        Err(JobError::UnknownWorker(_))
    ));
    let too_long = "x".repeat(MAX_TEXT + 1);
    assert!(matches!(
        jobs.submit("p", "w", "o", Work::on(vec![input.clone()], too_long), LOOSE).await,
        Err(JobError::Invalid(_))
    ));
    assert!(matches!(
        jobs.submit("p", "w", "o", Work::on(Vec::new(), String::new()), LOOSE).await,
        Err(JobError::Invalid(_))
    ));
    assert!(matches!(jobs.get("p", "../x").await, Err(JobError::NotFound)));
}
