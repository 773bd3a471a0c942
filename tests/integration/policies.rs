//! Route policies, generated from the example's policy file: every route ×
//! {anonymous, user, admin} gets the status its rule says.

use plinth::policy::Access;

use crate::support::{Deployment, TestServer, get_json, plinth_cli, sign_in};

fn example_deployment() -> Deployment {
    crate::support::example_deployment("")
}

#[tokio::test]
async fn every_example_route_answers_as_its_rule_says() {
    let deployment = example_deployment();
    let config = deployment.load().unwrap();
    let server = TestServer::start_with(config).await;
    let served = server.app.deployment.load_full();
    let rows: Vec<_> = served
        .config
        .policy
        .matrix(&served.routes, |route| served.config.plugins[route.plugin].name.clone())
        .into_iter()
        .filter(|row| row.plugin != "issuer")
        // Signing out would end the session the rest of the matrix uses.
        .filter(|row| !(row.method == "DELETE" && row.path.starts_with("/v1/sessions/")))
        .collect();
    assert!(rows.len() >= 4, "the example has routes: {rows:?}");
    let base = server.url("");
    let user = sign_in(&base, "matrix-user", &["user"], None).await;
    let admin = sign_in(&base, "matrix-admin", &["admin"], None).await;
    let client = reqwest::Client::new();
    for row in &rows {
        assert!(!row.access.is_empty(), "coverage is checked at load: {row:?}");
        for (who, token) in [("anonymous", None), ("user", Some(&user)), ("admin", Some(&admin))] {
            let method = reqwest::Method::from_bytes(row.method.as_bytes()).unwrap();
            let mut request = client.request(method, server.url(&row.path));
            if let Some(signed_in) = token {
                request = request.header("authorization", signed_in.bearer());
            }
            let status = request.send().await.unwrap().status().as_u16();
            // The first of the row's accesses that refuses answers.
            let expected_denial = row.access.iter().find_map(|access| match (access, who) {
                (Access::Public, _) => None,
                (_, "anonymous") => Some(401),
                (Access::Authenticated, _) => None,
                (Access::Roles(roles), who) => (!roles.contains(who)).then_some(403),
            });
            match expected_denial {
                Some(code) => assert_eq!(status, code, "{} {} as {who}", row.method, row.path),
                None => assert!(
                    status != 401 && status != 403,
                    "{} {} as {who} was refused with {status}",
                    row.method,
                    row.path
                ),
            }
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn denials_are_audited() {
    let deployment = example_deployment();
    let server = TestServer::start(&deployment).await;
    let base = server.url("");
    let client = reqwest::Client::new();
    assert_eq!(client.get(server.url("/v1/hello/stats")).send().await.unwrap().status(), 401);
    let user = sign_in(&base, "nosy", &["user"], None).await;
    let forbidden =
        client.get(server.url("/v1/hello/stats")).header("authorization", user.bearer()).send().await.unwrap();
    assert_eq!(forbidden.status(), 403);
    let admin = sign_in(&base, "root", &["admin"], None).await;
    let audit: serde_json::Value = get_json(&server, "/admin/audit?limit=1000", &admin.bearer()).await;
    let denials: Vec<_> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "authz.denied" && r["target"] == "/v1/hello/stats")
        .map(|r| r["actor"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(denials, ["anonymous", "principal:nosy"]);
    server.stop().await;
}

#[test]
fn policy_check_prints_the_matrix_and_fails_on_a_gap() {
    let deployment = example_deployment();
    let config = deployment.config_path();
    let (ok, stdout, stderr) = plinth_cli(&["policy", "check", "--config", config.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("GET      /v1/hello/stats"), "{stdout}");
    assert!(stdout.contains("roles: admin"), "{stdout}");
    assert!(!stdout.contains("warning"), "{stdout}");

    // A rule that matches no route is reported, not refused.
    let policy = deployment.dir.path().join("policies/routes.toml");
    let original = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(&policy, format!("{original}\n[[route]]\nroute = \"GET /v1/nowhere\"\nallow = \"public\"\n"))
        .unwrap();
    let (ok, stdout, stderr) = plinth_cli(&["policy", "check", "--config", config.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("warning: rule `GET /v1/nowhere` in"), "{stdout}");
    assert!(stdout.contains("matches no route"), "{stdout}");
    std::fs::write(&policy, original).unwrap();

    let text =
        std::fs::read_to_string(&policy).unwrap().replace("route = \"GET /v1/hello/me\"", "route = \"GET /v1/other\"");
    std::fs::write(&policy, text).unwrap();
    let (ok, _, stderr) = plinth_cli(&["policy", "check", "--config", config.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("no rule covers `GET` on route `GET /v1/hello/me` of plugin `hello`"), "{stderr}");
}

/// A flood of refusals from one client is one audit record a minute, with
/// the rest counted; the audit log does not grow with the flood.
#[tokio::test]
async fn a_flood_of_denials_is_recorded_once_with_a_count() {
    let deployment = example_deployment();
    let server = TestServer::start(&deployment).await;
    let client = reqwest::Client::new();
    for _ in 0..200 {
        assert_eq!(client.get(server.url("/v1/hello/stats")).send().await.unwrap().status(), 401);
    }
    let admin = sign_in(&server.url(""), "root", &["admin"], None).await;
    let audit: serde_json::Value = get_json(&server, "/admin/audit?limit=1000", &admin.bearer()).await;
    let denials = audit["records"].as_array().unwrap().iter().filter(|r| r["action"] == "authz.denied").count();
    assert_eq!(denials, 1, "{audit}");
    server.stop().await;
}
