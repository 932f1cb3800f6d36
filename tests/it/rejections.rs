//! Hostile and malformed input at every endpoint (token, introspection, revocation,
//! authorization, login, consent, and a guarded API), one row each, through one `check`
//! helper. After the whole table the server must still serve a good request.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::Method;
use tessera_core::client::ClientRegistration;
use tessera_guard::Guard;
use tessera_server::local_guard::LocalValidator;

use crate::both_backends;
use crate::helpers::{Backend, Reply, TestApp, TestClient, serve_api, spawn_app};

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
    expect: Expect,
}

/// What kind of answer a row must get.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// RFC 6749 §5.2 JSON (or a bare status when `error` is `None`).
    OAuthJson,
    /// An HTML error page, never a redirect.
    Page,
    /// A redirect to the web client's registered URI carrying `error`.
    ErrorRedirect,
    /// An RFC 6750 answer of the guarded API (`path` is the API's).
    Bearer,
    /// `200` with `{"active": false}` (introspection of garbage).
    Inactive,
}

enum Body {
    Text(&'static str),
    Bytes(&'static [u8]),
    Large,
}

const FORM: Option<&str> = Some("application/x-www-form-urlencoded");
const TEN_KB_SCOPE: &str = concat!(
    "grant_type=client_credentials&scope=",
    include_str!("ten_kb.txt")
);
const TEN_KB_TOKEN: &str = concat!("token=tsa_", include_str!("ten_kb.txt"));

impl Row {
    fn with_content_type(self, content_type: &'static str) -> Row {
        Row {
            content_type: Some(content_type),
            ..self
        }
    }

    fn with_body(self, body: Body) -> Row {
        Row { body, ..self }
    }
}
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
        expect: Expect::OAuthJson,
    }
}

fn page(
    name: &'static str,
    method: Method,
    path: &'static str,
    body: &'static str,
    status: u16,
) -> Row {
    Row {
        method,
        error: None,
        expect: Expect::Page,
        ..row(name, path, Auth::None, body, status, "")
    }
}

fn redirect(name: &'static str, path: &'static str, error: &'static str) -> Row {
    Row {
        method: Method::GET,
        expect: Expect::ErrorRedirect,
        ..row(name, path, Auth::None, "", 302, error)
    }
}

fn api(
    name: &'static str,
    auth: Auth,
    path: &'static str,
    status: u16,
    error: Option<&'static str>,
) -> Row {
    Row {
        method: Method::GET,
        content_type: None,
        error,
        expect: Expect::Bearer,
        ..row(name, path, auth, "", status, "")
    }
}

fn inactive(name: &'static str, body: &'static str) -> Row {
    Row {
        error: None,
        expect: Expect::Inactive,
        ..row(name, "/introspect", Auth::Basic, body, 200, "")
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
        // Injection attempts and odd bytes.
        row(
            "token: NUL in grant_type",
            "/token",
            Basic,
            "grant_type=client_credentials%00",
            400,
            "unsupported_grant_type",
        ),
        row(
            "token: leading space in grant_type",
            "/token",
            Basic,
            "grant_type=%20client_credentials",
            400,
            "unsupported_grant_type",
        ),
        row(
            "token: SQL in client_id",
            "/token",
            None,
            "grant_type=client_credentials&client_id=%27%20OR%201%3D1%20--&client_secret=x",
            401,
            "invalid_client",
        ),
        row(
            "token: SQL in scope",
            "/token",
            Basic,
            "grant_type=client_credentials&scope=api%27%3B%20DROP%20TABLE%20tokens%3B--",
            400,
            "invalid_scope",
        ),
        row(
            "token: 10 KB scope",
            "/token",
            Basic,
            TEN_KB_SCOPE,
            400,
            "invalid_scope",
        ),
        row(
            "token: empty body",
            "/token",
            Basic,
            "",
            400,
            "invalid_request",
        ),
        row(
            "token: only separators",
            "/token",
            Basic,
            "&&&=&",
            400,
            "invalid_request",
        ),
        row(
            "token: code grant without code",
            "/token",
            WebClient,
            "grant_type=authorization_code&redirect_uri=x",
            400,
            "invalid_request",
        ),
        row(
            "token: refresh grant without refresh_token",
            "/token",
            WebClient,
            "grant_type=refresh_token",
            400,
            "invalid_request",
        ),
        row(
            "token: unknown code",
            "/token",
            WebClient,
            "grant_type=authorization_code&code=tsc_nope&code_verifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            400,
            "invalid_grant",
        ),
        row(
            "token: unknown refresh token",
            "/token",
            WebClient,
            "grant_type=refresh_token&refresh_token=tsr_nope",
            400,
            "invalid_grant",
        ),
        row(
            "token: access token as refresh token",
            "/token",
            WebClient,
            "grant_type=refresh_token&refresh_token={access}",
            400,
            "invalid_grant",
        ),
        Row {
            www_authenticate: BASIC_CHALLENGE,
            ..row(
                "token: basic with NUL in secret",
                "/token",
                Raw("Basic aWQ6JTAw"),
                cc,
                401,
                "invalid_client",
            )
        },
        Row {
            www_authenticate: BASIC_CHALLENGE,
            ..row(
                "token: basic decoding to invalid UTF-8",
                "/token",
                Raw("Basic /w=="),
                cc,
                401,
                "invalid_client",
            )
        },
        inactive(
            "introspect: SQL in token",
            "token=%27%20OR%20%271%27%3D%271",
        ),
        inactive("introspect: NUL token", "token=%00"),
        inactive("introspect: 10 KB token", TEN_KB_TOKEN),
        inactive(
            "introspect: HTML token",
            "token=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        ),
        row(
            "revoke: SQL in token",
            "/revoke",
            Basic,
            "token=%27%3B%20DELETE%20FROM%20tokens%3B--",
            200,
            "",
        ),
        // The authorization endpoint: a page until client and redirect URI are proven...
        page(
            "authorize: no parameters",
            Method::GET,
            "/authorize",
            "",
            400,
        ),
        page(
            "authorize: NUL client_id",
            Method::GET,
            "/authorize?response_type=code&client_id=%00",
            "",
            400,
        ),
        page(
            "authorize: SQL client_id",
            Method::GET,
            "/authorize?response_type=code&client_id=%27%20OR%201%3D1--",
            "",
            400,
        ),
        page(
            "authorize: CRLF in redirect_uri",
            Method::GET,
            "/authorize?response_type=code&client_id={web}&redirect_uri=http%3A%2F%2F127.0.0.1%3A5000%2Fauthorize%0D%0ASet-Cookie%3A%20x%3D1",
            "",
            400,
        ),
        page(
            "authorize: javascript redirect_uri",
            Method::GET,
            "/authorize?response_type=code&client_id={web}&redirect_uri=javascript%3Aalert(1)",
            "",
            400,
        ),
        page(
            "authorize: bad percent-encoding",
            Method::GET,
            "/authorize?client_id=%ZZ",
            "",
            400,
        ),
        page(
            "authorize: JSON POST",
            Method::POST,
            "/authorize",
            "{\"client_id\":\"x\"}",
            400,
        )
        .with_content_type("application/json"),
        page(
            "authorize: 70 KiB POST",
            Method::POST,
            "/authorize",
            "",
            413,
        )
        .with_body(Body::Large),
        // ...and a redirect with the error once they are.
        redirect(
            "authorize: CRLF in state is encoded",
            "/authorize?response_type=token&client_id={web}&state=a%0D%0ALocation%3A%20https%3A%2F%2Fevil.example&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
            "unsupported_response_type",
        ),
        redirect(
            "authorize: script in scope",
            "/authorize?response_type=code&client_id={web}&scope=%3Cscript%3E&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
            "invalid_scope",
        ),
        redirect(
            "authorize: duplicate scope",
            "/authorize?response_type=code&client_id={web}&scope=api&scope=api&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
            "invalid_request",
        ),
        redirect(
            "authorize: 200-character challenge",
            "/authorize?response_type=code&client_id={web}&code_challenge=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA&code_challenge_method=S256",
            "invalid_request",
        ),
        // Login and consent forms.
        page(
            "login: no CSRF token",
            Method::POST,
            "/login",
            "username=alice&password=x&return_to=%2F",
            403,
        ),
        page("login: JSON body", Method::POST, "/login", "{}", 400)
            .with_content_type("application/json"),
        page("login: invalid UTF-8", Method::POST, "/login", "", 400)
            .with_body(Body::Bytes(b"username=\xff&password=x")),
        page(
            "login: duplicate username",
            Method::POST,
            "/login",
            "username=a&username=b&password=x",
            400,
        ),
        page("login: 70 KiB body", Method::POST, "/login", "", 413).with_body(Body::Large),
        page(
            "consent: approve without CSRF token",
            Method::POST,
            "/authorize",
            "decision=approve&response_type=code&client_id={web}",
            403,
        ),
        page(
            "consent: forged CSRF token",
            Method::POST,
            "/authorize",
            "decision=deny&csrf_token=forged&response_type=code&client_id={web}",
            403,
        ),
        page("logout: no CSRF token", Method::POST, "/logout", "", 403),
        // The guarded API (RFC 6750).
        api(
            "guard: no Authorization header",
            None,
            "/api/data",
            401,
            Option::None,
        ),
        api(
            "guard: Basic scheme",
            Raw("Basic YTpi"),
            "/api/data",
            401,
            Option::None,
        ),
        api(
            "guard: empty bearer",
            Raw("Bearer "),
            "/api/data",
            400,
            Some("invalid_request"),
        ),
        api(
            "guard: bearer with a space",
            Raw("Bearer a b"),
            "/api/data",
            400,
            Some("invalid_request"),
        ),
        api(
            "guard: bearer with a quote",
            Raw("Bearer a\"b"),
            "/api/data",
            400,
            Some("invalid_request"),
        ),
        api(
            "guard: two Authorization headers",
            Twice,
            "/api/data",
            400,
            Some("invalid_request"),
        ),
        api(
            "guard: unknown token",
            Raw("Bearer tsa_unknown"),
            "/api/data",
            401,
            Some("invalid_token"),
        ),
        api(
            "guard: SQL as token",
            Raw("Bearer x'--"),
            "/api/data",
            400,
            Some("invalid_request"),
        ),
        api(
            "guard: client secret as token",
            Raw("Bearer tss_abc"),
            "/api/data",
            401,
            Some("invalid_token"),
        ),
        api(
            "guard: token in the query string",
            None,
            "/api/data?access_token=tsa_x",
            401,
            Option::None,
        ),
        api(
            "guard: refresh token as bearer",
            Raw("Bearer tsr_x"),
            "/api/data",
            401,
            Some("invalid_token"),
        ),
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
    let access = app.access_token(&m2m, None).await;
    let guard = Guard::new(
        LocalValidator::new(app.store.clone(), app.clock.clone()),
        "demo",
    );
    let api = serve_api(&guard).await;

    let table = rows();
    assert!(table.len() >= 60, "the table has {} rows", table.len());
    let ctx = Context {
        app: &app,
        api: &api,
        m2m: &m2m,
        web: &web,
        public: &public,
        access: &access,
    };
    let rows = table.len();
    let mut failures = Vec::new();
    for row in table {
        let reply = send(&ctx, &row).await;
        let wrong = check(&row, &reply);
        if !wrong.is_empty() {
            failures.push(format!("{}: {}", row.name, wrong.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {rows} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The server is still healthy and serving after the whole table.
    let token = app.access_token(&m2m, Some("api")).await;
    assert_eq!(app.introspect(&m2m, &token).await["active"], true);
}

struct Context<'a> {
    app: &'a TestApp,
    api: &'a str,
    m2m: &'a TestClient,
    web: &'a TestClient,
    public: &'a TestClient,
    access: &'a str,
}

async fn send(ctx: &Context<'_>, row: &Row) -> Reply {
    let (m2m, web) = (ctx.m2m, ctx.web);
    let fill = |s: &str| {
        s.replace("{id}", &m2m.id)
            .replace("{secret}", m2m.secret())
            .replace("{public}", &ctx.public.id)
            .replace("{web}", &web.id)
            .replace("{access}", ctx.access)
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
    let base = if row.expect == Expect::Bearer {
        ctx.api.to_owned()
    } else {
        ctx.app.base.clone()
    };
    let mut req = ctx
        .app
        .http
        .request(row.method.clone(), format!("{base}{}", fill(row.path)))
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

/// Checks one row's answer and returns everything wrong with it (nothing when it passes), so
/// that the test can list every failing row rather than stop at the first.
fn check(row: &Row, reply: &Reply) -> Vec<String> {
    let mut wrong = Wrong::default();
    wrong.that(reply.status == row.status, || {
        format!(
            "status: got {}, want {} (body {:?})",
            reply.status, row.status, reply.body
        )
    });
    let error = row.error.filter(|e| !e.is_empty());
    match row.expect {
        Expect::OAuthJson => {
            if let Some(error) = error {
                wrong.eq("error", &reply.body["error"], &serde_json::json!(error));
                let description = reply.body["error_description"].as_str().unwrap_or_default();
                wrong.that(!description.is_empty(), || "no error_description".into());
                wrong.eq(
                    "content-type",
                    &reply.header("content-type"),
                    &Some("application/json"),
                );
                wrong.eq(
                    "cache-control",
                    &reply.header("cache-control"),
                    &Some("no-store"),
                );
            }
            wrong.eq(
                "www-authenticate",
                &reply.header("www-authenticate"),
                &row.www_authenticate,
            );
        }
        Expect::Inactive => wrong.eq("body", &reply.body, &serde_json::json!({"active": false})),
        Expect::Page => {
            let ct = reply.header("content-type").unwrap_or_default();
            wrong.that(ct.starts_with("text/html"), || {
                format!("content-type {ct:?}, want text/html")
            });
            wrong.that(reply.header("location").is_none(), || {
                format!(
                    "location {:?}: a page, never a redirect",
                    reply.header("location")
                )
            });
            wrong.eq(
                "x-frame-options",
                &reply.header("x-frame-options"),
                &Some("DENY"),
            );
        }
        Expect::ErrorRedirect => {
            let location = reply.header("location").unwrap_or_default();
            wrong.that(
                location.starts_with("http://127.0.0.1:5000/authorize?"),
                || format!("location {location:?}, want the registered redirect URI"),
            );
            let params = crate::person::query_of(location);
            wrong.eq("error", &params.get("error").map(String::as_str), &error);
        }
        Expect::Bearer => {
            let challenge = reply.header("www-authenticate").unwrap_or_default();
            wrong.that(challenge.starts_with("Bearer realm=\"demo\""), || {
                format!("challenge {challenge:?}, want realm \"demo\"")
            });
            match error {
                Some(e) => wrong.that(challenge.contains(&format!("error=\"{e}\"")), || {
                    format!("challenge {challenge:?}, want error=\"{e}\"")
                }),
                None => wrong.eq("challenge", &challenge, &"Bearer realm=\"demo\""),
            }
        }
    }
    wrong.0
}

/// The mismatches found in one answer, each saying what was got and what was wanted.
#[derive(Default)]
struct Wrong(Vec<String>);

impl Wrong {
    fn eq<T: PartialEq + std::fmt::Debug + ?Sized>(&mut self, what: &str, got: &T, want: &T) {
        if got != want {
            self.0.push(format!("{what}: got {got:?}, want {want:?}"));
        }
    }

    fn that(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.0.push(what());
        }
    }
}
