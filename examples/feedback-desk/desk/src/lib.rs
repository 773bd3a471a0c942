//! The feedback desk's own plugin: the pages the accelerators do not have.
//! It serves the admins' inbox and a sign-in page, and their script and
//! style, from this origin (the CSP allows `'self'` and nothing inline).
//! It stores nothing and has no grants: the inbox's data comes from the
//! forms plugin (submissions, files, exports) and the state plugin (marks,
//! view tokens) through their own APIs, which check who may read what.

use maud::{DOCTYPE, Markup, html};
use plinth_kit::prelude::*;

fn router() -> Router {
    Router::new()
        .get("/desk", inbox)
        .get("/desk/sign-in", sign_in)
        .get("/desk/desk.js", script)
        .get("/desk/desk.css", style)
}

plinth_kit::plugin!(router);

#[cfg(test)]
mod tests;

/// The form the inbox reads.
const FORM: &str = "feedback";
/// The state kind an item's handled mark is a document of.
const MARKS: &str = "marks";
/// Who reads the inbox.
const ROLE: &str = "admin";

fn page(status: u16, title: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" dir="ltr" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Feedback desk" }
                link rel="stylesheet" href="/desk/desk.css";
                script src="/desk/desk.js" defer {}
            }
            (body)
        }
    };
    Response::bytes(status, "text/html; charset=utf-8", markup.0.into_bytes()).header("cache-control", "no-store")
}

/// `GET /desk`: the inbox for admins; anyone else is sent to sign in.
fn inbox(req: &Request) -> Result<Response> {
    let Some(me) = req.principal() else {
        // Back to this very view after signing in (a shared link).
        let view = req.query().and_then(|query| {
            form_urlencoded::parse(query.as_bytes())
                .find(|(name, _)| name == "view")
                .map(|(_, token)| token.into_owned())
        });
        let location = match view.filter(|token| view_token(token)) {
            Some(token) => format!("/desk/sign-in?view={token}"),
            None => "/desk/sign-in".to_owned(),
        };
        return Ok(Response::empty(303).header("location", location));
    };
    if !me.roles.iter().any(|r| r == ROLE) {
        let body = html! {
            body { main {
                h1 { "Not for this account" }
                p role="alert" { "The inbox is for admins. " a href="/desk/sign-in" { "Sign in as another account" } }
            } }
        };
        return Ok(page(403, "Not for this account", body));
    }
    let csrf = req.csrf_token().unwrap_or_default();
    let body = html! {
        body data-page="inbox" data-form=(FORM) data-marks=(MARKS) data-csrf=(csrf) {
            header {
                h1 { "Feedback inbox" }
                nav aria-label="Desk" {
                    a href={ "/forms/" (FORM) } { "The feedback form" }
                    " "
                    button type="button" id="sign-out" { "Sign out" }
                }
            }
            main {
                form id="filters" role="search" aria-label="Filter submissions" {
                    div {
                        label for="topic" { "Topic" }
                        select id="topic" name="topic" { option value="" { "Any topic" } }
                    }
                    div {
                        label for="status" { "Status" }
                        select id="status" name="status" {
                            option value="open" { "Open" }
                            option value="handled" { "Handled" }
                            option value="" { "All" }
                        }
                    }
                    div {
                        label for="q" { "Containing" }
                        input type="search" id="q" name="q" maxlength="200";
                    }
                    button type="submit" { "Filter" }
                }
                div id="share" hidden {
                    label for="share-link" { "Link to this view" }
                    input type="text" id="share-link" readonly;
                    button type="button" id="copy-link" { "Copy" }
                }
                p id="inbox-status" role="status" aria-live="polite" {}
                table id="inbox" {
                    caption { "Submissions, oldest first" }
                    thead { tr {
                        th scope="col" { "Received" }
                        th scope="col" { "From" }
                        th scope="col" { "Topic" }
                        th scope="col" { "Message" }
                        th scope="col" { "Screenshots" }
                        th scope="col" { "Handled" }
                    } }
                    tbody {}
                }
                p { button type="button" id="more" hidden { "Show more" } }
                section aria-labelledby="export-title" {
                    h2 id="export-title" { "Export" }
                    button type="button" id="export" { "Export all as CSV" }
                    p id="export-status" role="status" aria-live="polite" {}
                }
            }
        }
    };
    Ok(page(200, "Inbox", body))
}

/// What a view token looks like: `v1.<key>.<body>.<tag>`, URL-safe.
fn view_token(token: &str) -> bool {
    (1..=512).contains(&token.len())
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// `GET /desk/sign-in`.
fn sign_in(_req: &Request) -> Result<Response> {
    let body = html! {
        body data-page="sign-in" {
            main {
                h1 { "Sign in to the feedback desk" }
                p id="sign-in-error" role="alert" {}
                form id="sign-in" method="post" {
                    div {
                        label for="email" { "E-mail address" }
                        input type="email" id="email" name="email" autocomplete="username" required;
                    }
                    div {
                        label for="password" { "Password" }
                        input type="password" id="password" name="password" autocomplete="current-password" required;
                    }
                    button type="submit" { "Sign in" }
                }
            }
        }
    };
    Ok(page(200, "Sign in", body))
}

fn script(_req: &Request) -> Result<Response> {
    Ok(Response::static_file("text/javascript; charset=utf-8", include_bytes!("desk.js")))
}

fn style(_req: &Request) -> Result<Response> {
    Ok(Response::static_file("text/css; charset=utf-8", include_bytes!("desk.css")))
}
