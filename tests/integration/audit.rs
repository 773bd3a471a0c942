//! The audit log over HTTP and the CLI: paging, verification, tampering.

use crate::support::{
    Deployment, ISSUER_POLICY, LOOSE_LIMITS, TEST_SERVER, TestServer, get_as, get_json, issuer_plugin, plinth_cli,
    sign_in,
};
use plinth::storage::{NamespaceId, SledStorage, Storage};

fn deployment() -> Deployment {
    Deployment::with_policy(&format!("{LOOSE_LIMITS}{TEST_SERVER}{}", issuer_plugin()), ISSUER_POLICY)
}

#[tokio::test]
async fn admins_page_and_verify_and_tampering_is_found() {
    let deployment = deployment();
    let server = TestServer::start(&deployment).await;
    let base = server.url("");
    let user = sign_in(&base, "kim", &["user"], None).await;
    let admin = sign_in(&base, "boss", &["admin"], None).await;
    let client = reqwest::Client::new();
    let forbidden = client.get(server.url("/admin/audit")).header("authorization", user.bearer()).send().await.unwrap();
    assert_eq!(forbidden.status(), 403);

    let page: serde_json::Value = get_json(&server, "/admin/audit?after=0&limit=2", &admin.bearer()).await;
    let records = page["records"].as_array().unwrap();
    assert_eq!((records.len(), records[0]["id"].as_u64(), page["next_after"].as_u64()), (2, Some(1), Some(2)));
    let all = get_as(&server, "/admin/audit?limit=1000", &admin.bearer()).await.text().await.unwrap();
    assert!(all.contains("\"action\":\"session.issued\"") && all.contains("\"trace_id\""), "{all}");
    assert!(!all.contains(&user.token) && !all.contains(&admin.csrf), "no secrets in the audit log");
    let bad =
        client.get(server.url("/admin/audit?limit=x")).header("authorization", admin.bearer()).send().await.unwrap();
    assert_eq!(bad.status(), 400);

    let verify: serde_json::Value = get_json(&server, "/admin/audit/verify", &admin.bearer()).await;
    assert_eq!(verify["ok"], true, "{verify}");
    server.stop().await;

    let data = deployment.data_path();
    let config = deployment.config_path();
    let verify_cli = || plinth_cli(&["audit", "verify", "--config", config.to_str().unwrap()]);
    let (ok, stdout, stderr) = verify_cli();
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("ok: "), "{stdout}");

    // Edit record 3 on disk, as someone with file access might.
    {
        let storage = SledStorage::open(&data).unwrap();
        let ns = storage.namespace(NamespaceId::System("audit"), None).unwrap();
        let key = format!("r/{:020}", 3);
        let record = String::from_utf8(ns.get(&key).await.unwrap().unwrap()).unwrap();
        let edited = record.replace("\"outcome\":\"success\"", "\"outcome\":\"failure\"");
        assert_ne!(record, edited);
        ns.set(&key, edited.into_bytes()).await.unwrap();
        storage.flush().await.unwrap();
    }
    let (ok, _, stderr) = verify_cli();
    assert!(!ok);
    assert!(stderr.contains("audit chain broken at record 4"), "{stderr}");

    // The ends still check out, so the server starts (the whole chain is
    // walked in the background and on request).
    let server = TestServer::start(&deployment).await;
    let admin = sign_in(&server.url(""), "boss", &["admin"], None).await;
    let verify: serde_json::Value = get_json(&server, "/admin/audit/verify", &admin.bearer()).await;
    assert_eq!((verify["ok"].as_bool(), verify["broken"]["id"].as_u64()), (Some(false), Some(4)), "{verify}");
    server.stop().await;
}

#[tokio::test]
async fn an_unwritable_audit_log_refuses_to_start() {
    let deployment = Deployment::with_policy(
        &format!("[audit]\nmirror = \"/dev/full\"\n\n{TEST_SERVER}{}", issuer_plugin()),
        ISSUER_POLICY,
    );
    let err = match plinth::App::build(deployment.load().unwrap()).await {
        Ok(_) => panic!("the server started without an audit log"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("audit"), "{err}");
}

/// Someone with the data directory but not the key rewrites a record and
/// every later link, or cuts the newest records: `plinth audit verify`
/// says so, and the server refuses to start unless told to warn.
#[tokio::test]
async fn history_rewritten_without_the_key_is_caught_at_start_up() {
    let deployment = deployment();
    let server = TestServer::start(&deployment).await;
    for who in ["a", "b", "c"] {
        sign_in(&server.url(""), who, &[], None).await;
    }
    server.stop().await;
    let data = deployment.data_path();
    {
        let storage = SledStorage::open(&data).unwrap();
        let ns = storage.namespace(NamespaceId::System("audit"), None).unwrap();
        let tail: serde_json::Value = serde_json::from_slice(&ns.get("tail").await.unwrap().unwrap()).unwrap();
        let last = tail["next_id"].as_u64().unwrap() - 1;
        let newest: serde_json::Value =
            serde_json::from_slice(&ns.get(&format!("r/{last:020}")).await.unwrap().unwrap()).unwrap();
        ns.delete(&format!("r/{last:020}")).await.unwrap();
        let forged = serde_json::json!({ "next_id": last, "last_hash": newest["prev_hash"], "first_id": 1,
            "first_prev": tail["first_prev"], "keyed_from": 1, "mac": tail["mac"] });
        ns.set("tail", forged.to_string().into_bytes()).await.unwrap();
        storage.flush().await.unwrap();
    }
    let config = deployment.config_path();
    let (ok, _, stderr) = plinth_cli(&["audit", "verify", "--config", config.to_str().unwrap()]);
    assert!(!ok && stderr.contains("not sealed"), "{stderr}");
    let refused = match plinth::App::build(deployment.load().unwrap()).await {
        Ok(_) => panic!("started on a cut audit log"),
        Err(e) => format!("{e:#}"),
    };
    assert!(refused.contains("audit chain is broken") && refused.contains("refuse"), "{refused}");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("[audit]\non_broken = \"warn\"\n\n{text}")).unwrap();
    let server = TestServer::start(&deployment).await;
    let admin = sign_in(&server.url(""), "boss", &["admin"], None).await;
    let verify: serde_json::Value = get_json(&server, "/admin/audit/verify", &admin.bearer()).await;
    assert_eq!(verify["ok"], false, "{verify}");
    server.stop().await;
}
