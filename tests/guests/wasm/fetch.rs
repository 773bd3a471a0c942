// One outgoing request through `wasi:http/outgoing-handler`, answered as
// `ok STATUS` or `error CODE` (`include!`d by the `httpprobe` and `fetcher`
// guests, which reach it through different worlds).

fn fetch(url: &str) -> String {
    use wasip2::http::types::{Fields, OutgoingRequest, Scheme};
    let (scheme, rest) = match url.split_once("://") {
        Some(("https", rest)) => (Scheme::Https, rest),
        Some((_, rest)) => (Scheme::Http, rest),
        None => (Scheme::Http, url),
    };
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    let request = OutgoingRequest::new(Fields::new());
    let _ = request.set_scheme(Some(&scheme));
    let _ = request.set_authority(Some(authority));
    let _ = request.set_path_with_query(Some(path));
    match wasip2::http::outgoing_handler::handle(request, None) {
        Err(code) => format!("error {code:?}"),
        Ok(future) => {
            future.subscribe().block();
            match future.get() {
                Some(Ok(Ok(response))) => format!("ok {}", response.status()),
                Some(Ok(Err(code))) => format!("error {code:?}"),
                other => format!("error {other:?}"),
            }
        }
    }
}
