//! Issue 26's figures: how long a revocation takes to reach the guards' caches, and a steady
//! trickle of revocations to run alongside the cached guard's throughput scenario.
//!
//! - `lag`: guards (the `tessera-guard` library, as a resource server embeds it) subscribed
//!   round-robin to the given nodes, each with a 300 s cache holding every token of the list;
//!   then, one token at a time, `POST /revoke` at a node picked at random, and the time from
//!   that answer until every guard refuses the token. The guards must refuse from the events
//!   alone: an introspection during that phase would mean an event was missed.
//! - `revoke`: `POST /revoke` of the listed tokens at a fixed rate until stopped (SIGTERM) or
//!   out of tokens; every answer must be 200.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tessera_guard::{RemoteConfig, RemoteIntrospection, TokenValidator};

#[derive(Debug, Clone, clap::Args)]
pub struct LagArgs {
    /// A node's base URL (its issuer); repeat for several nodes.
    #[arg(long = "node", required = true)]
    pub nodes: Vec<String>,
    /// Guards, each subscribed to the next node in turn.
    #[arg(long, default_value_t = 3)]
    pub guards: usize,
    /// The resource server's credentials (the guards introspect and subscribe with them).
    #[arg(long)]
    pub resource_id: String,
    #[arg(long)]
    pub resource_secret: String,
    /// The tokens' client, which revokes them.
    #[arg(long)]
    pub client_id: String,
    #[arg(long)]
    pub client_secret: String,
    /// Active tokens in the resource's audience, one per line.
    #[arg(long)]
    pub tokens: std::path::PathBuf,
    /// How many of them to cache and revoke.
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    /// A guard still accepting a token this long after its revocation is a failure.
    #[arg(long, default_value_t = 5000)]
    pub patience_ms: u64,
}

pub async fn lag(args: LagArgs) -> Result<()> {
    let tokens = read_tokens(&args.tokens, args.count)?;
    let http = reqwest::Client::new();
    let mut guards = Vec::with_capacity(args.guards);
    for i in 0..args.guards {
        let node = args.nodes.get(i % args.nodes.len()).context("no node")?;
        let mut config = RemoteConfig::new("", &args.resource_id, &args.resource_secret);
        config.cache_ttl = Duration::from_secs(300);
        let guard = RemoteIntrospection::discover(node, config)
            .await
            .with_context(|| format!("discovering {node}"))?;
        let mut changes = guard
            .stream_status_changes()
            .context("the server advertises no revocation stream")?;
        tokio::time::timeout(Duration::from_secs(10), changes.wait_for(|s| s.connected))
            .await
            .context("a guard did not connect to the revocation stream in 10 s")??;
        guards.push(guard);
    }
    for guard in &guards {
        for token in &tokens {
            if guard.validate(token).await?.is_none() {
                bail!("a token of the list is not active before its revocation");
            }
        }
    }
    let introspections: u64 = guards.iter().map(|g| g.introspection_calls()).sum();

    let patience = Duration::from_millis(args.patience_ms);
    let mut lags = Vec::with_capacity(tokens.len());
    let mut pick = crate::mix::Rng::new(0)?;
    let started = Instant::now();
    for token in &tokens {
        let node = args
            .nodes
            .get(usize::try_from(pick.below(args.nodes.len() as u64))?)
            .context("no node")?;
        revoke(&http, node, &args.client_id, &args.client_secret, token).await?;
        let answered = Instant::now();
        for guard in &guards {
            refused(guard, token, answered, patience).await?;
        }
        lags.push(answered.elapsed());
    }
    let elapsed = started.elapsed();
    let during: u64 = guards.iter().map(|g| g.introspection_calls()).sum::<u64>() - introspections;
    if during > 0 {
        bail!("the guards introspected {during} times: some refusal did not come from an event");
    }
    lags.sort();
    let at = |q: usize| {
        lags.get((lags.len() * q / 100).min(lags.len() - 1))
            .copied()
    };
    let ms = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    println!(
        "LAG nodes={} guards={} revocations={} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} max_ms={:.2} seconds={:.1}",
        args.nodes.len(),
        guards.len(),
        lags.len(),
        ms(at(50)),
        ms(at(90)),
        ms(at(99)),
        ms(lags.last().copied()),
        elapsed.as_secs_f64()
    );
    Ok(())
}

/// Waits until `guard` refuses `token`, waking on each of its stream's events (and every
/// millisecond, so that a missed wake-up cannot stall the measurement).
async fn refused(
    guard: &RemoteIntrospection,
    token: &str,
    since: Instant,
    patience: Duration,
) -> Result<()> {
    let mut changes = guard.stream_status_changes().context("no stream")?;
    loop {
        changes.mark_unchanged();
        if guard.validate(token).await?.is_none() {
            return Ok(());
        }
        if since.elapsed() > patience {
            bail!("a guard accepted a revoked token {patience:?} after its revocation");
        }
        let _ = tokio::time::timeout(Duration::from_millis(1), changes.changed()).await;
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct RevokeArgs {
    /// The server's base URL.
    #[arg(long)]
    pub url: String,
    #[arg(long)]
    pub client_id: String,
    #[arg(long)]
    pub client_secret: String,
    /// Tokens of that client, one per line, revoked in order.
    #[arg(long)]
    pub tokens: std::path::PathBuf,
    /// Revocations per second.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
}

pub async fn revoke_paced(args: RevokeArgs) -> Result<()> {
    let tokens = read_tokens(&args.tokens, usize::MAX)?;
    let http = reqwest::Client::new();
    let mut stop = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut done = 0usize;
    let mut failure = None;
    for token in &tokens {
        tokio::select! {
            _ = stop.recv() => break,
            _ = tick.tick() => {}
        }
        if let Err(e) = revoke(
            &http,
            &args.url,
            &args.client_id,
            &args.client_secret,
            token,
        )
        .await
        {
            failure = Some(e);
            break;
        }
        done += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "REVOKED revocations={done} seconds={seconds:.1} rate={:.1} ran_out={}",
        done as f64 / seconds.max(f64::EPSILON),
        done == tokens.len()
    );
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

async fn revoke(
    http: &reqwest::Client,
    base: &str,
    client_id: &str,
    client_secret: &str,
    token: &str,
) -> Result<()> {
    let response = http
        .post(format!("{}/revoke", base.trim_end_matches('/')))
        .basic_auth(client_id, Some(client_secret))
        .form(&[("token", token), ("token_type_hint", "access_token")])
        .timeout(Duration::from_secs(5))
        .send()
        .await?;
    if response.status() != 200 {
        bail!("POST /revoke answered {}", response.status());
    }
    Ok(())
}

fn read_tokens(path: &std::path::Path, count: usize) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let tokens: Vec<String> = text
        .lines()
        .filter(|l| !l.is_empty())
        .take(count)
        .map(str::to_owned)
        .collect();
    if tokens.is_empty() || (count != usize::MAX && tokens.len() < count) {
        bail!(
            "{} holds {} tokens, {count} wanted",
            path.display(),
            tokens.len()
        );
    }
    Ok(tokens)
}
