//! The limit: a bare axum handler that reads the body and answers "hello" to any method and
//! path, with the same runtime (tokio multi-thread) and the same pinning as `tessera serve`.
//! `bench/run` feeds it each scenario's request shape and reports the scenario as a ratio to it.

use axum::Router;
use axum::body::Bytes;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!("baseline listening on {}", listener.local_addr()?);
    // Every method and path: the guard's requests are GETs of /api/data, the others POSTs.
    let app = Router::new().fallback(hello);
    axum::serve(listener, app).await?;
    Ok(())
}

async fn hello(_body: Bytes) -> &'static str {
    "hello"
}
