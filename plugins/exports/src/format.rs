//! Rows out of stored submissions: a header, then one line per record, in
//! CSV (RFC 4180, with cells that a spreadsheet would run as a formula
//! made inert) or JSON Lines.

use serde::Deserialize;
use serde_json::Value;

/// What the plugin asks for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// `csv` or `jsonl`.
    pub format: Format,
    /// The data fields, in column order (CSV); records' other fields are left out.
    pub columns: Vec<String>,
    /// Most bytes the export may take.
    pub max_bytes: u64,
    /// Records submitted before this (Unix seconds) are past their
    /// retention: left out.
    #[serde(default)]
    pub not_before: Option<u64>,
}

/// An export's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// The columns every export starts with, from the stored record.
const META: [&str; 5] = ["id", "submitted_at", "version", "locale", "submitter"];

/// Turns records into bytes.
pub struct Rows {
    params: Params,
}

impl Rows {
    /// Rows for `params`.
    pub fn new(params: Params) -> Self {
        Self { params }
    }

    /// What comes before the first record.
    pub fn header(&self) -> Vec<u8> {
        match self.params.format {
            Format::Jsonl => Vec::new(),
            Format::Csv => {
                let names: Vec<&str> =
                    META.iter().copied().chain(self.params.columns.iter().map(String::as_str)).collect();
                csv_line(&names)
            }
        }
    }

    /// One stored record (JSON) as a line; nothing for one past its retention.
    pub fn row(&self, record: &[u8]) -> Result<Vec<u8>, String> {
        let mut record: Value =
            serde_json::from_slice(record).map_err(|e| format!("a stored record is not JSON: {e}"))?;
        let submitted = record["submitted_at"].as_u64().unwrap_or(u64::MAX);
        if self.params.not_before.is_some_and(|cutoff| submitted < cutoff) {
            return Ok(Vec::new());
        }
        match self.params.format {
            Format::Jsonl => {
                let mut line = serde_json::to_vec(&serde_json::json!({
                    "id": record["id"], "submitted_at": record["submitted_at"], "version": record["version"],
                    "locale": record["locale"], "submitter": record["submitter"], "data": record["data"],
                    "files": files(&record),
                }))
                .expect("JSON serializes");
                line.push(b'\n');
                Ok(line)
            }
            Format::Csv => {
                name_files(&mut record);
                let mut cells: Vec<String> = META.iter().map(|name| cell(&record[*name])).collect();
                cells.extend(self.params.columns.iter().map(|name| cell(&record["data"][name])));
                Ok(csv_line(&cells))
            }
        }
    }
}

/// What a record's files are (`attachments` without where they are stored).
fn files(record: &Value) -> Vec<Value> {
    let attachments = record["attachments"].as_array().into_iter().flatten();
    attachments
        .map(|a| {
            serde_json::json!({ "id": a["id"], "field": a["field"], "filename": a["filename"],
                                "media_type": a["media_type"], "size": a["size"] })
        })
        .collect()
}

/// Puts each file's name (its id when it has none) where its field's data
/// holds its id.
fn name_files(record: &mut Value) {
    let named: Vec<(String, String, String)> = record["attachments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| {
            let id = a["id"].as_str()?;
            let name = a["filename"].as_str().unwrap_or(id);
            Some((a["field"].as_str()?.to_owned(), id.to_owned(), name.to_owned()))
        })
        .collect();
    for (field, id, name) in named {
        if let Some(items) = record["data"].get_mut(&field).and_then(Value::as_array_mut) {
            for item in items.iter_mut().filter(|item| item.as_str() == Some(id.as_str())) {
                *item = Value::String(name.clone());
            }
        }
    }
}

/// A value as one cell: text as it is, a list joined by `; `, nothing for null.
fn cell(value: &Value) -> String {
    let text = match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join("; "),
        other => other.to_string(),
    };
    inert(text)
}

/// A cell a spreadsheet would read as a formula (`=`, `+`, `-`, `@`, tab
/// or carriage return first) gets a leading `'` (OWASP's advice for CSV
/// injection); numbers stay numbers.
fn inert(text: String) -> String {
    let risky = text.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if risky && text.parse::<f64>().is_err() { format!("'{text}") } else { text }
}

fn csv_line<S: AsRef<[u8]>>(cells: &[S]) -> Vec<u8> {
    let mut writer = csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(Vec::new());
    writer.write_record(cells).expect("writing to memory");
    writer.into_inner().expect("writing to memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(format: Format) -> Rows {
        Rows::new(Params { format, columns: vec!["name".into(), "tags".into()], max_bytes: 1 << 20, not_before: None })
    }

    const RECORD: &str = r#"{"id":"1-a","form":"f","version":2,"submitted_at":1795692000,"submitter":null,"locale":"pl",
        "data":{"name":"=HYPERLINK(\"http://evil\")","tags":["a","b"],"secret":"x"}}"#;

    #[test]
    fn csv_has_a_header_quotes_what_it_must_and_defuses_formulas() {
        let rows = rows(Format::Csv);
        assert_eq!(String::from_utf8(rows.header()).unwrap(), "id,submitted_at,version,locale,submitter,name,tags\r\n");
        let line = String::from_utf8(rows.row(RECORD.as_bytes()).unwrap()).unwrap();
        assert_eq!(line, "1-a,1795692000,2,pl,,\"'=HYPERLINK(\"\"http://evil\"\")\",a; b\r\n");
        assert!(!line.contains("secret"), "only the columns asked for");
        let negative = rows.row(br#"{"id":"2","data":{"name":"-12.5"}}"#).unwrap();
        assert!(String::from_utf8(negative).unwrap().contains(",-12.5,"), "a number stays a number");
    }

    #[test]
    fn json_lines_are_one_object_per_line() {
        let rows = rows(Format::Jsonl);
        assert!(rows.header().is_empty());
        let line = rows.row(RECORD.as_bytes()).unwrap();
        assert_eq!(*line.last().unwrap(), b'\n');
        let value: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(value["data"]["tags"], serde_json::json!(["a", "b"]));
        assert_eq!(value["locale"], "pl");
    }

    #[test]
    fn files_are_exported_by_name_without_where_they_are_stored() {
        let record = r#"{"id":"3","submitted_at":1,"data":{"name":"x","tags":["a1","b2"]},
            "attachments":[{"id":"a1","field":"tags","filename":"=calc.pdf","media_type":"application/pdf","size":9,"blob":"f00"},
                           {"id":"b2","field":"tags","media_type":"image/png","size":4,"blob":"ba5"}]}"#;
        let line = String::from_utf8(rows(Format::Csv).row(record.as_bytes()).unwrap()).unwrap();
        assert!(line.ends_with(",x,'=calc.pdf; b2\r\n"), "{line}");
        let line = rows(Format::Jsonl).row(record.as_bytes()).unwrap();
        let value: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(value["files"][0]["filename"], "=calc.pdf");
        assert_eq!(value["files"][1]["size"], 4);
        assert!(!String::from_utf8(line).unwrap().contains("f00"), "blob ids stay inside");
    }
}
