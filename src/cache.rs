//! The exact-match response cache for first-turn questions (`/chat`).
//!
//! The key is a SHA-256 over everything that shapes the answer: the prompt version, model,
//! persona, the normalized message, the generation config (thinking level, output budget,
//! temperature) and the full system instruction (so any change to a persona's prompt is a new key by itself). Only
//! complete answers are kept (finish reason `STOP`): never errors, truncated or blocked answers.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::chat::Chat;
use crate::store::{KeyValue, StoreError, get_json, set_json};

/// Bump when the way answers are produced changes in a way the key does not capture.
pub const PROMPT_VERSION: &str = "2026-12-02";

/// `metadata.cache` on `/chat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    Hit,
    Miss,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
        }
    }
}

/// A cached answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub answer: String,
    /// The model that wrote it, as Vertex AI named it.
    pub model: String,
    pub created_at: u64,
    pub expires_at: u64,
}

/// Case and runs of whitespace do not change the question.
pub fn normalize(message: &str) -> String {
    message
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// The store key of a chat's answer.
pub fn key(chat: &Chat) -> String {
    // The generation config carries the thinking level, output budget and temperature.
    let parts = serde_json::json!([
        PROMPT_VERSION,
        // The primary: an answer is the configuration's, whichever model of the list gave it.
        chat.settings.models.primary(),
        chat.persona().name(),
        normalize(&chat.request.message),
        chat.gemini.system_instruction,
        chat.gemini.generation_config,
    ]);
    let digest = Sha256::digest(parts.to_string().as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("cache/{hex}")
}

/// The live entry under `key`; an expired or unreadable one is a miss.
pub fn lookup(kv: &dyn KeyValue, key: &str, now: u64) -> Result<Option<Entry>, StoreError> {
    Ok(get_json::<Entry>(kv, key)?.filter(|e| e.expires_at > now))
}

pub fn save(kv: &dyn KeyValue, key: &str, entry: &Entry) -> Result<(), StoreError> {
    set_json(kv, key, entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::Fixed;
    use crate::gemini;
    use crate::store::tests::MemoryStore;
    use crate::validation::parse_chat_request;
    use std::collections::HashMap;

    fn chat(body: &str, vars: &[(&'static str, &'static str)]) -> Chat {
        let mut all = HashMap::from([("project_id", "p"), ("access_token", "t")]);
        all.extend(vars.iter().copied());
        Chat::prepare(
            parse_chat_request(body.as_bytes()).unwrap(),
            &Fixed(all),
            None,
            &gemini::Options::default(),
        )
        .unwrap()
    }

    #[test]
    fn the_key_ignores_case_and_spacing_but_not_what_shapes_the_answer() {
        let base = key(&chat(r#"{"message": "How do I  start?"}"#, &[]));
        assert_eq!(base, key(&chat(r#"{"message": " how do i start? "}"#, &[])));
        assert!(base.starts_with("cache/") && base.len() == 6 + 64);
        for other in [
            key(&chat(r#"{"message": "How do I finish?"}"#, &[])),
            key(&chat(
                r#"{"message": "How do I start?", "thinking_level": "high"}"#,
                &[],
            )),
            key(&chat(
                r#"{"message": "How do I start?", "max_output_tokens": 100}"#,
                &[],
            )),
            key(&chat(
                r#"{"message": "How do I start?"}"#,
                &[("model", "gemini-9")],
            )),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn expired_and_foreign_entries_are_misses() {
        let kv = MemoryStore::default();
        let entry = Entry {
            answer: "a".into(),
            model: "m".into(),
            created_at: 1,
            expires_at: 10,
        };
        save(&kv, "cache/x", &entry).unwrap();
        assert_eq!(lookup(&kv, "cache/x", 9).unwrap(), Some(entry));
        assert_eq!(lookup(&kv, "cache/x", 10).unwrap(), None);
        kv.set("cache/x", b"[1,2]").unwrap();
        assert_eq!(lookup(&kv, "cache/x", 1).unwrap(), None);
    }
}
