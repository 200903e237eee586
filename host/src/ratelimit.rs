//! Per-client rate limiting: a token bucket per client address, answered with 429 and the
//! IETF draft's `RateLimit` / `RateLimit-Policy` fields (draft-ietf-httpapi-ratelimit-headers).
//!
//! A client may make `N` requests at once and then `N` per minute, refilled continuously.
//! Buckets live in this process only: the limit is per instance. Memory is bounded: a bucket
//! that has refilled is the same as no bucket and is dropped when the table fills up; if every
//! bucket is in use, the least recently used half is dropped (those clients start afresh).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Instant;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::client_ip::ClientIp;

/// Command-line options for who the client is and how often it may call.
#[derive(clap::Args, Debug, Clone)]
pub struct ClientOptions {
    /// Requests per minute one client may make (a token bucket: up to N at once, then N per
    /// minute); beyond it 429 with Retry-After. Counted per instance. Off unless set; /health
    /// is never limited.
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
}

/// Clients tracked at once; beyond it idle buckets are dropped.
const MAX_CLIENTS: usize = 10_000;

/// The path that is never limited: Cloud Run's probes call it.
const EXEMPT_PATH: &str = "/health";

/// Names the policy in `RateLimit-Policy` and `RateLimit`.
const POLICY: &str = "per-client";

/// Identifies callers and limits how often each may call.
pub struct ClientLimits {
    client_ip: ClientIp,
    limiter: Option<RateLimiter>,
}

impl ClientLimits {
    pub fn new(options: &ClientOptions) -> ClientLimits {
        ClientLimits {
            client_ip: ClientIp::new(options.trusted_proxy_hops),
            limiter: options
                .rate_limit_per_minute
                .map(|n| RateLimiter::new(n, MAX_CLIENTS)),
        }
    }

    /// The client's address (for logs and limits).
    pub fn client_ip(&self, headers: &HeaderMap, peer: SocketAddr) -> IpAddr {
        self.client_ip.resolve(headers, peer.ip())
    }

    /// Takes one request from `client`'s allowance; `Err` when it has none left.
    pub fn check(&self, path: &str, client: IpAddr) -> Result<(), Limited> {
        match &self.limiter {
            Some(limiter) if path != EXEMPT_PATH => limiter.check(client, Instant::now()),
            _ => Ok(()),
        }
    }

    /// The limit, for the startup log.
    pub fn describe(&self) -> Option<String> {
        let limiter = self.limiter.as_ref()?;
        Some(format!(
            "rate limit: {} requests per minute per client (this instance)",
            limiter.per_minute
        ))
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
        };
        let limits = ClientLimits::new(&options);
        assert!(limits.check("/chat", ip(1)).is_ok());
        assert!(limits.check("/chat", ip(1)).is_err());
        assert!(limits.check("/health", ip(1)).is_ok());

        let off = ClientLimits::new(&ClientOptions {
            rate_limit_per_minute: None,
            trusted_proxy_hops: 0,
        });
        for _ in 0..100 {
            assert!(off.check("/chat", ip(1)).is_ok());
        }
        assert_eq!(off.describe(), None);
    }
}
