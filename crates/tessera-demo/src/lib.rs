//! The tutorial's other two parts, built only on Tessera's public interfaces.
//!
//! - [`api`]: the demo API, protected by `tessera-guard` (`/api/data` needs `api`,
//!   `/api/restricted` needs `restricted`).
//! - [`mcp`]: the demo API's Model Context Protocol endpoint, `/mcp`, with one tool,
//!   `whoami`, guarded like `/api/data`.
//! - [`app`]: the client web app (`/login`, `/authorize`, `/protected`), an OAuth client
//!   written with the `oauth2` crate, knowing Tessera only by its URLs.

pub mod api;
pub mod app;
pub mod http_client;
pub mod mcp;
