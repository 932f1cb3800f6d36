//! Tessera's integration tests: one binary, real HTTP, real databases.
//!
//! Every test runs against SQLite and PostgreSQL through `both_backends!`; PostgreSQL tests
//! skip with a message on a machine without it, and fail when `CI` is set.

// A test crate: a failed unwrap is a failed test, which is what we want.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod helpers;

/// Issue 28's admin API: each operation, pages, refusals, its OpenAPI document and schemathesis.
mod admin;
/// The layout's rules: no import loops, no route importing another, HTTP and SQL kept in
/// their crates.
mod architecture;
/// Issue 25's audiences: resources, RFC 8707 `resource`, introspection for the audience only.
mod audience;
/// Issue 28's audit trail: events of the flows and the CLI, `tessera audit`, retention.
mod audit;
/// The login and consent pages in a real headless Chromium.
mod browser;
/// The CLI and two `tessera serve` processes sharing one database.
mod cli;
/// Issue 25's client metadata documents: https URLs as client ids, and the fetches refused.
mod client_metadata;
/// The authorization code flow: login, consent, PKCE, codes, refresh rotation.
mod code_flow;
/// SIGKILL in the middle of bursts: nothing acknowledged is lost or resurrected.
mod crash;
/// `tessera demo`: the tutorial in Chromium, and restarts on the same database.
mod demo;
/// Issue 24's flood of wrong client secrets from many addresses against `tessera serve`.
mod flood;
/// The resource-server guard (RFC 6750) against a running Tessera, remote and local.
mod guard;
/// Issue 24's smaller findings: HSTS, error descriptions, redirect URIs, second sign-ins.
mod hardening;
/// The guard's remote mode against Authlib's RFC 7662 endpoint, an independent implementation.
mod interop;
/// Introspection (RFC 7662): what active and inactive tokens reveal.
mod introspect;
/// Issue 24's HTTP limits: header and idle deadlines, the connection cap, the file limit.
mod limits;
/// Browser-facing rejections: redirect URIs, CSRF, passwords, throttling; `tessera user`.
mod login;
/// Issue 28's JSON logs: request fields on every request line, no secret in a full run.
mod logs;
/// Which tests may share the machine: loading ones alone, browser ones side by side.
mod machine;
/// The demo API's MCP endpoint (`/mcp`, rmcp) behind the guard: `whoami`, challenges, revoking.
mod mcp;
/// Discovery (RFC 8414) and health endpoints.
mod metadata;
/// Issue 28's Prometheus metrics, scraped and parsed around the flows; the guard's own.
mod metrics;
/// Three `tessera serve` nodes on one PostgreSQL database: agreement and fair races.
mod nodes;
/// The `oauth2` crate, an independent client implementation, against Tessera.
mod oauth2_client;
/// Issue 27's OpenID Connect, with the `openidconnect` crate as the relying party.
mod oidc;
/// A PostgreSQL outage: 503s, failing readiness, recovery without restart.
mod outage;
/// A person with a browser, simulated over HTTP (helpers for the flows).
mod person;
/// Clients registering themselves (RFC 7591) and managing that (RFC 7592), per policy.
mod registration;
/// Every rejection of the token, introspection and revocation endpoints, table-driven.
mod rejections;
/// The guard subscribed to the revocation stream: eviction, audience, fallback TTL, failover.
mod revocation_stream;
/// Issue 26's revocations pushed to resource servers: the commands and the events they leave.
mod revocations;
/// Revocation (RFC 7009): ownership, unknown tokens, families.
mod revoke;
/// The token endpoint's happy paths (RFC 6749 §4.4, §5.1).
mod token;
