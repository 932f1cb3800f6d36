//! Fetching client metadata documents over https, so that the fetch cannot be turned
//! against the network the server stands in.
//!
//! The key design decision: the URL's host is resolved by [`PublicResolver`], which hands
//! the connector only public addresses, so the connection goes to an address that was
//! vetted, with no window between a check and a second DNS answer (DNS rebinding). An
//! address literal in the URL never reaches a resolver, so it is checked before the request.
//! Beyond that: https only, no proxy, no redirect followed, no retry, 2 s for the whole
//! exchange, and the body read chunk by chunk and dropped past 5 KB.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use tessera_core::client_metadata::{ClientIdUrl, MAX_DOCUMENT_BYTES};
use tessera_flow::{ClientMetadataSource, MetadataFetchError};

/// The whole exchange, from resolving the host to the last byte.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(2);

/// Fetches documents with reqwest, reaching only public addresses (and loopback, when
/// allowed for local development).
pub struct HttpsMetadataSource {
    client: reqwest::Client,
    allow_loopback: bool,
}

impl HttpsMetadataSource {
    /// `ca_file`: PEM certificates trusted besides the system's roots (a private CA).
    pub fn new(allow_loopback: bool, ca_file: Option<&Path>) -> io::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .retry(reqwest::retry::never())
            .no_proxy()
            .connect_timeout(FETCH_TIMEOUT)
            .timeout(FETCH_TIMEOUT)
            .user_agent(concat!("tessera/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(PublicResolver { allow_loopback }));
        if let Some(path) = ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                io::Error::new(e.kind(), format!("reading {}: {e}", path.display()))
            })?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?;
            if certificates.is_empty() {
                return Err(io::Error::other(format!(
                    "{}: no PEM certificate",
                    path.display()
                )));
            }
            builder = builder.tls_certs_merge(certificates);
        }
        let client = builder.build().map_err(io::Error::other)?;
        Ok(Self {
            client,
            allow_loopback,
        })
    }
}

#[async_trait]
impl ClientMetadataSource for HttpsMetadataSource {
    async fn fetch(&self, url: &ClientIdUrl) -> Result<Vec<u8>, MetadataFetchError> {
        let literal = match url.url().host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if literal.is_some_and(|ip| !may_reach(ip, self.allow_loopback)) {
            return Err(MetadataFetchError::Forbidden);
        }
        let mut response = self
            .client
            .get(url.url().clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(failure)?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(MetadataFetchError::Status(response.status().as_u16()));
        }
        let too_large = |n: u64| usize::try_from(n).map_or(true, |n| n > MAX_DOCUMENT_BYTES);
        if response.content_length().is_some_and(too_large) {
            return Err(MetadataFetchError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failure)? {
            if body.len().saturating_add(chunk.len()) > MAX_DOCUMENT_BYTES {
                return Err(MetadataFetchError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// What a failed exchange was, from reqwest's error and its sources.
fn failure(e: reqwest::Error) -> MetadataFetchError {
    if e.is_timeout() {
        return MetadataFetchError::Timeout;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    let mut innermost = e.to_string();
    while let Some(s) = source {
        if s.is::<NotPublic>() {
            return MetadataFetchError::Forbidden;
        }
        innermost = s.to_string();
        source = s.source();
    }
    MetadataFetchError::Unreachable(innermost.chars().take(200).collect())
}

/// The host resolved to no address that may be reached.
#[derive(Debug, thiserror::Error)]
#[error("{0} has no public address")]
struct NotPublic(String);

/// Resolves with the system's resolver and keeps only the addresses [`may_reach`] allows.
struct PublicResolver {
    allow_loopback: bool,
}

impl Resolve for PublicResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_loopback = self.allow_loopback;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let allowed: Vec<SocketAddr> = found
                .filter(|a| may_reach(a.ip(), allow_loopback))
                .collect();
            if allowed.is_empty() {
                return Err(Box::new(NotPublic(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Whether a document may be fetched from `ip`: a public unicast address, or a loopback one
/// when `allow_loopback` (local development and tests).
pub fn may_reach(ip: IpAddr, allow_loopback: bool) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_may_reach(v4, allow_loopback),
        IpAddr::V6(v6) => v6_may_reach(v6, allow_loopback),
    }
}

fn v4_may_reach(ip: Ipv4Addr, allow_loopback: bool) -> bool {
    if ip.is_loopback() {
        return allow_loopback;
    }
    let [a, b, c, _] = ip.octets();
    let special = ip.is_unspecified()
        || a == 0 // "this network"
        || ip.is_private() // 10/8, 172.16/12, 192.168/16
        || ip.is_link_local() // 169.254/16, cloud metadata services
        || (a == 100 && (64..128).contains(&b)) // 100.64/10, carrier-grade NAT
        || (a == 192 && b == 0 && c == 0) // 192.0.0/24, IETF protocol assignments
        || ip.is_documentation() // 192.0.2/24, 198.51.100/24, 203.0.113/24
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 198 && (b == 18 || b == 19)) // 198.18/15, benchmarking
        || ip.is_multicast() // 224/4
        || a >= 240; // 240/4 reserved, and the broadcast address
    !special
}

fn v6_may_reach(ip: Ipv6Addr, allow_loopback: bool) -> bool {
    if ip.is_loopback() {
        return allow_loopback;
    }
    if ip.is_unspecified() {
        return false;
    }
    // IPv4-mapped (::ffff:0:0/96) and IPv4-compatible (::/96): the IPv4 address is reached.
    if let Some(v4) = ip.to_ipv4() {
        return v4_may_reach(v4, allow_loopback);
    }
    let s = ip.segments();
    let [s0, s1, ..] = s;
    let embedded = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) lead to the IPv4 address inside.
    if s0 == 0x64 && s1 == 0xff9b {
        return v4_may_reach(embedded(s[6], s[7]), false);
    }
    if s0 == 0x2002 {
        return v4_may_reach(embedded(s1, s[2]), false);
    }
    let special = (s0 & 0xfe00) == 0xfc00 // fc00::/7, unique local
        || (s0 & 0xffc0) == 0xfe80 // fe80::/10, link-local
        || (s0 & 0xffc0) == 0xfec0 // fec0::/10, old site-local
        || (s0 & 0xff00) == 0xff00 // ff00::/8, multicast
        || (s0 == 0x2001 && s1 == 0x0db8) // 2001:db8::/32, documentation
        || (s0 == 0x2001 && s1 == 0) // 2001::/32, Teredo (hides an IPv4 address)
        || (s0 == 0x0100 && s1 == 0 && s[2] == 0 && s[3] == 0) // 100::/64, discard
        || s0 == 0; // the rest of ::/16 (IPv4-translated and reserved)
    !special
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(addresses: &[&str], allow_loopback: bool, expected: bool) {
        for a in addresses {
            let ip: IpAddr = a.parse().unwrap();
            assert_eq!(
                may_reach(ip, allow_loopback),
                expected,
                "{a} (loopback allowed: {allow_loopback})"
            );
        }
    }

    #[test]
    fn only_public_addresses_may_be_reached() {
        let public = [
            "93.184.216.34",
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.0",
            "172.32.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001:81c::200e",
            "::ffff:93.184.216.34",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ];
        check(&public, false, true);
        check(&public, true, true);
        let never = [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.0.1",
            "192.0.2.1",
            "198.51.100.1",
            "203.0.113.1",
            "198.18.0.1",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "2001:0:4136:e378::1",
            "100::1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:0.0.0.0",
            "::10.0.0.1",
            "64:ff9b::a00:1",
            "64:ff9b::7f00:1",
            "2002:a00:1::1",
            "2002:7f00:1::1",
        ];
        check(&never, false, false);
        check(&never, true, false);
        let loopback = ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"];
        check(&loopback, false, false);
        check(&loopback, true, true);
    }
}
