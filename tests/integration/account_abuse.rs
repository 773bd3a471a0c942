//! The accounts plugin against abuse (THREATS.md, findings 7 to 9, 14 and
//! 21): old links after a password change, password guessing through a
//! stolen session or by many guesses at once, squatting an address, and
//! look-alike addresses.

use serde_json::{Value, json};

use crate::accounts::{Browser, PASSWORD, api_sign_in, mail, new_user, token_in, with_admin};
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

/// Guesses sent at once are each counted before any password is checked:
/// however many arrive together, at most the hourly limit of them are
/// checked, at sign-in and through a stolen session.
#[tokio::test]
async fn guesses_sent_at_once_get_no_more_checks_than_the_hourly_limit() {
    let settings = "public_base_url = \"http://127.0.0.1:8080\", max_failed_logins_per_hour = \"3\"";
    let (deployment, server, _admin) = with_admin(settings).await;
    new_user(&deployment, &server, "ivy@example.com").await;
    new_user(&deployment, &server, "oak@example.com").await;
    // What each of `answers` said: its status and error code.
    async fn said(answers: tokio::task::JoinSet<reqwest::Response>) -> Vec<(u16, String)> {
        let mut said = Vec::new();
        for answer in answers.join_all().await {
            let status = answer.status().as_u16();
            let body: Value = answer.json().await.unwrap();
            said.push((status, body["error"]["code"].as_str().unwrap_or_default().to_owned()));
        }
        said
    }
    // At most three of ten guesses are checked (`wrong`); the others are
    // refused before their password is, and then the right one is too.
    let assert_at_most_three_checked = |said: &[(u16, String)], wrong: (u16, &str)| {
        let checked = said.iter().filter(|(status, code)| (*status, code.as_str()) == wrong).count();
        assert!((1..=3).contains(&checked), "{checked} guesses were checked: {said:?}");
        assert_eq!(said.iter().filter(|(status, _)| *status == 429).count(), 10 - checked, "{said:?}");
    };

    let mut sign_ins = tokio::task::JoinSet::new();
    for guess in 0..10 {
        let url = server.url("/v1/sessions/token");
        let body = json!({ "email": "ivy@example.com", "password": format!("wrong guess {guess}") });
        sign_ins.spawn(async move { reqwest::Client::new().post(url).json(&body).send().await.unwrap() });
    }
    assert_at_most_three_checked(&said(sign_ins).await, (401, "invalid_credentials"));
    let locked = api_sign_in(&server, "ivy@example.com", PASSWORD).await;
    assert_error(locked, 429, "too_many_failed_logins").await;

    // A thief holding oak's session, guessing oak's password at once.
    let signed_in: Value = api_sign_in(&server, "oak@example.com", PASSWORD).await.json().await.unwrap();
    let bearer = format!("Bearer {}", signed_in["token"].as_str().unwrap());
    let mut changes = tokio::task::JoinSet::new();
    for guess in 0..10 {
        let (url, bearer) = (server.url("/v1/me/password"), bearer.clone());
        let body = json!({ "current_password": format!("wrong guess {guess}"), "password": "amber falcon meadow" });
        changes.spawn(async move {
            reqwest::Client::new().post(url).header("authorization", bearer).json(&body).send().await.unwrap()
        });
    }
    assert_at_most_three_checked(&said(changes).await, (403, "wrong_password"));
    let locked = api_sign_in(&server, "oak@example.com", PASSWORD).await;
    assert_error(locked, 429, "too_many_failed_logins").await;
    server.stop().await;
}

/// Sign-ins with the old password racing a password reset: whichever
/// read the account before the reset wrote it, none of their sessions
/// outlives the reset (each is checked again once issued).
#[tokio::test]
async fn no_session_signed_in_with_the_old_password_outlives_a_reset() {
    let (deployment, server, _admin) = with_admin("").await;
    new_user(&deployment, &server, "yew@example.com").await;
    let mut anon = Browser::new(&server);
    let asked = anon.post("/v1/accounts/password-reset", json!({ "email": "yew@example.com" })).await;
    assert_eq!(asked.status(), 202);
    let token = token_in(&mail(&deployment, "yew@example.com", "reset", 1).await);

    let mut sign_ins = tokio::task::JoinSet::new();
    for wait in 0..16 {
        let url = server.url("/v1/sessions/token");
        sign_ins.spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(wait * 5)).await;
            let body = json!({ "email": "yew@example.com", "password": PASSWORD });
            reqwest::Client::new().post(url).json(&body).send().await.unwrap()
        });
    }
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let confirm = json!({ "token": token, "password": "velvet lantern orchard" });
    assert_eq!(anon.post("/v1/accounts/password-reset/confirm", confirm).await.status(), 204);
    for answer in sign_ins.join_all().await {
        let status = answer.status().as_u16();
        let body: Value = answer.json().await.unwrap();
        assert!([200, 401].contains(&status), "{status} {body}");
        if let Some(token) = body["token"].as_str() {
            let me = crate::support::get_as(&server, "/v1/me", &format!("Bearer {token}")).await;
            assert_eq!(me.status(), 401, "a session signed in with the old password outlived the reset");
        }
    }
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

    // The owner signs up: the unverified signup's password is replaced, so
    // the squatter's password opens nothing, with either link.
    assert_eq!(owner.post("/v1/accounts/signup", signup(PASSWORD)).await.status(), 202);
    let owners_link = token_in(&mail(&deployment, "vic@example.com", "verify", 2).await);
    let replaced = squatter.post("/v1/accounts/verify", verify(&squatters_link, squat)).await;
    assert_error(replaced, 403, "wrong_password").await;
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

/// A squatter re-signing up cannot void the owner's reset link, nor flood
/// the owner's inbox, nor keep an invitation from being accepted.
#[tokio::test]
async fn squatting_blocks_neither_a_reset_nor_an_invitation() {
    let settings = "public_base_url = \"http://127.0.0.1:8080\", max_mails_per_address_per_hour = \"4\"";
    let (deployment, server, mut admin) = with_admin(settings).await;
    let mut squatter = Browser::new(&server);
    let signup = |email: &str, password: &str| json!({ "email": email, "password": password, "display_name": "S" });
    let squat = "squatter's own password";
    assert_eq!(squatter.post("/v1/accounts/signup", signup("erin@example.com", squat)).await.status(), 202);
    let mut erin = Browser::new(&server);
    assert_eq!(erin.post("/v1/accounts/password-reset", json!({ "email": "erin@example.com" })).await.status(), 202);
    let reset = token_in(&mail(&deployment, "erin@example.com", "reset", 1).await);
    for _ in 0..5 {
        assert_eq!(squatter.post("/v1/accounts/signup", signup("erin@example.com", squat)).await.status(), 202);
    }
    let confirmed =
        erin.post("/v1/accounts/password-reset/confirm", json!({ "token": reset, "password": PASSWORD })).await;
    assert_eq!(confirmed.status(), 204, "the reset link outlives the squatter's signups");
    assert_eq!(erin.sign_in("erin@example.com", PASSWORD).await.status(), 200);
    let mails = crate::accounts::mailbox(&deployment).iter().filter(|m| m["to"] == "erin@example.com").count();
    assert!(mails <= 5, "at most 4 form mails an hour, then the reset notice: {mails}");

    // An invitation to an address a squatter signed up with goes through,
    // and accepting it takes the unverified signup over.
    assert_eq!(squatter.post("/v1/accounts/signup", signup("carol@example.com", squat)).await.status(), 202);
    let invite = json!({ "email": "carol@example.com", "roles": ["admin"] });
    assert_eq!(admin.post("/v1/accounts/invite", invite).await.status(), 201);
    let token = token_in(&mail(&deployment, "carol@example.com", "invite", 1).await);
    let mut carol = Browser::new(&server);
    let accept = json!({ "token": token, "password": PASSWORD, "display_name": "Carol" });
    assert_eq!(carol.post("/v1/accounts/accept-invite", accept).await.status(), 201);
    assert_eq!(carol.sign_in("carol@example.com", PASSWORD).await.status(), 200);
    let me: serde_json::Value = carol.get("/v1/me").await.json().await.unwrap();
    assert_eq!((me["state"].as_str(), me["roles"][0].as_str()), (Some("active"), Some("admin")));
    assert_error(squatter.sign_in("carol@example.com", squat).await, 401, "invalid_credentials").await;
    server.stop().await;
}

/// Two confirmations of two e-mail changes at once: the account ends with
/// one address, and the index holds no other (finding 9 of the second
/// review).
#[tokio::test]
async fn racing_email_changes_leave_one_address() {
    let (deployment, server, _admin) = with_admin("").await;
    let mut uma = new_user(&deployment, &server, "uma@example.com").await;
    for new in ["uma-a@example.com", "uma-b@example.com"] {
        let change = json!({ "current_password": PASSWORD, "email": new });
        assert_eq!(uma.post("/v1/me/email", change).await.status(), 202);
    }
    let a = token_in(&mail(&deployment, "uma-a@example.com", "email_change", 1).await);
    let b = token_in(&mail(&deployment, "uma-b@example.com", "email_change", 1).await);
    let (mut x, mut y) = (Browser::new(&server), Browser::new(&server));
    let (ra, rb) = tokio::join!(
        x.post("/v1/accounts/confirm-email", json!({ "token": a })),
        y.post("/v1/accounts/confirm-email", json!({ "token": b }))
    );
    let statuses = [ra.status().as_u16(), rb.status().as_u16()];
    assert!(statuses.contains(&204), "{statuses:?}");
    let me: serde_json::Value = uma.get("/v1/me").await.json().await.unwrap();
    let now = me["email"].as_str().unwrap().to_owned();
    let mut signed_in = Vec::new();
    for address in ["uma@example.com", "uma-a@example.com", "uma-b@example.com"] {
        if Browser::new(&server).sign_in(address, PASSWORD).await.status() == 200 {
            signed_in.push(address);
        }
    }
    assert_eq!(signed_in, [now.as_str()], "only the account's address signs in");
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
