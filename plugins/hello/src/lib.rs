//! `GET /v1/hello` greets; `POST /v1/hello/count` bumps a counter in kv and
//! returns it. The counter is stored as a JSON number under `count`.

use plinth_kit::prelude::*;
use serde_json::json;

fn router() -> Router {
    Router::new()
        .get("/v1/hello", greet)
        .post("/v1/hello/count", count)
        // Signed-in only (see policies/routes.toml): who the host says you are.
        .get("/v1/hello/me", me)
        // Admins only: the counter without changing it.
        .get("/v1/hello/stats", stats)
}

plinth_kit::plugin!(router);

fn greet(req: &Request) -> Result<Response> {
    let name = req.principal().map_or_else(|| "world".to_owned(), |p| p.account_id);
    Ok(Response::json(200, &json!({ "message": format!("hello, {name}") })))
}

/// Compare-and-swap, so that concurrent increments never lose a count.
fn count(_req: &Request) -> Result<Response> {
    let counted = kv::update("count", None, |count: Option<u64>| Ok(Some(count.unwrap_or(0) + 1)))?;
    Ok(Response::json(200, &json!({ "count": counted.map_or(0, |c| c.value) })))
}

fn me(req: &Request) -> Result<Response> {
    let principal = req.signed_in()?;
    Ok(Response::json(200, &json!({ "account_id": principal.account_id, "roles": principal.roles })))
}

fn stats(req: &Request) -> Result<Response> {
    req.require_role("admin")?;
    let count: Option<u64> = kv::get_json("count")?;
    Ok(Response::json(200, &json!({ "count": count.unwrap_or(0) })))
}

#[cfg(test)]
mod tests {
    use plinth_kit::testing::{TestHost, TestRequest};
    use serde_json::Value;

    use super::*;

    #[test]
    fn counts_and_reports_the_count() {
        let host = TestHost::new(router());
        for expected in 1..=3 {
            let response = host.send(TestRequest::post("/v1/hello/count"));
            assert_eq!(response.body_json::<Value>()["count"], expected);
        }
        let stats = host.send(TestRequest::get("/v1/hello/stats").signed_in("root", &["admin"]));
        assert_eq!(stats.body_json::<Value>()["count"], 3);
        let refused = host.send(TestRequest::get("/v1/hello/stats").signed_in("ada", &["user"]));
        assert_eq!((refused.status, refused.body_json::<Value>()["error"]["code"].clone()), (403, "forbidden".into()));
    }

    #[test]
    fn greets_the_principal() {
        let host = TestHost::new(router());
        let anonymous = host.send(TestRequest::get("/v1/hello"));
        assert_eq!(anonymous.body_json::<Value>()["message"], "hello, world");
        let ada = host.send(TestRequest::get("/v1/hello").signed_in("ada", &[]));
        assert_eq!(ada.body_json::<Value>()["message"], "hello, ada");
        let head = host.send(TestRequest::new("HEAD", "/v1/hello"));
        assert_eq!((head.status, head.body.len()), (200, 0));
    }
}
