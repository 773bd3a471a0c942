//! The OpenAPI 3.1 document of the HTTP API (`docs/openapi.json`), served
//! at `GET /openapi.json`, and the check that it documents every route.

use serde_json::Value;

/// The document, as built into the binary.
pub const DOCUMENT: &str = include_str!("../../docs/openapi.json");

/// The routes the document does not describe, as `METHOD /path`. `routes`
/// are (methods, path pattern) pairs; a route for every method (`None`)
/// must document at least one. `HEAD` and `OPTIONS` are the edge's own.
pub fn undocumented<'a>(
    document: &Value,
    routes: impl IntoIterator<Item = (Option<Vec<&'a str>>, String)>,
) -> Vec<String> {
    let mut missing = Vec::new();
    for (methods, path) in routes {
        let operations = document["paths"].get(&path).and_then(Value::as_object);
        let documented = |method: &str| operations.is_some_and(|ops| ops.contains_key(&method.to_ascii_lowercase()));
        match methods {
            Some(methods) => missing.extend(
                methods
                    .into_iter()
                    .filter(|m| !matches!(*m, "HEAD" | "OPTIONS") && !documented(m))
                    .map(|m| format!("{m} {path}")),
            ),
            None if operations.is_none_or(serde_json::Map::is_empty) => missing.push(format!("* {path}")),
            None => {}
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_parses_and_an_undocumented_route_is_reported() {
        let mut document: Value = serde_json::from_str(DOCUMENT).expect("docs/openapi.json is JSON");
        assert_eq!(document["openapi"], "3.1.0");
        let routes =
            || vec![(Some(vec!["GET", "HEAD"]), "/v1/hello".to_owned()), (Some(vec!["POST"]), "/v1/sessions".into())];
        assert_eq!(undocumented(&document, routes()), Vec::<String>::new());
        document["paths"].as_object_mut().unwrap().remove("/v1/sessions");
        assert_eq!(undocumented(&document, routes()), ["POST /v1/sessions"]);
        document["paths"]["/v1/hello"].as_object_mut().unwrap().remove("get");
        assert_eq!(undocumented(&document, routes()), ["GET /v1/hello", "POST /v1/sessions"]);
    }
}
