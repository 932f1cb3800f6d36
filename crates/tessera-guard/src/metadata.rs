//! [`ProtectedResource`]: who this resource server is (RFC 8707) and the RFC 9728 metadata
//! document that tells clients which authorization server issues tokens for it.
//!
//! A guard bound to a [`ProtectedResource`] accepts only tokens whose audience names it, and
//! points every 401 at the metadata URL, so a client that meets the resource cold can find
//! where to get a token (the discovery MCP clients rely on).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{StatusCode, Uri, header};
use serde_json::{Map, Value, json};
use tessera_core::resource::ResourceUri;

/// The well-known suffix of RFC 9728 §3.
const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// The document changes only with a redeploy; a few minutes of client caching is harmless.
const CACHE_CONTROL: &str = "public, max-age=300";

/// A protected resource: its identifier, the authorization server that issues its tokens,
/// and what its metadata document advertises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedResource {
    resource: ResourceUri,
    authorization_server: String,
    scopes_supported: Vec<String>,
    resource_name: Option<String>,
    metadata_url: String,
    /// The path of `metadata_url`, which is what the router matches.
    metadata_path: String,
}

/// Why a [`ProtectedResource`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidProtectedResource {
    #[error(
        "the resource identifier must be an absolute http or https URI without a query or fragment"
    )]
    Resource,
    #[error(
        "the authorization server must be an http or https issuer URL without a query or fragment"
    )]
    AuthorizationServer,
}

impl ProtectedResource {
    /// `resource` is this server's identifier, as clients pass it in `resource` (canonicalised
    /// like the authorization server does, so `http://127.0.0.1:5001` is
    /// `http://127.0.0.1:5001/`); `authorization_server` is the issuer identifier, kept exactly
    /// as given because clients compare it by string with the issuer's own metadata.
    pub fn new(
        resource: &str,
        authorization_server: &str,
    ) -> Result<Self, InvalidProtectedResource> {
        let resource =
            ResourceUri::parse(resource).map_err(|_| InvalidProtectedResource::Resource)?;
        let url =
            url::Url::parse(resource.as_str()).map_err(|_| InvalidProtectedResource::Resource)?;
        // RFC 9728 §3.1 builds metadata URLs for http(s) identifiers only. A query is refused:
        // RFC 8707 §2 advises against it, and a route cannot tell two queries apart.
        if !is_web_url(&url) {
            return Err(InvalidProtectedResource::Resource);
        }
        let issuer = url::Url::parse(authorization_server)
            .map_err(|_| InvalidProtectedResource::AuthorizationServer)?;
        if !is_web_url(&issuer) {
            return Err(InvalidProtectedResource::AuthorizationServer);
        }
        let metadata_url = metadata_url_of(&url);
        let metadata_path = metadata_url.path().to_owned();
        Ok(Self {
            resource,
            authorization_server: authorization_server.to_owned(),
            scopes_supported: Vec::new(),
            resource_name: None,
            metadata_url: metadata_url.to_string(),
            metadata_path,
        })
    }

    /// The scopes advertised as `scopes_supported`; none (the default) omits the member.
    pub fn scopes_supported<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.scopes_supported = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// The human-readable name advertised as `resource_name`.
    pub fn resource_name(mut self, name: impl Into<String>) -> Self {
        self.resource_name = Some(name.into());
        self
    }

    pub fn resource(&self) -> &ResourceUri {
        &self.resource
    }

    pub fn authorization_server(&self) -> &str {
        &self.authorization_server
    }

    /// Where the metadata document lives (RFC 9728 §3.1): the well-known suffix inserted
    /// between the host and the path, so `https://a.example/mcp` has
    /// `https://a.example/.well-known/oauth-protected-resource/mcp`.
    pub fn metadata_url(&self) -> &str {
        &self.metadata_url
    }

    /// The metadata document (RFC 9728 §2).
    pub fn document(&self) -> Value {
        let mut doc = Map::new();
        doc.insert("resource".into(), json!(self.resource.as_str()));
        doc.insert(
            "authorization_servers".into(),
            json!([self.authorization_server]),
        );
        if !self.scopes_supported.is_empty() {
            doc.insert("scopes_supported".into(), json!(self.scopes_supported));
        }
        // The guard reads tokens from the Authorization header only (see `bearer`).
        doc.insert("bearer_methods_supported".into(), json!(["header"]));
        if let Some(name) = &self.resource_name {
            doc.insert("resource_name".into(), json!(name));
        }
        Value::Object(doc)
    }

    /// Routes answering `GET` with the metadata document, for an app mounted at the root of
    /// the resource's origin: at `/.well-known/oauth-protected-resource` and, for a resource
    /// with a path, at the path-inserted form too (some clients, MCP ones among them, fall back
    /// to the bare one). Merge them into the app's router; a second resource on the same origin
    /// needs its own router, since both would claim the bare path.
    pub fn metadata_routes<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let body = Bytes::from(self.document().to_string());
        let root = body.clone();
        let router = Router::new().route(WELL_KNOWN, get(move || async move { serve(root) }));
        if self.metadata_path == WELL_KNOWN {
            return router;
        }
        // A catch-all compared with the exact path, rather than a route for the path itself:
        // axum refuses (by panicking) some literal paths, such as segments starting with `:`.
        let path: Arc<str> = self.metadata_path.as_str().into();
        router.route(
            &format!("{WELL_KNOWN}/{{*rest}}"),
            get(move |uri: Uri| async move {
                if uri.path() == &*path {
                    serve(body)
                } else {
                    StatusCode::NOT_FOUND.into_response()
                }
            }),
        )
    }
}

fn is_web_url(url: &url::Url) -> bool {
    matches!(url.scheme(), "http" | "https")
        && url.has_host()
        && url.query().is_none()
        && url.fragment().is_none()
}

fn metadata_url_of(resource: &url::Url) -> url::Url {
    // RFC 9728 §3.1: a terminating `/` after the host is dropped, so `https://a.example/`
    // has its document at the bare well-known path.
    let path = match resource.path() {
        "/" => "",
        path => path,
    };
    let mut url = resource.clone();
    url.set_path(&format!("{WELL_KNOWN}{path}"));
    url
}

fn serve(body: Bytes) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            // Browser-based clients (MCP ones among them) fetch the document cross-origin.
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (header::CACHE_CONTROL, CACHE_CONTROL),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http::Request;
    use tower::ServiceExt;

    const AS: &str = "http://127.0.0.1:8080";

    fn metadata_url(resource: &str) -> String {
        ProtectedResource::new(resource, AS)
            .unwrap()
            .metadata_url()
            .to_owned()
    }

    #[test]
    fn metadata_url_inserts_the_well_known_suffix_before_the_path() {
        for (resource, expected) in [
            (
                "https://a.example/mcp",
                "https://a.example/.well-known/oauth-protected-resource/mcp",
            ),
            (
                "http://127.0.0.1:5001/",
                "http://127.0.0.1:5001/.well-known/oauth-protected-resource",
            ),
            (
                "http://127.0.0.1:5001",
                "http://127.0.0.1:5001/.well-known/oauth-protected-resource",
            ),
            (
                "HTTPS://A.example:443/api/v1/",
                "https://a.example/.well-known/oauth-protected-resource/api/v1/",
            ),
        ] {
            assert_eq!(metadata_url(resource), expected, "{resource}");
        }
        let resource = ProtectedResource::new("http://127.0.0.1:5001", AS).unwrap();
        assert_eq!(resource.resource().as_str(), "http://127.0.0.1:5001/");
    }

    #[test]
    fn refuses_what_rfc_9728_cannot_describe() {
        for bad in [
            "urn:example:api",
            "https://a.example/#x",
            "https://a.example/?q=1",
            "/relative",
            "",
        ] {
            assert_eq!(
                ProtectedResource::new(bad, AS),
                Err(InvalidProtectedResource::Resource),
                "{bad}"
            );
        }
        for bad in ["", "issuer", "ftp://a.example", "https://a.example/?x=1"] {
            assert_eq!(
                ProtectedResource::new("https://a.example", bad),
                Err(InvalidProtectedResource::AuthorizationServer),
                "{bad}"
            );
        }
    }

    async fn fetch(app: &Router, path: &str) -> (StatusCode, http::HeaderMap, Value) {
        let response = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, headers, json)
    }

    #[tokio::test]
    async fn serves_the_document_at_both_well_known_paths() {
        let resource = ProtectedResource::new("https://a.example/mcp", "https://as.example")
            .unwrap()
            .scopes_supported(["mcp", "read"])
            .resource_name("MCP server");
        let app: Router = resource.metadata_routes();
        let expected = json!({
            "resource": "https://a.example/mcp",
            "authorization_servers": ["https://as.example"],
            "scopes_supported": ["mcp", "read"],
            "bearer_methods_supported": ["header"],
            "resource_name": "MCP server",
        });
        for path in [
            "/.well-known/oauth-protected-resource/mcp",
            "/.well-known/oauth-protected-resource",
        ] {
            let (status, headers, body) = fetch(&app, path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(body, expected, "{path}");
            assert_eq!(headers[header::CONTENT_TYPE], "application/json");
            assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
            assert!(headers.contains_key(header::CACHE_CONTROL));
        }
        for other in [
            "/.well-known/oauth-protected-resource/other",
            "/.well-known/oauth-protected-resource/mcp/x",
        ] {
            assert_eq!(fetch(&app, other).await.0, StatusCode::NOT_FOUND, "{other}");
        }
    }

    #[tokio::test]
    async fn a_resource_at_the_root_omits_what_it_does_not_set() {
        let resource = ProtectedResource::new("http://127.0.0.1:5001", AS).unwrap();
        let app: Router = resource.metadata_routes();
        let (status, _, body) = fetch(&app, "/.well-known/oauth-protected-resource").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            json!({
                "resource": "http://127.0.0.1:5001/",
                "authorization_servers": [AS],
                "bearer_methods_supported": ["header"],
            })
        );
    }
}
