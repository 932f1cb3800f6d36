//! A person with a browser, simulated over HTTP: a cookie jar, no automatic redirects, and
//! the forms of Tessera's pages filled in by field name.

use std::collections::HashMap;

use crate::helpers::{TestApp, unescape};

pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
pub const PASSWORD: &str = "correct horse battery";

pub struct Person {
    pub http: reqwest::Client,
    base: String,
}

#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    async fn from(r: reqwest::Response) -> Self {
        Self {
            status: r.status().as_u16(),
            headers: r.headers().clone(),
            body: r.text().await.unwrap(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn location(&self) -> Option<&str> {
        self.header("location")
    }

    /// The value of the (first) input named `name`, HTML-unescaped.
    pub fn field(&self, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&marker)? + marker.len();
        let end = self.body[start..].find('"')? + start;
        Some(unescape(&self.body[start..end]))
    }

    /// Every hidden input of the page's form.
    pub fn hidden_fields(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut rest = self.body.as_str();
        while let Some(i) = rest.find("<input type=\"hidden\" name=\"") {
            rest = &rest[i + 27..];
            let name_end = rest.find('"').unwrap();
            let name = unescape(&rest[..name_end]);
            let value_start = rest.find("value=\"").unwrap() + 7;
            let value_end = rest[value_start..].find('"').unwrap() + value_start;
            out.push((name, unescape(&rest[value_start..value_end])));
            rest = &rest[value_end..];
        }
        out
    }

    pub fn is_login(&self) -> bool {
        self.body.contains("action=\"/login\"")
    }

    pub fn is_consent(&self) -> bool {
        self.body.contains("name=\"decision\"")
    }
}

impl Person {
    pub fn new(app: &TestApp) -> Self {
        Self::at(&app.base)
    }

    /// A person using the Tessera at `base` (e.g. one node of several).
    pub fn at(base: &str) -> Self {
        Self::connecting(base, None)
    }

    /// A person whose connections come from `address` (a loopback address such as
    /// 127.0.1.7), so the server sees another caller.
    pub fn from_address(app: &TestApp, address: std::net::IpAddr) -> Self {
        Self::connecting(&app.base, Some(address))
    }

    /// A person behind a proxy that says, in `X-Forwarded-For`, it saw `forwarded_for`.
    pub fn behind_proxy(app: &TestApp, forwarded_for: &str) -> Self {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-forwarded-for", forwarded_for.parse().unwrap());
        Self::build(&app.base, None, headers)
    }

    fn connecting(base: &str, address: Option<std::net::IpAddr>) -> Self {
        Self::build(base, address, reqwest::header::HeaderMap::new())
    }

    fn build(
        base: &str,
        address: Option<std::net::IpAddr>,
        headers: reqwest::header::HeaderMap,
    ) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .cookie_store(true)
                .local_address(address)
                .default_headers(headers)
                .build()
                .unwrap(),
            base: base.to_owned(),
        }
    }

    fn absolute(&self, url: &str) -> String {
        if url.starts_with('/') {
            format!("{}{url}", self.base)
        } else {
            url.to_owned()
        }
    }

    pub async fn get(&self, url: &str) -> Page {
        Page::from(self.http.get(self.absolute(url)).send().await.unwrap()).await
    }

    pub async fn post(&self, url: &str, fields: &[(String, String)]) -> Page {
        Page::from(
            self.http
                .post(self.absolute(url))
                .form(fields)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// Submits the login form of `page`.
    pub async fn log_in(&self, page: &Page, username: &str, password: &str) -> Page {
        assert!(page.is_login(), "not a login page: {}", page.body);
        let fields = vec![
            ("csrf_token".to_owned(), page.field("csrf_token").unwrap()),
            ("return_to".to_owned(), page.field("return_to").unwrap()),
            ("username".to_owned(), username.to_owned()),
            ("password".to_owned(), password.to_owned()),
        ];
        self.post("/login", &fields).await
    }

    /// Submits the consent form of `page` with `decision`.
    pub async fn decide(&self, page: &Page, decision: &str) -> Page {
        assert!(page.is_consent(), "not a consent page: {}", page.body);
        let mut fields = page.hidden_fields();
        fields.push(("decision".to_owned(), decision.to_owned()));
        self.post("/authorize", &fields).await
    }

    /// Opens an authorization URL and goes through login and consent (approving) as needed,
    /// until Tessera redirects away. Returns that redirect's query parameters.
    pub async fn authorize(&self, url: &str, username: &str) -> HashMap<String, String> {
        query_of(&self.authorize_as(url, username, PASSWORD).await)
    }

    /// [`Person::authorize`] with a given password; returns the final redirect's URL.
    pub async fn authorize_as(&self, url: &str, username: &str, password: &str) -> String {
        let mut page = self.get(url).await;
        for _ in 0..4 {
            if page.is_login() {
                page = self.log_in(&page, username, password).await;
            } else if page.is_consent() {
                page = self.decide(&page, "approve").await;
            } else if let Some(location) = page.location() {
                if location.starts_with('/') {
                    page = self.get(location).await;
                } else {
                    return location.to_owned();
                }
            } else {
                panic!("unexpected page {}: {}", page.status, page.body);
            }
        }
        panic!("the flow did not end");
    }
}

/// The query parameters of a URL.
pub fn query_of(url: &str) -> HashMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// An authorization URL for `client_id` with PKCE S256 and `extra` parameters.
pub fn authorize_url(
    app: &TestApp,
    client_id: &str,
    redirect_uri: &str,
    extra: &[(&str, &str)],
) -> String {
    authorize_url_at(&app.base, client_id, redirect_uri, extra)
}

/// [`authorize_url`] for the Tessera at `base`.
pub fn authorize_url_at(
    base: &str,
    client_id: &str,
    redirect_uri: &str,
    extra: &[(&str, &str)],
) -> String {
    let mut url = url::Url::parse(&format!("{base}/authorize")).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("state", "s-123")
        .append_pair("code_challenge", CHALLENGE)
        .append_pair("code_challenge_method", "S256");
    for (k, v) in extra {
        url.query_pairs_mut().append_pair(k, v);
    }
    url.to_string()
}
