//! Jobs and workers through the host (`jobs.submit` as a plugin makes it),
//! run by a probing worker component over the real blob store: a worker
//! reads only its job's inputs, is stopped at its time and memory limits,
//! its blobs are kept only when it succeeds and go when the job is
//! forgotten, and a component that is not a worker is refused.

use std::time::Duration;

use plinth::blobs::Scope;
use plinth::jobs::{JobRecord, JobState, Work};

use crate::support::{Deployment, OPEN_POLICY, TestServer, eventually, plugin};

const OWNER: &str = "alice";
const LIMITS: plinth::jobs::JobLimits = plinth::jobs::JobLimits { plugin: 100, owner: 100 };

fn deployment(worker_component: &str) -> Deployment {
    let media = plugin(
        "media",
        plinth_test_guests::MEDIA,
        &["/v1/media/**"],
        &["kv", "audit", "blobs", "signing", "jobs"],
        "memory = \"32MiB\"",
    );
    let config = format!(
        "{media}\n[[workers]]\nname = \"probe\"\ncomponent = {worker_component:?}\nplugins = [\"media\"]\n\
         limits = {{ memory = \"8MiB\", timeout_ms = 1500, concurrency = 2 }}\n"
    );
    Deployment::with_policy(&config, OPEN_POLICY)
}

const SCOPE: Scope<'static> = Scope { plugin: "media", plugin_bytes: 1 << 30, owner_bytes: 1 << 30 };

async fn store(server: &TestServer, bytes: &[u8]) -> String {
    server.app.blobs.create(&SCOPE, OWNER, bytes.to_vec().into()).await.unwrap().id
}

async fn run(server: &TestServer, inputs: &[&str], params: &str) -> (String, JobRecord) {
    let inputs = inputs.iter().map(|s| (*s).to_owned()).collect();
    let id =
        server.app.jobs.submit("media", "probe", OWNER, Work::on(inputs, params.to_owned()), LIMITS).await.unwrap();
    for _ in 0..300 {
        let record = server.app.jobs.get("media", &id).await.unwrap();
        if !matches!(record.state, JobState::Queued | JobState::Running) {
            return (id, record);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job `{params}` did not end");
}

async fn stored_bytes(server: &TestServer) -> u64 {
    server.app.blobs.plugin_usage("media").await.unwrap().0
}

#[tokio::test]
async fn a_worker_reads_its_inputs_only_and_stops_at_its_limits() {
    let server = TestServer::start(&deployment(plinth_test_guests::JOBPROBE)).await;
    let input = store(&server, b"the input").await;
    let other = store(&server, b"not for workers").await;
    let (_, record) = run(&server, &[&input], &format!("read {input}")).await;
    assert_eq!(record.state, JobState::Done("read the input".into()));
    let (_, record) = run(&server, &[&input], &format!("read {other}")).await;
    assert_eq!(record.state, JobState::Done("refused Error::NotFound".into()), "a blob the job does not name");

    let (_, spin) = run(&server, &[&input], "spin").await;
    assert!(matches!(&spin.state, JobState::Failed(why) if why.contains("ran past its 1.5s limit")), "{spin:?}");
    let (_, hog) = run(&server, &[&input], "hog").await;
    assert!(matches!(&hog.state, JobState::Failed(why) if why.contains("memory limit of 8 MiB")), "{hog:?}");
    // The server kept serving meanwhile.
    let health = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);

    let unknown =
        server.app.jobs.submit("media", "nope", OWNER, Work::on(vec![input.clone()], String::new()), LIMITS).await;
    assert!(matches!(unknown, Err(plinth::jobs::JobError::UnknownWorker(_))), "{unknown:?}");
    let missing =
        server.app.jobs.submit("media", "probe", OWNER, Work::on(vec!["0".repeat(64)], String::new()), LIMITS).await;
    assert!(matches!(missing, Err(plinth::jobs::JobError::Invalid(ref why)) if why.contains("no blob")), "{missing:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_job_holds_what_its_worker_made_until_it_is_forgotten() {
    let server = TestServer::start(&deployment(plinth_test_guests::JOBPROBE)).await;
    let input = store(&server, b"in").await;
    let before = stored_bytes(&server).await;
    let (_, failed) = run(&server, &[&input], "make 3 fail").await;
    assert!(matches!(&failed.state, JobState::Failed(why) if why.contains("after making 3")), "{failed:?}");
    assert!(failed.made.is_empty());
    // The record says failed first, then the blobs are unlinked.
    eventually("a failed job's blobs unlinked", async || (stored_bytes(&server).await == before).then_some(())).await;

    let (id, done) = run(&server, &[&input], "make 2 ok").await;
    let JobState::Done(answer) = &done.state else { panic!("{done:?}") };
    assert_eq!(answer.split(',').collect::<Vec<_>>(), done.made.iter().map(String::as_str).collect::<Vec<_>>());
    for blob in &done.made {
        assert_eq!(server.app.blobs.info("media", blob).await.unwrap().owner, OWNER, "made for the job's owner");
    }
    assert!(stored_bytes(&server).await > before);
    server.app.jobs.forget("media", &id).await.unwrap();
    assert_eq!(stored_bytes(&server).await, before, "forgetting the job unlinks its blobs");
    assert!(matches!(server.app.jobs.get("media", &id).await, Err(plinth::jobs::JobError::NotFound)));
    server.stop().await;
}

#[tokio::test]
async fn a_plugin_is_not_a_worker() {
    let config = deployment(plinth_test_guests::MEDIA).load().unwrap();
    let error = plinth::App::build(config).await.err().expect("a plugin is refused as a worker").to_string();
    assert!(error.contains("worker probe") && error.contains("not available to workers"), "{error}");
}

#[test]
fn inspect_tells_a_worker_from_a_plugin() {
    let (ok, stdout, stderr) = crate::support::plinth_cli(&["plugin", "inspect", plinth_test_guests::IMAGES]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("a worker") && stdout.contains("[[workers]]") && stdout.contains("only its job's blobs"),
        "{stdout}"
    );
}
