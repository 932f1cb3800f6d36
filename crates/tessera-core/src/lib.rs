//! Tessera's OAuth 2.0 protocol rules, with no I/O.
//!
//! The key design decision: tokens are *opaque*. A token is 256 random bits with a kind prefix
//! and carries no data; what it means lives only in the store, under the token's SHA-256. So
//! this crate decides (is this request well formed, may this client have that scope, is this
//! token active at `now`), and the server crate does the I/O around those decisions. Time is
//! always a parameter, never read here, so every rule is testable without sleeping.
//!
//! Layout:
//! - [`admin`]: the admin API's bearer tokens.
//! - [`form`]: strict `application/x-www-form-urlencoded` parsing (duplicates refused).
//! - [`client_auth`]: client credentials from HTTP Basic (RFC 6749 §2.3.1) or the form body.
//! - [`client`]: registered clients, grant types, redirect URIs.
//! - [`registration`]: clients registering themselves (RFC 7591) and managing that (RFC 7592).
//! - [`client_metadata`]: clients named by the https URL of their metadata document.
//! - [`ids`]: `ClientId`, `UserId`, `FamilyId`.
//! - [`scope`]: the scope grammar of RFC 6749 §3.3 and subset checks.
//! - [`token`]: opaque token generation, the key kept at rest, and the token texts that redact.
//! - [`resource`]: resource servers (RFC 8707) and the audience of a token.
//! - [`revocation`]: what revoking a token reaches (its family, or itself), and the stream
//!   that tells resource servers.
//! - [`secret`]: client-secret generation and hashing.
//! - [`authorize`]: the authorization endpoint's request, checked in the safe order.
//! - [`pkce`]: RFC 7636 with S256 only.
//! - [`grant`]: the token endpoint's grants, as sans-IO decisions.
//! - [`user`]: resource owners, and the rules for creating one.
//! - [`introspection`], [`metadata`]: RFC 7662 and RFC 8414 documents.
//! - [`oidc`]: OpenID Connect: `prompt`, `max_age`, the ID token's and userinfo's claims.
//! - [`error`]: [`OAuthError`], one variant per RFC error code.
//! - [`audit`]: the audit trail's events: who did what, to whom, from where, when.
//! - [`clock`]: the one place that reads the system time, and RFC 3339 moments.

pub mod admin;
pub mod audit;
pub mod authorize;
pub mod client;
pub mod client_auth;
pub mod client_metadata;
pub mod clock;
pub mod error;
pub mod form;
pub mod grant;
pub mod ids;
pub mod introspection;
pub mod metadata;
pub mod oidc;
pub mod pkce;
pub mod random;
pub mod registration;
pub mod resource;
pub mod revocation;
pub mod scope;
pub mod secret;
pub mod token;
pub mod user;

pub use error::OAuthError;
