//! What the edge owes every plugin, built on the routes a component
//! declares: `HEAD` from `GET`, `OPTIONS` and 405 with `Allow`, undeclared
//! paths answered by the edge, config routes that reach no declared route
//! refused at load; and the API sign-in that returns a bearer token.

use reqwest::Method;
use serde_json::{Value, json};

use crate::accounts::{PASSWORD, api_sign_in, new_user};
use crate::support::{Deployment, TestServer, assert_error, example_deployment, plugin};

#[tokio::test]
async fn head_mirrors_get_and_options_lists_the_methods() {
    let deployment = example_deployment("");
    let server = TestServer::start(&deployment).await;
    let client = reqwest::Client::new();

    let get = client.get(server.url("/v1/hello")).send().await.unwrap();
    let get_length = get.bytes().await.unwrap().len();
    let head = client.head(server.url("/v1/hello")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-type"], "application/json");
    assert_eq!(head.headers()["content-length"], get_length.to_string().as_str());
    assert!(head.bytes().await.unwrap().is_empty());

    // The host's own GET routes too.
    for path in ["/healthz", "/readyz", "/openapi.json"] {
        let head = client.head(server.url(path)).send().await.unwrap();
        assert_eq!(head.status(), 200, "{path}");
    }

    // HEAD is judged as the GET: an admin-only GET stays admin-only.
    let head_stats = client.head(server.url("/v1/hello/stats")).send().await.unwrap();
    assert_eq!(head_stats.status(), 401);
    // ...and never runs the POST.
    let head_post = client.head(server.url("/v1/hello/count")).send().await.unwrap();
    assert_eq!(head_post.status(), 405);

    for (path, allow) in [
        ("/v1/hello", "GET, HEAD, OPTIONS"),
        ("/v1/hello/count", "OPTIONS, POST"),
        ("/v1/me", "DELETE, GET, HEAD, OPTIONS, PATCH"),
        ("/v1/sessions/abc", "DELETE, OPTIONS"),
    ] {
        let options = client.request(Method::OPTIONS, server.url(path)).send().await.unwrap();
        assert_eq!(options.status(), 204, "{path}");
        assert_eq!(options.headers()["allow"], allow, "{path}");
        let wrong = client.put(server.url(path)).send().await.unwrap();
        assert_eq!(wrong.headers()["allow"], allow, "{path}");
        assert_error(wrong, 405, "method_not_allowed").await;
    }
    server.stop().await;
}

#[tokio::test]
async fn paths_no_route_declares_are_the_edges_404() {
    let deployment = example_deployment("");
    let server = TestServer::start(&deployment).await;
    let client = reqwest::Client::new();
    // Inside the accounts plugin's configured prefix, but declared by no route.
    for path in ["/v1/accounts", "/v1/accounts/nothing", "/v1/me/nothing", "/v1/sessions/a/b"] {
        let response = client.post(server.url(path)).json(&json!({})).send().await.unwrap();
        let body = assert_error(response, 404, "not_found").await;
        assert!(body["error"]["message"].as_str().unwrap().contains(path), "{body}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_config_route_that_reaches_no_declared_route_is_refused_at_load() {
    let hello = plinth_test_guests::HELLO;
    let deployment = Deployment::new(&plugin("hello", hello, &["GET /v1/hello", "/v1/goodbye/**"], &["kv"], ""));
    let err = format!("{:#}", plinth::App::build(deployment.load().unwrap()).await.err().expect("refused"));
    assert!(err.contains("route `/v1/goodbye/**` of plugin `hello` reaches none of the routes"), "{err}");
    assert!(err.contains("`GET /v1/hello`") && err.contains("`POST /v1/hello/count`"), "{err}");

    let ambiguous = plinth_test_guests::AMBIGUOUS;
    let deployment = Deployment::new(&plugin("twice", ambiguous, &["/v1/x/**"], &[], ""));
    let err = format!("{:#}", plinth::App::build(deployment.load().unwrap()).await.err().expect("refused"));
    assert!(err.contains("plugin `twice`: it declares `GET /v1/x/{b}` twice (it overlaps `GET /v1/x/{a}`"), "{err}");

    // A narrower config route serves only what it covers.
    let deployment = Deployment::new(&plugin("hello", hello, &["GET /v1/hello"], &["kv"], ""));
    let server = TestServer::start(&deployment).await;
    let client = reqwest::Client::new();
    assert_eq!(client.get(server.url("/v1/hello")).send().await.unwrap().status(), 200);
    assert_error(client.post(server.url("/v1/hello/count")).send().await.unwrap(), 404, "not_found").await;
    server.stop().await;
}

#[tokio::test]
async fn api_sign_in_returns_a_bearer_token_and_sets_no_cookie() {
    let deployment = example_deployment("");
    let server = TestServer::start(&deployment).await;
    new_user(&deployment, &server, "api@example.com").await;
    let client = reqwest::Client::new();

    let wrong = api_sign_in(&server, "api@example.com", "not the password").await;
    assert!(wrong.headers().get("set-cookie").is_none());
    assert_error(wrong, 401, "invalid_credentials").await;

    let signed_in = api_sign_in(&server, "api@example.com", PASSWORD).await;
    assert_eq!(signed_in.status(), 200);
    assert!(signed_in.headers().get("set-cookie").is_none(), "no cookie for an API client");
    assert_eq!(signed_in.headers()["cache-control"], "no-store", "a token in a body is never stored");
    let body: Value = signed_in.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    let token = body["token"].as_str().unwrap();
    assert!(body["expires_at"].as_u64().unwrap() > 0);

    let bearer = format!("Bearer {token}");
    let me = client.get(server.url("/v1/me")).header("authorization", &bearer).send().await.unwrap();
    assert_eq!(me.status(), 200);
    assert_eq!(me.json::<Value>().await.unwrap()["email"], "api@example.com");
    // A bearer needs no CSRF token for an unsafe method.
    let patched = client
        .patch(server.url("/v1/me"))
        .header("authorization", &bearer)
        .json(&json!({ "display_name": "Api" }))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    // Signing out ends the token.
    let out = client.delete(server.url("/v1/sessions/current")).header("authorization", &bearer).send().await.unwrap();
    assert_eq!(out.status(), 204);
    let after = client.get(server.url("/v1/me")).header("authorization", &bearer).send().await.unwrap();
    assert_error(after, 401, "unauthenticated").await;
    server.stop().await;
}
