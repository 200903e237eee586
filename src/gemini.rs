//! Gemini `generateContent` wire types (Vertex AI REST, lowerCamelCase JSON) and the reading
//! of a reply into an answer or an honest error.

use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::error::UpstreamError;

/// Request body of `:generateContent`. Only fields this service sets are modelled: Google
/// rejects unknown fields, so nothing is sent that is not meant.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentRequest {
    pub contents: Vec<Content>,
    pub system_instruction: Content,
    pub generation_config: GenerationConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Content {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default)]
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Part {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Set on reasoning parts of thinking models: not part of the answer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub thought: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GenerationConfig {
    pub temperature: f64,
    pub max_output_tokens: u32,
    pub candidate_count: u32,
}

/// Builds the request for one user message under a persona's system instruction.
pub fn build_request(
    settings: &Settings,
    system_instruction: String,
    message: &str,
) -> GenerateContentRequest {
    GenerateContentRequest {
        contents: vec![Content {
            role: Some("user".into()),
            parts: vec![Part {
                text: Some(message.to_owned()),
                thought: false,
            }],
        }],
        system_instruction: Content {
            role: None,
            parts: vec![Part {
                text: Some(system_instruction),
                thought: false,
            }],
        },
        generation_config: GenerationConfig {
            temperature: settings.temperature,
            max_output_tokens: settings.max_output_tokens,
            candidate_count: 1,
        },
    }
}

/// Response body of `:generateContent` (and of each streamed chunk).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentResponse {
    #[serde(default)]
    pub candidates: Vec<Candidate>,
    pub prompt_feedback: Option<PromptFeedback>,
    pub usage_metadata: Option<UsageMetadata>,
    pub model_version: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    pub content: Option<Content>,
    pub finish_reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PromptFeedback {
    pub block_reason: Option<String>,
    pub block_reason_message: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageMetadata {
    #[serde(default)]
    pub prompt_token_count: u32,
    #[serde(default)]
    pub candidates_token_count: u32,
    #[serde(default)]
    pub total_token_count: u32,
    #[serde(default)]
    pub thoughts_token_count: u32,
}

/// The answer extracted from a successful reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub text: String,
    pub finish_reason: String,
    pub usage: UsageMetadata,
    pub model_version: Option<String>,
}

/// Finish reasons that mean the answer was withheld by a content filter.
const BLOCKING_FINISH_REASONS: &[&str] = &[
    "SAFETY",
    "PROHIBITED_CONTENT",
    "BLOCKLIST",
    "SPII",
    "RECITATION",
    "MODEL_ARMOR",
];

/// Reads a 200 reply body into an [`Answer`].
///
/// A blocked prompt (`promptFeedback.blockReason`) or a candidate stopped by a content filter is
/// [`UpstreamError::Blocked`]; a reply with no answer text is [`UpstreamError::EmptyAnswer`].
/// Nothing is ever made up in their place.
pub fn read_reply(body: &[u8]) -> Result<Answer, UpstreamError> {
    let reply: GenerateContentResponse =
        serde_json::from_slice(body).map_err(|e| UpstreamError::InvalidResponse {
            detail: format!("reply is not a GenerateContentResponse: {e}"),
        })?;

    if let Some(reason) = reply
        .prompt_feedback
        .as_ref()
        .and_then(|f| f.block_reason.clone())
    {
        return Err(UpstreamError::Blocked {
            reason,
            stage: "prompt",
        });
    }

    let Some(candidate) = reply.candidates.into_iter().next() else {
        return Err(UpstreamError::EmptyAnswer {
            finish_reason: None,
        });
    };
    let finish_reason = candidate
        .finish_reason
        .unwrap_or_else(|| "FINISH_REASON_UNSPECIFIED".into());
    if BLOCKING_FINISH_REASONS.contains(&finish_reason.as_str()) {
        return Err(UpstreamError::Blocked {
            reason: finish_reason,
            stage: "response",
        });
    }

    let text: String = candidate
        .content
        .map(|c| c.parts)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| !p.thought)
        .filter_map(|p| p.text)
        .collect();
    if text.trim().is_empty() {
        return Err(UpstreamError::EmptyAnswer {
            finish_reason: Some(finish_reason),
        });
    }

    Ok(Answer {
        text,
        finish_reason,
        usage: reply.usage_metadata.unwrap_or_default(),
        model_version: reply.model_version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::vars;
    use serde_json::json;

    fn settings() -> Settings {
        Settings::load(&vars(&[
            ("project_id", "p"),
            ("access_token", "t"),
            ("temperature", "0.3"),
            ("max_output_tokens", "256"),
        ]))
        .unwrap()
    }

    #[test]
    fn request_shape_matches_the_rest_api() {
        let req = build_request(&settings(), "You are Elro.".into(), "hi?");
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            json!({
                "contents": [{"role": "user", "parts": [{"text": "hi?"}]}],
                "systemInstruction": {"parts": [{"text": "You are Elro."}]},
                "generationConfig": {"temperature": 0.3, "maxOutputTokens": 256, "candidateCount": 1}
            })
        );
    }

    #[test]
    fn concatenates_text_parts_and_skips_thoughts() {
        let body = json!({
            "candidates": [{"index": 0, "content": {"role": "model", "parts": [
                {"text": "thinking...", "thought": true},
                {"text": "Hello, "},
                {"text": "world."}
            ]}, "finishReason": "STOP", "safetyRatings": []}],
            "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 20,
                              "totalTokenCount": 40, "thoughtsTokenCount": 8},
            "modelVersion": "gemini-2.5-flash",
            "createTime": "2026-11-26T08:00:00.123456Z",
            "responseId": "abc"
        });
        let answer = read_reply(body.to_string().as_bytes()).unwrap();
        assert_eq!(answer.text, "Hello, world.");
        assert_eq!(answer.finish_reason, "STOP");
        assert_eq!(answer.usage.prompt_token_count, 12);
        assert_eq!(answer.usage.candidates_token_count, 20);
        assert_eq!(answer.usage.total_token_count, 40);
        assert_eq!(answer.model_version.as_deref(), Some("gemini-2.5-flash"));
    }

    #[test]
    fn max_tokens_is_still_an_answer() {
        let body = json!({"candidates": [{"content": {"parts": [{"text": "partial"}]},
                                          "finishReason": "MAX_TOKENS"}]});
        let answer = read_reply(body.to_string().as_bytes()).unwrap();
        assert_eq!(answer.finish_reason, "MAX_TOKENS");
    }

    #[test]
    fn blocked_prompt_is_an_error() {
        let body = json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
                          "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7}});
        match read_reply(body.to_string().as_bytes()) {
            Err(UpstreamError::Blocked { reason, stage }) => {
                assert_eq!(reason, "PROHIBITED_CONTENT");
                assert_eq!(stage, "prompt");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn safety_finish_is_an_error_even_with_partial_text() {
        let body = json!({"candidates": [{"content": {"parts": [{"text": "some"}]},
                                          "finishReason": "SAFETY"}]});
        assert!(matches!(
            read_reply(body.to_string().as_bytes()),
            Err(UpstreamError::Blocked {
                stage: "response",
                ..
            })
        ));
    }

    #[test]
    fn empty_or_garbage_replies_are_errors() {
        assert!(matches!(
            read_reply(b"{}"),
            Err(UpstreamError::EmptyAnswer { .. })
        ));
        let body = json!({"candidates": [{"content": {"parts": []}, "finishReason": "OTHER"}]});
        assert!(matches!(
            read_reply(body.to_string().as_bytes()),
            Err(UpstreamError::EmptyAnswer { .. })
        ));
        assert!(matches!(
            read_reply(b"<html>"),
            Err(UpstreamError::InvalidResponse { .. })
        ));
    }
}
