//! The shared checklist's own plugin: the pages the accelerators do not
//! have. It serves the signed-in person's checklists, one checklist (also
//! to holders of a read-only link) and a sign-in page, with their script
//! and style, from this origin. It stores nothing and has no grants: a
//! checklist is a state document (`checklists` kind: shared with named
//! accounts, read-only links, change streams), its items are edited with
//! the forms plugin's `checklist-item` definition (labels, localized
//! checks), and a video link becomes an embed through the media plugin.

use maud::{DOCTYPE, Markup, html};
use plinth_kit::prelude::*;

fn router() -> Router {
    Router::new()
        .get("/lists", home)
        .get("/lists/sign-in", sign_in)
        .get("/lists/lists.js", script)
        .get("/lists/lists.css", style)
        .get("/lists/{id}", checklist)
}

plinth_kit::plugin!(router);

#[cfg(test)]
mod tests;

fn page(title: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" dir="ltr" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Checklists" }
                link rel="stylesheet" href="/lists/lists.css";
                script src="/lists/lists.js" defer {}
            }
            (body)
        }
    };
    Response::bytes(200, "text/html; charset=utf-8", markup.0.into_bytes()).header("cache-control", "no-store")
}

/// To the sign-in page, which comes back to `next` (a checklist's page).
fn to_sign_in(next: Option<&str>) -> Response {
    let location = match next {
        Some(id) => format!("/lists/sign-in?next=/lists/{id}"),
        None => "/lists/sign-in".to_owned(),
    };
    Response::empty(303).header("location", location)
}

/// `GET /lists`: the signed-in person's checklists and a new one.
fn home(req: &Request) -> Result<Response> {
    let Some(me) = req.principal() else { return Ok(to_sign_in(None)) };
    let csrf = req.csrf_token().unwrap_or_default();
    let body = html! {
        body data-page="home" data-csrf=(csrf) {
            header {
                h1 { "Your checklists" }
                button type="button" id="sign-out" { "Sign out" }
            }
            main {
                ul id="lists" aria-live="polite" {}
                form id="new-list" {
                    label for="new-title" { "New checklist" }
                    input type="text" id="new-title" name="title" required maxlength="120";
                    button type="submit" { "Create" }
                }
                p id="home-status" role="status" {}
                p { "To have a checklist shared with you, give its owner your sharing code: " code id="my-code" { (me.account_id) } }
            }
        }
    };
    Ok(page("Your checklists", body))
}

/// `GET /lists/{id}`: one checklist, for those it is shared with, or
/// read-only with `?link=` (a state link token), signed in or not. The
/// page's script reads the document; the state plugin decides who may.
fn checklist(req: &Request) -> Result<Response> {
    let id: String = req.param("id")?;
    if !(1..=128).contains(&id.len()) || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(Error::not_found(format!("no checklist `{id}`")));
    }
    let me = req.principal();
    let link = req.query().is_some_and(|q| q.split('&').any(|p| p.starts_with("link=")));
    if me.is_none() && !link {
        return Ok(to_sign_in(Some(&id)));
    }
    Ok(checklist_page(&id, me.as_ref().map(|p| p.account_id.as_str()), req.csrf_token().as_deref()))
}

fn checklist_page(id: &str, me: Option<&str>, csrf: Option<&str>) -> Response {
    let body = html! {
        body data-page="checklist" data-id=(id) data-me=[me] data-csrf=[csrf] {
            header {
                p { a href="/lists" { "All checklists" } }
                h1 id="title" { "Checklist" }
                p id="mode" {}
            }
            main {
                p id="list-status" role="status" aria-live="polite" {}
                div id="video" {}
                form id="filter" aria-label="Show" {
                    label for="show" { "Show" }
                    select id="show" name="show" {
                        option value="all" { "All items" }
                        option value="open" { "Open items" }
                        option value="done" { "Done items" }
                    }
                    button type="button" id="share-view" { "Share this view" }
                }
                p id="view-link-box" hidden {
                    label for="view-link" { "Link to this view" }
                    input type="text" id="view-link" readonly;
                }
                ul id="items" {}
                section id="add" hidden aria-labelledby="add-title" {
                    h2 id="add-title" { "Add an item" }
                    form id="add-form" novalidate {}
                }
                section id="owner" hidden aria-labelledby="owner-title" {
                    h2 id="owner-title" { "Sharing" }
                    form id="grant-form" {
                        label for="grant-code" { "Sharing code of the person" }
                        input type="text" id="grant-code" required maxlength="128";
                        label for="grant-access" { "They may" }
                        select id="grant-access" {
                            option value="write" { "edit" }
                            option value="read" { "read" }
                        }
                        button type="submit" { "Share" }
                    }
                    ul id="grants" {}
                    p {
                        button type="button" id="make-link" { "Make a read-only link" }
                        " "
                        button type="button" id="revoke-links" { "Revoke all read-only links" }
                    }
                    p id="read-link-box" hidden {
                        label for="read-link" { "Read-only link" }
                        input type="text" id="read-link" readonly;
                    }
                    form id="video-form" {
                        label for="video-url" { "Video link (YouTube or Vimeo)" }
                        input type="url" id="video-url" maxlength="2048";
                        button type="submit" { "Embed" }
                    }
                    p id="owner-status" role="status" {}
                }
            }
        }
    };
    page("Checklist", body)
}

/// `GET /lists/sign-in`.
fn sign_in(_req: &Request) -> Result<Response> {
    let body = html! {
        body data-page="sign-in" {
            main {
                h1 { "Sign in to your checklists" }
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
    Ok(page("Sign in", body))
}

fn script(_req: &Request) -> Result<Response> {
    Ok(Response::static_file("text/javascript; charset=utf-8", include_bytes!("lists.js")))
}

fn style(_req: &Request) -> Result<Response> {
    Ok(Response::static_file("text/css; charset=utf-8", include_bytes!("lists.css")))
}
