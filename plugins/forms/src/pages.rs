//! Server-rendered pages for a form, which work without JavaScript: `GET
//! /forms/{id}` shows it in the request's locale (`lang`, and `dir="rtl"`
//! for Arabic), `POST /forms/{id}` takes the plain form post through the
//! very pipeline the JSON API uses and either redirects to `GET
//! /forms/{id}/sent` or shows the form again with the values kept and each
//! error next to its field (and listed, linked, at the top). Signed in, the
//! page carries the session's CSRF token in `_csrf`, which the host checks.
//! File fields and a proof of work need the page's script (`GET
//! /forms/page.js`, served from this origin so the CSP needs no inline
//! script): it uploads each file with tus before the form is sent and puts
//! the finished uploads' ids in the field, and answers the challenge.
//! HTML is built with maud, which escapes every value.

use maud::{DOCTYPE, Markup, html};
use plinth_forms::{Definition, Field, FieldError, FieldKind};
use plinth_kit::messages::{self, Argument};
use plinth_kit::{Error, Principal, Request, Response, Result};
use serde_json::Value;

use crate::submit::{self, Submission, Verdict};
use crate::{attachments, localize, render, store};

/// The form's field carrying the render token.
const TOKEN_FIELD: &str = "_token";
/// The field the host reads a signed-in form post's CSRF token from.
const CSRF_FIELD: &str = "_csrf";
/// The field the ALTCHA widget (or the page's script) puts its answer in.
const PROOF_FIELD: &str = "altcha";
/// The page's script.
const SCRIPT: &str = include_str!("page.js");
/// Where the page's script is served.
const SCRIPT_PATH: &str = "/forms/page.js";

/// What one rendering shows.
struct View<'a> {
    definition: &'a Definition,
    locale: &'a str,
    token: &'a str,
    /// The showing the token names, once verified: files kept on the page
    /// must be its own.
    showing: Option<&'a str>,
    /// Who posts, signed in.
    submitter: Option<&'a Principal>,
    csrf: Option<String>,
    values: &'a Value,
    errors: &'a [FieldError],
    notice: Option<String>,
}

fn text(locale: &str, key: &str) -> String {
    messages::text(locale, key, &[])
}

/// `GET /forms/{id}`.
pub fn show(req: &Request) -> Result<Response> {
    html_errors(req, || {
        let id: String = req.param("id")?;
        let form = store::load(&id)?;
        render::may_submit(req, &form.definition)?;
        let (token, _) = render::issue(&id, form.record.current)?;
        let locale = req.locale();
        let view = View {
            definition: &form.definition,
            locale: &locale,
            token: &token,
            showing: None,
            submitter: None,
            csrf: req.csrf_token(),
            values: &Value::Null,
            errors: &[],
            notice: None,
        };
        Ok(page(200, &locale, &form_page(&view)))
    })
}

/// `POST /forms/{id}`: the plain post of the page's form.
pub fn post(req: &Request) -> Result<Response> {
    html_errors(req, || {
        let id: String = req.param("id")?;
        let form = store::load(&id)?;
        let submitter = render::may_submit(req, &form.definition)?;
        submit::taking(&form.definition)?;
        let media_type = req.header("content-type").unwrap_or_default();
        if !media_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        {
            return Err(Error::new(415, "unsupported_media_type", "post the form as the page does"));
        }
        let body = req.body();
        let pairs: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
        let field = |name: &str| pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        let token = field(TOKEN_FIELD).unwrap_or_default();
        let locale = req.locale();
        // The version the token pins decides which fields the post has.
        let shown = render::verify(&token, &id).and_then(|t| Ok((submit::pinned(&id, &form, &t)?, t)));
        let (definition, rendered) = match shown {
            Ok(shown) => shown,
            Err(e) => return Ok(shown_again(req, &form, &locale, &pairs, e)),
        };
        let (data, unread) = definition.from_pairs(&pairs);
        let proof = field(PROOF_FIELD);
        let submission = Submission { token: &token, data: data.clone(), proof: proof.as_deref(), unread };
        // The same showing again, the answers and this showing's files kept.
        let again = |status: u16, definition: &Definition, errors: &[FieldError], notice: Option<String>| {
            let view = View {
                definition,
                locale: &locale,
                token: &token,
                showing: Some(&rendered.showing),
                submitter: submitter.as_ref(),
                csrf: req.csrf_token(),
                values: &data,
                errors,
                notice,
            };
            page(status, &locale, &form_page(&view))
        };
        match submit::take(req, &form, submitter.clone(), submission, None) {
            Ok(Verdict::Accepted { .. }) => Ok(Response::empty(303)
                .header("location", format!("/forms/{id}/sent?locale={locale}"))
                .header("cache-control", "no-store")),
            Ok(Verdict::Invalid(definition, errors)) => Ok(again(422, &definition, &errors, None)),
            // The browser's check did not come with the post (or came too
            // late): the page's script answers a new challenge.
            Err(e) if e.code.contains("proof_of_work") => {
                Ok(again(403, &definition, &[], Some(text(&locale, "form-check-failed"))))
            }
            Err(e) if e.status == 403 || e.status == 409 => Ok(shown_again(req, &form, &locale, &pairs, e)),
            Err(e) => Err(e),
        }
    })
}

/// The current version with a new token and the values that still fit,
/// after a token that was stale or not the form's: the person loses
/// nothing and sends again.
fn shown_again(req: &Request, form: &store::Form, locale: &str, pairs: &[(String, String)], why: Error) -> Response {
    plinth_kit::log::info("a page's form was shown again", &[("form", &form.definition.id), ("why", &why.code)]);
    let (mut values, _) = form.definition.from_pairs(pairs);
    // Files belong to the showing the stale token named; this is a new one.
    if let Value::Object(values) = &mut values {
        values.retain(|name, _| form.definition.field(name).is_none_or(|f| f.kind != FieldKind::File));
    }
    let token = render::issue(&form.definition.id, form.record.current).map(|(t, _)| t).unwrap_or_default();
    let view = View {
        definition: &form.definition,
        locale,
        token: &token,
        showing: None,
        submitter: None,
        csrf: req.csrf_token(),
        values: &values,
        errors: &[],
        notice: Some(text(locale, "form-expired")),
    };
    page(409, locale, &form_page(&view))
}

/// `GET /forms/{id}/sent`.
pub fn sent(req: &Request) -> Result<Response> {
    html_errors(req, || {
        let id: String = req.param("id")?;
        let form = store::load(&id)?;
        let locale = req.locale();
        let title = text(&locale, &form.definition.title);
        let body = html! {
            h1 { (title) }
            p role="status" { (text(&locale, "form-sent")) }
            p { a href={ "/forms/" (id) "?locale=" (locale) } { (text(&locale, "form-send-another")) } }
        };
        Ok(page(200, &locale, &document(&locale, &title, false, body)))
    })
}

/// `GET /forms/page.js`.
pub fn script(_req: &Request) -> Result<Response> {
    Ok(Response::static_file("text/javascript; charset=utf-8", SCRIPT.as_bytes()))
}

/// Runs a page handler; its error becomes a page, not JSON.
fn html_errors(req: &Request, handler: impl FnOnce() -> Result<Response>) -> Result<Response> {
    handler().or_else(|e| {
        let locale = req.locale();
        let body = html! {
            h1 { (e.status) }
            p role="alert" { (e.message) }
        };
        let mut response = page(e.status, &locale, &document(&locale, &e.message, false, body));
        response.headers.extend(e.headers);
        Ok(response)
    })
}

fn page(status: u16, locale: &str, markup: &Markup) -> Response {
    Response::bytes(status, "text/html; charset=utf-8", markup.0.clone().into_bytes())
        .header("cache-control", "no-store")
        .header("content-language", locale)
        .header("vary", "accept-language")
}

fn document(locale: &str, title: &str, script: bool, body: Markup) -> Markup {
    let dir = if messages::is_rtl(locale) { "rtl" } else { "ltr" };
    html! {
        (DOCTYPE)
        html lang=(locale) dir=(dir) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                @if script {
                    script src=(SCRIPT_PATH) defer {}
                }
            }
            body { main { (body) } }
        }
    }
}

fn form_page(view: &View<'_>) -> Markup {
    let definition = view.definition;
    let locale = view.locale;
    let title = text(locale, &definition.title);
    let messages: Vec<(String, String)> =
        view.errors.iter().map(|e| (e.path.clone(), localize::message(definition, e, locale))).collect();
    let count = view.errors.len();
    let summary = messages::text(locale, "form-errors", &[("count", Argument::Number(count as f64))]);
    let challenge =
        definition.settings.proof_of_work.as_ref().map(|_| format!("/v1/forms/{}/challenge", definition.id));
    let body = html! {
        h1 { (title) }
        @if let Some(description) = &definition.description {
            p { (text(locale, description)) }
        }
        @if let Some(notice) = &view.notice {
            p role="status" { (notice) }
        }
        @if count > 0 {
            div role="alert" id="form-errors" tabindex="-1" autofocus {
                h2 { (summary) }
                ul {
                    @for (path, message) in &messages {
                        li { a href={ "#" (anchor(path)) } { (message) } }
                    }
                }
            }
        }
        form method="post" action={ "/forms/" (definition.id) "?locale=" (locale) } novalidate data-form-page
            data-uploads={ "/v1/forms/" (definition.id) "/uploads" } data-challenge=[challenge.as_deref()]
            data-checking=(text(locale, "form-checking")) {
            input type="hidden" name=(TOKEN_FIELD) value=(view.token);
            @if challenge.is_some() {
                input type="hidden" name=(PROOF_FIELD);
            }
            @if let Some(csrf) = &view.csrf {
                input type="hidden" name=(CSRF_FIELD) value=(csrf);
            }
            @if let Some(honeypot) = &definition.settings.honeypot {
                div hidden {
                    label for={ "f-" (honeypot) } { (text(locale, "form-honeypot")) }
                    input type="text" id={ "f-" (honeypot) } name=(honeypot) tabindex="-1" autocomplete="off";
                }
            }
            @for field in ordered(definition) {
                (field_markup(view, field, &messages))
            }
            p aria-live="polite" data-form-status {}
            button type="submit" { (text(locale, "form-submit")) }
        }
    };
    document(locale, &title, true, body)
}

/// The id a field's input has; an error at `/name/…` links to it.
fn anchor(path: &str) -> String {
    let name = path.trim_start_matches('/').split('/').next().unwrap_or_default();
    if name.is_empty() { "form-errors".to_owned() } else { format!("f-{name}") }
}

/// Fields in `ui.order`, then the rest.
fn ordered(definition: &Definition) -> Vec<&Field> {
    let mut fields: Vec<&Field> = definition.ui.order.iter().filter_map(|n| definition.field(n)).collect();
    for field in &definition.fields {
        if !fields.iter().any(|f| f.name == field.name) {
            fields.push(field);
        }
    }
    fields
}

fn field_markup(view: &View<'_>, field: &Field, messages: &[(String, String)]) -> Markup {
    let locale = view.locale;
    let id = format!("f-{}", field.name);
    let error = messages.iter().find(|(path, _)| anchor(path) == id).map(|(_, m)| m.clone());
    let help_id = field.help.as_ref().map(|_| format!("{id}-help"));
    let error_id = error.as_ref().map(|_| format!("{id}-error"));
    let described: Vec<&str> = [help_id.as_deref(), error_id.as_deref()].into_iter().flatten().collect();
    let described = (!described.is_empty()).then(|| described.join(" "));
    let value = view.values.get(&field.name);
    let text_value = value.and_then(|v| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    });
    let widget = view.definition.ui.widgets.get(&field.name).map(String::as_str);
    let label = text(locale, &field.label);
    let invalid = error.as_ref().map(|_| "true");
    let help = html! {
        @if let (Some(help), Some(help_id)) = (&field.help, &help_id) {
            p id=(help_id) { (text(locale, help)) }
        }
    };
    let error_line = html! {
        @if let (Some(error), Some(error_id)) = (&error, &error_id) {
            p id=(error_id) { strong { (error) } }
        }
    };
    let chosen = |option: &str| match value {
        Some(Value::String(s)) => s == option,
        Some(Value::Array(items)) => items.iter().any(|i| i.as_str() == Some(option)),
        _ => false,
    };
    match (field.kind, widget) {
        (FieldKind::Choice, Some("radio")) | (FieldKind::MultiChoice, _) => {
            let kind = if field.kind == FieldKind::Choice { "radio" } else { "checkbox" };
            html! {
                fieldset id=(id) aria-describedby=[described.as_deref()] aria-invalid=[invalid] {
                    legend { (label) @if field.required { " " (required_mark(locale)) } }
                    (help)
                    @for (i, option) in field.options.iter().enumerate() {
                        div {
                            input type=(kind) id={ (id) "-" (i) } name=(field.name) value=(option.value)
                                checked[chosen(&option.value)];
                            label for={ (id) "-" (i) } { (text(locale, &option.label)) }
                        }
                    }
                    (error_line)
                }
            }
        }
        (FieldKind::Choice, _) => html! {
            div {
                label for=(id) { (label) @if field.required { " " (required_mark(locale)) } }
                (help)
                select id=(id) name=(field.name) required[field.required] aria-describedby=[described.as_deref()]
                    aria-invalid=[invalid] {
                    option value="" { (text(locale, "form-choose")) }
                    @for option in &field.options {
                        option value=(option.value) selected[chosen(&option.value)] { (text(locale, &option.label)) }
                    }
                }
                (error_line)
            }
        },
        (FieldKind::File, _) => {
            let max_items = field.file_max_items();
            let placeholder = |name: &str| Argument::Text(format!("{{{name}}}"));
            // Files of this showing and field (the uploader's own, signed
            // in), named by their file names; nothing of anyone else's.
            let kept: Vec<(&str, String)> = value
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter_map(|upload| {
                    let name = attachments::kept_name(
                        &view.definition.id,
                        view.showing?,
                        &field.name,
                        view.submitter,
                        upload,
                    )?;
                    Some((upload, name.unwrap_or_else(|| text(locale, "form-file-kept"))))
                })
                .take(max_items as usize)
                .collect();
            html! {
                div data-file-field=(field.name) data-max-items=(max_items)
                    data-msg-uploading=(messages::text(locale, "form-file-uploading",
                        &[("name", placeholder("name")), ("percent", placeholder("percent"))]))
                    data-msg-attached=(messages::text(locale, "form-file-attached", &[("name", placeholder("name"))]))
                    data-msg-failed=(messages::text(locale, "form-file-failed",
                        &[("name", placeholder("name")), ("reason", placeholder("reason"))]))
                    data-msg-remove=(text(locale, "form-file-remove"))
                    data-msg-too-many=(messages::text(locale, "form-file-too-many",
                        &[("limit", Argument::Number(f64::from(max_items)))])) {
                    label for=(id) { (label) @if field.required { " " (required_mark(locale)) } }
                    (help)
                    input type="file" id=(id) multiple[max_items > 1] accept=(field.accept.join(",")) disabled
                        aria-describedby=[described.as_deref()] aria-invalid=[invalid];
                    p data-needs-script { (text(locale, "form-file-needs-script")) }
                    ul {
                        @for (upload, name) in kept {
                            li data-name=(name) {
                                span { (name) }
                                input type="hidden" name=(field.name) value=(upload);
                            }
                        }
                    }
                    (error_line)
                }
            }
        }
        (FieldKind::Boolean, _) => html! {
            div {
                input type="checkbox" id=(id) name=(field.name) value="on" required[field.required]
                    checked[value == Some(&Value::Bool(true))] aria-describedby=[described.as_deref()] aria-invalid=[invalid];
                label for=(id) { (label) @if field.required { " " (required_mark(locale)) } }
                (help)
                (error_line)
            }
        },
        (FieldKind::LongText, _) | (_, Some("textarea")) => html! {
            div {
                label for=(id) { (label) @if field.required { " " (required_mark(locale)) } }
                (help)
                textarea id=(id) name=(field.name) rows="6" required[field.required]
                    aria-describedby=[described.as_deref()] aria-invalid=[invalid] { (text_value.unwrap_or_default()) }
                (error_line)
            }
        },
        (kind, _) => {
            let input_type = match kind {
                FieldKind::Email => "email",
                FieldKind::Number => "number",
                FieldKind::Date => "date",
                _ => "text",
            };
            let step = (kind == FieldKind::Number).then_some(if field.integer { "1" } else { "any" });
            let autocomplete = (kind == FieldKind::Email).then_some("email");
            html! {
                div {
                    label for=(id) { (label) @if field.required { " " (required_mark(locale)) } }
                    (help)
                    input type=(input_type) id=(id) name=(field.name) value=[text_value.as_deref()]
                        required[field.required] step=[step] autocomplete=[autocomplete]
                        aria-describedby=[described.as_deref()] aria-invalid=[invalid];
                    (error_line)
                }
            }
        }
    }
}

fn required_mark(locale: &str) -> Markup {
    html! { "(" (text(locale, "form-required")) ")" }
}
