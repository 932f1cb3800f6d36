//! The limit: a bare axum POST handler that reads the body and answers "hello", with the same
//! runtime (tokio multi-thread) and the same pinning as `tessera serve`. Every scenario in
//! `bench/run` is reported as a ratio to this.

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!("baseline listening on {}", listener.local_addr()?);
    let app = Router::new().fallback(post(hello));
    axum::serve(listener, app).await?;
    Ok(())
}

async fn hello(_body: Bytes) -> &'static str {
    "hello"
}
