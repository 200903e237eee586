//! The endpoints around keys: the admin API (`/admin/keys`, behind the `admin_token` variable)
//! that creates, lists, shows and revokes keys, and `GET /usage`, where a caller reads its own
//! day. Both runtimes serve them from the same store as the chats, so `spin up` and Cloud Run
//! are managed the same way (`scripts/keys.sh` wraps the calls).

use std::time::{Duration, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::counters::DAY_SECS;
use super::keys::{self, KeyRecord, NewKey};
use super::{AccessSettings, Caller, Credentials, Limits, Standing};
use crate::error::ApiError;
use crate::response::ApiResponse;
use crate::store::KeyValue;
use crate::validation::ValidationIssue;

pub const KEYS_PATH: &str = "/admin/keys";
pub const KEY_PATH_PREFIX: &str = "/admin/keys/";

/// Longest key name, in characters.
const MAX_NAME: usize = 100;

/// One admin call, already routed: `GET`/`POST /admin/keys`, `GET`/`DELETE /admin/keys/{id}`.
pub struct AdminCall<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub authorization: Option<&'a [u8]>,
    pub body: &'a [u8],
}

/// Lets an admin call in, before its body is read. With no `admin_token` set the admin API
/// does not exist (404); the token is compared in constant time.
pub fn authorize(
    settings: &AccessSettings,
    authorization: Option<&[u8]>,
    path: &str,
) -> Result<(), ApiError> {
    let Some(token) = &settings.admin_token else {
        return Err(ApiError::NotFound { path: path.into() });
    };
    let presented = authorization
        .and_then(|raw| std::str::from_utf8(raw).ok())
        .and_then(super::bearer_token)
        .unwrap_or_default();
    if bool::from(presented.as_bytes().ct_eq(token.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::AdminUnauthorized)
    }
}

/// Answers an admin call that [`authorize`] let in.
pub fn keys_api(
    call: &AdminCall<'_>,
    settings: &AccessSettings,
    kv: &dyn KeyValue,
    random: &dyn Fn() -> [u8; 16],
    now: u64,
) -> Result<ApiResponse, ApiError> {
    authorize(settings, call.authorization, call.path)?;
    let id = call.path.strip_prefix(KEY_PATH_PREFIX);
    match (call.method, id) {
        ("POST", None) => {
            let new = parse_new_key(call.body, settings.key_defaults)?;
            let (key, record) = keys::create(kv, random, new, now)?;
            let mut body = key_json(&record);
            body["key"] = json!(key);
            body["note"] = json!("the key is shown only this once: store it now");
            Ok(ApiResponse::json(201, &body))
        }
        (_, None) => {
            let listed: Vec<Value> = keys::list(kv)?.iter().map(key_json).collect();
            Ok(ApiResponse::json(200, &json!({ "keys": listed })))
        }
        (method, Some(id)) => {
            if !keys::is_id(id) {
                return Err(ApiError::KeyNotFound);
            }
            if method == "DELETE" {
                return if keys::revoke(kv, id)? {
                    Ok(ApiResponse {
                        status: 204,
                        headers: Vec::new(),
                        body: Vec::new(),
                    })
                } else {
                    Err(ApiError::KeyNotFound)
                };
            }
            let record = keys::get(kv, id)?.ok_or(ApiError::KeyNotFound)?;
            let caller = Caller::Key(record.clone());
            let limits = caller.limits(settings);
            let standing = super::standing(kv, &caller, limits, now)?;
            let mut body = key_json(&record);
            body["usage"] = usage_json(limits, &standing, now);
            Ok(ApiResponse::json(200, &body))
        }
    }
}

/// `GET /usage`: the caller's own limits and what is left of them. Answers anonymous callers
/// too (by their address), so the chat page can say how much is left.
pub fn usage(
    credentials: &Credentials<'_>,
    settings: &AccessSettings,
    kv: &dyn KeyValue,
    now: u64,
) -> Result<ApiResponse, ApiError> {
    let caller = super::identify(kv, settings.mode, credentials)?;
    let limits = caller.limits(settings);
    let standing = if limits.any() {
        super::standing(kv, &caller, limits, now)?
    } else {
        Standing {
            requests_left: 0,
            requests_reset: 0,
            tokens_used: 0,
            tokens_reset: DAY_SECS - now % DAY_SECS,
        }
    };
    let key = match &caller {
        Caller::Key(record) => json!({ "id": record.id, "name": record.name }),
        Caller::Anonymous { .. } => Value::Null,
    };
    Ok(ApiResponse::json(
        200,
        &json!({
            "caller": if key.is_null() { "anonymous" } else { "key" },
            "key": key,
            "usage": usage_json(limits, &standing, now),
        }),
    )
    .with_header("cache-control", "no-store"))
}

fn usage_json(limits: Limits, standing: &Standing, now: u64) -> Value {
    let midnight = now + standing.tokens_reset;
    let limited = |n: u64| (n > 0).then_some(n);
    json!({
        "date": &rfc3339(now - now % DAY_SECS)[..10],
        "requests_per_minute": limited(limits.requests_per_minute.into()),
        "requests_remaining": (limits.requests_per_minute > 0).then_some(standing.requests_left),
        "requests_reset_seconds": standing.requests_reset,
        "daily_token_budget": limited(limits.daily_tokens),
        "tokens_used": standing.tokens_used,
        "tokens_remaining": limited(limits.daily_tokens)
            .map(|budget| budget.saturating_sub(standing.tokens_used)),
        "resets_at": rfc3339(midnight),
    })
}

fn key_json(record: &KeyRecord) -> Value {
    json!({
        "id": record.id,
        "prefix": format!("{}{}", keys::KEY_PREFIX, record.id),
        "name": record.name,
        "requests_per_minute": record.requests_per_minute,
        "daily_token_budget": record.daily_token_budget,
        "created_at": rfc3339(record.created),
    })
}

/// Unix seconds as an RFC 3339 UTC time.
pub fn rfc3339(unix_seconds: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix_seconds)).to_string()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKeyBody {
    name: String,
    #[serde(default, deserialize_with = "whole_number")]
    requests_per_minute: Option<u32>,
    #[serde(default, deserialize_with = "whole_number")]
    daily_token_budget: Option<u64>,
}

/// A non-negative whole number, written `3` or `3.0`: JSON Schema (and so the document) counts
/// both as integers.
fn whole_number<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::de::Error;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    let whole = n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(f))
            .map(|f| f as u64)
    });
    whole
        .and_then(|w| T::try_from(w).ok())
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("{n} is not a whole number in range")))
}

fn parse_new_key(body: &[u8], defaults: Limits) -> Result<NewKey, ApiError> {
    let invalid = |field: &str, msg: String| {
        ApiError::Validation(Box::new(ValidationIssue {
            kind: "value_error",
            loc: [Some("body"), (!field.is_empty()).then_some(field)]
                .into_iter()
                .flatten()
                .map(|p| json!(p))
                .collect(),
            msg,
            input: Value::Null,
            ctx: None,
        }))
    };
    let parsed: NewKeyBody = serde_json::from_slice(body).map_err(|e| {
        invalid(
            "",
            format!(
                "expected {{\"name\": string, \"requests_per_minute\"?: integer, \
                 \"daily_token_budget\"?: integer}}: {e}"
            ),
        )
    })?;
    let name = parsed.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(invalid(
            "name",
            format!("name must be 1 to {MAX_NAME} characters, without control characters"),
        ));
    }
    if parsed
        .requests_per_minute
        .is_some_and(|n| n > super::MAX_REQUESTS_PER_MINUTE)
    {
        return Err(invalid(
            "requests_per_minute",
            format!(
                "requests_per_minute must be 0 (no limit) to {}",
                super::MAX_REQUESTS_PER_MINUTE
            ),
        ));
    }
    if parsed
        .daily_token_budget
        .is_some_and(|n| n > super::MAX_DAILY_TOKENS)
    {
        return Err(invalid(
            "daily_token_budget",
            format!(
                "daily_token_budget must be 0 (no budget) to {}",
                super::MAX_DAILY_TOKENS
            ),
        ));
    }
    Ok(NewKey {
        name: name.to_owned(),
        requests_per_minute: parsed
            .requests_per_minute
            .unwrap_or(defaults.requests_per_minute),
        daily_token_budget: parsed.daily_token_budget.unwrap_or(defaults.daily_tokens),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_whole_numbers_in_either_spelling() {
        let body: NewKeyBody = serde_json::from_str(
            r#"{"name": "a", "requests_per_minute": 30.0, "daily_token_budget": 7}"#,
        )
        .unwrap();
        assert_eq!(
            (body.requests_per_minute, body.daily_token_budget),
            (Some(30), Some(7))
        );
        for bad in [
            r#"{"name": "a", "requests_per_minute": 1.5}"#,
            r#"{"name": "a", "requests_per_minute": -1}"#,
            r#"{"name": "a", "requests_per_minute": 5000000000}"#,
            r#"{"name": "a", "daily_token_budget": "7"}"#,
        ] {
            assert!(serde_json::from_str::<NewKeyBody>(bad).is_err(), "{bad}");
        }
        let none: NewKeyBody = serde_json::from_str(r#"{"name": "a"}"#).unwrap();
        assert_eq!(none.requests_per_minute, None);
    }
}
