//! A bare hyper server (HTTP/1.1 and h2c, like plinth): the ceiling for
//! plinth's load figures. It answers every request with the same JSON body
//! as the hello plugin, except under `/files/` when started with a
//! directory (`bare-hyper DIR`): there `PUT` streams the body to a file and
//! `GET` streams a file back, the static file server plinth's media
//! figures are measured beside. Prints `listening on ADDR`.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

type Body = BoxBody<Bytes, std::io::Error>;

fn whole(status: StatusCode, body: &'static [u8]) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(body)).map_err(|never| match never {}).boxed());
    *response.status_mut() = status;
    response
}

/// `PUT` or `GET` of `/files/<name>` under `dir`.
async fn file(dir: &Path, req: Request<Incoming>) -> std::io::Result<Response<Body>> {
    let name = req.uri().path().trim_start_matches("/files/");
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Ok(whole(StatusCode::NOT_FOUND, b""));
    }
    let path = dir.join(name);
    if req.method() == Method::PUT {
        let mut out = tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::create(&path).await?);
        let mut body = req.into_body();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.map_err(std::io::Error::other)?.into_data() {
                out.write_all(&data).await?;
            }
        }
        out.flush().await?;
        out.get_ref().sync_data().await?;
        return Ok(whole(StatusCode::CREATED, b""));
    }
    let file = tokio::fs::File::open(&path).await?;
    let length = file.metadata().await?.len();
    let frames = ReaderStream::with_capacity(file, 64 * 1024);
    let body = StreamBody::new(futures_util::StreamExt::map(frames, |chunk| chunk.map(Frame::data)));
    let mut response = Response::new(BodyExt::boxed(body));
    response.headers_mut().insert("content-length", length.into());
    Ok(response)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let files: Option<Arc<PathBuf>> = std::env::args().nth(1).map(|dir| Arc::new(PathBuf::from(dir)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let files = files.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let files = files.clone();
                async move {
                    if let Some(dir) = files.as_deref()
                        && req.uri().path().starts_with("/files/")
                    {
                        let answer = file(dir, req).await;
                        return Ok::<_, Infallible>(
                            answer.unwrap_or_else(|_| whole(StatusCode::INTERNAL_SERVER_ERROR, b"")),
                        );
                    }
                    let mut response = whole(StatusCode::OK, br#"{"message":"hello, world"}"#);
                    response
                        .headers_mut()
                        .insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
                    Ok(response)
                }
            });
            let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
