//! Exports of a form's submissions as CSV or JSON Lines: a job for the
//! `exports` worker (the plugin's `export_worker` setting), which reads the
//! form's submissions a page at a time and writes them into a blob, so a
//! hundred thousand rows take no more memory than ten. The file is served
//! by the host, with `Range`. An export belongs to the reader who asked for
//! it (`export/{form}/{job}`), who reads, downloads and deletes it.

use plinth_kit::jobs::{self, State};
use plinth_kit::{Error, Principal, Request, Response, Result, kv, settings};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{store, submissions};

/// Largest export (reserved against the reader's blob quota while it is
/// written; then only its size counts).
const MAX_BYTES: u64 = 128 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Asked {
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Format {
    Csv,
    Jsonl,
}

/// What the plugin keeps of an export.
#[derive(Serialize, Deserialize)]
struct Export {
    owner: String,
    format: Format,
    created: u64,
}

fn key(form: &str, job: &str) -> String {
    format!("export/{form}/{job}")
}

/// `POST /v1/forms/{id}/exports`: 202 with the export's id; it runs in the background.
pub fn create(req: &Request) -> Result<Response> {
    let form: String = req.param("id")?;
    let definition = store::load(&form)?.definition;
    let me = submissions::reader(req, &definition)?;
    let asked: Asked = req.json()?;
    let columns: Vec<&str> = definition.fields.iter().map(|f| f.name.as_str()).collect();
    let not_before =
        definition.settings.retention_days.map(|days| store::now().saturating_sub(u64::from(days) * 86_400));
    let params =
        json!({ "format": asked.format, "columns": columns, "max_bytes": MAX_BYTES, "not_before": not_before });
    let worker = settings::get("export_worker").unwrap_or_else(|| "exports".to_owned());
    let job = jobs::submit_reading(&worker, &me.account_id, &[], &params.to_string(), &format!("sub/{form}/"))?;
    kv::set_json(&key(&form, &job), &Export { owner: me.account_id, format: asked.format, created: store::now() })?;
    let url = format!("/v1/forms/{form}/exports/{job}");
    Ok(Response::json(202, &json!({ "id": job, "state": "queued", "url": url })).header("location", url))
}

/// The caller's export named by the path.
fn load(req: &Request) -> Result<(String, String, Export, Principal)> {
    let form: String = req.param("id")?;
    let job: String = req.param("export")?;
    let definition = store::load(&form)?.definition;
    let me = submissions::reader(req, &definition)?;
    let not_found = || Error::new(404, "export_not_found", format!("form `{form}` has no export `{job}` of yours"));
    if job.len() != 32 || !job.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(not_found());
    }
    let export: Export = kv::get_json(&key(&form, &job))?.ok_or_else(not_found)?;
    if export.owner != me.account_id {
        return Err(not_found());
    }
    Ok((form, job, export, me))
}

/// What the worker answered.
#[derive(Deserialize)]
struct Made {
    blob: String,
    rows: u64,
    bytes: u64,
}

/// `GET /v1/forms/{id}/exports/{export}`: where it stands.
pub fn get(req: &Request) -> Result<Response> {
    let (form, job, export, _) = load(req)?;
    let state = jobs::get(&job)?.state;
    let body = match state {
        State::Queued => json!({ "id": job, "state": "queued" }),
        State::Running => json!({ "id": job, "state": "running" }),
        State::Failed(reason) => json!({ "id": job, "state": "failed", "reason": reason }),
        State::Done(answer) => {
            let made: Made =
                serde_json::from_str(&answer).map_err(|_| Error::new(500, "corrupt_value", "an export's answer"))?;
            json!({ "id": job, "state": "done", "format": export.format, "rows": made.rows, "bytes": made.bytes,
                    "download": format!("/v1/forms/{form}/exports/{job}/file") })
        }
    };
    Ok(Response::json(200, &body).header("cache-control", "no-store"))
}

/// `GET /v1/forms/{id}/exports/{export}/file`: the file, served by the host (with `Range`).
pub fn file(req: &Request) -> Result<Response> {
    let (form, job, export, _) = load(req)?;
    let State::Done(answer) = jobs::get(&job)?.state else {
        return Err(Error::new(409, "export_not_ready", "the export is not done; see its state")
            .with_header("retry-after", "2"));
    };
    let made: Made =
        serde_json::from_str(&answer).map_err(|_| Error::new(500, "corrupt_value", "an export's answer"))?;
    let (content_type, extension) = match export.format {
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
        Format::Jsonl => ("application/jsonl; charset=utf-8", "jsonl"),
    };
    Ok(Response::blob(&made.blob, content_type)
        .header("content-disposition", format!("attachment; filename=\"{form}-{job}.{extension}\""))
        .header("cache-control", "private, no-store"))
}

/// `DELETE /v1/forms/{id}/exports/{export}`: the export and its file go.
pub fn delete(req: &Request) -> Result<Response> {
    let (form, job, _, _) = load(req)?;
    match jobs::forget(&job) {
        Ok(()) | Err(jobs::Error::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    kv::delete(&key(&form, &job))?;
    Ok(Response::empty(204))
}
