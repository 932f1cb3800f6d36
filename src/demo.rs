//! `tessera demo`: the tutorial's three parts in one process, on the same store.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tessera_core::client::{Client, ClientRegistration, register};
use tessera_core::clock::Clock;
use tessera_core::resource::register_resource;
use tessera_core::revocation::REVOCATION_STREAM_PATH;
use tessera_core::secret::{Secret, hash_secret};
use tessera_core::user::register as register_user;
use tessera_guard::{Guard, ProtectedResource, RemoteConfig, RemoteIntrospection};
use tessera_server::local_guard::LocalValidator;
use tessera_server::{Config, Server};
use tessera_store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::DemoArgs;

// Fixed demo credentials, printed at start. They protect nothing but a local demo.
const DEMO_USER: &str = "demo";
const DEMO_PASSWORD: &str = "demo-password";
const APP_CLIENT_ID: &str = "tessera-demo-app";
const APP_CLIENT_SECRET: &str = "tss_demo-app-secret-for-local-use-only";
const API_CLIENT_ID: &str = "tessera-demo-api";
const API_CLIENT_SECRET: &str = "tss_demo-api-secret-for-local-use-only";

/// Where the demo keeps its key-encryption key: beside a SQLite file (`PATH.kek`), else in
/// the working directory.
fn kek_path(database_url: &str) -> std::path::PathBuf {
    let file = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
        .map(|rest| rest.split('?').next().unwrap_or(rest))
        .filter(|path| !path.is_empty() && !path.contains(":memory:"));
    match file {
        Some(path) => format!("{path}.kek").into(),
        None => "tessera-demo.kek".into(),
    }
}

pub async fn run(store: Arc<dyn Store>, args: DemoArgs, database_url: &str) -> Result<()> {
    // A key-encryption key given as for `serve` wins; else the demo keeps its own.
    let key_encryption_key = match args.kek.load()? {
        Some(kek) => Some(kek),
        None => Some(crate::keys::kek_file_or_new(&kek_path(database_url))?),
    };
    let app_url = format!("http://{}", args.app_listen);
    let api_url = format!("http://{}", args.api_listen);
    let redirect_uri = format!("{app_url}/authorize");
    ensure_user(store.as_ref()).await?;
    ensure_client(
        store.as_ref(),
        APP_CLIENT_ID,
        APP_CLIENT_SECRET,
        &ClientRegistration {
            name: "Tessera demo app".into(),
            redirect_uris: vec![redirect_uri.clone()],
            scope: "openid profile api restricted".into(),
            ..Default::default()
        },
    )
    .await?;
    // The app signs out through Tessera's end-session endpoint and comes back to its start.
    let oidc = tessera_store::ClientOidc {
        post_logout_redirect_uris: vec![format!("{app_url}/")],
        ..Default::default()
    };
    store.put_client_oidc(APP_CLIENT_ID, &oidc).await?;
    ensure_resource(store.as_ref(), &api_url).await?;

    let clock = Clock::system();
    let mut config = Config {
        listen: args.listen,
        clock: clock.clone(),
        lifetimes: tessera_core::grant::Lifetimes {
            access: args.access_token_ttl,
            ..Default::default()
        },
        header_read_timeout: Duration::from_secs(args.http.header_read_timeout),
        idle_timeout: Duration::from_secs(args.http.idle_timeout),
        max_connections: usize::try_from(args.http.max_connections).unwrap_or(usize::MAX),
        registration: crate::registration_policy(&args.registration),
        key_encryption_key,
        ..Config::default()
    };
    args.client_metadata.apply(&mut config);
    // Bound before the server is built, so that the recorder is installed in time to measure
    // it; taken already (another demo), the demo goes on without metrics.
    let metrics_listener = if args.no_metrics {
        None
    } else {
        match TcpListener::bind(args.metrics_listen).await {
            Ok(listener) => {
                tessera_server::prometheus::install();
                Some(listener)
            }
            Err(e) => {
                tracing::warn!(addr = %args.metrics_listen, error = %e, "metrics listener not bound; running without metrics");
                None
            }
        }
    };
    let mut server = Server::build(config, store.clone())
        .await
        .with_context(|| format!("starting the server on {}", args.listen))?;
    if let Some(listener) = metrics_listener {
        server = server.with_metrics_listener(listener);
    }
    let metrics_url = server.metrics_addr().map(|a| format!("http://{a}/metrics"));
    let issuer = server.issuer().to_owned();

    let resource = ProtectedResource::new(&api_url, &issuer)?
        .scopes_supported(["api", "restricted"])
        .resource_name("Tessera demo API");
    let guard = match args.api_validation.as_str() {
        "local" => Guard::new(
            LocalValidator::new(store.clone(), clock),
            "tessera-demo-api",
        ),
        _ => {
            let mut config = RemoteConfig::new(
                format!("{issuer}/introspect"),
                API_CLIENT_ID,
                API_CLIENT_SECRET,
            );
            config.cache_ttl = Duration::from_secs(args.api_cache_ttl);
            config.subscribe = args.api_revocation_stream;
            config.revocation_stream = Some(format!("{issuer}{REVOCATION_STREAM_PATH}"));
            Guard::new(RemoteIntrospection::new(config)?, "tessera-demo-api")
        }
    }
    .for_resource(resource);
    let api = tessera_demo::api::router(&guard);
    let app = tessera_demo::app::router(tessera_demo::app::AppConfig {
        issuer: issuer.clone(),
        client_id: APP_CLIENT_ID.into(),
        client_secret: APP_CLIENT_SECRET.into(),
        redirect_uri,
        api_base: api_url.clone(),
        scope: vec!["api".into()],
        post_logout_redirect_uri: Some(format!("{app_url}/")),
    })?;
    let app_listener = TcpListener::bind(args.app_listen)
        .await
        .with_context(|| format!("binding {}", args.app_listen))?;
    let api_listener = TcpListener::bind(args.api_listen)
        .await
        .with_context(|| format!("binding {}", args.api_listen))?;

    println!();
    println!("  Tessera demo: for local use only (fixed, published credentials).");
    println!();
    println!("  Open the app:            {app_url}");
    println!("  Sign in as:              {DEMO_USER} / {DEMO_PASSWORD}");
    println!("  Authorization server:    {issuer}");
    println!(
        "  Demo API:                {api_url}/api/data (scope api), {api_url}/api/restricted (scope restricted)"
    );
    println!(
        "  MCP server:              {api_url}/mcp (tool whoami; registration {}, so an MCP client signs in as is)",
        args.registration
    );
    println!(
        "  API token validation:    {} (cache TTL {} s, revocation stream {})",
        args.api_validation,
        args.api_cache_ttl,
        if args.api_revocation_stream {
            "on"
        } else {
            "off"
        }
    );
    if let Some(url) = &metrics_url {
        println!("  Metrics (Prometheus):    {url}");
    }
    println!();
    println!("  Ctrl-C stops all three.");
    println!();

    let (stop, stopped) = watch::channel(false);
    let until_stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let as_task = tokio::spawn(server.run_until(until_stopped(stopped.clone())));
    let app_task = tokio::spawn(
        axum::serve(app_listener, app)
            .with_graceful_shutdown(until_stopped(stopped.clone()))
            .into_future(),
    );
    let api_task = tokio::spawn(
        axum::serve(api_listener, api)
            .with_graceful_shutdown(until_stopped(stopped))
            .into_future(),
    );
    crate::shutdown_signal().await;
    let _ = stop.send(true);
    let (a, b, c) = tokio::join!(as_task, app_task, api_task);
    a??;
    b??;
    c??;
    tracing::info!("demo stopped");
    Ok(())
}

/// Creates the demo user unless it exists (its password is then left as it is).
async fn ensure_user(store: &dyn Store) -> Result<()> {
    if let Some(user) = store.get_user_by_username(DEMO_USER).await? {
        // A demo database from before profiles: the name the app shows from the ID token.
        if store
            .get_profile(&user.id)
            .await?
            .is_some_and(|(_, p)| p.name.is_none())
        {
            store.set_profile(DEMO_USER, &demo_profile()).await?;
        }
        return Ok(());
    }
    let user = register_user(
        DEMO_USER,
        &Secret::new(DEMO_PASSWORD),
        Clock::system().now(),
    )?;
    match store.create_user(&user).await {
        // Another process created it in the meantime: fine.
        Err(tessera_store::StoreError::Conflict) | Ok(()) => {}
        Err(e) => return Err(e.into()),
    }
    store.set_profile(DEMO_USER, &demo_profile()).await?;
    Ok(())
}

fn demo_profile() -> tessera_core::oidc::Profile {
    tessera_core::oidc::Profile {
        name: Some("Demo User".into()),
        ..Default::default()
    }
}

/// Registers the demo API as a resource server (RFC 8707) defining the demo's scopes, with
/// fixed credentials, unless it is registered so already.
async fn ensure_resource(store: &dyn Store, api_url: &str) -> Result<()> {
    let now = Clock::system().now();
    let mut wanted = register_resource(api_url, Some("Tessera demo API"), "api restricted", now)?;
    wanted.client.id = API_CLIENT_ID.into();
    wanted.resource.client_id = API_CLIENT_ID.into();
    let registered = store.list_resources().await?;
    let same = registered.iter().any(|r| {
        r.uri == wanted.resource.uri
            && r.client_id == wanted.resource.client_id
            && r.scope == wanted.resource.scope
    });
    if same {
        return Ok(());
    }
    // Another address, or a store from before resources: start the demo API's afresh.
    store.delete_client(API_CLIENT_ID, now).await?;
    store.delete_resource(&wanted.resource.uri, now).await?;
    wanted.client.secret_hash = Some(hash_secret(&Secret::new(API_CLIENT_SECRET))?);
    match store
        .create_resource(&wanted.resource, &wanted.client)
        .await
    {
        Err(tessera_store::StoreError::Conflict) | Ok(()) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Creates a demo client with a fixed id and secret, or replaces it if its registration
/// changed (e.g. another `--app-listen` means another redirect URI).
async fn ensure_client(
    store: &dyn Store,
    id: &str,
    secret: &str,
    registration: &ClientRegistration,
) -> Result<()> {
    let mut wanted: Client = register(registration, Clock::system().now())?.client;
    wanted.id = id.into();
    if let Some(existing) = store.get_client(id).await? {
        let same = existing.redirect_uris == wanted.redirect_uris
            && existing.scope == wanted.scope
            && existing.grant_types == wanted.grant_types
            && existing.secret_hash.as_deref().is_some_and(|h| {
                tessera_core::secret::verify_secret(&Secret::new(secret), Some(h))
            });
        if same {
            return Ok(());
        }
        store.delete_client(id, Clock::system().now()).await?;
    }
    wanted.secret_hash = Some(hash_secret(&Secret::new(secret))?);
    match store.create_client(&wanted).await {
        Err(tessera_store::StoreError::Conflict) | Ok(()) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
