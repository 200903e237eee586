//! The client's address, as the proxies in front of ion-host report it.
//!
//! Each proxy appends the address it received the request from to `X-Forwarded-For`; whatever a
//! client wrote there itself comes first. So only the last `trusted_hops` entries are facts,
//! and the client is the leftmost of those: the entry the outermost trusted proxy appended.
//! Cloud Run's front end appends one entry (the address the request came from): one hop. An
//! external Application Load Balancer in front of Cloud Run appends `client, load-balancer`:
//! two hops. Without proxies (zero hops, the default) the header is ignored and the TCP peer
//! is the client, so that nobody can choose their own address by sending the header.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;

/// How many proxies in front of ion-host append to `X-Forwarded-For`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientIp {
    trusted_hops: usize,
}

impl ClientIp {
    pub fn new(trusted_hops: usize) -> ClientIp {
        ClientIp { trusted_hops }
    }

    /// The client's address: the entry the outermost trusted proxy appended, or the TCP peer
    /// when there is no trusted entry. With fewer entries than hops, every entry came from a
    /// trusted proxy and the first is the client.
    pub fn resolve(&self, headers: &HeaderMap, peer: IpAddr) -> IpAddr {
        if self.trusted_hops == 0 {
            return peer;
        }
        let entries: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        let Some(chosen) = entries
            .len()
            .checked_sub(self.trusted_hops)
            .map_or(entries.first(), |i| entries.get(i))
        else {
            return peer;
        };
        parse_entry(chosen).unwrap_or(peer)
    }
}

/// The header through which the component learns the client's address. Spin sets it on every
/// request; ion-host sets it to the address resolved here, replacing whatever a client sent.
pub const CLIENT_ADDR_HEADER: &str = "spin-client-addr";

/// Tells the component who the client is: `spin-client-addr`, as Spin writes it (`ip:port`).
pub fn set_client_addr(headers: &mut HeaderMap, client: IpAddr, peer: SocketAddr) {
    let value = SocketAddr::new(client, peer.port()).to_string();
    headers.remove(CLIENT_ADDR_HEADER);
    if let Ok(value) = http::HeaderValue::from_str(&value) {
        headers.insert(CLIENT_ADDR_HEADER, value);
    }
}

/// Whether the request presents an Ion API key (`Authorization: Bearer ion_sk_...`).
pub fn presents_api_key(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_start().split_once(' '))
        .is_some_and(|(scheme, token)| {
            scheme.eq_ignore_ascii_case("bearer") && token.trim_start().starts_with("ion_sk_")
        })
}

/// An address as proxies write it: `1.2.3.4`, `2001:db8::1`, or with a port.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// The key a client's limits are kept under: an IPv4 address as it is (an IPv4-mapped IPv6
/// address as its IPv4 address), an IPv6 address cut to its first `ipv6_prefix` bits.
pub fn client_key(ip: IpAddr, ipv6_prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u32::from(ipv6_prefix.min(128));
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                IpAddr::V6(std::net::Ipv6Addr::from_bits(v6.to_bits() & mask))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_component_hears_the_resolved_client_never_the_callers_claim() {
        let mut headers = HeaderMap::new();
        headers.append(CLIENT_ADDR_HEADER, "6.6.6.6:1".parse().unwrap());
        headers.append(CLIENT_ADDR_HEADER, "7.7.7.7:1".parse().unwrap());
        let peer: SocketAddr = "10.0.0.9:4242".parse().unwrap();
        set_client_addr(&mut headers, "203.0.113.7".parse().unwrap(), peer);
        let values: Vec<_> = headers.get_all(CLIENT_ADDR_HEADER).iter().collect();
        assert_eq!(values, ["203.0.113.7:4242"]);
        set_client_addr(&mut headers, "2001:db8::1".parse().unwrap(), peer);
        assert_eq!(headers[CLIENT_ADDR_HEADER], "[2001:db8::1]:4242");
    }

    #[test]
    fn api_keys_are_recognized_by_their_prefix() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(http::header::AUTHORIZATION, value.parse().unwrap());
            presents_api_key(&headers)
        };
        assert!(with("Bearer ion_sk_0123"));
        assert!(with("bearer  ion_sk_x"));
        assert!(!with("Bearer eyJhbGciOiJSUzI1NiJ9.x.y"));
        assert!(!with("Basic ion_sk_0123"));
        assert!(!presents_api_key(&HeaderMap::new()));
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_prefix() {
        let key = |ip: &str, bits| client_key(ip.parse().unwrap(), bits).to_string();
        assert_eq!(key("2001:db8:1:2:3:4:5:6", 64), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2:ffff::1", 64), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2:3:4:5:6", 48), "2001:db8:1::");
        assert_eq!(key("2001:db8:1:2:3:4:5:6", 128), "2001:db8:1:2:3:4:5:6");
        assert_eq!(key("203.0.113.9", 64), "203.0.113.9");
        assert_eq!(key("::ffff:203.0.113.9", 64), "203.0.113.9");
    }

    fn resolve(hops: usize, forwarded: &[&str]) -> String {
        let mut headers = HeaderMap::new();
        for value in forwarded {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        ClientIp::new(hops)
            .resolve(&headers, "10.0.0.1".parse().unwrap())
            .to_string()
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        assert_eq!(resolve(0, &["203.0.113.9"]), "10.0.0.1");
        assert_eq!(resolve(0, &[]), "10.0.0.1");
    }

    #[test]
    fn one_hop_takes_the_entry_cloud_run_appended() {
        assert_eq!(resolve(1, &["203.0.113.9"]), "203.0.113.9");
        // A client's own header comes first and is ignored.
        assert_eq!(resolve(1, &["6.6.6.6, 203.0.113.9"]), "203.0.113.9");
        assert_eq!(resolve(1, &["6.6.6.6", "203.0.113.9"]), "203.0.113.9");
        assert_eq!(resolve(1, &["2001:db8::7"]), "2001:db8::7");
        assert_eq!(resolve(1, &["[2001:db8::7]:443"]), "2001:db8::7");
        assert_eq!(resolve(1, &["203.0.113.9:5000"]), "203.0.113.9");
        // Nothing trustworthy: the peer.
        assert_eq!(resolve(1, &[]), "10.0.0.1");
        assert_eq!(resolve(1, &["6.6.6.6, unknown"]), "10.0.0.1");
        assert_eq!(resolve(1, &[" , "]), "10.0.0.1");
    }

    #[test]
    fn two_hops_skip_the_load_balancer() {
        assert_eq!(
            resolve(2, &["6.6.6.6, 203.0.113.9, 34.1.2.3"]),
            "203.0.113.9"
        );
        assert_eq!(resolve(2, &["203.0.113.9"]), "203.0.113.9");
    }
}
