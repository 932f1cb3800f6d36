//! `tessera`: the command line. It parses settings, opens the store and hands over to the
//! library crates; no protocol logic lives here.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use tessera_core::admin::new_admin_token;
use tessera_core::audit::RevocationCause;
use tessera_core::authorize::PkcePolicy;
use tessera_core::client::{ClientRegistration, register};
use tessera_core::clock::Clock;
use tessera_core::grant::Lifetimes;
use tessera_core::oidc::{Profile, post_logout_redirect_uris as post_logout_redirect_uris_checked};
use tessera_core::registration::{RegistrationPolicy, new_initial_access_token};
use tessera_core::resource::{ResourceUri, register_resource};
use tessera_core::secret::{Secret, hash_secret};
use tessera_core::user::{MIN_PASSWORD_CHARS, new_password_hash, register as register_user};
use tessera_server::{Config, Server};
use tessera_store::{ClientOidc, Store, StoreError};

mod audit;
mod demo;
mod keys;

#[derive(Parser)]
#[command(
    name = "tessera",
    version,
    about = "An OAuth 2.0 authorization server for opaque tokens"
)]
struct Cli {
    /// sqlite://PATH (created if missing) or postgres://USER@HOST/DB.
    #[arg(
        long,
        global = true,
        env = "TESSERA_DATABASE_URL",
        default_value = "sqlite://tessera.db"
    )]
    database_url: String,

    /// How log lines are written to standard error: `text` for people, `json` (one object a
    /// line) for log collectors.
    #[arg(long, global = true, env = "TESSERA_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the authorization server (migrations are applied first).
    Serve(ServeArgs),
    /// Run the whole tutorial locally: the server, the client web app and the demo API.
    Demo(DemoArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Register, list and delete clients.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Create and delete users, and set their passwords.
    #[command(subcommand)]
    User(UserCommand),
    /// Register, list and delete resource servers (RFC 8707 audiences).
    #[command(subcommand)]
    Resource(ResourceCommand),
    /// Create initial access tokens, for `serve --registration token` (RFC 7591).
    #[command(subcommand)]
    RegistrationToken(RegistrationTokenCommand),
    /// Rotate, prune and list the OpenID Connect ID-token signing keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Print the audit trail, oldest first: sign-ins and failures, consents, revocations and
    /// their cause, registrations, and every change an operator made.
    Audit(audit::AuditArgs),
    /// Create, list and revoke the bearer tokens of the admin API (`serve --admin-listen`).
    #[command(subcommand)]
    AdminToken(AdminTokenCommand),
}

#[derive(Subcommand)]
enum AdminTokenCommand {
    /// Create an admin token. Printed once; only its SHA-256 is stored.
    Create {
        /// Seconds the token stays valid; without it, until revoked.
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..=315_360_000))]
        expires_in: Option<i64>,
        /// Print exactly one JSON object {"token", "id", "expires_at"}.
        #[arg(long)]
        json: bool,
    },
    /// List admin tokens (their ids, never the tokens).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke an admin token by its id; it is refused from the next request on.
    Revoke {
        /// Ids are random base64url and may begin with `-`.
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
}

#[derive(Subcommand)]
enum RegistrationTokenCommand {
    /// Create an initial access token: whoever holds it may register clients at /register
    /// until it expires. Printed once; only its SHA-256 is stored.
    Create {
        /// Seconds the token stays valid.
        #[arg(long, default_value_t = 86_400, value_parser = clap::value_parser!(i64).range(1..=31_536_000))]
        expires_in: i64,
        /// Print exactly one JSON object {"token", "expires_at"}.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ResourceCommand {
    /// Register a resource server under its identifier. Prints the client credentials it
    /// introspects with (the secret once; only its hash is stored).
    Create {
        /// The resource identifier: an absolute URI without fragment, as clients send it in
        /// `resource` (e.g. https://api.example.com).
        #[arg(long)]
        uri: String,
        /// A name for people; the identifier by default.
        #[arg(long)]
        name: Option<String>,
        /// Scopes this resource defines, space-separated; repeat for more. Tokens granted one
        /// of them are for this resource when a client names no resource.
        #[arg(long)]
        scope: Vec<String>,
        /// Print exactly one JSON object {"resource", "client_id", "client_secret"}.
        #[arg(long)]
        json: bool,
    },
    /// List registered resource servers.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete a resource server and its credentials.
    Delete { uri: String },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user; the password is read from standard input (one line).
    Create {
        username: String,
        #[arg(long, required = true)]
        password_stdin: bool,
        #[command(flatten)]
        profile: ProfileArgs,
        /// The email address is known to be the user's.
        #[arg(long)]
        email_verified: bool,
    },
    /// Change a user's profile (the OpenID Connect claims); what is not given stays.
    Update {
        username: String,
        #[command(flatten)]
        profile: ProfileArgs,
        #[arg(long, action = clap::ArgAction::Set)]
        email_verified: Option<bool>,
    },
    /// Delete a user with their tokens and sessions.
    Delete { username: String },
    /// Replace a user's password (read from standard input); end their sessions and tokens.
    SetPassword {
        username: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Revoke every token issued for a user; their sign-in sessions stay.
    RevokeTokens { username: String },
}

/// A person's claims, for ID tokens and userinfo (scopes `profile` and `email`).
#[derive(Args)]
struct ProfileArgs {
    #[arg(long)]
    email: Option<String>,
    /// The full name, as the `name` claim.
    #[arg(long)]
    name: Option<String>,
}

#[derive(Args)]
struct ServeArgs {
    #[arg(long, env = "TESSERA_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Issuer URL (RFC 8414); defaults to http:// and the listen address.
    #[arg(long, env = "TESSERA_ISSUER")]
    issuer: Option<String>,
    /// Access token lifetime in seconds.
    #[arg(long, env = "TESSERA_ACCESS_TOKEN_TTL", default_value_t = 3600, value_parser = clap::value_parser!(i64).range(1..))]
    access_token_ttl: i64,
    /// A grant's whole life in seconds, from sign-in: refreshing never extends it.
    #[arg(long, env = "TESSERA_REFRESH_TOKEN_TTL", default_value_t = 2_592_000, value_parser = clap::value_parser!(i64).range(1..))]
    refresh_token_ttl: i64,
    /// Seconds after a rotation during which the same client presenting the rotated refresh
    /// token again gets a fresh pair instead of the grant being revoked (0: never).
    #[arg(long, env = "TESSERA_REFRESH_GRACE", default_value_t = 0, value_parser = clap::value_parser!(i64).range(0..=300))]
    refresh_grace: i64,
    /// Let confidential clients skip PKCE (public clients always need it). Off by default,
    /// as OAuth 2.1 recommends PKCE for every client.
    #[arg(long, env = "TESSERA_PKCE_OPTIONAL_FOR_CONFIDENTIAL")]
    pkce_optional_for_confidential: bool,
    /// Lifetime of a sign-in session at the server, in seconds.
    #[arg(long, env = "TESSERA_SESSION_TTL", default_value_t = 28_800, value_parser = clap::value_parser!(i64).range(60..))]
    session_ttl: i64,
    /// Seconds a node may reuse a client's registration without reading the store again (0:
    /// read it on every request). Deleting or changing a client takes effect within this time.
    #[arg(long, env = "TESSERA_CLIENT_CACHE_TTL", default_value_t = 2)]
    client_cache_ttl: u64,
    /// Seconds between purges of expired and revoked tokens.
    #[arg(long, env = "TESSERA_JANITOR_INTERVAL", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    janitor_interval: u64,
    /// Seconds a revocation event is kept for resource servers to catch up on; one that
    /// reconnects after a longer gap is told to empty its cache.
    #[arg(
        long,
        env = "TESSERA_REVOCATION_EVENT_RETENTION",
        default_value_t = 3600,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    revocation_event_retention: u64,
    /// Days an audit event is kept (`tessera audit`); the janitor purges older ones.
    #[arg(
        long,
        env = "TESSERA_AUDIT_RETENTION",
        default_value_t = 90,
        value_parser = clap::value_parser!(u64).range(1..=36_500)
    )]
    audit_retention: u64,
    /// A proxy (address or CIDR range) whose X-Forwarded-For names the caller, for the
    /// sign-in and client-authentication throttles; repeat for several (the variable takes a
    /// comma-separated list). From anyone else the header is ignored.
    #[arg(
        long = "trusted-proxy",
        env = "TESSERA_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    trusted_proxies: Vec<tessera_server::proxy::Cidr>,
    /// Who may register clients at /register (RFC 7591): `off` (nobody; the endpoint does
    /// not exist), `open` (anyone, 10 a minute per address) or `token` (holders of an initial
    /// access token from `tessera registration-token create`).
    #[arg(long, env = "TESSERA_REGISTRATION", default_value = "off", value_parser = ["off", "open", "token"])]
    registration: String,
    /// Serve Prometheus metrics at GET /metrics on this address, a listener of its own (bind
    /// it where only the scraper reaches). Off unless set: nothing is then measured.
    #[arg(long, env = "TESSERA_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Serve the admin API (JSON, for holders of an admin token from `tessera admin-token
    /// create`) and its OpenAPI document at GET /openapi.json on this address, a listener of
    /// its own (bind it where only operators reach). Off unless set.
    #[arg(long, env = "TESSERA_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
    #[command(flatten)]
    http: HttpLimitArgs,
    #[command(flatten)]
    kek: keys::KekArgs,
    #[command(flatten)]
    client_metadata: ClientMetadataArgs,
}

/// Client metadata documents, for `serve` and `demo` alike.
#[derive(Args)]
pub(crate) struct ClientMetadataArgs {
    /// Accept a client_id that is the https URL of the client's metadata document, fetched
    /// at /authorize (public addresses only, at most 5 KB, 2 s): `on`, `off`, or `auto`, on
    /// when --registration is open (a document is a registration nobody vetted).
    #[arg(long, env = "TESSERA_CLIENT_METADATA_DOCUMENTS", default_value = "auto", value_parser = ["auto", "on", "off"])]
    client_metadata_documents: String,
    /// Fetch documents from loopback addresses too: for local development and tests only.
    #[arg(long, env = "TESSERA_ALLOW_LOOPBACK_CLIENT_METADATA")]
    allow_loopback_client_metadata: bool,
    /// A PEM file of CA certificates trusted, besides the system's, when fetching documents.
    #[arg(long, env = "TESSERA_CLIENT_METADATA_CA_FILE")]
    client_metadata_ca_file: Option<std::path::PathBuf>,
}

impl ClientMetadataArgs {
    /// Sets the config's document fields; `registration` decides `auto`.
    pub(crate) fn apply(self, config: &mut Config) {
        config.client_metadata_documents = match self.client_metadata_documents.as_str() {
            "on" => true,
            "off" => false,
            _ => config.registration == RegistrationPolicy::Open,
        };
        config.allow_loopback_client_metadata = self.allow_loopback_client_metadata;
        config.client_metadata_ca_file = self.client_metadata_ca_file;
    }
}

/// The limits on each HTTP connection, for `serve` and `demo` alike.
#[derive(Args)]
struct HttpLimitArgs {
    /// Seconds a client has to send a request's headers, counted from the connection's accept
    /// or from the first byte of a later request on it; then the connection is closed.
    #[arg(long, env = "TESSERA_HEADER_READ_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    header_read_timeout: u64,
    /// Seconds a kept-alive connection may wait for its next request before it is closed.
    #[arg(long, env = "TESSERA_IDLE_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout: u64,
    /// Connections served at once; more wait in the listen backlog until one closes. Lowered
    /// to fit the open-file limit (raised to its hard limit at start), less up to 256.
    #[arg(long, env = "TESSERA_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,
}

#[derive(Args)]
struct DemoArgs {
    /// The authorization server's address.
    #[arg(long, env = "TESSERA_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The client web app's address.
    #[arg(long, default_value = "127.0.0.1:5000")]
    app_listen: SocketAddr,
    /// The demo API's address.
    #[arg(long, default_value = "127.0.0.1:5001")]
    api_listen: SocketAddr,
    /// How the API checks tokens: `remote` (RFC 7662 introspection over HTTP, as any
    /// resource server would) or `local` (straight from the store).
    #[arg(long, default_value = "remote", value_parser = ["remote", "local"])]
    api_validation: String,
    /// Seconds the API may reuse an introspection answer (remote mode). 0 = ask every time.
    /// With the revocation stream, a revoked token is evicted within milliseconds anyway.
    #[arg(long, default_value_t = 300)]
    api_cache_ttl: u64,
    /// Whether the API's guard follows the server's revocation stream (remote mode with a
    /// cache); without it a revoked token passes until its cached answer expires.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    api_revocation_stream: bool,
    /// Who may register clients at /register: open to anyone in the demo (see `serve`).
    #[arg(long, env = "TESSERA_REGISTRATION", default_value = "open", value_parser = ["off", "open", "token"])]
    registration: String,
    /// Access token lifetime in seconds (short values show the app's automatic refresh).
    #[arg(long, env = "TESSERA_ACCESS_TOKEN_TTL", default_value_t = 3600, value_parser = clap::value_parser!(i64).range(1..))]
    access_token_ttl: i64,
    /// Where Prometheus metrics (the server's and the demo API's guard's) are served at GET
    /// /metrics. If the address is taken, the demo runs without them.
    #[arg(long, env = "TESSERA_METRICS_LISTEN", default_value = "127.0.0.1:9100")]
    metrics_listen: SocketAddr,
    /// Run without the metrics listener.
    #[arg(long)]
    no_metrics: bool,
    /// The key-encryption key, as for `serve`; without one the demo keeps its own beside the
    /// database.
    #[command(flatten)]
    kek: keys::KekArgs,
    #[command(flatten)]
    http: HttpLimitArgs,
    #[command(flatten)]
    client_metadata: ClientMetadataArgs,
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Register a client. The secret of a confidential client is printed once and only its
    /// hash is stored.
    Create {
        #[arg(long)]
        name: String,
        /// A public client (no secret; authorization code with PKCE only).
        #[arg(long)]
        public: bool,
        /// A redirect URI, matched exactly; repeat for several.
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// A grant type; repeat for several. Default: client_credentials for a confidential
        /// client without redirect URIs, else authorization_code and refresh_token.
        #[arg(long = "grant-type")]
        grant_types: Vec<String>,
        /// The scopes the client may request, space-separated.
        #[arg(long, default_value = "")]
        scope: String,
        /// A first-party client: users are not asked for consent.
        #[arg(long)]
        skip_consent: bool,
        /// Accept http redirect URIs on hosts other than loopback (codes then travel in
        /// clear): for a test environment without TLS only.
        #[arg(long)]
        allow_insecure_redirect_uri: bool,
        /// Where the client may send people after signing out (OpenID Connect RP-Initiated
        /// Logout), matched exactly; repeat for several.
        #[arg(long = "post-logout-redirect-uri")]
        post_logout_redirect_uris: Vec<String>,
        /// The algorithm of the client's ID tokens (default ES256).
        #[arg(long, value_parser = ["ES256", "RS256"])]
        id_token_signed_response_alg: Option<String>,
        /// Print exactly one JSON object {"client_id", "client_secret"}.
        #[arg(long)]
        json: bool,
    },
    /// List registered clients.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete a client and every token issued to it.
    Delete {
        /// Client ids are random base64url and may begin with `-`.
        #[arg(allow_hyphen_values = true)]
        client_id: String,
    },
    /// Revoke every token issued to a client; the client stays.
    RevokeTokens {
        #[arg(allow_hyphen_values = true)]
        client_id: String,
    },
}

/// mimalloc instead of the system allocator: glibc's malloc and free weigh on every request,
/// most on PostgreSQL issuance, whose batches build arrays that glibc then consolidates in its
/// fast bins; mimalloc costs less CPU for a little more peak memory (docs/BENCHMARKS.md,
/// "Bounds").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    init_tracing(&cli.log_format);
    let store = open_store(&cli.database_url).await?;
    match cli.command {
        Command::Serve(args) => serve(store, args).await,
        Command::Demo(args) => demo::run(store, args, &cli.database_url).await,
        Command::Migrate => {
            eprintln!("migrations applied");
            Ok(())
        }
        Command::Client(cmd) => client(store.as_ref(), cmd).await,
        Command::User(cmd) => user(store.as_ref(), cmd).await,
        Command::Resource(cmd) => resource(store.as_ref(), cmd).await,
        Command::RegistrationToken(cmd) => registration_token(store.as_ref(), cmd).await,
        Command::Keys(cmd) => keys::keys(store.as_ref(), cmd).await,
        Command::Audit(args) => audit::audit(store.as_ref(), args).await,
        Command::AdminToken(cmd) => admin_token(store.as_ref(), cmd).await,
    }
}

async fn admin_token(store: &dyn Store, cmd: AdminTokenCommand) -> Result<()> {
    match cmd {
        AdminTokenCommand::Create { expires_in, json } => {
            let (token, record) = new_admin_token(Clock::system().now(), expires_in)?;
            store.create_admin_token(&record).await?;
            let expires_at = record.expires_at.map(|t| t.as_secs());
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "token": token.expose(),
                        "id": record.id,
                        "expires_at": expires_at,
                    })
                );
            } else {
                println!("token:      {}", token.expose());
                println!("id:         {}", record.id);
                match expires_at {
                    Some(at) => println!("expires_at: {at}"),
                    None => println!("expires_at: never (until revoked)"),
                }
                println!("(the token is shown only this once; Tessera keeps only its hash)");
            }
            Ok(())
        }
        AdminTokenCommand::List { json } => {
            let tokens = store.list_admin_tokens().await?;
            let now = Clock::system().now();
            if json {
                let list: Vec<_> = tokens
                    .iter()
                    .map(|t| {
                        serde_json::json!({
                            "id": t.id,
                            "created_at": t.created_at.as_secs(),
                            "expires_at": t.expires_at.map(|e| e.as_secs()),
                            "revoked_at": t.revoked_at.map(|r| r.as_secs()),
                            "live": t.is_live(now),
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else {
                for t in &tokens {
                    let state = if t.revoked_at.is_some() {
                        "revoked"
                    } else if t.is_live(now) {
                        "live"
                    } else {
                        "expired"
                    };
                    let expires = t
                        .expires_at
                        .map_or_else(|| "never".to_owned(), |e| e.as_secs().to_string());
                    println!(
                        "{}\t{state}\tcreated_at={}\texpires_at={expires}",
                        t.id,
                        t.created_at.as_secs()
                    );
                }
            }
            Ok(())
        }
        AdminTokenCommand::Revoke { id } => {
            if store.revoke_admin_token(&id, Clock::system().now()).await? {
                eprintln!("revoked admin token {id}");
                Ok(())
            } else {
                bail!("no live admin token with id {id}")
            }
        }
    }
}

/// The policy a `--registration` value names (clap has checked it is one of them).
pub(crate) fn registration_policy(value: &str) -> RegistrationPolicy {
    RegistrationPolicy::parse(value).unwrap_or_default()
}

async fn registration_token(store: &dyn Store, cmd: RegistrationTokenCommand) -> Result<()> {
    match cmd {
        RegistrationTokenCommand::Create { expires_in, json } => {
            let (token, record) = new_initial_access_token(Clock::system().now(), expires_in)?;
            store.create_initial_access_token(&record).await?;
            let expires_at = record.expires_at.as_secs();
            let created = audit::change("registration-token create").with("expires_at", expires_at);
            audit::record(store, [created]).await;
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "token": token.expose(), "expires_at": expires_at })
                );
            } else {
                println!("initial access token: {}", token.expose());
                println!("expires at:           {expires_at} (Unix time)");
                println!("(shown only this once; Tessera keeps only its hash)");
                println!("register with: Authorization: Bearer <token> on POST /register");
            }
            Ok(())
        }
    }
}

/// Reads one line from standard input: the password, without its line ending.
fn password_from_stdin() -> Result<Secret> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.chars().count() < MIN_PASSWORD_CHARS {
        bail!("the password must have at least {MIN_PASSWORD_CHARS} characters");
    }
    Ok(Secret::new(password))
}

async fn user(store: &dyn Store, cmd: UserCommand) -> Result<()> {
    match cmd {
        UserCommand::Create {
            username,
            profile,
            email_verified,
            ..
        } => {
            let user = register_user(&username, &password_from_stdin()?, Clock::system().now())?;
            match store.create_user(&user).await {
                Err(tessera_store::StoreError::Conflict) => {
                    bail!("a user named {} exists already", user.username.as_str())
                }
                other => other?,
            }
            let profile = Profile {
                name: profile.name,
                email: profile.email,
                email_verified,
            };
            if profile != Profile::default() {
                store.set_profile(&username, &profile).await?;
            }
            audit::record(store, [audit::change("user create").user(&username)]).await;
            eprintln!("created user {} (sub {})", user.username.as_str(), user.id);
            Ok(())
        }
        UserCommand::Update {
            username,
            profile,
            email_verified,
        } => {
            let Some(user) = store.get_user_by_username(&username).await? else {
                bail!("no user named {username}")
            };
            let (_, mut current) = store.get_profile(&user.id).await?.unwrap_or_default();
            if profile.email.is_some() {
                // A new address is not known to be theirs unless said so.
                current.email_verified = false;
                current.email = profile.email.filter(|e| !e.is_empty());
            }
            if profile.name.is_some() {
                current.name = profile.name.filter(|n| !n.is_empty());
            }
            if let Some(verified) = email_verified {
                current.email_verified = verified;
            }
            store.set_profile(&username, &current).await?;
            audit::record(store, [audit::change("user update").user(&username)]).await;
            eprintln!("updated the profile of {username}");
            Ok(())
        }
        UserCommand::Delete { username } => {
            if store.delete_user(&username, Clock::system().now()).await? {
                let events = [
                    audit::change("user delete").user(&username),
                    audit::revoked(RevocationCause::UserDeleted).user(&username),
                ];
                audit::record(store, events).await;
                eprintln!("deleted user {username}, their tokens and sessions");
                Ok(())
            } else {
                bail!("no user named {username}")
            }
        }
        UserCommand::SetPassword { username, .. } => {
            let password_hash = new_password_hash(&password_from_stdin()?)?;
            if store
                .set_password(&username, &password_hash, Clock::system().now())
                .await?
            {
                let events = [
                    audit::change("user set-password").user(&username),
                    audit::revoked(RevocationCause::PasswordChanged).user(&username),
                ];
                audit::record(store, events).await;
                eprintln!("password of {username} replaced; their sessions and tokens are ended");
                Ok(())
            } else {
                bail!("no user named {username}")
            }
        }
        UserCommand::RevokeTokens { username } => {
            match store
                .revoke_user_tokens(&username, Clock::system().now())
                .await?
            {
                Some(revoked) => {
                    let events = [
                        audit::change("user revoke-tokens").user(&username),
                        audit::revoked(RevocationCause::UserRevokeTokens)
                            .user(&username)
                            .with("count", revoked),
                    ];
                    audit::record(store, events).await;
                    eprintln!("revoked {revoked} tokens of {username}");
                    Ok(())
                }
                None => bail!("no user named {username}"),
            }
        }
    }
}

/// `RUST_LOG` as a list of `target=level` (and a bare level for the rest), such as
/// `info,tessera_server=debug`: `Targets`, not `EnvFilter`, whose span and field filters
/// need a regular-expression engine in every build for a feature nobody here uses.
///
/// `json`: one object a line, the event's fields at its top level (a request's line carries
/// `request_id`, `route`, `status` and `latency_us`) and the span it happened in under `span`.
fn init_tracing(format: &str) {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    const DEFAULT: &str = "info,sqlx=warn,rmcp=warn";
    let (filter, refused) = match std::env::var("RUST_LOG") {
        Ok(wanted) if !wanted.trim().is_empty() => match wanted.parse::<Targets>() {
            Ok(filter) => (filter, None),
            Err(e) => (parse_default(DEFAULT), Some(format!("{wanted:?}: {e}"))),
        },
        _ => (parse_default(DEFAULT), None),
    };
    let json = format == "json";
    let text_layer = (!json).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            // Colour codes only for a person at a terminal, not in files and log collectors.
            .with_ansi(std::io::stderr().is_terminal())
    });
    let json_layer = json.then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
    });
    tracing_subscriber::registry()
        .with(text_layer)
        .with(json_layer)
        .with(filter)
        .init();
    if let Some(refused) = refused {
        tracing::warn!("RUST_LOG ignored, logging at {DEFAULT} instead: {refused}");
    }
}

fn parse_default(directives: &str) -> tracing_subscriber::filter::Targets {
    directives.parse().unwrap_or_default()
}

/// Every command works on a migrated database, so a fresh file or database just works.
async fn open_store(url: &str) -> Result<Arc<dyn Store>> {
    let redacted = tessera_store::redact_url(url);
    let store = tessera_store::connect(url)
        .await
        .with_context(|| format!("opening database {redacted}"))?;
    store
        .migrate()
        .await
        .with_context(|| format!("migrating database {redacted}"))?;
    Ok(store)
}

async fn serve(store: Arc<dyn Store>, args: ServeArgs) -> Result<()> {
    let mut config = Config {
        listen: args.listen,
        issuer: args.issuer,
        lifetimes: Lifetimes {
            access: args.access_token_ttl,
            refresh: args.refresh_token_ttl,
            refresh_grace: args.refresh_grace,
        },
        janitor_interval: Duration::from_secs(args.janitor_interval),
        revocation_event_retention: Duration::from_secs(args.revocation_event_retention),
        audit_retention: Duration::from_secs(args.audit_retention * 86_400),
        clock: Clock::system(),
        pkce: PkcePolicy {
            require_for_confidential: !args.pkce_optional_for_confidential,
        },
        session_ttl: args.session_ttl,
        client_cache_ttl: Duration::from_secs(args.client_cache_ttl),
        header_read_timeout: Duration::from_secs(args.http.header_read_timeout),
        idle_timeout: Duration::from_secs(args.http.idle_timeout),
        max_connections: usize::try_from(args.http.max_connections).unwrap_or(usize::MAX),
        trusted_proxies: args.trusted_proxies,
        registration: registration_policy(&args.registration),
        key_encryption_key: args.kek.load()?,
        metrics_listen: args.metrics_listen,
        admin_listen: args.admin_listen,
        ..Config::default()
    };
    args.client_metadata.apply(&mut config);
    let server = Server::build(config, store)
        .await
        .with_context(|| format!("starting the server on {}", args.listen))?;
    tracing::info!(addr = %server.local_addr()?, issuer = server.issuer(), "tessera listening");
    if let Some(metrics) = server.metrics_addr() {
        tracing::info!(addr = %metrics, "metrics at GET /metrics");
    }
    if let Some(admin) = server.admin_addr() {
        tracing::info!(addr = %admin, "admin API at /admin/v1, its document at GET /openapi.json");
    }
    server.run_until(shutdown_signal()).await?;
    tracing::info!("tessera stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

async fn resource(store: &dyn Store, cmd: ResourceCommand) -> Result<()> {
    match cmd {
        ResourceCommand::Create {
            uri,
            name,
            scope,
            json,
        } => {
            let now = Clock::system().now();
            let mut registered = register_resource(&uri, name.as_deref(), &scope.join(" "), now)?;
            registered.client.secret_hash = Some(hash_secret(&registered.secret)?);
            store
                .create_resource(&registered.resource, &registered.client)
                .await
                .map_err(|e| match e {
                    StoreError::Conflict => {
                        anyhow::anyhow!(
                            "a resource {} is already registered",
                            registered.resource.uri
                        )
                    }
                    e => e.into(),
                })?;
            let (resource, id) = (&registered.resource.uri, &registered.client.id);
            let created = audit::change("resource create")
                .client(id.as_str())
                .with("resource", resource.to_string());
            audit::record(store, [created]).await;
            let secret = registered.secret.expose();
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "resource": resource, "client_id": id, "client_secret": secret })
                );
            } else {
                println!("resource:      {resource}");
                println!("client_id:     {id}");
                println!("client_secret: {secret}");
                println!("(the secret is shown only this once; Tessera keeps only its hash)");
            }
            Ok(())
        }
        ResourceCommand::List { json } => {
            let resources = store.list_resources().await?;
            if json {
                let list: Vec<_> = resources
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "resource": r.uri,
                            "name": r.name,
                            "scope": r.scope.to_string(),
                            "client_id": r.client_id,
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else {
                for r in &resources {
                    println!(
                        "{}\t{}\tscope=\"{}\"\t{}",
                        r.uri, r.name, r.scope, r.client_id
                    );
                }
            }
            Ok(())
        }
        ResourceCommand::Delete { uri } => {
            let parsed = ResourceUri::parse(&uri)?;
            // Its client goes with it, and that client's tokens: named in the events.
            let Some(resource) = store.get_resource(&parsed).await? else {
                bail!("no resource {parsed}")
            };
            if store
                .delete_resource(&parsed, Clock::system().now())
                .await?
            {
                let (deleted, revoked) = (
                    audit::change("resource delete"),
                    audit::revoked(RevocationCause::ResourceDeleted),
                );
                let client_id = resource.client_id.as_str();
                let events = [deleted, revoked]
                    .map(|event| event.with("resource", parsed.to_string()).client(client_id));
                audit::record(store, events).await;
                eprintln!("deleted resource {parsed} and its credentials");
                Ok(())
            } else {
                bail!("no resource {parsed}")
            }
        }
    }
}

async fn client(store: &dyn Store, cmd: ClientCommand) -> Result<()> {
    match cmd {
        ClientCommand::Create {
            name,
            public,
            redirect_uris,
            grant_types,
            scope,
            skip_consent,
            allow_insecure_redirect_uri,
            post_logout_redirect_uris,
            id_token_signed_response_alg,
            json,
        } => {
            let oidc = ClientOidc {
                post_logout_redirect_uris: post_logout_redirect_uris_checked(
                    &post_logout_redirect_uris,
                    allow_insecure_redirect_uri,
                )
                .map_err(anyhow::Error::msg)?,
                id_token_signed_response_alg,
            };
            let registration = ClientRegistration {
                name,
                public,
                redirect_uris,
                grant_types,
                scope,
                skip_consent,
                allow_insecure_http: allow_insecure_redirect_uri,
            };
            let now = Clock::system().now();
            let mut registered = register(&registration, now)?;
            if let Some(secret) = &registered.secret {
                registered.client.secret_hash = Some(hash_secret(secret)?);
            }
            store.create_client(&registered.client).await?;
            let id = &registered.client.id;
            if oidc != ClientOidc::default() {
                store.put_client_oidc(id.as_str(), &oidc).await?;
            }
            let created = audit::change("client create")
                .client(id.as_str())
                .with("public", registered.client.is_public());
            audit::record(store, [created]).await;
            let secret = registered.secret.as_ref().map(|s| s.expose());
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "client_id": id, "client_secret": secret })
                );
            } else {
                println!("client_id:     {id}");
                match secret {
                    Some(s) => {
                        println!("client_secret: {s}");
                        println!(
                            "(the secret is shown only this once; Tessera keeps only its hash)"
                        );
                    }
                    None => println!("public client: no secret; use PKCE"),
                }
            }
            Ok(())
        }
        ClientCommand::List { json } => {
            let clients = store.list_clients().await?;
            if json {
                let list: Vec<_> = clients
                    .iter()
                    .map(|c| {
                        serde_json::json!({
                            "client_id": c.id,
                            "name": c.name,
                            "public": c.is_public(),
                            "grant_types": c.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
                            "scope": c.scope.to_string(),
                            "redirect_uris": c.redirect_uris.iter().map(|u| u.as_str()).collect::<Vec<_>>(),
                            "resource": c.resource,
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else {
                for c in &clients {
                    let kind = if c.is_public() {
                        "public"
                    } else {
                        "confidential"
                    };
                    let grants: Vec<_> = c.grant_types.iter().map(|g| g.as_str()).collect();
                    println!(
                        "{}\t{}\t{kind}\t{}\tscope=\"{}\"",
                        c.id,
                        c.name,
                        grants.join(","),
                        c.scope
                    );
                }
            }
            Ok(())
        }
        ClientCommand::Delete { client_id } => {
            if store
                .delete_client(&client_id, Clock::system().now())
                .await?
            {
                let events = [
                    audit::change("client delete").client(&client_id),
                    audit::revoked(RevocationCause::ClientDeleted).client(&client_id),
                ];
                audit::record(store, events).await;
                eprintln!("deleted client {client_id} and its tokens");
                Ok(())
            } else {
                bail!("no client with id {client_id}")
            }
        }
        ClientCommand::RevokeTokens { client_id } => {
            match store
                .revoke_client_tokens(&client_id, Clock::system().now())
                .await?
            {
                Some(revoked) => {
                    let events = [
                        audit::change("client revoke-tokens").client(&client_id),
                        audit::revoked(RevocationCause::ClientRevokeTokens)
                            .client(&client_id)
                            .with("count", revoked),
                    ];
                    audit::record(store, events).await;
                    eprintln!("revoked {revoked} tokens of client {client_id}");
                    Ok(())
                }
                None => bail!("no client with id {client_id}"),
            }
        }
    }
}
