//! Every rejection of the machine-facing endpoints, one row each, through one `check` helper.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::Method;
use tessera_core::client::ClientRegistration;

use crate::both_backends;
use crate::helpers::{Backend, Reply, TestApp, TestClient, spawn_app};

/// How a row authenticates.
#[derive(Clone, Copy)]
enum Auth {
    None,
    /// The m2m client's real credentials.
    Basic,
    BasicWrongSecret,
    BasicUnknownClient,
    /// A raw `Authorization` header value.
    Raw(&'static str),
    /// Two `Authorization` headers.
    Twice,
    /// The web client (authorization_code only).
    WebClient,
}

struct Row {
    name: &'static str,
    method: Method,
    path: &'static str,
    auth: Auth,
    content_type: Option<&'static str>,
    /// `{id}` and `{secret}` stand for the m2m client's credentials, `{public}` for a public
    /// client's id.
    body: Body,
    status: u16,
    error: Option<&'static str>,
    www_authenticate: Option<&'static str>,
}

enum Body {
    Text(&'static str),
    Bytes(&'static [u8]),
    Large,
}

const FORM: Option<&str> = Some("application/x-www-form-urlencoded");
const BASIC_CHALLENGE: Option<&str> = Some("Basic realm=\"tessera\", charset=\"UTF-8\"");

fn row(
    name: &'static str,
    path: &'static str,
    auth: Auth,
    body: &'static str,
    status: u16,
    error: &'static str,
) -> Row {
    Row {
        name,
        method: Method::POST,
        path,
        auth,
        content_type: FORM,
        body: Body::Text(body),
        status,
        error: Some(error),
        www_authenticate: None,
    }
}

fn rows() -> Vec<Row> {
    use Auth::*;
    let cc = "grant_type=client_credentials";
    vec![
        row(
            "token: no grant_type",
            "/token",
            Basic,
            "scope=api",
            400,
            "invalid_request",
        ),
        row(
            "token: password grant",
            "/token",
            Basic,
            "grant_type=password&username=a&password=b",
            400,
            "unsupported_grant_type",
        ),
        row(
            "token: implicit grant",
            "/token",
            Basic,
            "grant_type=implicit",
            400,
            "unsupported_grant_type",
        ),
        row(
            "token: unknown grant",
            "/token",
            Basic,
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer",
            400,
            "unsupported_grant_type",
        ),
        row(
            "token: scope beyond the client's",
            "/token",
            Basic,
            "grant_type=client_credentials&scope=api%20admin",
            400,
            "invalid_scope",
        ),
        row(
            "token: malformed scope",
            "/token",
            Basic,
            "grant_type=client_credentials&scope=api%20%20read",
            400,
            "invalid_scope",
        ),
        row(
            "token: scope with a quote",
            "/token",
            Basic,
            "grant_type=client_credentials&scope=%22api",
            400,
            "invalid_scope",
        ),
        Row {
            www_authenticate: BASIC_CHALLENGE,
            ..row(
                "token: wrong secret (basic)",
                "/token",
                BasicWrongSecret,
                cc,
                401,
                "invalid_client",
            )
        },
        Row {
            www_authenticate: BASIC_CHALLENGE,
            ..row(
                "token: unknown client (basic)",
                "/token",
                BasicUnknownClient,
                cc,
                401,
                "invalid_client",
            )
        },
        row(
            "token: wrong secret (post)",
            "/token",
            None,
            "grant_type=client_credentials&client_id={id}&client_secret=wrong",
            401,
            "invalid_client",
        ),
        row(
            "token: unknown client (post)",
            "/token",
            None,
            "grant_type=client_credentials&client_id=nobody&client_secret=x",
            401,
            "invalid_client",
        ),
        row(
            "token: no client authentication",
            "/token",
            None,
            cc,
            401,
            "invalid_client",
        ),
        row(
            "token: confidential client without its secret",
            "/token",
            None,
            "grant_type=client_credentials&client_id={id}",
            401,
            "invalid_client",
        ),
        row(
            "token: two authentication methods",
            "/token",
            Basic,
            "grant_type=client_credentials&client_secret={secret}",
            400,
            "invalid_request",
        ),
        row(
            "token: body client_id differs from basic",
            "/token",
            Basic,
            "grant_type=client_credentials&client_id=other",
            400,
            "invalid_request",
        ),
        row(
            "token: client_secret without client_id",
            "/token",
            None,
            "grant_type=client_credentials&client_secret={secret}",
            400,
            "invalid_request",
        ),
        Row {
            www_authenticate: BASIC_CHALLENGE,
            ..row(
                "token: basic not base64",
                "/token",
                Raw("Basic !!!not-base64"),
                cc,
                401,
                "invalid_client",
            )
        },
        Row {
            www_authenticate: BASIC_CHALLENGE,
            ..row(
                "token: basic without colon",
                "/token",
                Raw("Basic bm9jb2xvbg=="),
                cc,
                401,
                "invalid_client",
            )
        },
        Row {
            www_authenticate: BASIC_CHALLENGE,
            ..row(
                "token: bearer instead of basic",
                "/token",
                Raw("Bearer abc"),
                cc,
                401,
                "invalid_client",
            )
        },
        row(
            "token: two authorization headers",
            "/token",
            Twice,
            cc,
            400,
            "invalid_request",
        ),
        row(
            "token: duplicate grant_type",
            "/token",
            Basic,
            "grant_type=client_credentials&grant_type=client_credentials",
            400,
            "invalid_request",
        ),
        row(
            "token: duplicate scope, one empty",
            "/token",
            Basic,
            "grant_type=client_credentials&scope=&scope=api",
            400,
            "invalid_request",
        ),
        row(
            "token: bad percent-encoding",
            "/token",
            Basic,
            "grant_type=client%ZZcredentials",
            400,
            "invalid_request",
        ),
        row(
            "token: truncated percent-encoding",
            "/token",
            Basic,
            "grant_type=client_credentials&scope=%2",
            400,
            "invalid_request",
        ),
        Row {
            body: Body::Bytes(b"grant_type=client_credentials&scope=\xff"),
            ..row(
                "token: invalid UTF-8",
                "/token",
                Basic,
                "",
                400,
                "invalid_request",
            )
        },
        row(
            "token: percent-encoded invalid UTF-8",
            "/token",
            Basic,
            "grant_type=client_credentials&scope=%C3%28",
            400,
            "invalid_request",
        ),
        row(
            "token: web client may not use client_credentials",
            "/token",
            WebClient,
            cc,
            400,
            "unauthorized_client",
        ),
        row(
            "token: public client may not use client_credentials",
            "/token",
            None,
            "grant_type=client_credentials&client_id={public}",
            400,
            "unauthorized_client",
        ),
        Row {
            content_type: Some("application/json"),
            ..row(
                "token: JSON body",
                "/token",
                Basic,
                "{\"grant_type\":\"client_credentials\"}",
                400,
                "invalid_request",
            )
        },
        Row {
            content_type: Option::None,
            ..row(
                "token: no content type",
                "/token",
                Basic,
                cc,
                400,
                "invalid_request",
            )
        },
        Row {
            content_type: Some("text/plain"),
            ..row(
                "token: text/plain",
                "/token",
                Basic,
                cc,
                400,
                "invalid_request",
            )
        },
        Row {
            body: Body::Large,
            ..row(
                "token: 70 KiB body",
                "/token",
                Basic,
                "",
                413,
                "invalid_request",
            )
        },
        Row {
            method: Method::GET,
            error: Option::None,
            ..row("token: GET", "/token", Basic, "", 405, "")
        },
        Row {
            method: Method::PUT,
            error: Option::None,
            ..row("token: PUT", "/token", Basic, cc, 405, "")
        },
        row(
            "introspect: no client authentication",
            "/introspect",
            None,
            "token=tsa_x",
            401,
            "invalid_client",
        ),
        Row {
            www_authenticate: BASIC_CHALLENGE,
            ..row(
                "introspect: wrong secret",
                "/introspect",
                BasicWrongSecret,
                "token=tsa_x",
                401,
                "invalid_client",
            )
        },
        row(
            "introspect: public client",
            "/introspect",
            None,
            "token=tsa_x&client_id={public}",
            401,
            "invalid_client",
        ),
        row(
            "introspect: missing token",
            "/introspect",
            Basic,
            "token_type_hint=access_token",
            400,
            "invalid_request",
        ),
        row(
            "introspect: empty token",
            "/introspect",
            Basic,
            "token=",
            400,
            "invalid_request",
        ),
        row(
            "introspect: duplicate token",
            "/introspect",
            Basic,
            "token=a&token=b",
            400,
            "invalid_request",
        ),
        Row {
            content_type: Some("application/json"),
            ..row(
                "introspect: JSON body",
                "/introspect",
                Basic,
                "{\"token\":\"x\"}",
                400,
                "invalid_request",
            )
        },
        Row {
            body: Body::Large,
            ..row(
                "introspect: 70 KiB body",
                "/introspect",
                Basic,
                "",
                413,
                "invalid_request",
            )
        },
        Row {
            method: Method::GET,
            error: Option::None,
            ..row("introspect: GET", "/introspect", Basic, "", 405, "")
        },
        row(
            "revoke: no client authentication",
            "/revoke",
            None,
            "token=tsa_x",
            401,
            "invalid_client",
        ),
        Row {
            www_authenticate: BASIC_CHALLENGE,
            ..row(
                "revoke: wrong secret",
                "/revoke",
                BasicWrongSecret,
                "token=tsa_x",
                401,
                "invalid_client",
            )
        },
        row(
            "revoke: confidential client without its secret",
            "/revoke",
            None,
            "token=tsa_x&client_id={id}",
            401,
            "invalid_client",
        ),
        row(
            "revoke: missing token",
            "/revoke",
            Basic,
            "token_type_hint=refresh_token",
            400,
            "invalid_request",
        ),
        row(
            "revoke: bad percent-encoding",
            "/revoke",
            Basic,
            "token=%G1",
            400,
            "invalid_request",
        ),
        Row {
            content_type: Some("multipart/form-data"),
            ..row(
                "revoke: multipart",
                "/revoke",
                Basic,
                "token=x",
                400,
                "invalid_request",
            )
        },
        Row {
            method: Method::GET,
            error: Option::None,
            ..row("revoke: GET", "/revoke", Basic, "", 405, "")
        },
        Row {
            method: Method::POST,
            error: Option::None,
            content_type: Option::None,
            ..row(
                "metadata: POST",
                "/.well-known/oauth-authorization-server",
                None,
                "",
                405,
                "",
            )
        },
    ]
}

both_backends!(every_rejection_is_a_clear_standard_error);

async fn every_rejection_is_a_clear_standard_error(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let m2m = app.m2m_client("api read").await;
    let web = app
        .client(ClientRegistration {
            name: "web".into(),
            redirect_uris: vec!["http://127.0.0.1:5000/authorize".into()],
            scope: "api".into(),
            ..Default::default()
        })
        .await;
    let public = app
        .client(ClientRegistration {
            name: "spa".into(),
            public: true,
            redirect_uris: vec!["http://127.0.0.1:5000/cb".into()],
            ..Default::default()
        })
        .await;
    for row in rows() {
        let reply = send(&app, &row, &m2m, &web, &public).await;
        check(&row, &reply);
    }
    // The server is still healthy and serving after the whole table.
    let token = app.access_token(&m2m, Some("api")).await;
    assert_eq!(app.introspect(&m2m, &token).await["active"], true);
}

async fn send(
    app: &TestApp,
    row: &Row,
    m2m: &TestClient,
    web: &TestClient,
    public: &TestClient,
) -> Reply {
    let fill = |s: &str| {
        s.replace("{id}", &m2m.id)
            .replace("{secret}", m2m.secret())
            .replace("{public}", &public.id)
    };
    let body: Vec<u8> = match &row.body {
        Body::Text(t) => fill(t).into_bytes(),
        Body::Bytes(b) => b.to_vec(),
        Body::Large => format!(
            "grant_type=client_credentials&token=x&pad={}",
            "a".repeat(70 * 1024)
        )
        .into_bytes(),
    };
    let mut req = app
        .http
        .request(row.method.clone(), app.url(row.path))
        .body(body);
    if let Some(ct) = row.content_type {
        req = req.header("content-type", ct);
    }
    let basic =
        |id: &str, secret: &str| format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")));
    req = match row.auth {
        Auth::None => req,
        Auth::Basic => req.header("authorization", basic(&m2m.id, m2m.secret())),
        Auth::BasicWrongSecret => req.header("authorization", basic(&m2m.id, "wrong")),
        Auth::BasicUnknownClient => req.header("authorization", basic("nobody", "x")),
        Auth::Raw(h) => req.header("authorization", h),
        Auth::Twice => req
            .header("authorization", basic(&m2m.id, m2m.secret()))
            .header("authorization", basic(&m2m.id, m2m.secret())),
        Auth::WebClient => req.header("authorization", basic(&web.id, web.secret())),
    };
    Reply::from(req.send().await.unwrap()).await
}

fn check(row: &Row, reply: &Reply) {
    assert_eq!(reply.status, row.status, "{}: {:?}", row.name, reply.body);
    if let Some(error) = row.error {
        assert_eq!(reply.body["error"], error, "{}", row.name);
        let description = reply.body["error_description"].as_str().unwrap_or_default();
        assert!(
            !description.is_empty(),
            "{}: no error_description",
            row.name
        );
        assert_eq!(
            reply.header("content-type"),
            Some("application/json"),
            "{}",
            row.name
        );
        assert_eq!(
            reply.header("cache-control"),
            Some("no-store"),
            "{}",
            row.name
        );
    }
    assert_eq!(
        reply.header("www-authenticate"),
        row.www_authenticate,
        "{}",
        row.name
    );
}
