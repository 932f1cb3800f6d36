//! `tessera-bench mix`: a paced, mixed machine load for `bench/soak`, which checks every
//! answer rather than only counting them.
//!
//! Operations are drawn at random (by `--issue`, `--introspect`, `--revoke` weights) and
//! started on an even schedule of `--rate` per second over all workers:
//!
//! - issue: `POST /token` (client_credentials); the token joins a bounded ring of known
//!   tokens (the oldest leaves it), so the generator's own memory stays flat;
//! - introspect: a random token of the ring; the answer must be `active:true` for a live one,
//!   `active:false` for one whose revocation was acknowledged (and, with `--token-ttl`, for
//!   one that has expired); while a revocation is in flight, or within a second or two of
//!   expiry, either answer is fine;
//! - revoke: a random live token of the ring; `POST /revoke` must answer 200.
//!
//! Every request must answer 200; anything else, a broken connection, a timeout or a wrong
//! `active` is a failure. One `RESULT` line at the end (the format of `bench/lua/post.lua`,
//! plus counts per operation), and a progress line to stderr every `--progress` seconds.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use tessera_core::random::random_b64;
use tessera_core::token::TokenKey;

use crate::tally::{Failure, Tally};

#[derive(Debug, Clone, clap::Args)]
pub struct MixArgs {
    /// The server, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub base_url: String,
    #[arg(long)]
    pub client_id: String,
    #[arg(long)]
    pub client_secret: String,
    /// How long to run.
    #[arg(long)]
    pub seconds: f64,
    /// Operations per second over all workers (the schedule; a slow server gets fewer).
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Workers, each with at most one request in flight.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Relative weights of the three operations.
    #[arg(long, default_value_t = 3)]
    pub issue: u32,
    #[arg(long, default_value_t = 6)]
    pub introspect: u32,
    #[arg(long, default_value_t = 1)]
    pub revoke: u32,
    /// Tokens remembered for introspection and revocation.
    #[arg(long, default_value_t = 20_000)]
    pub ring: usize,
    /// The server's access-token lifetime in seconds, to expect expiry; 0 = never expect it.
    #[arg(long, default_value_t = 0)]
    pub token_ttl: u64,
    /// Seconds between progress lines on stderr; 0 = none.
    #[arg(long, default_value_t = 30)]
    pub progress: u64,
    /// Timeout of each HTTP request, seconds.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
}

/// What the generator knows of a token: live, being revoked, or revoked (acknowledged).
const LIVE: u8 = 0;
const REVOKING: u8 = 1;
const REVOKED: u8 = 2;

struct Entry {
    token: String,
    issued: Instant,
    state: AtomicU8,
}

/// Counts per operation, shared for the progress lines.
#[derive(Default)]
struct Counts {
    issued: AtomicU64,
    introspected: AtomicU64,
    revoked: AtomicU64,
    failed: AtomicU64,
}

struct Ctx {
    http: reqwest::Client,
    base: String,
    args: MixArgs,
    ring: Mutex<VecDeque<Arc<Entry>>>,
    counts: Counts,
}

/// Seconds around expiry within which either introspection answer is accepted.
const EXPIRY_SLACK: Duration = Duration::from_secs(2);

pub async fn run(args: MixArgs) -> Result<()> {
    if args.seconds.is_nan() || args.seconds <= 0.0 || args.rate.is_nan() || args.rate <= 0.0 {
        bail!("--seconds and --rate must be positive");
    }
    if args.issue == 0 {
        bail!("--issue must be positive: the other operations need issued tokens");
    }
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(args.timeout))
        .build()?;
    let ctx = Arc::new(Ctx {
        http,
        base: args.base_url.trim_end_matches('/').to_owned(),
        ring: Mutex::new(VecDeque::with_capacity(args.ring.min(1 << 20))),
        counts: Counts::default(),
        args,
    });
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(ctx.args.seconds);
    let ticket = Arc::new(AtomicU64::new(0));

    let progress = (ctx.args.progress > 0).then(|| {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let every = Duration::from_secs(ctx.args.progress);
            let mut next = started + every;
            while next < deadline {
                tokio::time::sleep_until(next.into()).await;
                let c = &ctx.counts;
                eprintln!(
                    "[mix {:4.0}s] issued {} introspected {} revoked {} failed {}",
                    started.elapsed().as_secs_f64(),
                    c.issued.load(Ordering::Relaxed),
                    c.introspected.load(Ordering::Relaxed),
                    c.revoked.load(Ordering::Relaxed),
                    c.failed.load(Ordering::Relaxed),
                );
                next += every;
            }
        })
    });

    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..ctx.args.concurrency.max(1) {
        let (ctx, ticket) = (ctx.clone(), ticket.clone());
        workers.spawn(async move {
            let mut rng = Rng::new(worker as u64)?;
            let mut tally = Tally::default();
            loop {
                let n = ticket.fetch_add(1, Ordering::Relaxed);
                let due = started + Duration::from_secs_f64(n as f64 / ctx.args.rate);
                if due >= deadline {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                let t0 = Instant::now();
                let op = ctx.pick(&mut rng);
                let operation = ctx.operate(op, &mut rng, &mut tally);
                match tokio::time::timeout_at(deadline.into(), operation).await {
                    Err(_) => break, // in flight at the end: not counted
                    Ok(Ok(())) => tally.ok(t0.elapsed()),
                    Ok(Err(failure)) => {
                        ctx.counts.failed.fetch_add(1, Ordering::Relaxed);
                        tally.fail(&failure);
                    }
                }
            }
            anyhow::Ok(tally)
        });
    }
    let mut tally = Tally::default();
    while let Some(done) = workers.join_next().await {
        tally.merge(done??);
    }
    if let Some(p) = progress {
        p.abort();
    }
    let elapsed = started
        .elapsed()
        .min(Duration::from_secs_f64(ctx.args.seconds));
    tally.sort();
    let c = &ctx.counts;
    eprintln!(
        "mix: {} requests in {:.1} s ({:.0}/s): issued {}, introspected {}, revoked {}; p50 {:.2} ms, p99 {:.2} ms; {} errors",
        tally.http,
        elapsed.as_secs_f64(),
        tally.http as f64 / elapsed.as_secs_f64(),
        c.issued.load(Ordering::Relaxed),
        c.introspected.load(Ordering::Relaxed),
        c.revoked.load(Ordering::Relaxed),
        tally.percentile(50.0) as f64 / 1000.0,
        tally.percentile(99.0) as f64 / 1000.0,
        tally.errors(),
    );
    tally.report_failures();
    println!(
        "{} issued={} introspected={} revoked={}",
        tally.result_line(elapsed),
        c.issued.load(Ordering::Relaxed),
        c.introspected.load(Ordering::Relaxed),
        c.revoked.load(Ordering::Relaxed),
    );
    Ok(())
}

#[derive(Clone, Copy)]
enum Op {
    Issue,
    Introspect,
    Revoke,
}

impl Ctx {
    fn pick(&self, rng: &mut Rng) -> Op {
        let a = &self.args;
        let total = u64::from(a.issue) + u64::from(a.introspect) + u64::from(a.revoke);
        let r = rng.below(total);
        if r < u64::from(a.issue) {
            Op::Issue
        } else if r < u64::from(a.issue) + u64::from(a.introspect) {
            Op::Introspect
        } else {
            Op::Revoke
        }
    }

    /// A random entry of the ring in state `want` (any state if `None`). Tries a few random
    /// slots, so a ring of mostly revoked tokens costs no scan.
    fn sample(&self, rng: &mut Rng, want: Option<u8>) -> Option<Arc<Entry>> {
        let ring = self.ring.lock().ok()?;
        for _ in 0..8 {
            let i = usize::try_from(rng.below(ring.len() as u64)).ok()?;
            if let Some(e) = ring.get(i)
                && want.is_none_or(|w| e.state.load(Ordering::Acquire) == w)
            {
                return Some(e.clone());
            }
        }
        None
    }

    async fn operate(&self, op: Op, rng: &mut Rng, tally: &mut Tally) -> Result<(), Failure> {
        match op {
            Op::Issue => self.issue(tally).await,
            Op::Introspect => match self.sample(rng, None) {
                Some(entry) => self.introspect(&entry, tally).await,
                None => self.issue(tally).await,
            },
            Op::Revoke => match self.sample(rng, Some(LIVE)) {
                Some(entry) => self.revoke(&entry, tally).await,
                None => self.issue(tally).await,
            },
        }
    }

    async fn post(
        &self,
        path: &str,
        form: &[(&str, &str)],
        tally: &mut Tally,
    ) -> Result<String, Failure> {
        tally.http += 1;
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .basic_auth(&self.args.client_id, Some(&self.args.client_secret))
            .form(form)
            .send()
            .await?;
        let status = response.status();
        let body = response.text().await?;
        if status != reqwest::StatusCode::OK {
            return Err(Failure::status(format!(
                "POST {path} answered {status}: {body}"
            )));
        }
        Ok(body)
    }

    async fn issue(&self, tally: &mut Tally) -> Result<(), Failure> {
        let body = self
            .post(
                "/token",
                &[("grant_type", "client_credentials"), ("scope", "api")],
                tally,
            )
            .await?;
        let answer: serde_json::Value = serde_json::from_str(&body)
            .map_err(|e| Failure::status(format!("POST /token: not JSON ({e})")))?;
        let token = answer
            .get("access_token")
            .and_then(|t| t.as_str())
            .ok_or_else(|| Failure::status(format!("POST /token: no access_token in {body}")))?;
        if let Ok(mut ring) = self.ring.lock() {
            if ring.len() >= self.args.ring.max(1) {
                ring.pop_front();
            }
            ring.push_back(Arc::new(Entry {
                token: token.to_owned(),
                issued: Instant::now(),
                state: AtomicU8::new(LIVE),
            }));
        }
        self.counts.issued.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn introspect(&self, entry: &Entry, tally: &mut Tally) -> Result<(), Failure> {
        let before = entry.state.load(Ordering::Acquire);
        let body = self
            .post("/introspect", &[("token", &entry.token)], tally)
            .await?;
        let answer: serde_json::Value = serde_json::from_str(&body)
            .map_err(|e| Failure::status(format!("POST /introspect: not JSON ({e})")))?;
        let active = answer
            .get("active")
            .and_then(|a| a.as_bool())
            .ok_or_else(|| Failure::status(format!("POST /introspect: no active in {body}")))?;
        self.counts.introspected.fetch_add(1, Ordering::Relaxed);
        // The answer is known only if nothing changed while the request was out.
        let after = entry.state.load(Ordering::Acquire);
        let ttl = Duration::from_secs(self.args.token_ttl);
        let age = entry.issued.elapsed();
        let expires = self.args.token_ttl > 0;
        let expired = expires && age > ttl + EXPIRY_SLACK;
        let near_expiry = expires && !expired && age + EXPIRY_SLACK >= ttl;
        let expected = if near_expiry {
            None
        } else if before == REVOKED || expired {
            Some(false)
        } else if before == LIVE && after == LIVE {
            Some(true)
        } else {
            None // a revocation in flight
        };
        match expected {
            Some(want) if want != active => Err(Failure::status(format!(
                "POST /introspect said active={active} for a token that is {} (age {:.0} s): {body}",
                if want { "live" } else { "revoked or expired" },
                age.as_secs_f64()
            ))),
            _ => Ok(()),
        }
    }

    async fn revoke(&self, entry: &Entry, tally: &mut Tally) -> Result<(), Failure> {
        entry.state.store(REVOKING, Ordering::Release);
        self.post("/revoke", &[("token", &entry.token)], tally)
            .await?;
        // Acknowledged: from now on the token must be inactive. (After a failure it stays
        // "revoking": either answer is then accepted.)
        entry.state.store(REVOKED, Ordering::Release);
        self.counts.revoked.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// xorshift64*: enough to spread the choice of operations and tokens; nothing secret.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(salt: u64) -> Result<Self> {
        let seed = TokenKey::of(&random_b64::<16>()?).0;
        let bytes = seed.first_chunk::<8>().copied().unwrap_or([1; 8]);
        Ok(Self(
            (u64::from_le_bytes(bytes) ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1,
        ))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform enough in `0..n` (0 for n = 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}
