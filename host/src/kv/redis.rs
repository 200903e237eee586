//! Redis / Valkey (Memorystore on Cloud Run). One multiplexed connection, shared by every
//! request, behind a `ConnectionManager` that reconnects by itself after a Redis restart or a
//! network cut. Nothing is sent at startup: Redis may come up after ion-host.
//!
//! Keys are stored as they are (no prefix), as Spin's Redis store does; counters are decimal
//! text (INCRBY); compare-and-swap is one Lua script, so it is atomic on the server.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, Value};

use super::{BackendError, CasOutcome, KeyPage};

/// Sets KEYS[1] to ARGV[3] if it holds ARGV[2] (ARGV[1] = "1") or is absent (ARGV[1] = "0").
/// Returns {1} when swapped, else {0} or {0, current value}.
const CAS_SCRIPT: &str = r"
local current = redis.call('GET', KEYS[1])
local matches
if ARGV[1] == '1' then matches = (current == ARGV[2]) else matches = (current == false) end
if matches then
  redis.call('SET', KEYS[1], ARGV[3])
  return {1}
end
if current == false then return {0} end
return {0, current}
";

/// Refuses what ion-host cannot serve, so that a bad URL is a startup error.
pub fn check_url(url: &str) -> Result<()> {
    if url.starts_with("rediss://") {
        bail!(
            "TLS (rediss://) is not supported by ion-host: reach Redis over the private network \
             with redis://"
        );
    }
    redis::Client::open(url).map_err(|e| anyhow::anyhow!("invalid redis URL: {e}"))?;
    Ok(())
}

/// `host:port` of a Redis URL, without its credentials, for logs.
pub fn address(url: &str) -> String {
    match redis::Client::open(url) {
        Ok(client) => client.get_connection_info().addr().to_string(),
        Err(_) => "(invalid URL)".to_owned(),
    }
}

pub struct Redis {
    connection: ConnectionManager,
}

impl Redis {
    /// A lazy connection: the first call connects. `timeout` bounds each connection attempt
    /// and each answer (the caller's deadline bounds the whole call).
    pub fn new(url: &str, timeout: Duration) -> Result<Redis> {
        check_url(url)?;
        let client = redis::Client::open(url).context("invalid redis URL")?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            // Few retries, quickly: a call waits at most its deadline anyway, and the next
            // call after a failure starts a fresh attempt.
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(200));
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .context("cannot set up the redis connection")?;
        Ok(Redis { connection })
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, BackendError> {
        let mut connection = self.connection.clone();
        cmd.query_async(&mut connection).await.map_err(classify)
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        self.query(redis::cmd("GET").arg(key)).await
    }

    pub async fn set(&self, key: &str, value: Vec<u8>) -> Result<(), BackendError> {
        self.query(redis::cmd("SET").arg(key).arg(value)).await
    }

    pub async fn delete(&self, key: &str) -> Result<(), BackendError> {
        self.query::<i64>(redis::cmd("DEL").arg(key)).await?;
        Ok(())
    }

    pub async fn exists(&self, key: &str) -> Result<bool, BackendError> {
        Ok(self.query::<i64>(redis::cmd("EXISTS").arg(key)).await? > 0)
    }

    pub async fn increment(&self, key: &str, delta: i64) -> Result<i64, BackendError> {
        self.query(redis::cmd("INCRBY").arg(key).arg(delta)).await
    }

    pub async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> Result<CasOutcome, BackendError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(CAS_SCRIPT).arg(1).arg(key);
        match expected {
            Some(expected) => cmd.arg("1").arg(expected),
            None => cmd.arg("0").arg(""),
        };
        cmd.arg(value);
        let reply: Vec<Value> = self.query(&cmd).await?;
        match reply.as_slice() {
            [Value::Int(1)] => Ok(CasOutcome::Swapped),
            [Value::Int(0)] => Ok(CasOutcome::Changed(None)),
            [Value::Int(0), Value::BulkString(current)] => {
                Ok(CasOutcome::Changed(Some(current.clone())))
            }
            other => Err(BackendError::Unavailable(format!(
                "unexpected compare-and-swap reply {other:?}"
            ))),
        }
    }

    /// SCAN from `cursor` until at least `limit` keys or the end. The cursor is SCAN's.
    pub async fn keys(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<KeyPage, BackendError> {
        let mut position: u64 = match cursor {
            Some(text) => text
                .parse()
                .map_err(|_| BackendError::Refused(format!("invalid cursor {text:?}")))?,
            None => 0,
        };
        let mut keys = Vec::new();
        loop {
            let (next, batch): (u64, Vec<Vec<u8>>) = self
                .query(
                    redis::cmd("SCAN")
                        .arg(position)
                        .arg("COUNT")
                        .arg(limit.saturating_sub(keys.len()).clamp(10, 1000)),
                )
                .await?;
            keys.extend(
                batch
                    .into_iter()
                    .map(|key| String::from_utf8_lossy(&key).into_owned()),
            );
            position = next;
            if position == 0 {
                return Ok(KeyPage { keys, cursor: None });
            }
            if keys.len() >= limit {
                return Ok(KeyPage {
                    keys,
                    cursor: Some(position.to_string()),
                });
            }
        }
    }
}

/// A reply with an error is the server refusing this request; anything else (I/O, connection,
/// timeout, a server that is loading or read-only) is the store being unavailable.
fn classify(e: RedisError) -> BackendError {
    const OUTAGE_CODES: &[&str] = &["LOADING", "BUSY", "MASTERDOWN", "READONLY", "TRYAGAIN"];
    let answered = matches!(e.kind(), ErrorKind::Server(_) | ErrorKind::Extension)
        && !e.code().is_some_and(|code| OUTAGE_CODES.contains(&code));
    if answered {
        BackendError::Refused(format!("redis: {e}"))
    } else {
        BackendError::Unavailable(format!("redis: {e}"))
    }
}
