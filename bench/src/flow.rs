//! `tessera-bench flow`: the authorization-code flow with PKCE (S256), as a browser and a
//! client web app would run it together, in a loop of concurrent workers.
//!
//! Each worker is one browser: its own cookies (kept by hand, no cookie-store crate), and a
//! CSRF token read from the sign-in form once. One flow is
//!
//! - mode `login`: `POST /login` (the form, with `return_to` = the authorization request),
//!   `GET /authorize` (the redirect it answers), `POST /token` with the code and the PKCE
//!   verifier: three requests, one of them an Argon2id password check;
//! - mode `session`: the browser signed in once before the measurement, so `GET /authorize`
//!   and `POST /token` only: two requests.
//!
//! Consent must be remembered (a client registered with `--skip-consent`, or consent given
//! before); if the server shows the consent page anyway, the worker approves it, as a person
//! would once. Each flow uses a fresh `state` and a fresh verifier, and checks every answer:
//! the redirect goes to the registered URI with the same `state` and a code, and the token
//! endpoint answers 200 with an access token.
//!
//! Setting the browsers up is not measured: each gets its CSRF cookie (`GET /login`) and, in
//! session mode, signs in; the first also runs one whole flow as a check. `--browsers FILE`
//! keeps them between runs (`--setup-only` just writes it), so that a warm-up and a measured
//! run reuse the same sessions and no password check falls in the measured window.
//!
//! `--rate` paces the flows (flows per second over all workers, for a soak); without it the
//! workers run a closed loop like `wrk`. Flows still running when `--seconds` is up are
//! abandoned and not counted, as `wrk` does with requests in flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::{StatusCode, Url};
use tessera_core::random::random_b64;
use tessera_core::token::TokenKey;

use crate::tally::{Failure, Tally, percentile};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Sign in (password check) in every flow.
    Login,
    /// Sign in once per worker, then authorize + token only.
    Session,
}

#[derive(Debug, Clone, clap::Args)]
pub struct FlowArgs {
    /// The server, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "BENCH_FLOW_URL")]
    pub base_url: String,
    #[arg(long, env = "BENCH_FLOW_CLIENT_ID")]
    pub client_id: String,
    #[arg(long, env = "BENCH_FLOW_CLIENT_SECRET")]
    pub client_secret: String,
    /// One of the client's registered redirect URIs. Nothing is ever sent to it: the code
    /// is read from the `Location` header.
    #[arg(long, env = "BENCH_FLOW_REDIRECT_URI")]
    pub redirect_uri: String,
    #[arg(long, env = "BENCH_FLOW_USER")]
    pub user: String,
    /// People to sign in as: with more than one, browser `i` is `{user}{i % users}`, so
    /// browsers are different people (the sign-in throttle refuses one person's guesses from
    /// one address beyond a few at a time, as it should).
    #[arg(long, env = "BENCH_FLOW_USERS", default_value_t = 1)]
    pub users: usize,
    #[arg(long, env = "BENCH_FLOW_PASSWORD")]
    pub password: String,
    #[arg(long, env = "BENCH_FLOW_SCOPE", default_value = "api")]
    pub scope: String,
    #[arg(long, env = "BENCH_FLOW_MODE", value_enum, default_value_t = Mode::Session)]
    pub mode: Mode,
    /// Workers (browsers), each with one flow in flight.
    #[arg(long, env = "BENCH_FLOW_CONCURRENCY", default_value_t = 32)]
    pub concurrency: usize,
    /// How long to run.
    #[arg(long, env = "BENCH_FLOW_SECONDS", default_value_t = 0.0)]
    pub seconds: f64,
    /// Flows per second over all workers; 0 = as fast as the server answers (closed loop).
    #[arg(long, env = "BENCH_FLOW_RATE", default_value_t = 0.0)]
    pub rate: f64,
    /// Timeout of each HTTP request, seconds.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
    /// Keep the browsers (cookies, CSRF token, signed in or not) in this file: read them
    /// from it if it exists, else set them up and write it. The set-up (in session mode, one
    /// password check per browser) then stays out of every measured run.
    #[arg(long, env = "BENCH_FLOW_BROWSERS")]
    pub browsers: Option<std::path::PathBuf>,
    /// Set the browsers up (and check one flow), write --browsers, and exit.
    #[arg(long, requires = "browsers")]
    pub setup_only: bool,
}

pub async fn run(args: FlowArgs) -> Result<()> {
    if !args.setup_only && (args.seconds.is_nan() || args.seconds <= 0.0) {
        bail!("--seconds must be positive");
    }
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(args.timeout))
        .build()?;
    let ctx = Arc::new(Ctx {
        http,
        base: args.base_url.trim_end_matches('/').to_owned(),
        args: args.clone(),
    });

    let browsers = match &args.browsers {
        Some(path) if path.exists() => Browser::load_all(path, args.concurrency.max(1))?,
        _ => {
            let browsers = set_up(&ctx).await?;
            if let Some(path) = &args.browsers {
                Browser::save_all(path, &browsers)?;
            }
            browsers
        }
    };
    if args.setup_only {
        return Ok(());
    }

    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.seconds);
    let ticket = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for mut browser in browsers {
        let (ctx, ticket) = (ctx.clone(), ticket.clone());
        workers.spawn(async move {
            let mut tally = Tally::default();
            let mut steps = Steps::default();
            loop {
                if ctx.args.rate > 0.0 {
                    // An even schedule over all workers: flow n starts at n / rate.
                    let n = ticket.fetch_add(1, Ordering::Relaxed);
                    let due = started + Duration::from_secs_f64(n as f64 / ctx.args.rate);
                    if due >= deadline {
                        break;
                    }
                    tokio::time::sleep_until(due.into()).await;
                }
                let t0 = Instant::now();
                if t0 >= deadline {
                    break;
                }
                let mut flow_steps = Steps::default();
                let flow = browser.flow(&ctx, ctx.args.mode, &mut tally, &mut flow_steps);
                match tokio::time::timeout_at(deadline.into(), flow).await {
                    Err(_) => break, // in flight when the time was up: not counted
                    Ok(Ok(())) => {
                        tally.ok(t0.elapsed());
                        steps.merge(flow_steps);
                    }
                    Ok(Err(failure)) => {
                        tally.fail(&failure);
                        // Sign in again next time, and do not spin on a dead server.
                        browser.session_lost();
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            (tally, steps)
        });
    }
    let mut tally = Tally::default();
    let mut steps = Steps::default();
    while let Some(done) = workers.join_next().await {
        let (t, s) = done?;
        tally.merge(t);
        steps.merge(s);
    }
    let elapsed = started.elapsed().min(Duration::from_secs_f64(args.seconds));
    tally.sort();
    steps.sort();
    let flows = tally.latencies_us.len();
    eprintln!(
        "{flows} flows in {:.1} s: {:.1} flows/s, {:.2} HTTP requests per flow; flow p50 {:.2} ms, p99 {:.2} ms; \
         step p50: login {:.2} ms, authorize {:.2} ms, token {:.2} ms; {} errors",
        elapsed.as_secs_f64(),
        flows as f64 / elapsed.as_secs_f64(),
        if flows > 0 {
            tally.http as f64 / flows as f64
        } else {
            0.0
        },
        tally.percentile(50.0) as f64 / 1000.0,
        tally.percentile(99.0) as f64 / 1000.0,
        percentile(&steps.login, 50.0) as f64 / 1000.0,
        percentile(&steps.authorize, 50.0) as f64 / 1000.0,
        percentile(&steps.token, 50.0) as f64 / 1000.0,
        tally.errors(),
    );
    tally.report_failures();
    println!(
        "{} login_p50_us={} authorize_p50_us={} token_p50_us={}",
        tally.result_line(elapsed),
        percentile(&steps.login, 50.0),
        percentile(&steps.authorize, 50.0),
        percentile(&steps.token, 50.0),
    );
    Ok(())
}

/// Set-up, not measured: each browser gets its CSRF cookie (and, in session mode, signs
/// in). The first one also runs a whole flow, so a wrong setting stops the run here rather
/// than showing as a table of errors.
async fn set_up(ctx: &Ctx) -> Result<Vec<Browser>> {
    let args = &ctx.args;
    let started = Instant::now();
    let mut browsers = Vec::with_capacity(args.concurrency.max(1));
    for i in 0..args.concurrency.max(1) {
        let mut browser = Browser {
            person: i % args.users.max(1),
            ..Browser::default()
        };
        let mut tally = Tally::default();
        let mut steps = Steps::default();
        browser
            .prepare(ctx, &mut tally)
            .await
            .map_err(|f| anyhow::anyhow!("{f}"))
            .context("getting the sign-in form")?;
        if i == 0 {
            browser
                .flow(ctx, Mode::Login, &mut tally, &mut steps)
                .await
                .map_err(|f| anyhow::anyhow!("{f}"))
                .context("the check flow (sign in, authorize, token) failed")?;
        }
        if args.mode == Mode::Session && !browser.signed_in {
            browser
                .log_in(ctx, "/", &mut tally, &mut steps)
                .await
                .map_err(|f| anyhow::anyhow!("{f}"))
                .context("signing in")?;
        }
        if args.mode == Mode::Login {
            // Each measured flow signs in afresh.
            browser.session_lost();
        }
        browsers.push(browser);
    }
    eprintln!(
        "flow set-up: {} browsers ready in {:.1} s (mode {:?}; a check flow succeeded)",
        browsers.len(),
        started.elapsed().as_secs_f64(),
        args.mode
    );
    Ok(browsers)
}

struct Ctx {
    http: reqwest::Client,
    base: String,
    args: FlowArgs,
}

/// Latencies of each step of successful flows, µs.
#[derive(Default)]
struct Steps {
    login: Vec<u64>,
    authorize: Vec<u64>,
    token: Vec<u64>,
}

impl Steps {
    fn merge(&mut self, other: Self) {
        self.login.extend(other.login);
        self.authorize.extend(other.authorize);
        self.token.extend(other.token);
    }

    fn sort(&mut self) {
        self.login.sort_unstable();
        self.authorize.sort_unstable();
        self.token.sort_unstable();
    }
}

fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// One browser: cookies by name, the sign-in form's CSRF token, and whether it is signed in.
#[derive(Default)]
struct Browser {
    cookies: Vec<(String, String)>,
    csrf: String,
    signed_in: bool,
    /// Which of `--users` this browser signs in as.
    person: usize,
}

impl Browser {
    /// One line per browser: person, signed in (0/1), CSRF token, cookies as a `Cookie`
    /// header.
    fn save_all(path: &std::path::Path, browsers: &[Self]) -> Result<()> {
        let mut text = String::new();
        for b in browsers {
            text.push_str(&format!(
                "{}\t{}\t{}\t{}\n",
                b.person,
                u8::from(b.signed_in),
                b.csrf,
                b.cookie_header()
            ));
        }
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }

    fn load_all(path: &std::path::Path, count: usize) -> Result<Vec<Self>> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut browsers = Vec::new();
        for line in text.lines() {
            let mut parts = line.splitn(4, '\t');
            let (Some(person), Some(signed_in), Some(csrf), Some(cookies)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                bail!("{}: not a browsers file", path.display());
            };
            browsers.push(Self {
                person: person
                    .parse()
                    .with_context(|| format!("{}: not a browsers file", path.display()))?,
                signed_in: signed_in == "1",
                csrf: csrf.to_owned(),
                cookies: cookies
                    .split("; ")
                    .filter_map(|c| c.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            });
        }
        if browsers.len() != count {
            bail!(
                "{} holds {} browsers, not --concurrency {count}",
                path.display(),
                browsers.len()
            );
        }
        Ok(browsers)
    }

    /// The `Cookie` header this browser sends.
    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Keeps the cookies an answer sets (an empty value or `Max-Age=0` deletes one).
    fn take_cookies(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all(SET_COOKIE) {
            let Ok(text) = value.to_str() else { continue };
            let mut parts = text.split(';');
            let Some((name, value)) = parts.next().and_then(|p| p.trim().split_once('=')) else {
                continue;
            };
            let deleted =
                value.is_empty() || parts.any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
            self.cookies.retain(|(k, _)| k != name);
            if !deleted {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    fn session_lost(&mut self) {
        self.signed_in = false;
    }

    async fn send(
        &mut self,
        request: reqwest::RequestBuilder,
        tally: &mut Tally,
    ) -> Result<(StatusCode, Option<String>, String), Failure> {
        tally.http += 1;
        let response = request.header(COOKIE, self.cookie_header()).send().await?;
        self.take_cookies(&response);
        let status = response.status();
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.text().await?;
        Ok((status, location, body))
    }

    /// Gets the sign-in form: the CSRF cookie and the token its forms must carry.
    async fn prepare(&mut self, ctx: &Ctx, tally: &mut Tally) -> Result<(), Failure> {
        let get = ctx.http.get(format!("{}/login", ctx.base));
        let (status, _, body) = self.send(get, tally).await?;
        if status != StatusCode::OK {
            return Err(Failure::status(format!("GET /login answered {status}")));
        }
        self.csrf = field(&body, "csrf_token")
            .ok_or_else(|| Failure::status("no csrf_token in the sign-in form"))?;
        Ok(())
    }

    /// Submits the sign-in form; answers where it sends the browser next.
    async fn log_in(
        &mut self,
        ctx: &Ctx,
        return_to: &str,
        tally: &mut Tally,
        steps: &mut Steps,
    ) -> Result<String, Failure> {
        let t0 = Instant::now();
        let username = if ctx.args.users > 1 {
            format!("{}{}", ctx.args.user, self.person)
        } else {
            ctx.args.user.clone()
        };
        let form = [
            ("csrf_token", self.csrf.as_str()),
            ("return_to", return_to),
            ("username", username.as_str()),
            ("password", ctx.args.password.as_str()),
        ];
        let post = ctx.http.post(format!("{}/login", ctx.base)).form(&form);
        let (status, location, body) = self.send(post, tally).await?;
        match (status, location) {
            (StatusCode::SEE_OTHER, Some(location)) => {
                self.signed_in = true;
                steps.login.push(micros(t0));
                Ok(location)
            }
            (status, _) => Err(Failure::status(format!(
                "POST /login answered {status}{}",
                page_error(&body)
            ))),
        }
    }

    /// One whole flow; the access token is checked, then dropped.
    async fn flow(
        &mut self,
        ctx: &Ctx,
        mode: Mode,
        tally: &mut Tally,
        steps: &mut Steps,
    ) -> Result<(), Failure> {
        let verifier = random()?;
        let challenge = URL_SAFE_NO_PAD.encode(TokenKey::of(&verifier).0);
        let state = random()?;
        let args = &ctx.args;
        let request = Url::parse_with_params(
            &format!("{}/authorize", ctx.base),
            [
                ("response_type", "code"),
                ("client_id", args.client_id.as_str()),
                ("redirect_uri", args.redirect_uri.as_str()),
                ("scope", args.scope.as_str()),
                ("state", state.as_str()),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
            ],
        )
        .map_err(|e| Failure::status(format!("bad authorization URL: {e}")))?;
        let mut authorize = request.to_string();
        if mode == Mode::Login || !self.signed_in {
            let return_to = format!("{}?{}", request.path(), request.query().unwrap_or(""));
            let next = self.log_in(ctx, &return_to, tally, steps).await?;
            if next != return_to {
                return Err(Failure::status(format!(
                    "sign-in sent the browser to {next}, not back to the authorization request"
                )));
            }
            authorize = format!("{}{next}", ctx.base);
        }

        let t0 = Instant::now();
        let get = ctx.http.get(&authorize);
        let (status, location, body) = self.send(get, tally).await?;
        let location = match (status, location) {
            (StatusCode::FOUND | StatusCode::SEE_OTHER, Some(l)) => l,
            (StatusCode::OK, _) if body.contains("name=\"decision\"") => {
                self.approve(ctx, &body, tally).await?
            }
            (StatusCode::OK, _) if body.contains("action=\"/login\"") => {
                self.signed_in = false;
                return Err(Failure::status(
                    "GET /authorize showed the sign-in page: the session was not recognised",
                ));
            }
            (status, _) => {
                return Err(Failure::status(format!(
                    "GET /authorize answered {status}{}",
                    page_error(&body)
                )));
            }
        };
        let code = code_from(&location, &args.redirect_uri, &state)?;
        steps.authorize.push(micros(t0));

        let t0 = Instant::now();
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", args.redirect_uri.as_str()),
            ("code_verifier", verifier.as_str()),
        ];
        let post = ctx
            .http
            .post(format!("{}/token", ctx.base))
            .basic_auth(&args.client_id, Some(&args.client_secret))
            .form(&form);
        let (status, _, body) = self.send(post, tally).await?;
        if status != StatusCode::OK {
            return Err(Failure::status(format!(
                "POST /token answered {status}: {body}"
            )));
        }
        let answer: serde_json::Value = serde_json::from_str(&body)
            .map_err(|e| Failure::status(format!("POST /token: not JSON ({e})")))?;
        let token = answer.get("access_token").and_then(|t| t.as_str());
        if token.is_none_or(str::is_empty) {
            return Err(Failure::status(format!(
                "POST /token: no access_token in {body}"
            )));
        }
        // With `openid` the exchange must also sign an ID token, the cost this mode measures.
        let wants_id_token = args.scope.split(' ').any(|s| s == "openid");
        let id_token = answer.get("id_token").and_then(|t| t.as_str());
        if wants_id_token && id_token.is_none_or(|t| t.split('.').count() != 3) {
            return Err(Failure::status(format!(
                "POST /token: scope openid but no signed id_token in {body}"
            )));
        }
        steps.token.push(micros(t0));
        Ok(())
    }

    /// Approves the consent page (its hidden fields, plus `decision=approve`).
    async fn approve(
        &mut self,
        ctx: &Ctx,
        page: &str,
        tally: &mut Tally,
    ) -> Result<String, Failure> {
        let mut form = hidden_fields(page);
        form.push(("decision".into(), "approve".into()));
        let post = ctx.http.post(format!("{}/authorize", ctx.base)).form(&form);
        let (status, location, body) = self.send(post, tally).await?;
        match (status, location) {
            (StatusCode::SEE_OTHER | StatusCode::FOUND, Some(l)) => Ok(l),
            (status, _) => Err(Failure::status(format!(
                "approving consent answered {status}{}",
                page_error(&body)
            ))),
        }
    }
}

fn random() -> Result<String, Failure> {
    random_b64::<32>().map_err(|e| Failure::status(format!("no randomness: {e}")))
}

/// The code in a redirect to `redirect_uri`, after checking `state` came back unchanged.
fn code_from(location: &str, redirect_uri: &str, state: &str) -> Result<String, Failure> {
    let url = Url::parse(location)
        .map_err(|e| Failure::status(format!("redirect to an invalid URL {location}: {e}")))?;
    let base = location.split('?').next().unwrap_or_default();
    if base != redirect_uri {
        return Err(Failure::status(format!(
            "redirected to {location}, not to {redirect_uri}"
        )));
    }
    let mut code = None;
    let mut returned_state = None;
    for (k, v) in url.query_pairs() {
        match k.as_ref() {
            "code" => code = Some(v.into_owned()),
            "state" => returned_state = Some(v.into_owned()),
            "error" => {
                return Err(Failure::status(format!(
                    "the authorization endpoint answered an error: {location}"
                )));
            }
            _ => {}
        }
    }
    if returned_state.as_deref() != Some(state) {
        return Err(Failure::status(format!(
            "state not returned intact: {location}"
        )));
    }
    code.ok_or_else(|| Failure::status(format!("no code in {location}")))
}

/// The value of the first input named `name` in an HTML page, unescaped.
fn field(page: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker)? + marker.len();
    let rest = page.get(start..)?;
    let end = rest.find('"')?;
    Some(unescape(rest.get(..end)?))
}

/// Every hidden input of a page, in order.
fn hidden_fields(page: &str) -> Vec<(String, String)> {
    const HIDDEN: &str = "<input type=\"hidden\" name=\"";
    let mut out = Vec::new();
    let mut rest = page;
    while let Some(i) = rest.find(HIDDEN) {
        rest = rest.get(i + HIDDEN.len()..).unwrap_or_default();
        let Some(name_end) = rest.find('"') else {
            break;
        };
        let name = unescape(rest.get(..name_end).unwrap_or_default());
        let Some(v_start) = rest.find("value=\"").map(|i| i + 7) else {
            break;
        };
        let after = rest.get(v_start..).unwrap_or_default();
        let Some(v_end) = after.find('"') else { break };
        out.push((name, unescape(after.get(..v_end).unwrap_or_default())));
        rest = after.get(v_end..).unwrap_or_default();
    }
    out
}

/// The error line of a Tessera HTML page, if any, for failure messages.
fn page_error(body: &str) -> String {
    let pick = |open: &str| {
        let start = body.find(open)? + open.len();
        let rest = body.get(start..)?;
        Some(rest.get(..rest.find('<')?)?.trim().to_owned())
    };
    pick("role=\"alert\">")
        .or_else(|| pick("<p class=\"lead\">"))
        .or_else(|| pick("<h1>"))
        .map(|s| format!(" ({s})"))
        .unwrap_or_default()
}

fn unescape(s: &str) -> String {
    s.replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&#60;", "<")
        .replace("&#62;", ">")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#38;", "&")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_forms() {
        let page = r#"<form><input type="hidden" name="csrf_token" value="abc">
            <input type="hidden" name="scope" value="api &amp; more"></form>"#;
        assert_eq!(field(page, "csrf_token").as_deref(), Some("abc"));
        assert_eq!(
            hidden_fields(page),
            vec![
                ("csrf_token".to_owned(), "abc".to_owned()),
                ("scope".to_owned(), "api & more".to_owned())
            ]
        );
    }

    #[test]
    fn checks_the_redirect() {
        let r = "http://127.0.0.1/cb";
        assert_eq!(
            code_from("http://127.0.0.1/cb?code=tsc_x&state=s&iss=i", r, "s").unwrap(),
            "tsc_x"
        );
        assert!(code_from("http://127.0.0.1/cb?code=tsc_x&state=t", r, "s").is_err());
        assert!(code_from("http://evil/cb?code=tsc_x&state=s", r, "s").is_err());
        assert!(code_from("http://127.0.0.1/cb?error=access_denied&state=s", r, "s").is_err());
    }
}
