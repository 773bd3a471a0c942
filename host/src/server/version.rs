//! Which HTTP a connection speaks, told to hyper before it reads.
//!
//! hyper_util's detection reads up to 24 bytes itself and hands them to
//! hyper as its first read; hyper's next read then finds its 8 KiB buffer
//! started and doubles it, and an HTTP/1 connection keeps 16 KiB for its
//! whole life (the largest part of an idle change stream's memory). Told
//! the version, hyper reads the first request whole into 8 KiB. Detection
//! remains for what cannot be told first: TLS without ALPN, and first bytes
//! that are only part of the h2c preface.

use std::time::Duration;

use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;

use super::connections::Admitted;

/// What a client opens an HTTP/2 connection with, without TLS.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The HTTP version a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Speaks {
    Http1,
    Http2,
    /// Not told yet: hyper_util detects it.
    Unknown,
}

impl Speaks {
    /// The version TLS agreed on (ALPN), which the client must then speak
    /// (RFC 7301); a client that named none is detected.
    pub(super) fn negotiated(alpn: Option<&[u8]>) -> Self {
        match alpn {
            Some(b"h2") => Self::Http2,
            Some(b"http/1.1") => Self::Http1,
            _ => Self::Unknown,
        }
    }

    /// What a connection's first bytes say: only the whole preface is
    /// HTTP/2, and a part of it does not tell yet.
    fn of_first_bytes(first: &[u8]) -> Self {
        if first == H2_PREFACE {
            Self::Http2
        } else if first.is_empty() || H2_PREFACE.starts_with(first) {
            Self::Unknown
        } else {
            Self::Http1
        }
    }

    /// Waits for a plain connection's first bytes and names their version,
    /// leaving the bytes in the socket for hyper; `None` when none came
    /// within `within` or the connection was shed meanwhile (closed without
    /// a word, as hyper's header timeout does).
    pub(super) async fn sniffed(stream: &TcpStream, within: Duration, admitted: &Admitted) -> Option<Self> {
        let mut first = [0; H2_PREFACE.len()];
        tokio::select! {
            peeked = tokio::time::timeout(within, stream.peek(&mut first)) => match peeked {
                Ok(Ok(n)) => Some(Self::of_first_bytes(&first[..n])),
                // An error is hyper's to meet on its first read.
                Ok(Err(_)) => Some(Self::Unknown),
                Err(_) => None,
            },
            () = admitted.close_requested() => None,
        }
    }
}

/// hyper's connection builders, one per [`Speaks`], made once.
pub(super) struct Builders {
    any: auto::Builder<TokioExecutor>,
    http1: auto::Builder<TokioExecutor>,
    http2: auto::Builder<TokioExecutor>,
}

impl Builders {
    /// `any`, and copies of it that serve one version each.
    pub(super) fn new(any: auto::Builder<TokioExecutor>) -> Self {
        Self { http1: any.clone().http1_only(), http2: any.clone().http2_only(), any }
    }

    /// The builder that serves what `speaks` names (both when unknown).
    pub(super) fn speaking(&self, speaks: Speaks) -> &auto::Builder<TokioExecutor> {
        match speaks {
            Speaks::Http1 => &self.http1,
            Speaks::Http2 => &self.http2,
            Speaks::Unknown => &self.any,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes_name_a_version_only_once_they_decide_it() {
        assert_eq!(Speaks::of_first_bytes(b"GET / HTTP/1.1\r\n"), Speaks::Http1);
        assert_eq!(Speaks::of_first_bytes(b"P"), Speaks::Unknown, "the start of the preface");
        assert_eq!(Speaks::of_first_bytes(b"PRI * HTTP/2.0\r\n"), Speaks::Unknown);
        assert_eq!(Speaks::of_first_bytes(b"PUT /x HTTP/1.1\r\n"), Speaks::Http1, "P, then not the preface");
        assert_eq!(Speaks::of_first_bytes(H2_PREFACE), Speaks::Http2);
        assert_eq!(Speaks::of_first_bytes(b""), Speaks::Unknown, "nothing came: hyper meets the end");
    }

    #[test]
    fn tls_names_the_version_it_agreed() {
        assert_eq!(Speaks::negotiated(Some(b"h2")), Speaks::Http2);
        assert_eq!(Speaks::negotiated(Some(b"http/1.1")), Speaks::Http1);
        assert_eq!(Speaks::negotiated(None), Speaks::Unknown);
    }

    #[test]
    fn each_builder_serves_the_version_it_was_told() {
        let builders = Builders::new(auto::Builder::new(TokioExecutor::new()));
        let serves = |speaks| {
            let builder = builders.speaking(speaks);
            (builder.is_http1_available(), builder.is_http2_available())
        };
        assert_eq!(serves(Speaks::Http1), (true, false));
        assert_eq!(serves(Speaks::Http2), (false, true));
        assert_eq!(serves(Speaks::Unknown), (true, true));
    }

    #[tokio::test]
    async fn sniffing_leaves_the_first_bytes_for_hyper() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (mut server, peer) = listener.accept().await.unwrap();
        let connections = super::super::connections::Connections::new(4, 4);
        let admitted = connections.admit(peer.ip(), false).unwrap();
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let speaks = Speaks::sniffed(&server, Duration::from_secs(5), &admitted).await;
        assert_eq!(speaks, Some(Speaks::Http1));
        let mut read = [0; 18];
        server.read_exact(&mut read).await.unwrap();
        assert_eq!(&read, b"GET / HTTP/1.1\r\n\r\n", "the bytes are still the socket's");
        let silent = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (quiet, peer) = listener.accept().await.unwrap();
        let admitted = connections.admit(peer.ip(), false).unwrap();
        assert_eq!(
            Speaks::sniffed(&quiet, Duration::from_millis(50), &admitted).await,
            None,
            "nothing within the time"
        );
        drop(silent);
    }
}
