//! Virus scanning of new blob files: each is streamed to clamd
//! (`INSTREAM`, through `clamav-client`) and its verdict recorded.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Bytes sent to clamd per `INSTREAM` chunk.
const CHUNK: usize = 1 << 20;

/// Where a blob stands with the scanner.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "detail", rename_all = "snake_case")]
pub enum ScanState {
    /// Not scanned yet (or held: no scanner is configured); not served.
    #[default]
    Pending,
    /// The scanner found nothing.
    Clean,
    /// The scanner found this signature; never served.
    Infected(String),
    /// The scanner could not judge it (such as past its size limit); not served.
    Failed(String),
    /// Stored while no scanner was configured and the operator serves such files.
    Unscanned,
}

impl ScanState {
    /// Whether a file in this state may be served.
    pub fn servable(&self) -> bool {
        matches!(self, Self::Clean | Self::Unscanned)
    }
}

/// A clamd to scan with.
#[derive(Debug, Clone)]
pub enum Clamd {
    /// Its Unix socket.
    Socket(PathBuf),
    /// Its `host:port`.
    Tcp(String),
}

impl Clamd {
    /// A path is a socket; anything else `host:port`.
    pub fn new(address: &str) -> Self {
        if address.starts_with('/') { Self::Socket(PathBuf::from(address)) } else { Self::Tcp(address.to_owned()) }
    }

    /// The verdict on a file; an error means clamd could not be asked.
    pub async fn scan(&self, file: &Path) -> std::io::Result<ScanState> {
        use clamav_client::tokio as clamd;
        let reply = match self {
            Self::Socket(path) => clamd::scan_file(file, clamd::Socket { socket_path: path }, Some(CHUNK)).await?,
            Self::Tcp(address) => {
                clamd::scan_file(file, clamd::Tcp { host_address: address.as_str() }, Some(CHUNK)).await?
            }
        };
        Ok(verdict(&reply))
    }
}

/// clamd's `stream: OK`, `stream: <signature> FOUND` or `<reason> ERROR`.
fn verdict(reply: &[u8]) -> ScanState {
    let text = String::from_utf8_lossy(reply);
    let text = text.trim_end_matches('\0').trim();
    let body = text.strip_prefix("stream:").map_or(text, str::trim);
    if body == "OK" {
        ScanState::Clean
    } else if let Some(signature) = body.strip_suffix(" FOUND") {
        ScanState::Infected(signature.trim().to_owned())
    } else {
        ScanState::Failed(body.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamd_replies_become_states() {
        assert_eq!(verdict(b"stream: OK\0"), ScanState::Clean);
        assert_eq!(
            verdict(b"stream: Eicar-Test-Signature FOUND\0"),
            ScanState::Infected("Eicar-Test-Signature".into())
        );
        assert_eq!(
            verdict(b"INSTREAM size limit exceeded. ERROR\0"),
            ScanState::Failed("INSTREAM size limit exceeded. ERROR".into())
        );
        assert!(!verdict(b"").servable());
    }
}
