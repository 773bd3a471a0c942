use serde_json::{Value, json};

use crate::{Definition, FieldError};

fn contact() -> Value {
    json!({
        "id": "contact",
        "title": "contact-title",
        "fields": [
            { "name": "name", "type": "text", "label": "contact-name", "required": true, "max_length": 20 },
            { "name": "email", "type": "email", "label": "contact-email", "required": true,
              "errors": { "format": "contact-email-invalid" } },
            { "name": "age", "type": "number", "label": "contact-age", "integer": true, "minimum": 18 },
            { "name": "topic", "type": "choice", "label": "contact-topic",
              "options": [ { "value": "bug", "label": "contact-topic-bug" }, { "value": "idea", "label": "contact-topic-idea" } ] },
            { "name": "other", "type": "text", "label": "contact-other" },
            { "name": "start", "type": "date", "label": "contact-start" },
            { "name": "end", "type": "date", "label": "contact-end" },
            { "name": "agree", "type": "boolean", "label": "contact-agree", "required": true }
        ],
        "rules": [
            { "code": "dates_in_order", "message": "contact-dates", "check": { "before": ["start", "end"] } },
            { "code": "other_needed", "message": "contact-other-needed",
              "check": { "required_if": { "field": "other", "when": "topic", "equals": "idea" } } }
        ],
        "settings": { "honeypot": "website", "min_fill_seconds": 2 }
    })
}

fn definition() -> Definition {
    Definition::parse(contact().to_string().as_bytes()).expect("valid")
}

/// Validates as the server does: shape, the host's schema check (the
/// same crate and options), then rules.
fn validate(data: Value) -> Vec<FieldError> {
    let definition = definition();
    let mut errors = definition.shape_errors(&data);
    let validator =
        jsonschema::options().should_validate_formats(true).build(&definition.schema()).expect("schema compiles");
    for e in validator.iter_errors(&data) {
        let keyword = e.schema_path.to_string().rsplit('/').next().unwrap_or_default().to_owned();
        errors.extend(definition.schema_error(&e.instance_path.to_string(), &keyword, &data));
    }
    if errors.is_empty() {
        errors = definition.rule_errors(&data);
    }
    errors
}

fn codes(errors: &[FieldError]) -> Vec<(String, String)> {
    let mut codes: Vec<(String, String)> = errors.iter().map(|e| (e.path.clone(), e.code.clone())).collect();
    codes.sort();
    codes
}

fn valid_data() -> Value {
    json!({ "name": "Ada", "email": "ada@example.com", "age": 36, "topic": "bug", "agree": true })
}

#[test]
fn valid_data_passes() {
    assert_eq!(validate(valid_data()), []);
}

#[test]
fn each_failure_has_its_pointer_code_params_and_message_key() {
    let errors = validate(json!({ "name": "x".repeat(21), "email": "not-an-address", "age": 18.5, "topic": "cake",
                                  "agree": false, "surprise": 1 }));
    assert_eq!(
        codes(&errors),
        [
            ("/age".into(), "type".into()),
            ("/agree".into(), "required".into()),
            ("/email".into(), "format".into()),
            ("/name".into(), "maxLength".into()),
            ("/surprise".into(), "additionalProperties".into()),
            ("/topic".into(), "enum".into()),
        ]
    );
    let long = errors.iter().find(|e| e.code == "maxLength").unwrap();
    assert_eq!((long.params.get("limit"), long.message_key.as_str()), (Some(&json!(20)), "form-error-max-length"));
    let email = errors.iter().find(|e| e.code == "format").unwrap();
    assert_eq!(email.message_key, "contact-email-invalid", "the field's override");
    assert_eq!(errors.iter().find(|e| e.code == "type").unwrap().params.get("type"), Some(&json!("integer")));
}

#[test]
fn absent_and_empty_required_fields_are_required_once() {
    let errors = validate(json!({ "name": "", "agree": true }));
    assert_eq!(codes(&errors), [("/email".into(), "required".into()), ("/name".into(), "required".into())]);
    assert_eq!(codes(&validate(json!([1, 2]))), [("".into(), "type".into())]);
}

#[test]
fn rules_run_on_data_the_schema_accepted() {
    let mut data = valid_data();
    data["start"] = json!("2026-05-02");
    data["end"] = json!("2026-05-01");
    data["topic"] = json!("idea");
    let errors = validate(data.clone());
    assert_eq!(codes(&errors), [("/end".into(), "dates_in_order".into()), ("/other".into(), "other_needed".into())]);
    assert_eq!(errors[0].message_key, "contact-dates");
    data["end"] = json!("2026-05-03");
    data["other"] = json!("a thought");
    assert_eq!(validate(data), []);
}

#[test]
fn the_message_keys_cover_texts_and_every_error_the_form_can_show() {
    let keys = definition().message_keys();
    for key in [
        "contact-title",
        "contact-topic-idea",
        "contact-dates",
        "contact-email-invalid",
        "form-error-required",
        "form-error-max-length",
        "form-error-enum",
        "form-error-additional-properties",
    ] {
        assert!(keys.contains(&key.to_owned()), "{key} in {keys:?}");
    }
    assert!(!keys.contains(&"form-error-min-length".to_owned()), "no field sets min_length: {keys:?}");
}

#[test]
fn bad_definitions_are_refused_with_a_pointer_to_each_problem() {
    let mut bad = contact();
    bad["id"] = json!("Contact Form");
    bad["fields"][0]["minimum"] = json!(3);
    bad["fields"][1]["name"] = json!("name");
    bad["fields"][3]["options"] = json!([]);
    bad["rules"][0]["check"] = json!({ "before": ["name", "end"] });
    bad["settings"]["honeypot"] = json!("email");
    bad["title"] = json!("not a key!");
    let errors = Definition::parse(bad.to_string().as_bytes()).unwrap_err();
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/id", "/fields/0/minimum", "/fields/1/name", "/fields/3/options", "/rules/0", "/title"],
        "{errors:?}"
    );
    let unknown = Definition::parse(br#"{"id":"a","title":"t","fields":[],"colour":"red"}"#).unwrap_err();
    assert!(unknown[0].message.contains("unknown field `colour`"), "{unknown:?}");
}

#[test]
fn the_honeypot_may_not_be_a_real_field() {
    let mut bad = contact();
    bad["settings"]["honeypot"] = json!("email");
    let errors = Definition::parse(bad.to_string().as_bytes()).unwrap_err();
    assert_eq!(errors[0].path, "/settings/honeypot");
}

#[test]
fn default_error_keys_are_kebab_case() {
    assert_eq!(crate::default_error_key("maxLength"), "form-error-max-length");
    assert_eq!(crate::default_error_key("dates_in_order"), "form-error-dates-in-order");
}

#[test]
fn file_fields_name_the_types_they_take_and_fit_their_limits() {
    let with = |extra: Value| {
        let mut form = contact();
        let mut field = json!({ "name": "files", "type": "file", "label": "files" });
        field.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        form["fields"].as_array_mut().unwrap().push(field);
        Definition::parse(form.to_string().as_bytes())
    };
    let paths = |extra: Value| -> Vec<String> { with(extra).unwrap_err().into_iter().map(|e| e.path).collect() };
    assert_eq!(paths(json!({})), ["/fields/8/accept"], "a file field names its types");
    assert_eq!(paths(json!({ "accept": ["image/*", "PDF"] })), ["/fields/8/accept"]);
    assert_eq!(paths(json!({ "accept": ["text/plain"], "max_items": 21 })), ["/fields/8/max_items"]);
    assert_eq!(paths(json!({ "accept": ["text/plain"], "max_bytes": 0 })), ["/fields/8/max_bytes"]);
    assert_eq!(paths(json!({ "accept": ["image/*"], "variants": { "Thumb": 320 } })), ["/fields/8/variants"]);
    assert_eq!(paths(json!({ "accept": ["image/*"], "variants": { "thumb": 5000 } })), ["/fields/8/variants"]);
    let mut text_with_accept = contact();
    text_with_accept["fields"][0]["accept"] = json!(["image/png"]);
    let errors = Definition::parse(text_with_accept.to_string().as_bytes()).unwrap_err();
    assert_eq!(errors[0].path, "/fields/0/accept");

    let form = with(json!({ "accept": ["image/*", "application/pdf"], "max_items": 2, "variants": { "thumb": 320 } }))
        .unwrap();
    let field = form.field("files").unwrap();
    assert_eq!(field.file_max_bytes(), crate::DEFAULT_MAX_FILE_BYTES);
    assert!(crate::accepts(&field.accept, "image/webp") && crate::accepts(&field.accept, "application/pdf"));
    assert!(!crate::accepts(&field.accept, "imagex/png") && !crate::accepts(&field.accept, "text/html"));
    let keys = form.message_keys();
    assert!(keys.contains(&"form-error-attachment".to_owned()), "{keys:?}");
    assert!(keys.contains(&"form-error-attachment-incomplete".to_owned()), "{keys:?}");
}
