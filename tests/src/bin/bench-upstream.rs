//! `bench-upstream --listen ADDR --mode fast|hang|large [--size BYTES] [--variant TEXT]`: a
//! minimal upstream for the benchmarks (`bench/run.sh`), with nothing recorded or logged so it
//! never becomes the bottleneck. `fast` answers `index`; `hang` reads requests and never
//! answers; `large` answers a JSON body of about `--size` bytes whose `variant` field is
//! `--variant` (two instances with different variants give mismatching responses).

use std::convert::Infallible;

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Fast,
    Hang,
    Large,
}

#[derive(Parser)]
struct Cli {
    #[arg(long)]
    listen: String,
    #[arg(long, value_enum)]
    mode: Mode,
    #[arg(long, default_value_t = 262_144)]
    size: usize,
    #[arg(long, default_value = "a")]
    variant: String,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    let listener = TcpListener::bind(&cli.listen).await?;
    let body = match cli.mode {
        Mode::Fast => Bytes::from_static(b"index"),
        Mode::Hang => Bytes::new(),
        Mode::Large => {
            let item = r#"{"id":1234567,"name":"a product with a long enough name","price":1999,"tags":["x","y","z"]},"#;
            let items = item.repeat(cli.size / item.len());
            Bytes::from(format!(r#"{{"variant":"{}","items":[{}{{}}]}}"#, cli.variant, items))
        }
    };
    let mode = cli.mode;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |_request: Request<Incoming>| {
                let body = body.clone();
                async move {
                    if let Mode::Hang = mode {
                        std::future::pending::<()>().await;
                    }
                    let mut response = Response::new(Full::new(body));
                    if let Mode::Large = mode {
                        response.headers_mut().insert("content-type", http::HeaderValue::from_static("application/json"));
                    }
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
