//! `GET /v1/hello` answers `{"message":"hello, world"}` as plugins/hello does;
//! anything else is a JSON 404. The body is built with serde_json on both
//! sides so the two guests do the same work.

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct Hello;

impl Guest for Hello {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let (status, body) = match (request.method(), request.path_with_query().as_deref()) {
            (Method::Get, Some("/v1/hello")) => (200, serde_json::json!({ "message": "hello, world" })),
            _ => (404, serde_json::json!({ "error": { "code": "not_found", "message": "no such hello route" } })),
        };
        let body = serde_json::to_vec(&body).expect("a JSON value serializes");
        let headers = Fields::from_list(&[("content-type".to_owned(), b"application/json".to_vec())])
            .expect("content-type is an allowed header");
        let response = OutgoingResponse::new(headers);
        response.set_status_code(status).expect("200 and 404 are valid statuses");
        let outgoing = response.body().expect("the body is taken once");
        ResponseOutparam::set(response_out, Ok(response));
        let stream = outgoing.write().expect("the stream is taken once");
        stream.blocking_write_and_flush(&body).expect("the host reads the body");
        drop(stream);
        OutgoingBody::finish(outgoing, None).expect("no trailers to refuse");
    }
}

wasip2::http::proxy::export!(Hello);
