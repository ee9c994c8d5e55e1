//! `bench-upstream --listen ADDR --mode fast|delay|hang|reset|large [--delay MS] [--size BYTES]
//! [--variant TEXT]`: a minimal upstream for the benchmarks (`bench/run.py`), with nothing
//! recorded or logged so it never becomes the bottleneck. `fast` answers `index`; `delay`
//! answers `index` after `--delay` milliseconds; `hang` reads requests and never answers;
//! `reset` accepts connections and resets them (RST) without reading a byte; `large` answers a
//! JSON body of about `--size` bytes whose `variant` field is `--variant` (two instances with
//! different variants give mismatching responses). A shadow that refuses connections needs no
//! server: a port nothing listens on.

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
    Delay,
    Hang,
    Reset,
    Large,
}

#[derive(Parser)]
struct Cli {
    #[arg(long)]
    listen: String,
    #[arg(long, value_enum)]
    mode: Mode,
    /// Milliseconds `delay` waits before answering.
    #[arg(long, default_value_t = 1000)]
    delay: u64,
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
        Mode::Fast | Mode::Delay => Bytes::from_static(b"index"),
        Mode::Hang | Mode::Reset => Bytes::new(),
        Mode::Large => {
            let item = r#"{"id":1234567,"name":"a product with a long enough name","price":1999,"tags":["x","y","z"]},"#;
            let items = item.repeat(cli.size / item.len());
            Bytes::from(format!(r#"{{"variant":"{}","items":[{}{{}}]}}"#, cli.variant, items))
        }
    };
    let mode = cli.mode;
    let delay = std::time::Duration::from_millis(cli.delay);
    loop {
        let (stream, _) = listener.accept().await?;
        if let Mode::Reset = mode {
            // A zero linger makes the close an RST; the peer sees "connection reset by peer".
            let _ = stream.set_zero_linger();
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |_request: Request<Incoming>| {
                let body = body.clone();
                async move {
                    match mode {
                        Mode::Hang => std::future::pending::<()>().await,
                        Mode::Delay => tokio::time::sleep(delay).await,
                        _ => {}
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
