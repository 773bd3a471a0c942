//! The OpenAPI document served at `/openapi.json` describes every route the
//! example deployment serves, and real responses fit its schemas.

use jsonschema::Validator;
use reqwest::Method;
use serde_json::{Value, json};

use crate::accounts::{PASSWORD, api_sign_in, new_user};
use crate::support::{TestServer, example_deployment};

/// The schema the document gives for `method path` answering `status`,
/// with `$ref`s resolved against the whole document.
fn schema_for(document: &Value, method: &str, path: &str, status: u16) -> Validator {
    let operation = &document["paths"][path][method.to_ascii_lowercase()];
    let mut response = &operation["responses"][status.to_string()];
    assert!(!response.is_null(), "{method} {path} documents no {status}");
    if let Some(reference) = response["$ref"].as_str() {
        response = document.pointer(reference.trim_start_matches('#')).expect("a resolvable $ref");
    }
    let schema = &response["content"]["application/json"]["schema"];
    assert!(!schema.is_null(), "{method} {path} {status} has no JSON schema");
    let mut root = json!({ "components": document["components"].clone() });
    root["allOf"] = json!([schema]);
    jsonschema::draft202012::new(&root).unwrap_or_else(|e| panic!("{method} {path} {status}: {e}"))
}

#[tokio::test]
async fn every_route_is_documented_and_responses_fit_the_document() {
    let deployment = example_deployment("");
    let server = TestServer::start(&deployment).await;
    let client = reqwest::Client::new();
    let served = client.get(server.url("/openapi.json")).send().await.unwrap();
    assert_eq!(served.headers()["content-type"], "application/json");
    let document: Value = served.json().await.unwrap();

    let deployment_now = server.app.deployment.load_full();
    let routes = deployment_now
        .routes
        .iter()
        .filter(|(_, served)| deployment_now.config.plugins[served.plugin].name != "issuer")
        .map(|(route, _)| (route.methods().map(Iterator::collect), route.path_pattern()));
    let host_routes = ["/healthz", "/readyz", "/metrics", "/openapi.json"].map(|p| (Some(vec!["GET"]), p.to_owned()));
    let missing = plinth::openapi::undocumented(&document, routes.chain(host_routes));
    assert!(missing.is_empty(), "undocumented routes: {missing:?}");

    let check = |method: &str, path: &str, status: u16, body: &Value| {
        let validator = schema_for(&document, method, path, status);
        let errors: Vec<String> = validator.iter_errors(body).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{method} {path} {status}: {errors:?} in {body}");
    };
    for (method, path, status, target) in [
        ("GET", "/v1/hello", 200, "/v1/hello"),
        ("POST", "/v1/hello/count", 200, "/v1/hello/count"),
        ("GET", "/v1/me", 401, "/v1/me"),
        ("GET", "/healthz", 200, "/healthz"),
    ] {
        let response = client.request(Method::from_bytes(method.as_bytes()).unwrap(), server.url(target)).send().await;
        let response = response.unwrap();
        assert_eq!(response.status().as_u16(), status, "{method} {target}");
        check(method, path, status, &response.json().await.unwrap());
    }

    new_user(&deployment, &server, "doc@example.com").await;
    let token = api_sign_in(&server, "doc@example.com", PASSWORD).await;
    assert_eq!(token.status(), 200);
    let token: Value = token.json().await.unwrap();
    check("POST", "/v1/sessions/token", 200, &token);
    let bearer = format!("Bearer {}", token["token"].as_str().unwrap());
    for (path, status) in [("/v1/me", 200), ("/v1/sessions", 200)] {
        let response = client.get(server.url(path)).header("authorization", &bearer).send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{path}");
        check("GET", path, status, &response.json().await.unwrap());
    }
    let invalid = client
        .post(server.url("/v1/accounts/signup"))
        .json(&json!({ "email": "nope", "password": PASSWORD, "display_name": "N" }))
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status(), 422);
    check("POST", "/v1/accounts/signup", 422, &invalid.json().await.unwrap());
    server.stop().await;
}
