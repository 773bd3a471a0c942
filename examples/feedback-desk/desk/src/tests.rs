//! The pages on the kit's in-memory host; `tests/integration/feedback_desk.rs`
//! runs the whole desk in a real browser.

use plinth_kit::testing::{TestHost, TestRequest};

fn host() -> TestHost {
    TestHost::new(super::router())
}

#[test]
fn the_inbox_is_for_admins_and_carries_their_csrf_token() {
    let host = host();
    let anonymous = host.send(TestRequest::get("/desk"));
    assert_eq!((anonymous.status, anonymous.header_value("location")), (303, Some("/desk/sign-in")));
    let shared = host.send(TestRequest::get("/desk?view=v1.k.body.tag"));
    assert_eq!(shared.header_value("location"), Some("/desk/sign-in?view=v1.k.body.tag"), "the view survives");
    let odd = host.send(TestRequest::get("/desk?view=//evil.example"));
    assert_eq!(odd.header_value("location"), Some("/desk/sign-in"), "only a token passes");
    let user = host.send(TestRequest::get("/desk").signed_in("ada", &[]));
    assert_eq!(user.status, 403);
    let admin = host.send(TestRequest::get("/desk").signed_in("boss", &["admin"]));
    assert_eq!(admin.status, 200);
    let page = String::from_utf8(admin.body).unwrap();
    assert!(page.contains(r#"data-csrf=""#) && page.contains(r#"<script src="/desk/desk.js" defer>"#), "{page}");
    assert!(!page.contains("<script>"), "no inline script: the CSP allows none");
}

#[test]
fn the_script_and_style_are_served_with_their_types() {
    let host = host();
    for (path, media_type) in
        [("/desk/desk.js", "text/javascript; charset=utf-8"), ("/desk/desk.css", "text/css; charset=utf-8")]
    {
        let response = host.send(TestRequest::get(path));
        assert_eq!((response.status, response.header_value("content-type")), (200, Some(media_type)), "{path}");
    }
    let sign_in = host.send(TestRequest::get("/desk/sign-in"));
    let page = String::from_utf8(sign_in.body).unwrap();
    assert!(page.contains(r#"autocomplete="current-password""#), "{page}");
    assert!(page.contains(r#"<form id="sign-in" method="post">"#), "no password in a URL without the script");
}
