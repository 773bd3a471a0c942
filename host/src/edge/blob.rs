//! Responses the host serves from a blob after a plugin's `blobs.serve`:
//! validators, conditional requests and single byte ranges (RFC 9110 §13,
//! §14), with the file streamed from disk in bounded pieces.
//!
//! A served blob is never an active document at this origin: its response
//! always carries `X-Content-Type-Options: nosniff` and a CSP with
//! `sandbox`, whatever the route's header class says.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_range_header::{EndPosition, StartPosition};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use crate::blobs::{BlobError, BlobInfo, Blobs, ScanState};
use crate::edge::stream::ResponseBody;
use crate::error::ApiError;

/// Bytes read from disk per frame.
const FRAME_BYTES: usize = 64 * 1024;

/// Marks a response served from a blob, for the headers layer.
#[derive(Debug, Clone, Copy)]
pub struct Served;

/// A file's bytes from one offset, as response frames.
pub struct FileBody {
    file: tokio::io::Take<tokio::fs::File>,
    buffer: BytesMut,
    remaining: u64,
    /// Lives as long as the body (see `ResponseBody::hold`).
    pub(super) held: Option<Box<dyn std::any::Any + Send>>,
}

impl FileBody {
    pub(super) fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        self.buffer.reserve(FRAME_BYTES);
        match tokio_util::io::poll_read_buf(Pin::new(&mut self.file), cx, &mut self.buffer) {
            Poll::Ready(Ok(0)) => Poll::Ready(None),
            Poll::Ready(Ok(_)) => {
                let bytes = self.buffer.split().freeze();
                self.remaining = self.remaining.saturating_sub(bytes.len() as u64);
                Poll::Ready(Some(bytes))
            }
            Poll::Ready(Err(e)) => {
                // The length was promised: ending short makes hyper close
                // the connection, so the client sees a cut, not a short file.
                tracing::error!(error = %e, "reading a blob failed mid-response");
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    pub(super) fn remaining(&self) -> u64 {
        self.remaining
    }
}

/// The strong validator of a blob: its id names its bytes.
fn etag(info: &BlobInfo) -> String {
    format!("\"{}\"", &info.id[..32])
}

fn last_modified(info: &BlobInfo) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(info.created))
}

/// True when an `If-None-Match` or `If-Range` list names `etag`.
fn names(list: &str, etag: &str) -> bool {
    list.split(',').map(str::trim).any(|tag| tag == "*" || tag == etag || tag.strip_prefix("W/") == Some(etag))
}

/// What a request's `Range` asks of a blob of `size` bytes.
enum Wanted {
    /// The whole blob (no range, a unit other than bytes, several ranges,
    /// or an `If-Range` that no longer holds).
    Whole,
    /// These bytes, inclusive.
    Part(u64, u64),
}

fn wanted(request: &HeaderMap, etag: &str, modified: &str, size: u64) -> Result<Wanted, ApiError> {
    let Some(range) = request.get(header::RANGE) else { return Ok(Wanted::Whole) };
    // If-Range holds only for the exact validator (a strong comparison).
    if let Some(condition) = request.get(header::IF_RANGE) {
        let condition = condition.to_str().unwrap_or_default().trim();
        if condition != etag && condition != modified {
            return Ok(Wanted::Whole);
        }
    }
    let Ok(range) = range.to_str() else { return Err(range_invalid()) };
    let (unit, specs) = range.split_once('=').unwrap_or((range, ""));
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Ok(Wanted::Whole);
    }
    // The unit is case-insensitive (RFC 9110 §14.1); the parser is not.
    let parsed = http_range_header::parse_range_header(&format!("bytes={specs}")).map_err(|_| range_invalid())?;
    // Satisfiability is judged here, as RFC 9110 §14.1.2 words it: a suffix
    // longer than the file is the whole file, and nothing in an empty file
    // can be asked for.
    let mut satisfiable = Vec::with_capacity(1);
    for spec in &parsed.ranges {
        let (first, last) = match (spec.start, spec.end) {
            (StartPosition::FromLast(suffix), _) => (size.saturating_sub(suffix), size.checked_sub(1)),
            (StartPosition::Index(first), EndPosition::Index(last)) if last < first => return Err(range_invalid()),
            (StartPosition::Index(first), EndPosition::Index(last)) => {
                (first, size.checked_sub(1).map(|end| last.min(end)))
            }
            (StartPosition::Index(first), EndPosition::LastByte) => (first, size.checked_sub(1)),
        };
        if let Some(last) = last
            && first <= last
        {
            satisfiable.push((first, last));
        }
    }
    match satisfiable.as_slice() {
        [] => Err(ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "range_not_satisfiable",
            format!("the range `{range}` is outside the {size} bytes"),
        )
        .with_header(header::CONTENT_RANGE, format!("bytes */{size}"))),
        [(first, last)] if parsed.ranges.len() == 1 => Ok(Wanted::Part(*first, *last)),
        _ => Ok(Wanted::Whole),
    }
}

fn range_invalid() -> ApiError {
    ApiError::new(
        StatusCode::RANGE_NOT_SATISFIABLE,
        "range_invalid",
        "the Range header is not `bytes=<first>-[<last>]` or `bytes=-<suffix>`",
    )
}

/// The response for a blob the plugin asked to serve, with the head the
/// plugin built (status 200, its content type, disposition and caching).
pub async fn serve(
    blobs: &Blobs,
    plugin: &str,
    info: &BlobInfo,
    request: &HeaderMap,
    mut head: http::response::Parts,
) -> Result<Response<ResponseBody>, ApiError> {
    unscanned(&info.scan)?;
    let etag = etag(info);
    let modified = last_modified(info);
    let headers = &mut head.headers;
    headers.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex"));
    headers.insert(header::LAST_MODIFIED, HeaderValue::from_str(&modified).expect("an HTTP date"));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    head.extensions.insert(Served);
    let not_modified = match request.get(header::IF_NONE_MATCH) {
        Some(list) => names(list.to_str().unwrap_or_default(), &etag),
        // A date in the future is no date (RFC 9110 §13.1.3).
        None => request
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| httpdate::parse_http_date(v.to_str().ok()?).ok())
            .filter(|&since| since <= std::time::SystemTime::now())
            .is_some_and(|since| UNIX_EPOCH + Duration::from_secs(info.created) <= since),
    };
    if not_modified {
        head.status = StatusCode::NOT_MODIFIED;
        head.headers.remove(header::CONTENT_TYPE);
        return Ok(Response::from_parts(head, ResponseBody::empty()));
    }
    let (start, end) = match wanted(request, &etag, &modified, info.size)? {
        Wanted::Whole => (0, info.size),
        Wanted::Part(first, last) => {
            head.status = StatusCode::PARTIAL_CONTENT;
            let range = format!("bytes {first}-{last}/{}", info.size);
            head.headers.insert(header::CONTENT_RANGE, HeaderValue::from_str(&range).expect("digits"));
            (first, last + 1)
        }
    };
    let (mut file, _) = blobs.open_blob(plugin, &info.id).await.map_err(unavailable)?;
    file.seek(std::io::SeekFrom::Start(start)).await.map_err(|e| unavailable(e.into()))?;
    let length = end - start;
    head.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    let body = FileBody { file: file.take(length), buffer: BytesMut::new(), remaining: length, held: None };
    Ok(Response::from_parts(head, ResponseBody::File(Box::new(body))))
}

/// Only a file the scanner passed (or one the operator serves unscanned)
/// leaves the server.
fn unscanned(scan: &ScanState) -> Result<(), ApiError> {
    match scan {
        ScanState::Clean | ScanState::Unscanned => Ok(()),
        ScanState::Pending => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "scan_pending",
            "the file is waiting for its virus scan; retry shortly",
        )
        .with_header(header::RETRY_AFTER, "5".to_owned())),
        ScanState::Infected(_) => {
            Err(ApiError::new(StatusCode::FORBIDDEN, "file_infected", "the virus scanner found malware in this file"))
        }
        ScanState::Failed(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "scan_failed",
            "the virus scanner could not check this file, so it is not served",
        )),
    }
}

fn unavailable(e: BlobError) -> ApiError {
    match e {
        BlobError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", "the file is gone"),
        other => {
            tracing::error!(error = %other, "a blob could not be opened");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", "the file cannot be read now")
        }
    }
}

/// Makes a served blob's response safe whatever the header class set: no
/// sniffing, and a CSP that sandboxes it if a browser renders it.
pub fn harden(headers: &mut HeaderMap) {
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    let csp = headers.get(header::CONTENT_SECURITY_POLICY).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let sandboxed = csp.split(';').any(|directive| directive.split_whitespace().next() == Some("sandbox"));
    if !sandboxed {
        let csp = if csp.trim().is_empty() {
            "default-src 'none'; sandbox".to_owned()
        } else {
            format!("{}; sandbox", csp.trim_end_matches([';', ' ']))
        };
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_str(&csp).expect("was a header value"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
    }

    fn info(size: u64) -> BlobInfo {
        BlobInfo { id: "ab".repeat(32), owner: "o".into(), size, refs: 1, created: now(), scan: ScanState::Clean }
    }

    fn ask(pairs: &[(&str, &str)], size: u64) -> Result<Option<(u64, u64)>, (u16, &'static str)> {
        let headers = crate::edge::test_headers(pairs);
        let info = info(size);
        match wanted(&headers, &etag(&info), &last_modified(&info), size) {
            Ok(Wanted::Whole) => Ok(None),
            Ok(Wanted::Part(a, b)) => Ok(Some((a, b))),
            Err(e) => Err((e.status.as_u16(), e.code)),
        }
    }

    #[test]
    fn single_ranges_suffixes_and_open_ends() {
        assert_eq!(ask(&[("range", "bytes=0-0")], 100), Ok(Some((0, 0))));
        assert_eq!(ask(&[("range", "bytes=10-19")], 100), Ok(Some((10, 19))));
        assert_eq!(ask(&[("range", "bytes=90-")], 100), Ok(Some((90, 99))));
        assert_eq!(ask(&[("range", "bytes=-5")], 100), Ok(Some((95, 99))));
        assert_eq!(ask(&[("range", "bytes=50-500")], 100), Ok(Some((50, 99))), "the end is clamped");
        assert_eq!(ask(&[("range", "bytes=-500")], 100), Ok(Some((0, 99))));
        assert_eq!(ask(&[("range", "Bytes=0-1")], 100), Ok(Some((0, 1))), "the unit is case-insensitive");
    }

    #[test]
    fn past_the_end_is_416_and_malformed_is_refused() {
        assert_eq!(ask(&[("range", "bytes=100-")], 100), Err((416, "range_not_satisfiable")));
        assert_eq!(ask(&[("range", "bytes=0-0")], 0), Err((416, "range_not_satisfiable")));
        assert!(matches!(ask(&[("range", "bytes=-0")], 100), Err((416, _))));
        assert_eq!(ask(&[("range", "bytes=-1")], 0), Err((416, "range_not_satisfiable")));
        for bad in ["bytes=", "bytes=a-b", "bytes=5-1", "bytes=--1", "bytes=1-2-3", "bytes= 1 - 2"] {
            assert!(ask(&[("range", bad)], 100).is_err(), "{bad}");
        }
    }

    #[test]
    fn other_units_several_ranges_and_stale_if_range_get_the_whole() {
        assert_eq!(ask(&[("range", "items=0-5")], 100), Ok(None));
        assert_eq!(ask(&[("range", "bytes=0-1,5-6")], 100), Ok(None));
        assert_eq!(ask(&[("range", "bytes=0-1"), ("if-range", "\"other\"")], 100), Ok(None));
        let current = etag(&info(100));
        assert_eq!(ask(&[("range", "bytes=0-1"), ("if-range", &current)], 100), Ok(Some((0, 1))));
        let weak = format!("W/{current}");
        assert_eq!(ask(&[("range", "bytes=0-1"), ("if-range", &weak)], 100), Ok(None), "If-Range is strong");
    }

    #[test]
    fn hardening_adds_sandbox_once() {
        let mut headers = HeaderMap::new();
        harden(&mut headers);
        assert_eq!(headers["content-security-policy"], "default-src 'none'; sandbox");
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none';"));
        harden(&mut headers);
        assert_eq!(headers["content-security-policy"], "default-src 'none'; sandbox");
        harden(&mut headers);
        assert_eq!(headers["content-security-policy"], "default-src 'none'; sandbox");
        assert_eq!(headers["x-content-type-options"], "nosniff");
    }
}
