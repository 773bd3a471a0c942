//! Bytes arriving for a blob: the source they come from (a request body,
//! or bytes a plugin made) and the checksum a client may send with them.

use bytes::Bytes;
use sha1::Digest as _;

use super::BlobError;
use crate::error::ApiError;

/// A body read piece by piece.
#[async_trait::async_trait]
pub trait Chunks: Send {
    /// The next piece; `None` at the end. An error ends the body.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, ApiError>;
}

/// Bytes already in memory, as one piece.
pub struct Whole(pub Option<Bytes>);

#[async_trait::async_trait]
impl Chunks for Whole {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, ApiError> {
        Ok(self.0.take())
    }
}

/// Digest algorithms a client may check a write with (tus checksum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumAlgorithm {
    /// SHA-1, what tus clients send by default.
    Sha1,
    /// SHA-256.
    Sha256,
}

impl ChecksumAlgorithm {
    /// Its name in `Upload-Checksum` and `Tus-Checksum-Algorithm`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
        }
    }

    /// The algorithm by that name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "sha1" => Some(Self::Sha1),
            "sha256" => Some(Self::Sha256),
            _ => None,
        }
    }
}

/// The digest the bytes of one write must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    /// Which digest.
    pub algorithm: ChecksumAlgorithm,
    /// Its expected value.
    pub expected: Vec<u8>,
}

/// A running digest of a write's bytes.
pub(super) enum Digest {
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

impl Digest {
    pub(super) fn new(algorithm: ChecksumAlgorithm) -> Self {
        match algorithm {
            ChecksumAlgorithm::Sha1 => Self::Sha1(sha1::Sha1::new()),
            ChecksumAlgorithm::Sha256 => Self::Sha256(sha2::Sha256::new()),
        }
    }

    pub(super) fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Sha1(d) => d.update(bytes),
            Self::Sha256(d) => d.update(bytes),
        }
    }

    pub(super) fn finish(self) -> Vec<u8> {
        match self {
            Self::Sha1(d) => d.finalize().to_vec(),
            Self::Sha256(d) => d.finalize().to_vec(),
        }
    }
}

/// Why receiving a write stopped.
#[derive(Debug)]
pub(super) enum ReceiveError {
    /// The body failed; `kept` bytes of it are kept.
    Body { error: ApiError, kept: u64 },
    /// More bytes came than allowed; none are kept.
    TooLarge,
    /// The digest differs; none are kept.
    Checksum(ChecksumAlgorithm),
    /// Writing failed; none are kept.
    Io(std::io::Error),
}

impl ReceiveError {
    pub(super) fn into_blob_error(self, limit: u64) -> BlobError {
        match self {
            Self::Body { error, .. } => BlobError::Body(error),
            Self::TooLarge => BlobError::TooLarge { limit },
            Self::Checksum(algorithm) => BlobError::ChecksumMismatch(algorithm.name()),
            Self::Io(e) => e.into(),
        }
    }
}
