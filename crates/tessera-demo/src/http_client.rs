//! The `oauth2` crate's HTTP client, over our reqwest (one HTTP stack in the build).
//!
//! The crate's own reqwest integration pins an older reqwest; this adapter is the documented
//! alternative (`AsyncHttpClient` is implemented for such closures). Redirects stay off, as
//! RFC 6749 token and introspection responses are never redirects.

use std::future::Future;
use std::pin::Pin;

pub type HttpFuture =
    Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse, reqwest::Error>> + Send>>;

/// An `oauth2` HTTP client sending requests through `client`.
pub fn oauth_http(client: reqwest::Client) -> impl Fn(oauth2::HttpRequest) -> HttpFuture {
    move |request| {
        let client = client.clone();
        Box::pin(async move {
            let response = client.execute(reqwest::Request::try_from(request)?).await?;
            let mut out = http::Response::new(Vec::new());
            *out.status_mut() = response.status();
            *out.headers_mut() = response.headers().clone();
            *out.body_mut() = response.bytes().await?.to_vec();
            Ok(out)
        })
    }
}

/// A reqwest client for talking to the authorization server and the API: bounded in time,
/// never following redirects.
pub fn reqwest_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(3))
        .timeout(std::time::Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
}
