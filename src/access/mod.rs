//! Who may chat and how much: API keys, a requests-per-minute limit and a daily token budget
//! per key and per client address, all kept in the runtime's key-value store so that every
//! instance counts against the same numbers.
//!
//! Before a chat: one read of the key (when one is presented), one read of the day's tokens
//! (when there is a budget), and one read and one atomic increment of the request counters
//! (when there is a requests-per-minute limit). After it: one increment adding the tokens Vertex
//! AI reported. No read-modify-write, so concurrent chats of one caller never contend (see
//! [`counters`]). With nothing limited (the default) the store is not touched.
//!
//! When the store cannot be reached, a presented key cannot be checked (503), while anonymous
//! callers go on under the runtime's per-instance limit (ion-host's
//! `ION_RATE_LIMIT_PER_MINUTE`), and the chat's log line says `"limits":"instance"`.

pub mod admin;
pub mod counters;
pub mod keys;

use std::net::{IpAddr, SocketAddr};

use crate::config::{ConfigError, Variables, parse_number};
use crate::error::ApiError;
use crate::store::{KeyValue, StoreError};
use keys::KeyRecord;

/// Who must present a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No keys: every caller is anonymous (`Authorization` is not read: on a private Cloud Run
    /// service it carries Google's identity token).
    Open,
    /// Every chat needs a key.
    Keys,
    /// A key, or none (then the anonymous limits apply); a wrong key is still refused.
    KeysOrAnonymous,
}

/// A requests-per-minute limit and a daily token budget; 0 means none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub requests_per_minute: u32,
    pub daily_tokens: u64,
}

impl Limits {
    fn any(self) -> bool {
        self.requests_per_minute > 0 || self.daily_tokens > 0
    }
}

/// The access variables (see spin.toml).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessSettings {
    pub mode: Mode,
    /// Per client address (an IPv4 address or an IPv6 /64).
    pub anonymous: Limits,
    /// What a new key gets unless its creator says otherwise.
    pub key_defaults: Limits,
    /// The admin API's bearer token; `None` turns the admin API off.
    pub admin_token: Option<String>,
}

/// The largest limits a variable or a key may set.
pub const MAX_REQUESTS_PER_MINUTE: u32 = 1_000_000;
pub const MAX_DAILY_TOKENS: u64 = 1_000_000_000_000_000;

/// The shortest admin token accepted: 128 bits as hex.
const MIN_ADMIN_TOKEN: usize = 32;

impl AccessSettings {
    pub fn load(vars: &impl Variables) -> Result<AccessSettings, ConfigError> {
        let mode = match vars.get("auth_mode").as_deref().map(str::trim) {
            None | Some("none") => Mode::Open,
            Some("keys") => Mode::Keys,
            Some("keys_or_anonymous") => Mode::KeysOrAnonymous,
            Some(other) => {
                return Err(ConfigError::new(
                    "auth_mode",
                    format!("{other:?} is not one of none, keys, keys_or_anonymous"),
                ));
            }
        };
        let admin_token = vars.get("admin_token").map(|t| t.trim().to_owned());
        if let Some(token) = &admin_token
            && (token.len() < MIN_ADMIN_TOKEN || !token.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(ConfigError::new(
                "admin_token",
                format!(
                    "it must be at least {MIN_ADMIN_TOKEN} visible ASCII characters (e.g. \
                     `openssl rand -hex 32`)"
                ),
            ));
        }
        Ok(AccessSettings {
            mode,
            anonymous: Limits {
                requests_per_minute: parse_number(
                    vars,
                    "anonymous_requests_per_minute",
                    0,
                    0..=MAX_REQUESTS_PER_MINUTE,
                )?,
                daily_tokens: parse_number(
                    vars,
                    "anonymous_daily_tokens",
                    0,
                    0..=MAX_DAILY_TOKENS,
                )?,
            },
            key_defaults: Limits {
                requests_per_minute: parse_number(
                    vars,
                    "key_requests_per_minute",
                    60,
                    0..=MAX_REQUESTS_PER_MINUTE,
                )?,
                daily_tokens: parse_number(
                    vars,
                    "key_daily_tokens",
                    1_000_000,
                    0..=MAX_DAILY_TOKENS,
                )?,
            },
            admin_token,
        })
    }
}

/// The caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No key: known by its address (an IPv6 /64 is one caller).
    Anonymous {
        client: String,
    },
    Key(KeyRecord),
}

impl Caller {
    /// The name its counters are kept under.
    fn subject(&self) -> String {
        match self {
            Caller::Anonymous { client } => format!("ip/{client}"),
            Caller::Key(record) => format!("key/{}", record.id),
        }
    }

    /// How the caller appears in logs: never the key, only its id.
    pub fn label(&self) -> String {
        match self {
            Caller::Anonymous { .. } => "anonymous".into(),
            Caller::Key(record) => format!("key:{}", record.id),
        }
    }

    fn limits(&self, settings: &AccessSettings) -> Limits {
        match self {
            Caller::Anonymous { .. } => settings.anonymous,
            Caller::Key(record) => Limits {
                requests_per_minute: record.requests_per_minute,
                daily_tokens: record.daily_token_budget,
            },
        }
    }
}

/// What the runtime says about the request: its `Authorization` header (raw bytes, absent or
/// not), and the client's address (`spin-client-addr`, which both runtimes set).
pub struct Credentials<'a> {
    pub authorization: Option<&'a [u8]>,
    pub client_addr: Option<&'a str>,
}

/// Who is calling. A presented key must exist; no key is fine unless the mode requires one.
pub fn identify(
    kv: &dyn KeyValue,
    mode: Mode,
    credentials: &Credentials<'_>,
) -> Result<Caller, ApiError> {
    let anonymous = || Caller::Anonymous {
        client: client_key(credentials.client_addr),
    };
    if mode == Mode::Open {
        return Ok(anonymous());
    }
    let Some(raw) = credentials.authorization else {
        return match mode {
            Mode::Keys => Err(ApiError::InvalidApiKey { missing: true }),
            _ => Ok(anonymous()),
        };
    };
    // Any malformed header (not UTF-8, another scheme, a key of the wrong shape) is a wrong
    // key; nothing of it is echoed or logged.
    let presented = std::str::from_utf8(raw)
        .ok()
        .and_then(|value| bearer_token(value))
        .filter(|token| keys::id_of(token).is_some())
        .ok_or(ApiError::InvalidApiKey { missing: false })?;
    match keys::find(kv, presented) {
        Ok(Some(record)) => Ok(Caller::Key(record)),
        Ok(None) => Err(ApiError::InvalidApiKey { missing: false }),
        Err(e) => Err(ApiError::StoreUnavailable { detail: e.detail }),
    }
}

/// The token of `Bearer <token>` (the scheme is case-insensitive).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The name a client address is counted under: an IPv4 address, or the /64 of an IPv6 one.
pub fn client_key(addr: Option<&str>) -> String {
    let ip = addr.and_then(|a| {
        a.parse::<SocketAddr>()
            .map(|s| s.ip())
            .or_else(|_| a.parse::<IpAddr>())
            .ok()
    });
    match ip.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            format!("{}/64", std::net::Ipv6Addr::from(bits))
        }
        None => "unknown".into(),
    }
}

/// Where a caller stands: what is left of its limits, and when they reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// Requests left in the last 60 seconds.
    pub requests_left: u64,
    /// Seconds until the current counting window ends.
    pub requests_reset: u64,
    /// Tokens used today (UTC).
    pub tokens_used: u64,
    /// Seconds until UTC midnight, when the day's tokens start again from zero.
    pub tokens_reset: u64,
}

/// A caller let in, and what it has left.
#[derive(Debug, Clone)]
pub struct Grant {
    pub caller: Caller,
    pub limits: Limits,
    /// After this request was counted; `None` when nothing is limited, or the store could not
    /// be reached (then only per-instance limits apply).
    pub standing: Option<Standing>,
    /// The store failed: limits fell back to per instance.
    pub store_failed: bool,
}

/// Counts one request of `caller` against its limits, atomically for all instances.
pub fn admit(
    kv: &dyn KeyValue,
    settings: &AccessSettings,
    caller: Caller,
    now: u64,
) -> Result<Grant, ApiError> {
    let limits = caller.limits(settings);
    let mut grant = Grant {
        caller,
        limits,
        standing: None,
        store_failed: false,
    };
    if !limits.any() {
        return Ok(grant);
    }
    match count(kv, &grant.caller.subject(), limits, now) {
        Ok(Ok(standing)) => grant.standing = Some(standing),
        Ok(Err(refused)) => return Err(refused),
        Err(_) => grant.store_failed = true,
    }
    Ok(grant)
}

/// The budget, then the requests-per-minute limit; a refused request leaves no count behind.
fn count(
    kv: &dyn KeyValue,
    subject: &str,
    limits: Limits,
    now: u64,
) -> Result<Result<Standing, ApiError>, StoreError> {
    let keys = counters::keys(subject, now);
    let tokens_used = if limits.daily_tokens > 0 {
        counters::parse(kv.get(&keys.tokens_today)?.as_deref())
    } else {
        0
    };
    if limits.daily_tokens > 0 && tokens_used >= limits.daily_tokens {
        return Ok(Err(ApiError::BudgetExceeded {
            daily_tokens: limits.daily_tokens,
            used: tokens_used,
            retry_after: counters::seconds_to_midnight(now),
            now,
        }));
    }
    let mut requests_left = 0;
    if limits.requests_per_minute > 0 {
        let limit = limits.requests_per_minute;
        let previous = counters::parse(kv.get(&keys.previous_window)?.as_deref());
        let ahead = if counters::near_window_end(now) {
            counters::parse(kv.get(&keys.next_window)?.as_deref())
        } else {
            0
        };
        let current = kv.increment(&keys.current_window, 1)?.max(0) as u64;
        if current == 1 {
            // The first request of a window: three windows back is no longer read.
            let _ = kv.delete(&keys.stale_window);
        }
        if !counters::admits(previous, current + ahead, now, limit) {
            let _ = kv.increment(&keys.current_window, -1);
            return Ok(Err(ApiError::RateLimited {
                requests_per_minute: limit,
                retry_after: counters::retry_after(previous, current - 1 + ahead, now, limit),
            }));
        }
        requests_left = counters::remaining(previous, current + ahead, now, limit);
    }
    Ok(Ok(Standing {
        requests_left,
        requests_reset: counters::window_reset(now),
        tokens_used,
        tokens_reset: counters::seconds_to_midnight(now),
    }))
}

/// Adds the tokens a chat used to its caller's day. Nothing to do when nothing is counted.
pub fn charge(kv: &dyn KeyValue, grant: &Grant, tokens: u64, now: u64) -> Result<(), StoreError> {
    if tokens == 0 || !grant.limits.any() || grant.store_failed {
        return Ok(());
    }
    let keys = counters::keys(&grant.caller.subject(), now);
    let delta = i64::try_from(tokens).unwrap_or(i64::MAX);
    if kv.increment(&keys.tokens_today, delta)? == delta {
        // The day's first charge: yesterday's count is no longer read.
        let _ = kv.delete(&keys.tokens_yesterday);
    }
    Ok(())
}

/// Where a caller stands now, without counting a request (for `GET /usage`).
pub fn standing(
    kv: &dyn KeyValue,
    caller: &Caller,
    limits: Limits,
    now: u64,
) -> Result<Standing, StoreError> {
    let keys = counters::keys(&caller.subject(), now);
    let read =
        |key: &str| -> Result<u64, StoreError> { Ok(counters::parse(kv.get(key)?.as_deref())) };
    let (previous, current) = if limits.requests_per_minute > 0 {
        (read(&keys.previous_window)?, read(&keys.current_window)?)
    } else {
        (0, 0)
    };
    Ok(Standing {
        requests_left: counters::remaining(previous, current, now, limits.requests_per_minute),
        requests_reset: counters::window_reset(now),
        tokens_used: read(&keys.tokens_today)?,
        tokens_reset: counters::seconds_to_midnight(now),
    })
}

/// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers) for an admitted
/// request: one item per limit that applies.
pub fn grant_headers(grant: &Grant) -> Vec<(&'static str, String)> {
    let Some(standing) = grant.standing else {
        return Vec::new();
    };
    let mut policy = Vec::new();
    let mut state = Vec::new();
    if grant.limits.requests_per_minute > 0 {
        policy.push(format!(
            "\"requests\";q={};w={}",
            grant.limits.requests_per_minute,
            counters::WINDOW_SECS
        ));
        state.push(format!(
            "\"requests\";r={};t={}",
            standing.requests_left, standing.requests_reset
        ));
    }
    if grant.limits.daily_tokens > 0 {
        policy.push(format!(
            "\"tokens\";q={};w={}",
            grant.limits.daily_tokens,
            counters::DAY_SECS
        ));
        state.push(format!(
            "\"tokens\";r={};t={}",
            grant
                .limits
                .daily_tokens
                .saturating_sub(standing.tokens_used),
            standing.tokens_reset
        ));
    }
    vec![
        ("ratelimit-policy", policy.join(", ")),
        ("ratelimit", state.join(", ")),
    ]
}

#[cfg(test)]
mod tests;
