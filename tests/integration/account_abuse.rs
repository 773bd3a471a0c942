//! The accounts plugin against abuse (THREATS.md, findings 7 to 9 and 14):
//! old links after a password change, password guessing through a stolen
//! session, squatting an address, and look-alike addresses.

use serde_json::json;

use crate::accounts::{Browser, PASSWORD, mail, new_user, token_in, with_admin};
use crate::support::assert_error;

#[tokio::test]
async fn older_links_die_when_the_password_changes() {
    let (deployment, server, _admin) = with_admin("").await;
    let mut rea = new_user(&deployment, &server, "rea@example.com").await;
    let mut anon = Browser::new(&server);
    for _ in 0..2 {
        let asked = anon.post("/v1/accounts/password-reset", json!({ "email": "rea@example.com" })).await;
        assert_eq!(asked.status(), 202);
    }
    let first = token_in(&mail(&deployment, "rea@example.com", "reset", 1).await);
    let second = token_in(&mail(&deployment, "rea@example.com", "reset", 2).await);
    let reset = |token: String, password: &str| json!({ "token": token, "password": password });
    let confirmed = anon.post("/v1/accounts/password-reset/confirm", reset(second, "velvet lantern orchard")).await;
    assert_eq!(confirmed.status(), 204);
    let stale = anon.post("/v1/accounts/password-reset/confirm", reset(first, "quiet harbour lamplight")).await;
    assert_error(stale, 400, "invalid_token").await;

    // A link asked for before a password change dies with the change.
    anon.post("/v1/accounts/password-reset", json!({ "email": "rea@example.com" })).await;
    let third = token_in(&mail(&deployment, "rea@example.com", "reset", 3).await);
    assert_eq!(rea.sign_in("rea@example.com", "velvet lantern orchard").await.status(), 200);
    let change = json!({ "current_password": "velvet lantern orchard", "password": "amber falcon meadow" });
    assert_eq!(rea.post("/v1/me/password", change).await.status(), 204);
    let stale = anon.post("/v1/accounts/password-reset/confirm", reset(third, "quiet harbour lamplight")).await;
    assert_error(stale, 400, "invalid_token").await;
    assert_eq!(anon.sign_in("rea@example.com", "amber falcon meadow").await.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn a_stolen_session_cannot_guess_the_password() {
    let settings = "public_base_url = \"http://127.0.0.1:8080\", max_failed_logins_per_hour = \"3\"";
    let (deployment, server, _admin) = with_admin(settings).await;
    let mut thief = new_user(&deployment, &server, "sto@example.com").await;
    for guess in ["guess one two", "guess three four", "guess five six"] {
        let body = json!({ "current_password": guess, "password": "amber falcon meadow" });
        assert_error(thief.post("/v1/me/password", body).await, 403, "wrong_password").await;
    }
    let body = json!({ "current_password": PASSWORD, "password": "amber falcon meadow" });
    assert_error(thief.post("/v1/me/password", body).await, 429, "too_many_failed_logins").await;
    let body = json!({ "current_password": PASSWORD, "email": "thief@example.com" });
    assert_error(thief.post("/v1/me/email", body).await, 429, "too_many_failed_logins").await;
    server.stop().await;
}

#[tokio::test]
async fn an_address_cannot_be_squatted() {
    let (deployment, server, _admin) = with_admin("").await;
    let squat = "squatter's own password";
    let mut squatter = Browser::new(&server);
    let signup = |password: &str| json!({ "email": "vic@example.com", "password": password, "display_name": "V" });
    assert_eq!(squatter.post("/v1/accounts/signup", signup(squat)).await.status(), 202);
    let squatters_link = token_in(&mail(&deployment, "vic@example.com", "verify", 1).await);

    // The owner follows the link they did not ask for: it needs the
    // password of whoever signed up, so it does not activate anything.
    let mut owner = Browser::new(&server);
    let verify = |token: &str, password: &str| json!({ "token": token, "password": password });
    let followed = owner.post("/v1/accounts/verify", verify(&squatters_link, PASSWORD)).await;
    assert_error(followed, 403, "wrong_password").await;
    assert_error(squatter.sign_in("vic@example.com", squat).await, 401, "invalid_credentials").await;

    // The owner signs up: the unverified signup is replaced, its link dies.
    assert_eq!(owner.post("/v1/accounts/signup", signup(PASSWORD)).await.status(), 202);
    let owners_link = token_in(&mail(&deployment, "vic@example.com", "verify", 2).await);
    let replaced = squatter.post("/v1/accounts/verify", verify(&squatters_link, squat)).await;
    assert_error(replaced, 400, "invalid_token").await;
    assert_eq!(owner.post("/v1/accounts/verify", verify(&owners_link, PASSWORD)).await.status(), 204);
    assert_eq!(owner.sign_in("vic@example.com", PASSWORD).await.status(), 200);
    assert_error(squatter.sign_in("vic@example.com", squat).await, 401, "invalid_credentials").await;

    // Or a reset: it proves the address, so it takes over a pending account.
    assert_eq!(
        squatter
            .post("/v1/accounts/signup", json!({ "email": "wen@example.com", "password": squat, "display_name": "W" }))
            .await
            .status(),
        202
    );
    let mut wen = Browser::new(&server);
    assert_eq!(wen.post("/v1/accounts/password-reset", json!({ "email": "wen@example.com" })).await.status(), 202);
    let reset = token_in(&mail(&deployment, "wen@example.com", "reset", 1).await);
    let confirmed =
        wen.post("/v1/accounts/password-reset/confirm", json!({ "token": reset, "password": PASSWORD })).await;
    assert_eq!(confirmed.status(), 204);
    assert_eq!(wen.sign_in("wen@example.com", PASSWORD).await.status(), 200, "active with the owner's password");
    let squatters_link = token_in(&mail(&deployment, "wen@example.com", "verify", 1).await);
    let dead = squatter.post("/v1/accounts/verify", verify(&squatters_link, squat)).await;
    assert_error(dead, 400, "invalid_token").await;
    server.stop().await;
}

#[tokio::test]
async fn look_alike_addresses_are_one_account_and_hidden_characters_are_refused() {
    let (deployment, server, _admin) = with_admin("").await;
    let _ada = new_user(&deployment, &server, "ada@example.com").await;
    let mut anon = Browser::new(&server);
    let signup = |email: &str| json!({ "email": email, "password": PASSWORD, "display_name": "A" });
    for twin in ["\u{ff41}da@example.com", "ADA@EXAMPLE.COM", " ada@example.com"] {
        assert_eq!(anon.post("/v1/accounts/signup", signup(twin)).await.status(), 202, "{twin:?}");
    }
    mail(&deployment, "ada@example.com", "notice", 3).await;
    assert_eq!(anon.sign_in("\u{ff41}da@example.com", PASSWORD).await.status(), 200, "one account, either spelling");
    for hidden in ["ada\u{200b}@example.com", "a\u{202e}da@example.com"] {
        assert_error(anon.post("/v1/accounts/signup", signup(hidden)).await, 422, "invalid_field").await;
    }
    let long = format!("{}@example.com", "a".repeat(2048));
    let answer = anon.post("/v1/sessions", json!({ "email": long, "password": PASSWORD })).await;
    assert_error(answer, 422, "invalid_field").await;
    server.stop().await;
}
