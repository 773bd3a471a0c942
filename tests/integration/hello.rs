//! The hello plugin end to end.

use crate::support::{Deployment, ServerProcess, TEST_SERVER, TestServer, hello_plugin};

#[tokio::test]
async fn greets_and_counts() {
    let deployment = Deployment::new(&format!("{TEST_SERVER}{}", hello_plugin()));
    let server = TestServer::start(&deployment).await;
    let client = reqwest::Client::new();
    let greeting = client.get(server.url("/v1/hello")).send().await.unwrap();
    assert_eq!(greeting.status(), 200);
    assert_eq!(greeting.headers()["content-type"], "application/json");
    let body: serde_json::Value = greeting.json().await.unwrap();
    assert_eq!(body["message"], "hello, world");
    for expected in 1..=3 {
        let count: serde_json::Value =
            client.post(server.url("/v1/hello/count")).send().await.unwrap().json().await.unwrap();
        assert_eq!(count["count"], expected);
    }
    server.stop().await;
}

/// On a multi-threaded runtime, like the binary's, so that writes flush
/// concurrently (overlapping sled flushes once hung every writer; the load
/// script in benches/ is what caught it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_lose_no_count() {
    let deployment = Deployment::new(&format!("{TEST_SERVER}{}", hello_plugin()));
    let server = TestServer::start(&deployment).await;
    let client = reqwest::Client::new();
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..30 {
        let (client, url) = (client.clone(), server.url("/v1/hello/count"));
        // A 409 says the counter was too contended this time; clients retry.
        requests.spawn(async move {
            loop {
                let response = client.post(&url).send().await.unwrap();
                if response.status() != 409 {
                    return response.json::<serde_json::Value>().await.unwrap();
                }
            }
        });
    }
    let bodies = requests.join_all().await;
    let mut counts: Vec<u64> = bodies.iter().map(|b| b["count"].as_u64().unwrap_or_else(|| panic!("{b}"))).collect();
    counts.sort();
    assert_eq!(counts, (1..=30).collect::<Vec<_>>());
    server.stop().await;
}

/// The counter survives `kill -9`: a write acknowledged to a client is durable.
#[tokio::test]
async fn count_survives_a_killed_process() {
    let deployment = Deployment::new(&format!("{TEST_SERVER}{}", hello_plugin()));
    let client = reqwest::Client::new();
    let count = |url: String| {
        let client = client.clone();
        async move {
            let body: serde_json::Value = client.post(url).send().await.unwrap().json().await.unwrap();
            body["count"].as_u64().unwrap()
        }
    };
    let first = ServerProcess::start(&deployment);
    assert_eq!(count(first.url("/v1/hello/count")).await, 1);
    assert_eq!(count(first.url("/v1/hello/count")).await, 2);
    first.signal("KILL");
    drop(first);
    let second = ServerProcess::start(&deployment);
    assert_eq!(count(second.url("/v1/hello/count")).await, 3);
}
