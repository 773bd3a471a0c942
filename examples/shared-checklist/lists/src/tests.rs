//! The pages on the kit's in-memory host; `tests/integration/shared_checklist.rs`
//! runs the whole slice in a real browser.

use plinth_kit::testing::{TestHost, TestRequest};

fn host() -> TestHost {
    TestHost::new(super::router())
}

#[test]
fn pages_send_people_to_sign_in_but_a_link_opens_a_checklist_read_only() {
    let host = host();
    let home = host.send(TestRequest::get("/lists"));
    assert_eq!((home.status, home.header_value("location")), (303, Some("/lists/sign-in")));
    let list = host.send(TestRequest::get("/lists/abc123"));
    assert_eq!((list.status, list.header_value("location")), (303, Some("/lists/sign-in?next=/lists/abc123")));
    let linked = host.send(TestRequest::get("/lists/abc123?link=v1.x"));
    assert_eq!(linked.status, 200, "a link's holder needs no account");
    let page = String::from_utf8(linked.body).unwrap();
    assert!(page.contains(r#"data-id="abc123""#) && !page.contains("data-me="), "{page}");
    let mine = host.send(TestRequest::get("/lists/abc123").signed_in("ada", &[]));
    let page = String::from_utf8(mine.body).unwrap();
    assert!(page.contains(r#"data-me="ada""#) && page.contains("data-csrf="), "{page}");
    assert_eq!(host.send(TestRequest::get("/lists/a.b")).status, 404, "not a document id");
}

#[test]
fn home_shows_the_sharing_code_and_no_inline_script() {
    let host = host();
    let home = host.send(TestRequest::get("/lists").signed_in("ada-42", &[]));
    assert_eq!(home.status, 200);
    let page = String::from_utf8(home.body).unwrap();
    assert!(page.contains(r#"<code id="my-code">ada-42</code>"#), "{page}");
    assert!(!page.contains("<script>"));
    let script = host.send(TestRequest::get("/lists/lists.js"));
    assert_eq!(script.header_value("content-type"), Some("text/javascript; charset=utf-8"));
}
