//! Who may chat and how much: API keys, a requests-per-minute limit and a daily token budget
//! per key and per client address, all kept in the runtime's key-value store so that every
//! instance counts against the same numbers.
//!
//! One chat costs one read of the key (when one is presented) and one compare-and-swap of the
//! caller's allowance before the chat, and one compare-and-swap afterwards to add the tokens
//! Vertex AI reported. With nothing limited (the default) the store is not touched.
//!
//! When the store cannot be reached, a presented key cannot be checked (503), while anonymous
//! callers go on under the runtime's per-instance limit (ion-host's
//! `ION_RATE_LIMIT_PER_MINUTE`), and the chat's log line says `"limits":"instance"`.

pub mod admin;
pub mod allowance;
pub mod keys;

use std::net::{IpAddr, SocketAddr};

use crate::config::{ConfigError, Variables, parse_number};
use crate::error::ApiError;
use crate::store::{KeyValue, StoreError};
use allowance::{Allowance, Refusal, Standing};
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
    /// Its allowance record in the store.
    fn allowance_key(&self) -> String {
        match self {
            Caller::Anonymous { client } => format!("allowance/ip/{client}"),
            Caller::Key(record) => format!("allowance/key/{}", record.id),
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
/// `write_id` is random, and marks this request's write in the record.
pub fn admit(
    kv: &dyn KeyValue,
    settings: &AccessSettings,
    caller: Caller,
    now: u64,
    write_id: u64,
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
    let mut outcome = None;
    let written = kv.update(&grant.caller.allowance_key(), &mut |current| {
        let mut allowance = Allowance::decode(current);
        if allowance.has_write(write_id) {
            return None; // a retry after a swap that did land: already counted
        }
        let taken = allowance.take(now, limits.requests_per_minute, limits.daily_tokens);
        let write = taken.is_ok().then(|| allowance.encode(write_id));
        outcome = Some(taken);
        write
    });
    match (written, outcome) {
        (Err(_), _) | (_, None) => grant.store_failed = true,
        (Ok(_), Some(Ok(standing))) => grant.standing = Some(standing),
        (Ok(_), Some(Err(Refusal::Requests { retry_after }))) => {
            return Err(ApiError::RateLimited {
                requests_per_minute: limits.requests_per_minute,
                retry_after,
            });
        }
        (Ok(_), Some(Err(Refusal::Tokens { used, retry_after }))) => {
            return Err(ApiError::BudgetExceeded {
                daily_tokens: limits.daily_tokens,
                used,
                retry_after,
                now,
            });
        }
    }
    Ok(grant)
}

/// Adds the tokens a chat used to its caller's day. Nothing to do when nothing is counted.
/// `write_id` as for [`admit`] (another one).
pub fn charge(
    kv: &dyn KeyValue,
    grant: &Grant,
    tokens: u64,
    now: u64,
    write_id: u64,
) -> Result<(), StoreError> {
    if tokens == 0 || !grant.limits.any() || grant.store_failed {
        return Ok(());
    }
    kv.update(&grant.caller.allowance_key(), &mut |current| {
        let mut allowance = Allowance::decode(current);
        if allowance.has_write(write_id) {
            return None;
        }
        allowance.charge(now, tokens);
        Some(allowance.encode(write_id))
    })
    .map(|_| ())
}

/// Where a caller stands now, without counting a request (for `GET /usage`).
pub fn standing(
    kv: &dyn KeyValue,
    caller: &Caller,
    limits: Limits,
    now: u64,
) -> Result<Standing, StoreError> {
    let current = kv.get(&caller.allowance_key())?;
    Ok(Allowance::decode(current.as_deref()).standing(now, limits.requests_per_minute))
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
            allowance::WINDOW_SECS
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
            allowance::DAY_SECS
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
