//! Who is calling: the socket's peer, or, behind a proxy the operator trusts, the address that
//! proxy saw (`X-Forwarded-For`). Throttles key on it, so a header from anyone else is never
//! believed: otherwise every caller could pick its own address.

use std::net::IpAddr;
use std::str::FromStr;

use axum::http::HeaderMap;

/// An address range in CIDR notation (`10.0.0.0/8`, `fd00::/8`); a bare address is a range
/// of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an address range such as 10.0.0.0/8 or fd00::/8")]
pub struct InvalidCidr(String);

impl FromStr for Cidr {
    type Err = InvalidCidr;

    fn from_str(s: &str) -> Result<Self, InvalidCidr> {
        let bad = || InvalidCidr(s.to_owned());
        let (address, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network: IpAddr = address.trim().parse().map_err(|_| bad())?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().map_err(|_| bad())?,
            None => bits,
        };
        if prefix > bits {
            return Err(bad());
        }
        Ok(Self { network, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (canonical(self.network), ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                same_prefix(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                same_prefix(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

/// An IPv4 address mapped into IPv6 (`::ffff:a.b.c.d`), as a dual-stack socket reports it,
/// compared as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn same_prefix(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let mut left = usize::from(prefix);
    for (x, y) in a.iter().zip(b) {
        if left == 0 {
            return true;
        }
        let take = left.min(8);
        let mask = u8::MAX << (8 - take);
        if x & mask != y & mask {
            return false;
        }
        left -= take;
    }
    true
}

/// The caller's address: the `peer` itself unless it is a trusted proxy; then the right-most
/// `X-Forwarded-For` entry that is not a trusted proxy (each proxy appends the address it
/// saw, so entries further left were written by the caller and prove nothing). A missing or
/// malformed header leaves the peer.
pub fn caller(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut entries = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(text) = value.to_str() else {
            return peer;
        };
        entries.extend(text.split(',').map(str::trim));
    }
    let mut caller = peer;
    for entry in entries.iter().rev() {
        let Ok(ip) = entry.parse::<IpAddr>() else {
            return caller;
        };
        caller = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    caller
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_parse_and_contain() {
        let ten: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(ten.contains(ip("10.200.3.4")));
        assert!(!ten.contains(ip("11.0.0.1")));
        assert!(ten.contains(ip("::ffff:10.1.2.3")), "mapped IPv4");
        let one: Cidr = "192.0.2.7".parse().unwrap();
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        let odd: Cidr = "172.16.0.0/12".parse().unwrap();
        assert!(odd.contains(ip("172.31.255.255")) && !odd.contains(ip("172.32.0.0")));
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("8.8.8.8")));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "x/8",
            "10.0.0.0/-1",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_forwarded_address_is_believed_only_from_a_trusted_proxy() {
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        let mut headers = HeaderMap::new();
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_static("1.1.1.1, 203.0.113.9, 10.0.0.2"),
        );
        // From the proxy: the right-most entry that is not a proxy.
        assert_eq!(
            caller(ip("10.0.0.1"), &headers, &trusted),
            ip("203.0.113.9")
        );
        // From anyone else: the header is the caller's own words.
        assert_eq!(
            caller(ip("198.51.100.1"), &headers, &trusted),
            ip("198.51.100.1")
        );
        assert_eq!(caller(ip("10.0.0.1"), &headers, &[]), ip("10.0.0.1"));
        // Nothing forwarded, or garbage: the proxy itself.
        assert_eq!(
            caller(ip("10.0.0.1"), &HeaderMap::new(), &trusted),
            ip("10.0.0.1")
        );
        let mut garbage = HeaderMap::new();
        garbage.append("x-forwarded-for", HeaderValue::from_static("not-an-ip"));
        assert_eq!(caller(ip("10.0.0.1"), &garbage, &trusted), ip("10.0.0.1"));
        // Several headers are one list, in order.
        let mut split = HeaderMap::new();
        split.append("x-forwarded-for", HeaderValue::from_static("203.0.113.1"));
        split.append("x-forwarded-for", HeaderValue::from_static("10.9.9.9"));
        assert_eq!(caller(ip("10.0.0.1"), &split, &trusted), ip("203.0.113.1"));
    }
}
