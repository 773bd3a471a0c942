// The migrator test guests' shared code (`include!`d by each version's
// lib.rs with its `STEPS`): notes stored as `note/{id}` (`notes/{id}` from
// version 2), `{"text"}` at version 0, `{"text", "words"}` from version 1.
// Step 1 traps on a note whose text is "trap me", and lower-cases on its
// way down (so a note that was not lower case does not come back whole).

use plinth_kit::migrations::{Convert, Migrations, Record};
use plinth_kit::prelude::*;

fn router() -> Router {
    Router::new().get("/v1/notes/{id}", read).put("/v1/notes/{id}", write)
}

fn key(id: &str) -> String {
    if STEPS == 2 { format!("notes/{id}") } else { format!("note/{id}") }
}

fn read(req: &Request) -> Result<Response> {
    let id: String = req.param("id")?;
    let note: serde_json::Value = kv::get_json(&key(&id))?.ok_or_else(|| Error::not_found("note"))?;
    Ok(Response::json(200, &serde_json::json!({ "data_version": STEPS, "note": note })))
}

fn write(req: &Request) -> Result<Response> {
    let id: String = req.param("id")?;
    let body: serde_json::Value = req.json()?;
    let text = body["text"].as_str().unwrap_or_default().to_owned();
    let note = match STEPS {
        0 => serde_json::json!({ "text": text }),
        _ => serde_json::json!({ "text": text, "words": text.split_whitespace().count() }),
    };
    kv::set_json(&key(&id), &note)?;
    Ok(Response::json(200, &note))
}

fn words_up(record: Record) -> Result<Record, String> {
    let mut note: serde_json::Value = record.read()?;
    let text = note["text"].as_str().ok_or("a note has text")?.to_owned();
    assert!(text != "trap me", "a conversion that traps on one record");
    note["words"] = text.split_whitespace().count().into();
    Ok(Record::json(record.key, &note))
}

fn words_down(record: Record) -> Result<Record, String> {
    let note: serde_json::Value = record.read()?;
    let text = note["text"].as_str().ok_or("a note has text")?.to_lowercase();
    Ok(Record::json(record.key, &serde_json::json!({ "text": text })))
}

fn rekey_up(record: Record) -> Result<Record, String> {
    let id = record.key.strip_prefix("note/").ok_or("a note key")?;
    Ok(Record { key: format!("notes/{id}"), value: record.value })
}

fn rekey_down(record: Record) -> Result<Record, String> {
    let id = record.key.strip_prefix("notes/").ok_or("a note key")?;
    Ok(Record { key: format!("note/{id}"), value: record.value })
}

fn check(version: u32, record: &Record) -> Result<(), String> {
    let note: serde_json::Value = record.read()?;
    let words = note.get("words").and_then(serde_json::Value::as_u64);
    match (version, words) {
        (0, None) => Ok(()),
        (1.., Some(n)) if n as usize == note["text"].as_str().unwrap_or_default().split_whitespace().count() => Ok(()),
        _ => Err(format!("`{}` at version {version}: {note}", record.key)),
    }
}

fn migrations() -> Migrations {
    type Step = (&'static str, &'static [&'static str], Convert, Convert);
    let steps: [Step; 2] = [("words", &["note/"], words_up, words_down), ("rekey", &["note"], rekey_up, rekey_down)];
    steps
        .into_iter()
        .take(STEPS as usize)
        .fold(Migrations::new().check(check), |all, (name, families, up, down)| all.step(name, families, up, down))
}

plinth_kit::plugin!(router, migrations = migrations);
