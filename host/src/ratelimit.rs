//! Per-client limits: a token bucket per client, answered with 429 and the IETF draft's
//! `RateLimit` / `RateLimit-Policy` fields (draft-ietf-httpapi-ratelimit-headers), and a cap on
//! the requests one client has in progress at once (streams until their last byte).
//!
//! A client is an IPv4 address, or an IPv6 prefix (a /64 by default: what one subscriber is
//! usually given, so one holder of a /64 cannot pose as many clients).
//!
//! A client may make `N` requests at once and then `N` per minute, refilled continuously.
//! Buckets live in this process only: the limit is per instance. Memory is bounded: a bucket
//! that has refilled is the same as no bucket and is dropped when the table fills up; if every
//! bucket is in use, the least recently used half is dropped (those clients start afresh).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::client_ip::{ClientIp, client_key};

/// Command-line options for who the client is and how often it may call.
#[derive(clap::Args, Debug, Clone)]
pub struct ClientOptions {
    /// Requests per minute one client may make (a token bucket: up to N at once, then N per
    /// minute); beyond it 429 with Retry-After. Counted per instance: the floor under the
    /// component's shared limits, and what holds when the store is down. Requests that present
    /// an API key are limited per key by the component instead. Off unless set; /health is
    /// never limited.
    #[arg(long, env = "ION_RATE_LIMIT_PER_MINUTE", value_name = "N")]
    pub rate_limit_per_minute: Option<NonZeroU32>,

    /// Proxies in front of ion-host that append the caller's address to X-Forwarded-For (1 on
    /// Cloud Run, 2 behind a load balancer in front of Cloud Run). 0 ignores the header.
    #[arg(
        long,
        env = "ION_TRUSTED_PROXY_HOPS",
        default_value_t = 0,
        value_name = "N"
    )]
    pub trusted_proxy_hops: usize,

    /// Requests one client may have in progress at once, from its head to the last byte of its
    /// answer (a stream counts until it ends); beyond it 429 `too_many_in_progress` and the
    /// connection closes. 0 turns it off. /health is never limited.
    #[arg(
        long,
        env = "ION_MAX_REQUESTS_PER_CLIENT",
        default_value_t = 0,
        value_name = "N"
    )]
    pub max_requests_per_client: u32,

    /// IPv6 clients are told apart by this many leading bits of their address (64: one /64,
    /// the usual allocation to one subscriber, is one client; 128: every address).
    #[arg(
        long,
        env = "ION_IPV6_CLIENT_PREFIX",
        default_value_t = 64,
        value_name = "BITS",
        value_parser = clap::value_parser!(u8).range(1..=128)
    )]
    pub ipv6_client_prefix: u8,
}

/// Clients tracked at once; beyond it idle buckets are dropped.
const MAX_CLIENTS: usize = 10_000;

/// The path that is never limited: Cloud Run's probes call it.
const EXEMPT_PATH: &str = "/health";

/// Names the policy in `RateLimit-Policy` and `RateLimit`.
const POLICY: &str = "per-client";

/// Identifies callers and limits how often each may call and how much each may run at once.
pub struct ClientLimits {
    client_ip: ClientIp,
    ipv6_prefix: u8,
    limiter: Option<RateLimiter>,
    in_progress: Option<Arc<InProgress>>,
    /// The component checks API keys (its `auth_mode` asks for them): a chat that presents a
    /// key is limited per key there, across instances, instead of per address here.
    component_checks_keys: bool,
}

/// The routes on which the component limits a presented key.
const KEYED_PATHS: [&str; 2] = ["/chat", "/v1/chat/completions"];

impl ClientLimits {
    pub fn new(options: &ClientOptions) -> ClientLimits {
        ClientLimits {
            client_ip: ClientIp::new(options.trusted_proxy_hops),
            ipv6_prefix: options.ipv6_client_prefix.clamp(1, 128),
            limiter: options
                .rate_limit_per_minute
                .map(|n| RateLimiter::new(n, MAX_CLIENTS)),
            in_progress: (options.max_requests_per_client > 0).then(|| {
                Arc::new(InProgress {
                    limit: options.max_requests_per_client,
                    counts: Mutex::default(),
                })
            }),
            component_checks_keys: false,
        }
    }

    /// Whether the component's `auth_mode` (`keys`, `keys_or_anonymous`) checks API keys.
    pub fn with_component_keys(mut self, auth_mode: Option<&str>) -> ClientLimits {
        self.component_checks_keys =
            matches!(auth_mode.map(str::trim), Some("keys" | "keys_or_anonymous"));
        self
    }

    /// Takes one request from the client's allowance, unless the component limits it per key:
    /// a chat that presents a key while the component checks keys (a made-up key then costs
    /// a 401, never a chat).
    pub fn check_request(
        &self,
        path: &str,
        client: IpAddr,
        headers: &HeaderMap,
    ) -> Result<(), Limited> {
        if self.component_checks_keys
            && KEYED_PATHS.contains(&path)
            && crate::client_ip::presents_api_key(headers)
        {
            return Ok(());
        }
        self.check(path, client)
    }

    /// The client's address (for logs and limits).
    pub fn client_ip(&self, headers: &HeaderMap, peer: SocketAddr) -> IpAddr {
        self.client_ip.resolve(headers, peer.ip())
    }

    /// Takes one request from `client`'s allowance; `Err` when it has none left.
    pub fn check(&self, path: &str, client: IpAddr) -> Result<(), Limited> {
        match &self.limiter {
            Some(limiter) if path != EXEMPT_PATH => {
                limiter.check(client_key(client, self.ipv6_prefix), Instant::now())
            }
            _ => Ok(()),
        }
    }

    /// Counts a request of `client` as in progress until the ticket drops; `Err(limit)` when
    /// the client already has that many.
    pub fn begin(&self, path: &str, client: IpAddr) -> Result<Option<InProgressTicket>, u32> {
        match &self.in_progress {
            Some(in_progress) if path != EXEMPT_PATH => in_progress
                .begin(client_key(client, self.ipv6_prefix))
                .map(Some),
            _ => Ok(None),
        }
    }

    /// The limits, for the startup log.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(limiter) = &self.limiter {
            lines.push(format!(
                "rate limit: {} requests per minute per client (this instance){}",
                limiter.per_minute,
                if self.component_checks_keys {
                    "; chats with an API key are limited per key by the component"
                } else {
                    ""
                }
            ));
        }
        if let Some(in_progress) = &self.in_progress {
            lines.push(format!(
                "at most {} requests in progress per client",
                in_progress.limit
            ));
        }
        lines
    }
}

/// Requests in progress, per client.
struct InProgress {
    limit: u32,
    counts: Mutex<HashMap<IpAddr, u32>>,
}

impl InProgress {
    fn begin(self: &Arc<Self>, client: IpAddr) -> Result<InProgressTicket, u32> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(client).or_insert(0);
        if *count >= self.limit {
            return Err(self.limit);
        }
        *count += 1;
        Ok(InProgressTicket {
            in_progress: self.clone(),
            client,
        })
    }
}

/// One request in progress for its client; ends when dropped.
pub struct InProgressTicket {
    in_progress: Arc<InProgress>,
    client: IpAddr,
}

impl Drop for InProgressTicket {
    fn drop(&mut self) {
        let mut counts = self
            .in_progress
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.client);
            }
        }
    }
}

/// A refused request: what to tell the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    per_minute: u32,
    /// Whole seconds until one request is allowed again (at least 1).
    pub retry_after_secs: u64,
}

impl Limited {
    /// The sentence for the JSON error body.
    pub fn message(&self) -> String {
        format!(
            "too many requests from this client: the limit is {} per minute; retry in {} s",
            self.per_minute, self.retry_after_secs
        )
    }

    /// `Retry-After`, `RateLimit-Policy` and `RateLimit` for the 429.
    pub fn headers(&self) -> impl Iterator<Item = (HeaderName, HeaderValue)> {
        let value = |text: String| HeaderValue::try_from(text).expect("ASCII header value");
        [
            (
                http::header::RETRY_AFTER,
                value(self.retry_after_secs.to_string()),
            ),
            (
                HeaderName::from_static("ratelimit-policy"),
                value(format!("\"{POLICY}\";q={};w=60", self.per_minute)),
            ),
            (
                HeaderName::from_static("ratelimit"),
                value(format!("\"{POLICY}\";r=0;t={}", self.retry_after_secs)),
            ),
        ]
        .into_iter()
    }
}

/// Token buckets keyed by client address.
struct RateLimiter {
    per_minute: u32,
    max_clients: usize,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    fn new(per_minute: NonZeroU32, max_clients: usize) -> RateLimiter {
        RateLimiter {
            per_minute: per_minute.get(),
            max_clients,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn capacity(&self) -> f64 {
        f64::from(self.per_minute)
    }

    fn per_second(&self) -> f64 {
        self.capacity() / 60.0
    }

    /// `bucket` refilled up to `now`.
    fn refilled(&self, bucket: Bucket, now: Instant) -> Bucket {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        Bucket {
            tokens: (bucket.tokens + elapsed * self.per_second()).min(self.capacity()),
            updated: now,
        }
    }

    fn check(&self, client: IpAddr, now: Instant) -> Result<(), Limited> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if !buckets.contains_key(&client) && buckets.len() >= self.max_clients {
            self.evict(&mut buckets, now);
        }
        let full = Bucket {
            tokens: self.capacity(),
            updated: now,
        };
        let bucket = buckets.entry(client).or_insert(full);
        *bucket = self.refilled(*bucket, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        // Rounded to the millisecond first, so float noise does not add a second.
        let wait_ms = ((1.0 - bucket.tokens) / self.per_second() * 1000.0).round() as u64;
        Err(Limited {
            per_minute: self.per_minute,
            retry_after_secs: wait_ms.div_ceil(1000).max(1),
        })
    }

    /// Drops refilled buckets; if none is, the least recently used half.
    fn evict(&self, buckets: &mut HashMap<IpAddr, Bucket>, now: Instant) {
        let capacity = self.capacity();
        buckets.retain(|_, bucket| self.refilled(*bucket, now).tokens < capacity);
        if buckets.len() < self.max_clients {
            return;
        }
        let mut by_age: Vec<(Instant, IpAddr)> =
            buckets.iter().map(|(ip, b)| (b.updated, *ip)).collect();
        by_age.sort_unstable();
        for (_, ip) in by_age.iter().take(by_age.len().div_ceil(2)) {
            buckets.remove(ip);
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([203, 0, 113, last])
    }

    fn limiter(per_minute: u32, max_clients: usize) -> RateLimiter {
        RateLimiter::new(NonZeroU32::new(per_minute).unwrap(), max_clients)
    }

    #[test]
    fn a_client_gets_its_burst_then_waits_for_refill() {
        let l = limiter(3, 100);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.check(ip(1), t0), Ok(()));
        }
        let refused = l.check(ip(1), t0).unwrap_err();
        // 3 per minute: one token every 20 s.
        assert_eq!(refused.retry_after_secs, 20);
        // Other clients have their own bucket.
        assert_eq!(l.check(ip(2), t0), Ok(()));

        let later = t0 + Duration::from_secs(15);
        assert_eq!(l.check(ip(1), later).unwrap_err().retry_after_secs, 5);
        assert_eq!(l.check(ip(1), t0 + Duration::from_secs(20)), Ok(()));
        assert!(l.check(ip(1), t0 + Duration::from_secs(21)).is_err());
        // A full minute refills the whole burst, never more.
        let idle = t0 + Duration::from_secs(600);
        for _ in 0..3 {
            assert_eq!(l.check(ip(1), idle), Ok(()));
        }
        assert!(l.check(ip(1), idle).is_err());
    }

    #[test]
    fn memory_is_bounded_and_idle_buckets_go_first() {
        let l = limiter(2, 4);
        let t0 = Instant::now();
        for n in 0..4 {
            l.check(ip(n), t0).unwrap();
        }
        // All four are in use: a fifth client evicts the older half.
        l.check(ip(4), t0 + Duration::from_millis(1)).unwrap();
        assert!(l.tracked() <= 4);

        // After a minute every bucket has refilled: all are dropped for a new client.
        let later = t0 + Duration::from_secs(61);
        for n in 10..20 {
            l.check(ip(n), later).unwrap();
            assert!(l.tracked() <= 4);
        }
    }

    #[test]
    fn limited_answers_carry_the_draft_headers() {
        let limited = Limited {
            per_minute: 30,
            retry_after_secs: 2,
        };
        let headers: HashMap<String, String> = limited
            .headers()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        assert_eq!(headers["retry-after"], "2");
        assert_eq!(headers["ratelimit-policy"], "\"per-client\";q=30;w=60");
        assert_eq!(headers["ratelimit"], "\"per-client\";r=0;t=2");
        assert!(limited.message().contains("30 per minute"));
    }

    #[test]
    fn health_is_exempt_and_no_limit_means_none() {
        let options = ClientOptions {
            rate_limit_per_minute: NonZeroU32::new(1),
            trusted_proxy_hops: 0,
            max_requests_per_client: 0,
            ipv6_client_prefix: 64,
        };
        let limits = ClientLimits::new(&options);
        assert!(limits.check("/chat", ip(1)).is_ok());
        assert!(limits.check("/chat", ip(1)).is_err());
        assert!(limits.check("/health", ip(1)).is_ok());

        let off = ClientLimits::new(&ClientOptions {
            rate_limit_per_minute: None,
            trusted_proxy_hops: 0,
            max_requests_per_client: 0,
            ipv6_client_prefix: 64,
        });
        for _ in 0..100 {
            assert!(off.check("/chat", ip(1)).is_ok());
            assert!(matches!(off.begin("/chat", ip(1)), Ok(None)));
        }
        assert!(off.describe().is_empty());
    }

    fn v6(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_ipv6_slash_64_is_one_client() {
        let limits = ClientLimits::new(&ClientOptions {
            rate_limit_per_minute: NonZeroU32::new(2),
            trusted_proxy_hops: 0,
            max_requests_per_client: 0,
            ipv6_client_prefix: 64,
        });
        assert!(limits.check("/chat", v6("2001:db8:1:2::1")).is_ok());
        assert!(limits.check("/chat", v6("2001:db8:1:2:ffff::9")).is_ok());
        assert!(
            limits.check("/chat", v6("2001:db8:1:2:abcd::7")).is_err(),
            "a third address of the same /64 shares its bucket"
        );
        assert!(
            limits.check("/chat", v6("2001:db8:1:3::1")).is_ok(),
            "the next /64 is another client"
        );

        let per_address = ClientLimits::new(&ClientOptions {
            rate_limit_per_minute: NonZeroU32::new(1),
            trusted_proxy_hops: 0,
            max_requests_per_client: 0,
            ipv6_client_prefix: 128,
        });
        assert!(per_address.check("/chat", v6("2001:db8::1")).is_ok());
        assert!(per_address.check("/chat", v6("2001:db8::2")).is_ok());
    }

    #[test]
    fn keyed_chats_are_left_to_the_component_only_when_it_checks_keys() {
        let options = ClientOptions {
            rate_limit_per_minute: NonZeroU32::new(1),
            trusted_proxy_hops: 0,
            max_requests_per_client: 0,
            ipv6_client_prefix: 64,
        };
        let mut keyed = HeaderMap::new();
        keyed.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer ion_sk_made_up"),
        );
        let plain = HeaderMap::new();

        let open = ClientLimits::new(&options).with_component_keys(Some("none"));
        assert!(open.check_request("/chat", ip(1), &keyed).is_ok());
        assert!(
            open.check_request("/chat", ip(1), &keyed).is_err(),
            "no keys checked: a made-up key is just another request"
        );

        let keys = ClientLimits::new(&options).with_component_keys(Some("keys_or_anonymous"));
        for _ in 0..5 {
            assert!(keys.check_request("/chat", ip(2), &keyed).is_ok());
            assert!(
                keys.check_request("/v1/chat/completions", ip(2), &keyed)
                    .is_ok()
            );
        }
        assert!(keys.check_request("/chat", ip(2), &plain).is_ok());
        assert!(keys.check_request("/chat", ip(2), &plain).is_err());
        assert!(
            keys.check_request("/admin/keys", ip(2), &keyed).is_err(),
            "only the chat routes"
        );
    }

    #[test]
    fn requests_in_progress_are_capped_per_client() {
        let limits = ClientLimits::new(&ClientOptions {
            rate_limit_per_minute: None,
            trusted_proxy_hops: 0,
            max_requests_per_client: 2,
            ipv6_client_prefix: 64,
        });
        let first = limits.begin("/chat", v6("2001:db8::1")).unwrap();
        let _second = limits.begin("/chat", v6("2001:db8::2")).unwrap();
        assert_eq!(limits.begin("/chat", v6("2001:db8::3")).err(), Some(2));
        assert!(limits.begin("/health", v6("2001:db8::3")).is_ok());
        assert!(limits.begin("/chat", ip(1)).is_ok(), "another client");
        drop(first);
        assert!(limits.begin("/chat", v6("2001:db8::3")).is_ok());
    }
}
