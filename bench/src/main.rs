//! `tessera-bench`: the helpers `bench/run` calls.
//!
//! - `free-port`: prints a free TCP port on 127.0.0.1.
//! - `tokens`: writes tokens that exist nowhere (request bodies for the baseline).
//! - `fill`: pre-fills a (migrated, not yet served) database with access tokens of one client:
//!   `--real` tokens generated exactly as the server does (`tsa_`, the millisecond, 256 random
//!   bits), inserted under their store key and written in clear to `--tokens-out` for the load
//!   generator to rotate over, then filler rows up to `--total`, generated inside the database:
//!   keys whose clear text nobody holds, like the tokens of every other client of a real
//!   deployment, issued one by one over the `--ttl` before the real ones (a key begins with
//!   its token's millisecond of issue, so the filler sorts before the real tokens, as older
//!   tokens do in a store that has been in use).
//! - `issue`: obtains tokens the ordinary way, POST /token with client_credentials over
//!   HTTP, bounded in count and time, and writes them to a file.
//! - `flow` (`flow.rs`): the authorization-code flow with PKCE, sign-in included or not, by
//!   concurrent simulated browsers; flows per second and latency, as a `wrk`-style RESULT line.
//! - `mix` (`mix.rs`): a paced mix of issuance, introspection and revocation for `bench/soak`,
//!   every answer checked.
//! - `lag` and `revoke` (`lag.rs`): revocation lag to subscribed guards, and a paced
//!   revoker to run alongside a guard scenario.
//! - `disk-probe`: the disk's own sync latency, as a commit sees it (4 KiB written, then
//!   `fsync`, in a loop on one file), so that a run's write tails can be told from the disk's.
//!
//! `tally.rs` counts latencies and failures for the last two in the classes `wrk` uses.

use std::io::Write;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use sqlx::Connection;
use tessera_core::token::{RawToken, TokenKind};

mod flow;
mod lag;
mod mix;
mod tally;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a free TCP port on 127.0.0.1.
    FreePort,
    /// Write freshly generated tokens, stored nowhere (request bodies for the baseline).
    Tokens {
        #[arg(long)]
        count: usize,
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Pre-fill the tokens table (the server must not be running).
    Fill {
        #[arg(long)]
        database_url: String,
        #[arg(long)]
        client_id: String,
        /// The tokens' audience: resource identifiers, space-separated, as the store keeps them.
        #[arg(long, default_value = "")]
        audience: String,
        /// Tokens generated in clear and written to --tokens-out.
        #[arg(long)]
        real: usize,
        /// Rows the tokens table holds at the end (real + filler).
        #[arg(long)]
        total: usize,
        #[arg(long)]
        tokens_out: std::path::PathBuf,
        /// Lifetime of the generated tokens, seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl: i64,
    },
    /// Issue tokens over HTTP (client_credentials, Basic auth) and write them to --out.
    Issue {
        #[arg(long)]
        url: String,
        #[arg(long)]
        client_id: String,
        #[arg(long)]
        client_secret: String,
        #[arg(long)]
        count: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Give up (with an error) after this many seconds.
        #[arg(long, default_value_t = 120)]
        max_seconds: u64,
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Run authorization-code + PKCE flows (sign-in, authorize, token) for a fixed time.
    Flow(flow::FlowArgs),
    /// Run a paced mix of issuance, introspection and revocation, checking every answer.
    Mix(mix::MixArgs),
    /// Revocation lag: revoke cached tokens one by one; time until every guard refuses each.
    Lag(lag::LagArgs),
    /// Revoke the listed tokens at a fixed rate until stopped (SIGTERM).
    Revoke(lag::RevokeArgs),
    /// Time 4 KiB writes each followed by fsync, in a loop on one file in --dir, for
    /// --seconds, and print one line of their latencies.
    DiskProbe {
        #[arg(long)]
        dir: std::path::PathBuf,
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::FreePort => {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            println!("{}", listener.local_addr()?.port());
            Ok(())
        }
        Command::Tokens { count, out } => {
            let mut file = std::io::BufWriter::new(std::fs::File::create(out)?);
            for _ in 0..count {
                writeln!(file, "{}", RawToken::generate(TokenKind::Access)?.expose())?;
            }
            file.flush()?;
            Ok(())
        }
        Command::Fill {
            database_url,
            client_id,
            audience,
            real,
            total,
            tokens_out,
            ttl,
        } => {
            let started = Instant::now();
            let now = tessera_core::clock::Clock::system().now();
            let mut tokens = Vec::with_capacity(real);
            for _ in 0..real {
                let raw = RawToken::generate(TokenKind::Access)?;
                tokens.push((raw.expose().to_owned(), raw.key().0.to_vec()));
            }
            let filler = total.saturating_sub(real);
            let fill = Fill {
                client_id: &client_id,
                audience: &audience,
                tokens: &tokens,
                filler,
                filler_since_ms: now.saturating_add(-ttl).as_secs() * 1000,
                issued_at: now.as_secs(),
                expires_at: now.saturating_add(ttl).as_secs(),
            };
            if database_url.starts_with("sqlite:") {
                fill.sqlite(&database_url).await?;
            } else if database_url.starts_with("postgres:") {
                fill.postgres(&database_url).await?;
            } else {
                bail!("unsupported database URL {database_url}");
            }
            let mut out = std::io::BufWriter::new(std::fs::File::create(&tokens_out)?);
            for (token, _) in &tokens {
                writeln!(out, "{token}")?;
            }
            out.flush()?;
            eprintln!(
                "filled {real} real + {filler} filler tokens in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Issue {
            url,
            client_id,
            client_secret,
            count,
            concurrency,
            max_seconds,
            out,
        } => {
            issue(
                &url,
                &client_id,
                &client_secret,
                count,
                concurrency,
                max_seconds,
                &out,
            )
            .await
        }
        Command::Flow(args) => flow::run(args).await,
        Command::Mix(args) => mix::run(args).await,
        Command::Lag(args) => lag::lag(args).await,
        Command::Revoke(args) => lag::revoke_paced(args).await,
        Command::DiskProbe { dir, seconds } => disk_probe(&dir, seconds),
    }
}

/// The latency of a durable 4 KiB write on the disk under `dir`: what one group commit waits
/// for at the least. Benchmark machines' disks can stall with nothing else running, and every
/// commit in flight then waits (docs/BENCHMARKS.md, "Bounds").
fn disk_probe(dir: &std::path::Path, seconds: f64) -> Result<()> {
    use std::os::unix::fs::FileExt;
    const BLOCK: usize = 4096;
    // Rewritten in place, as SQLite rewrites its WAL after a restart.
    const SPAN: u64 = 16 << 20;
    if seconds <= 0.0 {
        bail!("--seconds must be above 0");
    }
    let path = dir.join(format!("disk-probe-{}.dat", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let block = [0x5a_u8; BLOCK];
    let mut latencies_us = Vec::new();
    let started = Instant::now();
    let mut offset = 0;
    let outcome = (|| -> Result<()> {
        while started.elapsed().as_secs_f64() < seconds {
            let sync_started = Instant::now();
            file.write_all_at(&block, offset)?;
            file.sync_all()?;
            latencies_us.push(u64::try_from(sync_started.elapsed().as_micros())?);
            offset = (offset + BLOCK as u64) % SPAN;
        }
        Ok(())
    })();
    drop(file);
    std::fs::remove_file(&path)?;
    outcome?;
    latencies_us.sort_unstable();
    let ms = |p: f64| tally::percentile(&latencies_us, p) as f64 / 1e3;
    let slow = latencies_us.iter().filter(|us| **us > 20_000).count();
    println!(
        "{} syncs of 4 KiB in {seconds:.0} s: p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms, {slow} over 20 ms",
        latencies_us.len(),
        ms(50.0),
        ms(99.0),
        ms(100.0),
    );
    Ok(())
}

struct Fill<'a> {
    client_id: &'a str,
    audience: &'a str,
    /// (clear token, store key)
    tokens: &'a [(String, Vec<u8>)],
    filler: usize,
    /// The filler's keys carry issue times from here to the real tokens' (now).
    filler_since_ms: i64,
    issued_at: i64,
    expires_at: i64,
}

const BATCH: usize = 20_000;

/// One `INSERT ... SELECT ... ORDER BY hash` from a staging table: every index of `tokens`
/// has the key as its last column, so inserting in key order appends to the
/// B-trees instead of touching a random page per row, which keeps a large load short.
/// Like the server's client_credentials tokens, none has a family.
/// The same text in both dialects.
const MERGE: &str = "INSERT INTO tokens (hash, kind, client_id, scope, issued_at, \
    expires_at, audience) SELECT h, 0, $1, 'api', $2, $3, $4 FROM bench_fill ORDER BY h";

impl Fill<'_> {
    async fn sqlite(&self, url: &str) -> Result<()> {
        // A one-off bulk load: no fsync (the server reopens the file with its own durable
        // settings afterwards, and closing checkpoints the WAL), and a page cache that holds
        // the whole table.
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)?
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Off)
            .pragma("cache_size", "-1000000")
            .pragma("temp_store", "MEMORY");
        let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
        sqlx::query("CREATE TEMP TABLE bench_fill (h BLOB NOT NULL)")
            .execute(&mut conn)
            .await?;
        let mut tx = conn.begin().await?;
        for chunk in self.tokens.chunks(400) {
            let values = vec!["(?)"; chunk.len()].join(", ");
            // Only placeholders are formatted in; the values are bound.
            let sql = format!("INSERT INTO bench_fill (h) VALUES {values}");
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (_, hash) in chunk {
                query = query.bind(hash.as_slice());
            }
            query.execute(&mut *tx).await?;
        }
        sqlx::query(
            // `WHERE $1 > 0`: without it a filler of 0 still made one row (the recursion's
            // seed), with an all-zero time prefix.
            "WITH RECURSIVE n(i) AS (SELECT 1 WHERE $1 > 0 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
             INSERT INTO bench_fill (h) \
             SELECT unhex(printf('%012x', $2 + i * ($3 - $2) / $1)) || randomblob(26) FROM n",
        )
        .bind(i64::try_from(self.filler)?)
        .bind(self.filler_since_ms)
        .bind(self.issued_at * 1000)
        .execute(&mut *tx)
        .await?;
        sqlx::query(MERGE)
            .bind(self.client_id)
            .bind(self.issued_at)
            .bind(self.expires_at)
            .bind(self.audience)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        sqlx::query("DROP TABLE bench_fill")
            .execute(&mut conn)
            .await?;
        // No ANALYZE: the server never runs it, and with the bundled SQLite (STAT4) its
        // statistics make every lookup re-prepare its statement for each new bound hash.
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Ok(())
    }

    async fn postgres(&self, url: &str) -> Result<()> {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        sqlx::query("SET synchronous_commit = off")
            .execute(&mut conn)
            .await?;
        sqlx::query("SET maintenance_work_mem = '256MB'")
            .execute(&mut conn)
            .await?;
        sqlx::query("CREATE TEMP TABLE bench_fill (h BYTEA NOT NULL)")
            .execute(&mut conn)
            .await?;
        for chunk in self.tokens.chunks(BATCH) {
            let hashes: Vec<Vec<u8>> = chunk.iter().map(|(_, h)| h.clone()).collect();
            sqlx::query("INSERT INTO bench_fill SELECT * FROM UNNEST($1::bytea[])")
                .bind(hashes)
                .execute(&mut conn)
                .await?;
        }
        sqlx::query(
            "INSERT INTO bench_fill (h) \
             SELECT decode(lpad(to_hex($2 + i * ($3 - $2) / $1), 12, '0'), 'hex') \
             || substr(sha256(convert_to(gen_random_uuid()::text || i, 'UTF8')), 1, 26) \
             FROM generate_series(1, $1) AS i",
        )
        .bind(i64::try_from(self.filler)?)
        .bind(self.filler_since_ms)
        .bind(self.issued_at * 1000)
        .execute(&mut conn)
        .await?;
        sqlx::query(MERGE)
            .bind(self.client_id)
            .bind(self.issued_at)
            .bind(self.expires_at)
            .bind(self.audience)
            .execute(&mut conn)
            .await?;
        sqlx::query("DROP TABLE bench_fill")
            .execute(&mut conn)
            .await?;
        sqlx::query("VACUUM ANALYZE tokens")
            .execute(&mut conn)
            .await?;
        sqlx::query("CHECKPOINT").execute(&mut conn).await?;
        conn.close().await?;
        Ok(())
    }
}

async fn issue(
    url: &str,
    client_id: &str,
    client_secret: &str,
    count: usize,
    concurrency: usize,
    max_seconds: u64,
    out: &std::path::Path,
) -> Result<()> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(max_seconds);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (http, next) = (http.clone(), next.clone());
        let (url, id, secret) = (
            format!("{url}/token"),
            client_id.to_owned(),
            client_secret.to_owned(),
        );
        workers.spawn(async move {
            let mut got = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < count {
                if Instant::now() > deadline {
                    bail!("issuing {count} tokens took more than {max_seconds} s");
                }
                let answer: serde_json::Value = http
                    .post(&url)
                    .basic_auth(&id, Some(&secret))
                    .form(&[("grant_type", "client_credentials"), ("scope", "api")])
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                let token = answer
                    .get("access_token")
                    .and_then(|t| t.as_str())
                    .context("no access_token in the answer")?;
                got.push(token.to_owned());
            }
            Ok(got)
        });
    }
    let mut file = std::io::BufWriter::new(std::fs::File::create(out)?);
    let mut n = 0;
    while let Some(done) = workers.join_next().await {
        for token in done?? {
            writeln!(file, "{token}")?;
            n += 1;
        }
    }
    file.flush()?;
    eprintln!(
        "issued {n} tokens over HTTP in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
