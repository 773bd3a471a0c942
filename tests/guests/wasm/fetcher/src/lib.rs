//! A plinth plugin (not a wasi:http component) that makes outgoing HTTP
//! requests through `wasi:http/outgoing-handler`, which its grant
//! `outgoing-http` links: `GET /fetch?URL` answers `ok STATUS` or
//! `error CODE`.

wit_bindgen::generate!({
    inline: "package probe:fetcher; world fetcher { export plinth:platform/handler@0.1.0; }",
    path: "../../../../wit",
    generate_all,
});

use exports::plinth::platform::handler::Guest;
use plinth::platform::types::{Request, Response};
use wasip2::http::types::{Fields, OutgoingRequest, Scheme};

struct Fetcher;

impl Guest for Fetcher {
    fn routes() -> Vec<String> {
        vec!["GET /fetch".to_owned()]
    }

    fn handle(req: Request) -> Response {
        let url = req.query().unwrap_or_default();
        let (scheme, rest) = match url.split_once("://") {
            Some(("https", rest)) => (Scheme::Https, rest),
            Some((_, rest)) => (Scheme::Http, rest),
            None => (Scheme::Http, url.as_str()),
        };
        let (authority, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
        let request = OutgoingRequest::new(Fields::new());
        let _ = request.set_scheme(Some(&scheme));
        let _ = request.set_authority(Some(authority));
        let _ = request.set_path_with_query(Some(path));
        let answer = match wasip2::http::outgoing_handler::handle(request, None) {
            Err(code) => format!("error {code:?}"),
            Ok(future) => {
                future.subscribe().block();
                match future.get() {
                    Some(Ok(Ok(response))) => format!("ok {}", response.status()),
                    Some(Ok(Err(code))) => format!("error {code:?}"),
                    other => format!("error {other:?}"),
                }
            }
        };
        let response = Response::new(200);
        response.set_body(answer.as_bytes());
        response
    }
}

export!(Fetcher);
