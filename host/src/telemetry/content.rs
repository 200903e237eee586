//! Message content on the client spans, only when an operator opts in
//! (`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`): the instruction, the messages
//! sent and the answer of each Vertex AI call, in the conventions' JSON shapes
//! (`gen_ai.system_instructions`, `gen_ai.input.messages`, `gen_ai.output.messages`), recorded as
//! JSON strings. A value longer than [`MAX_CONTENT`] is left out rather than cut.

use serde_json::{Value, json};

/// Largest content attribute recorded, in bytes; also the most of an answer kept to read it.
pub const MAX_CONTENT: usize = 64 * 1024;

/// The conventions' parts of one Gemini `Content`.
fn parts(content: &Value) -> Vec<Value> {
    let Some(parts) = content.get("parts").and_then(Value::as_array) else {
        return Vec::new();
    };
    parts
        .iter()
        .filter_map(|part| {
            if part.get("thought").and_then(Value::as_bool) == Some(true) {
                return None;
            }
            if let Some(text) = part.get("text").and_then(Value::as_str) {
                return Some(json!({ "type": "text", "content": text }));
            }
            if let Some(call) = part.get("functionCall") {
                return Some(json!({
                    "type": "tool_call",
                    "name": call.get("name"),
                    "arguments": call.get("args"),
                }));
            }
            part.get("functionResponse").map(|response| {
                json!({
                    "type": "tool_call_response",
                    "response": response.get("response"),
                })
            })
        })
        .collect()
}

fn role(content: &Value) -> &'static str {
    match content.get("role").and_then(Value::as_str) {
        Some("model") => "assistant",
        _ => "user",
    }
}

/// A JSON string no longer than [`MAX_CONTENT`].
fn bounded(value: &Value) -> Option<String> {
    let text = value.to_string();
    (text.len() <= MAX_CONTENT).then_some(text)
}

/// `gen_ai.system_instructions` and `gen_ai.input.messages` of a `generateContent` request.
pub fn input(request: &[u8]) -> Vec<(&'static str, String)> {
    let Ok(request) = serde_json::from_slice::<Value>(request) else {
        return Vec::new();
    };
    let mut attributes = Vec::new();
    let instruction = request
        .get("systemInstruction")
        .or_else(|| request.get("system_instruction"));
    if let Some(text) = instruction
        .map(parts)
        .and_then(|p| bounded(&Value::from(p)))
    {
        attributes.push((super::semconv::GEN_AI_SYSTEM_INSTRUCTIONS, text));
    }
    if let Some(contents) = request.get("contents").and_then(Value::as_array) {
        let messages: Vec<Value> = contents
            .iter()
            .map(|c| json!({ "role": role(c), "parts": parts(c) }))
            .collect();
        if let Some(text) = bounded(&Value::from(messages)) {
            attributes.push((super::semconv::GEN_AI_INPUT_MESSAGES, text));
        }
    }
    attributes
}

/// `gen_ai.output.messages` from an answer's body: one `GenerateContentResponse`, or a stream
/// of them as server-sent events (`data: {...}` lines) whose parts are joined.
pub fn output(body: &[u8], streamed: bool) -> Option<String> {
    let replies: Vec<Value> = if streamed {
        String::from_utf8_lossy(body)
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .filter_map(|data| serde_json::from_str(data.trim()).ok())
            .collect()
    } else {
        vec![serde_json::from_slice(body).ok()?]
    };
    let mut text = String::new();
    let mut other_parts = Vec::new();
    let mut finish_reason = None;
    for reply in &replies {
        let Some(candidate) = reply.pointer("/candidates/0") else {
            continue;
        };
        if let Some(content) = candidate.get("content") {
            for part in parts(content) {
                match part["content"].as_str() {
                    Some(chunk) if part["type"] == "text" => text.push_str(chunk),
                    _ => other_parts.push(part),
                }
            }
        }
        if let Some(reason) = candidate.get("finishReason").and_then(Value::as_str) {
            finish_reason = Some(reason.to_ascii_lowercase());
        }
    }
    if text.is_empty() && other_parts.is_empty() {
        return None;
    }
    let mut all_parts = Vec::new();
    if !text.is_empty() {
        all_parts.push(json!({ "type": "text", "content": text }));
    }
    all_parts.extend(other_parts);
    bounded(&json!([{
        "role": "assistant",
        "parts": all_parts,
        "finish_reason": finish_reason,
    }]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_becomes_instructions_and_messages() {
        let request = json!({
            "systemInstruction": { "parts": [{ "text": "You are Elro." }] },
            "contents": [
                { "role": "user", "parts": [{ "text": "Hi" }] },
                { "role": "model", "parts": [
                    { "text": "thinking", "thought": true },
                    { "functionCall": { "name": "f", "args": { "a": 1 } } }
                ] },
                { "role": "user", "parts": [{ "functionResponse": { "name": "f", "response": { "r": 2 } } }] }
            ]
        });
        let attributes = input(request.to_string().as_bytes());
        assert_eq!(attributes[0].0, "gen_ai.system_instructions");
        assert_eq!(
            serde_json::from_str::<Value>(&attributes[0].1).unwrap(),
            json!([{ "type": "text", "content": "You are Elro." }])
        );
        let messages: Value = serde_json::from_str(&attributes[1].1).unwrap();
        assert_eq!(
            messages[0],
            json!({ "role": "user", "parts": [{ "type": "text", "content": "Hi" }] })
        );
        assert_eq!(messages[1]["role"], "assistant");
        assert_eq!(
            messages[1]["parts"],
            json!([{ "type": "tool_call", "name": "f", "arguments": { "a": 1 } }]),
            "thoughts are left out"
        );
        assert_eq!(messages[2]["parts"][0]["type"], "tool_call_response");
        assert!(input(b"not json").is_empty());
    }

    #[test]
    fn an_answer_whole_or_streamed_becomes_one_output_message() {
        let whole = json!({ "candidates": [{ "content": { "role": "model", "parts": [{ "text": "Start small." }] }, "finishReason": "STOP" }] });
        let out: Value =
            serde_json::from_str(&output(whole.to_string().as_bytes(), false).unwrap()).unwrap();
        assert_eq!(
            out,
            json!([{ "role": "assistant", "parts": [{ "type": "text", "content": "Start small." }], "finish_reason": "stop" }])
        );
        let stream = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Start \"}]}}]}\r\n\r\n\
                      data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"small.\"}]},\"finishReason\":\"STOP\"}]}\r\n\r\n";
        let out: Value = serde_json::from_str(&output(stream.as_bytes(), true).unwrap()).unwrap();
        assert_eq!(out[0]["parts"][0]["content"], "Start small.");
        assert_eq!(output(b"{}", false), None);
        let long = json!({ "candidates": [{ "content": { "parts": [{ "text": "x".repeat(MAX_CONTENT) }] } }] });
        assert_eq!(
            output(long.to_string().as_bytes(), false),
            None,
            "too long: left out"
        );
    }
}
