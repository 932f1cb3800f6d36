//! Server-rendered HTML pages (askama templates) and the headers every page carries.
//!
//! Pages contain no script. The Content-Security-Policy allows only our stylesheet, no
//! framing (clickjacking), and form submissions to ourselves plus, on pages of an
//! authorization flow, the client's redirect origin (browsers apply `form-action` to the
//! redirects that follow a form post).

use askama::Template;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    pub client_name: Option<&'a str>,
    pub error: Option<&'a str>,
    pub csrf_token: &'a str,
    pub return_to: &'a str,
    pub username: &'a str,
}

#[derive(Template)]
#[template(path = "consent.html")]
pub struct ConsentPage<'a> {
    pub client_name: &'a str,
    /// The client registered itself: its name is only what it claims.
    pub unverified: bool,
    pub username: &'a str,
    pub scopes: Vec<&'a str>,
    pub csrf_token: &'a str,
    /// The authorization request, re-sent with the decision.
    pub fields: Vec<(&'a str, &'a str)>,
    pub redirect_host: &'a str,
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage<'a> {
    pub title: &'a str,
    pub message: &'a str,
    pub is_error: bool,
    pub logout_csrf: Option<&'a str>,
    /// An RP-initiated logout's parameters, re-sent with the sign-out form.
    pub logout_fields: &'a [(&'static str, String)],
}

/// A rendered page with its status and the security headers.
pub fn page(
    status: StatusCode,
    template: &impl Template,
    form_action_origin: Option<&str>,
) -> Response {
    let body = match template.render() {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(error = %e, "template failed to render");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                security_headers(None),
                "Internal error",
            )
                .into_response();
        }
    };
    (status, security_headers(form_action_origin), Html(body)).into_response()
}

/// An error page, for failures that must not be redirected (unknown client, bad redirect URI)
/// and for browser-facing errors in general.
pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    page(
        status,
        &MessagePage {
            title,
            message,
            is_error: true,
            logout_csrf: None,
            logout_fields: &[],
        },
        None,
    )
}

pub fn security_headers(form_action_origin: Option<&str>) -> HeaderMap {
    let form_action = match form_action_origin {
        Some(origin) => format!("'self' {origin}"),
        None => "'self'".to_owned(),
    };
    let csp = format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action {form_action}; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    let mut headers = HeaderMap::new();
    let pairs: [(HeaderName, &str); 5] = [
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CONTENT_SECURITY_POLICY, &csp),
    ];
    for (name, value) in pairs {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    }
    headers
}

/// The origin (`scheme://host[:port]`) of a redirect URI, for `form-action`. Custom-scheme
/// URIs of native apps yield `scheme:`.
pub fn origin_of(uri: &str) -> Option<String> {
    let url = url::Url::parse(uri).ok()?;
    match url.origin() {
        url::Origin::Tuple(..) => Some(url.origin().ascii_serialization()),
        url::Origin::Opaque(_) => Some(format!("{}:", url.scheme())),
    }
}

pub const STYLESHEET: &str = include_str!("../static/tessera.css");

pub async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
}
