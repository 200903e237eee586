//! The OpenAI chat-completions protocol on `/v1/...`, over the same chat flow as `/chat`:
//! `messages` map to Gemini's system instruction, history and newest message; persona routing
//! applies unless the request has a system message or names a persona as its model
//! (`ion-lua`, …). Errors use OpenAI's shape with `/chat`'s status codes.

use serde_json::{Map, Value, json};

use crate::chat::{self, Chat, StreamEnd, StreamFormat};
use crate::chat_log::ChatRecord;
use crate::config::{DEFAULT_MODEL, ThinkingLevel, Variables};
use crate::error::ApiError;
use crate::gemini::{self, Answer, Usage};
use crate::model_list::ModelList;
use crate::persona::Persona;
use crate::reply::{Reply, StreamSource};
use crate::response::ApiResponse;
use crate::sse;
use crate::validation::{self, ChatRequest, Role, Turn, ValidationIssue};
use crate::vertex::{Clock, Transport};

/// The model name that routes by resonance.
pub const AUTO_MODEL: &str = "ion-auto";
/// Most stop sequences Gemini takes.
const MAX_STOP_SEQUENCES: usize = 5;

/// `GET /v1/models`: the persona choices and the configured Gemini models, primary first, then
/// the fallbacks (routed like `ion-auto`).
pub fn models(vars: &impl Variables) -> ApiResponse {
    let model = |id: String, owner: &str| json!({ "id": id, "object": "model", "created": 0, "owned_by": owner });
    let mut data = vec![model(AUTO_MODEL.into(), "ion-mentoring")];
    data.extend(
        Persona::ALL.map(|p| model(format!("ion-{}", p.name().to_lowercase()), "ion-mentoring")),
    );
    data.extend(
        gemini_models(vars)
            .into_iter()
            .map(|id| model(id, "google")),
    );
    ApiResponse::json(200, &json!({ "object": "list", "data": data }))
}

/// The Gemini model ids a request may name: the configured list or, when it is invalid (chats
/// then answer 503 saying why), the `model` variable as it is.
fn gemini_models(vars: &impl Variables) -> Vec<String> {
    match ModelList::load(vars) {
        Ok(list) => list.iter().map(str::to_owned).collect(),
        Err(_) => vec![vars.get("model").unwrap_or_else(|| DEFAULT_MODEL.into())],
    }
}

/// A chat-completions request, read into the shared chat flow's terms.
#[derive(Debug, Clone, PartialEq)]
struct Completion {
    model: String,
    chat: ChatRequest,
    /// The caller's system and developer messages, joined.
    system: Option<String>,
    options: gemini::Options,
    include_usage: bool,
}

/// `POST /v1/chat/completions`.
pub async fn completions<T: Transport>(
    body: &[u8],
    vars: &impl Variables,
    transport: &T,
    clock: &impl Clock,
    record: &mut ChatRecord,
) -> Reply<T::Body> {
    let completion = match parse(body, vars) {
        Ok(c) => c,
        Err(e) => return failed(e, record),
    };
    let mut chat = match Chat::prepare(
        completion.chat.clone(),
        vars,
        completion.system.clone(),
        &completion.options,
    ) {
        Ok(chat) => chat,
        Err(e) => return failed(e, record),
    };
    record.note_chat(&chat);
    let id = format!(
        "chatcmpl-{:016x}{:016x}",
        (clock.random() * u64::MAX as f64) as u64,
        (clock.random() * u64::MAX as f64) as u64
    );
    let created = clock.unix_seconds();

    if completion.chat.stream {
        let (opened, stats) = chat::open(&mut chat, transport, clock).await;
        record.note_call(&stats);
        return match opened {
            Ok(opened) => Reply::stream(
                chat,
                StreamSource::Upstream {
                    opened: Box::new(opened),
                    stats,
                },
                Box::new(CompletionChunks {
                    id,
                    created,
                    model: completion.model,
                    include_usage: completion.include_usage,
                }),
            ),
            Err(e) => failed(ApiError::Upstream(e).with_attempts(stats.attempts), record),
        };
    }

    let (answer, stats) = chat::answer(&mut chat, transport, clock).await;
    record.note_call(&stats);
    match answer {
        Ok(answer) => {
            record.note_answer(&answer);
            Reply::Whole(ApiResponse::json(
                200,
                &completion_body(
                    &id,
                    created,
                    &completion.model,
                    &chat,
                    &answer,
                    stats.attempts,
                ),
            ))
        }
        Err(e) => failed(ApiError::Upstream(e).with_attempts(stats.attempts), record),
    }
}

fn completion_body(
    id: &str,
    created: u64,
    model: &str,
    chat: &Chat,
    answer: &Answer,
    attempts: u32,
) -> Value {
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": answer.text, "refusal": null },
            "logprobs": null,
            "finish_reason": finish_reason(&answer.finish_reason),
        }],
        "usage": usage(answer.usage),
        "system_fingerprint": null,
        "ion": ion_metadata(chat, attempts, answer.model_version.as_deref()),
    })
}

/// What this service adds: who answered and how.
fn ion_metadata(chat: &Chat, attempts: u32, model_version: Option<&str>) -> Value {
    json!({
        "persona": chat.persona().name(),
        "resonance_key": chat.resonance.key(),
        "gemini_model": chat.model(model_version),
        "attempts": attempts,
    })
}

/// OpenAI counts reasoning tokens as completion tokens.
fn usage(u: Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens + u.thoughts_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": { "cached_tokens": u.cached_tokens },
        "completion_tokens_details": { "reasoning_tokens": u.thoughts_tokens },
    })
}

fn finish_reason(gemini: &str) -> &'static str {
    match gemini {
        gemini::MAX_TOKENS => "length",
        _ => "stop",
    }
}

/// The streamed form: `chat.completion.chunk` events, then `data: [DONE]`.
struct CompletionChunks {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
}

impl CompletionChunks {
    fn chunk(&self, delta: Value, finish: Option<&str>) -> Vec<u8> {
        sse::data(
            &json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "system_fingerprint": null,
                "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }],
            })
            .to_string(),
        )
    }
}

impl StreamFormat for CompletionChunks {
    fn opening(&self, _chat: &Chat) -> Vec<u8> {
        self.chunk(json!({ "role": "assistant", "content": "" }), None)
    }

    fn delta(&self, _chat: &Chat, text: &str) -> Vec<u8> {
        self.chunk(json!({ "content": text }), None)
    }

    fn done(&self, chat: &Chat, end: &StreamEnd) -> Vec<u8> {
        let mut bytes = self.chunk(
            json!({}),
            Some(finish_reason(end.finish_reason.as_deref().unwrap_or(""))),
        );
        if self.include_usage {
            bytes.extend(sse::data(
                &json!({
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "choices": [],
                    "usage": usage(end.usage.unwrap_or_default()),
                    "ion": ion_metadata(chat, end.attempts, end.model_version.as_deref()),
                })
                .to_string(),
            ));
        }
        bytes.extend(sse::data("[DONE]"));
        bytes
    }

    fn failed(&self, _chat: &Chat, error: &ApiError) -> Vec<u8> {
        sse::data(&openai_error(error).to_string())
    }
}

/// A failure in OpenAI's error shape, noted in the log record.
pub fn failed<B>(error: ApiError, record: &mut ChatRecord) -> Reply<B> {
    record.set_failure(&error);
    Reply::Whole(error_response(&error))
}

/// An error in OpenAI's shape, with `/chat`'s status and headers. The dispatcher uses it too,
/// for a body it could not read and a caller it refused, so `/v1` never answers in `/chat`'s
/// shape.
pub fn error_response(error: &ApiError) -> ApiResponse {
    let answer = error.answer();
    let mut response = ApiResponse::json(answer.status, &openai_error(error));
    response.headers.extend(answer.headers);
    response
}

/// `{"error": {"message", "type", "param", "code"}}` for one of this service's errors (a
/// FastAPI-shaped 422 included: its first issue).
fn openai_error(error: &ApiError) -> Value {
    let answer = error.answer();
    let (message, code, param) = match error {
        ApiError::Validation(issue) => {
            let param = issue
                .loc
                .iter()
                .skip(1)
                .map(|p| match p {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(".");
            let param = (!param.is_empty()).then_some(param);
            (json!(issue.msg), json!(issue.kind), json!(param))
        }
        _ => (
            answer.body["error"].clone(),
            answer.body["code"].clone(),
            Value::Null,
        ),
    };
    // OpenAI's own shapes for a bad key and a spent quota.
    let kind = match (answer.status, code.as_str()) {
        (_, Some("invalid_api_key")) => "invalid_request_error",
        (_, Some("budget_exceeded")) => "insufficient_quota",
        (401 | 403, _) => "authentication_error",
        (404, _) => "not_found_error",
        (429, _) => "rate_limit_error",
        (400..=499, _) => "invalid_request_error",
        _ => "server_error",
    };
    json!({ "error": { "message": message, "type": kind, "param": param, "code": code } })
}

/// Reads a chat-completions body. The conversation is validated by `/chat`'s own rules (the
/// newest user message and the earlier turns), so limits are the same on both routes.
fn parse(body: &[u8], vars: &impl Variables) -> Result<Completion, ApiError> {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        // `/chat`'s parser reports JSON errors (and an empty body) in its usual shape.
        Err(_) => return Err(validation::parse_chat_request(body).unwrap_err().into()),
    };
    let Value::Object(fields) = value else {
        return Err(invalid(
            &[],
            "model_attributes_type",
            "the body must be a JSON object",
        ));
    };

    let model = match fields.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => m.trim().to_owned(),
        _ => {
            return Err(invalid(
                &["model"],
                "missing",
                "`model` is required (see GET /v1/models)",
            ));
        }
    };
    let persona = if model == AUTO_MODEL || gemini_models(vars).contains(&model) {
        None
    } else {
        match model.strip_prefix("ion-").and_then(Persona::parse) {
            Some(p) => Some(p),
            None => {
                return Err(ApiError::ModelNotFound {
                    model: model
                        .chars()
                        .filter(|c| !c.is_control())
                        .take(100)
                        .collect(),
                });
            }
        }
    };

    let Some(Value::Array(messages)) = fields.get("messages") else {
        return Err(invalid(
            &["messages"],
            "missing",
            "`messages` must be a non-empty array",
        ));
    };
    let mut system: Vec<String> = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let role = message["role"].as_str().unwrap_or_default();
        let text = message_text(&message["content"]).ok_or_else(|| {
            invalid_at(
                format!("messages.{i}.content"),
                "content must be a string or a list of text parts",
            )
        })?;
        match role {
            "system" | "developer" => system.push(text),
            "user" => turns.push(Turn {
                role: Role::User,
                content: text,
            }),
            "assistant" => turns.push(Turn {
                role: Role::Assistant,
                content: text,
            }),
            _ => {
                return Err(invalid_at(
                    format!("messages.{i}.role"),
                    "role must be one of system, developer, user, assistant (tools are not supported)",
                ));
            }
        }
    }
    let Some(last) = turns.pop().filter(|t| t.role == Role::User) else {
        return Err(invalid(
            &["messages"],
            "invalid_value",
            "the last message must be from the user",
        ));
    };

    let mut chat_fields = Map::new();
    chat_fields.insert("message".into(), json!(last.content));
    chat_fields.insert(
        "history".into(),
        Value::Array(
            turns
                .iter()
                .map(|t| {
                    json!({
                        "role": if t.role == Role::User { "user" } else { "assistant" },
                        "content": t.content,
                    })
                })
                .collect(),
        ),
    );
    if let Some(tokens) = fields
        .get("max_completion_tokens")
        .filter(|v| !v.is_null())
        .or_else(|| fields.get("max_tokens"))
    {
        chat_fields.insert("max_output_tokens".into(), tokens.clone());
    }
    if let Some(effort) = fields.get("reasoning_effort").filter(|v| !v.is_null()) {
        let level = match effort.as_str() {
            Some("none") => Some(ThinkingLevel::Minimal),
            Some(e) => ThinkingLevel::parse(e),
            None => None,
        };
        match level {
            Some(level) => chat_fields.insert("thinking_level".into(), json!(level.as_str())),
            None => {
                return Err(invalid(
                    &["reasoning_effort"],
                    "literal_error",
                    "reasoning_effort must be one of none, minimal, low, medium, high",
                ));
            }
        };
    }
    if let Some(stream) = fields.get("stream") {
        chat_fields.insert("stream".into(), stream.clone());
    }
    let mut chat =
        validation::parse_chat_request(Value::Object(chat_fields).to_string().as_bytes())?;
    chat.persona = persona;

    if let Some(n) = fields.get("n").filter(|v| !v.is_null())
        && n.as_u64() != Some(1)
    {
        return Err(invalid(
            &["n"],
            "unsupported_value",
            "only n = 1 is supported",
        ));
    }
    let temperature = match fields.get("temperature") {
        None | Some(Value::Null) => None,
        Some(t) => match t.as_f64() {
            Some(t) if (0.0..=2.0).contains(&t) => Some(t),
            _ => {
                return Err(invalid(
                    &["temperature"],
                    "invalid_value",
                    "temperature must be a number from 0 to 2",
                ));
            }
        },
    };
    let stop_sequences = match fields.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items))
            if items.len() <= MAX_STOP_SEQUENCES && items.iter().all(Value::is_string) =>
        {
            items
                .iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        }
        Some(_) => {
            return Err(invalid(
                &["stop"],
                "invalid_value",
                "stop must be a string or a list of at most 5 strings",
            ));
        }
    };
    let include_usage = fields
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        == Some(true);
    let system = (!system.is_empty()).then(|| system.join("\n\n"));
    Ok(Completion {
        model,
        chat,
        system,
        options: gemini::Options {
            temperature,
            stop_sequences,
        },
        include_usage,
    })
}

/// A message's text: a string, or the text parts of a content list.
fn message_text(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match (p["type"].as_str(), p["text"].as_str()) {
                (Some("text"), Some(text)) => Some(text),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .map(|texts| texts.concat()),
        _ => None,
    }
}

fn invalid(path: &[&str], kind: &'static str, msg: &str) -> ApiError {
    ApiError::Validation(Box::new(ValidationIssue {
        kind,
        loc: std::iter::once("body")
            .chain(path.iter().copied())
            .map(|p| json!(p))
            .collect(),
        msg: msg.into(),
        input: Value::Null,
        ctx: None,
    }))
}

fn invalid_at(param: String, msg: &str) -> ApiError {
    ApiError::Validation(Box::new(ValidationIssue {
        kind: "invalid_value",
        loc: vec![json!("body"), json!(param)],
        msg: msg.into(),
        input: Value::Null,
        ctx: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::vars;
    use crate::vertex::tests::{FakeClock, FakeVertex, Scripted};
    use futures::executor::block_on;

    fn configured() -> crate::config::tests::Fixed {
        vars(&[("project_id", "p"), ("access_token", "t")])
    }

    fn run(body: Value, vertex: &FakeVertex) -> Reply<<FakeVertex as Transport>::Body> {
        let mut record = ChatRecord::new("/v1/chat/completions");
        block_on(completions(
            body.to_string().as_bytes(),
            &configured(),
            vertex,
            &FakeClock::default(),
            &mut record,
        ))
    }

    fn whole<B>(reply: Reply<B>) -> (u16, Value) {
        match reply {
            Reply::Whole(r) => (r.status, serde_json::from_slice(&r.body).unwrap()),
            Reply::Stream { .. } => panic!("expected a whole response"),
        }
    }

    fn gemini_answer() -> Scripted {
        Scripted::json(
            200,
            json!({"candidates": [{"content": {"parts": [{"text": "Hi!"}]}, "finishReason": "MAX_TOKENS"}],
                   "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 3, "thoughtsTokenCount": 7},
                   "modelVersion": "gemini-3.5-flash"}),
        )
    }

    #[test]
    fn a_completion_maps_messages_options_and_usage() {
        let vertex = FakeVertex::new([gemini_answer()]);
        let (status, body) = whole(run(
            json!({
                "model": "ion-riri",
                "messages": [
                    {"role": "user", "content": "first"},
                    {"role": "assistant", "content": [{"type": "text", "text": "reply"}]},
                    {"role": "user", "content": "second?"}
                ],
                "max_completion_tokens": 300,
                "stop": ["END"],
                "reasoning_effort": "high",
                "temperature": 0.4
            }),
            &vertex,
        ));
        assert_eq!(status, 200);
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["model"], "ion-riri");
        assert_eq!(body["choices"][0]["message"]["content"], "Hi!");
        assert_eq!(body["choices"][0]["finish_reason"], "length");
        assert_eq!(body["usage"]["completion_tokens"], 10);
        assert_eq!(body["usage"]["total_tokens"], 20);
        assert_eq!(
            body["usage"]["completion_tokens_details"]["reasoning_tokens"],
            7
        );
        assert_eq!(body["ion"]["persona"], "Riri");

        let sent: Value = serde_json::from_slice(&vertex.calls.borrow()[0].body).unwrap();
        assert_eq!(sent["contents"].as_array().unwrap().len(), 3);
        assert_eq!(sent["contents"][1]["role"], "model");
        let config = &sent["generationConfig"];
        assert_eq!(config["maxOutputTokens"], 300);
        assert_eq!(config["stopSequences"], json!(["END"]));
        assert_eq!(config["temperature"], 0.4);
        assert_eq!(config["thinkingConfig"]["thinkingLevel"], "HIGH");
        assert!(
            sent["systemInstruction"]["parts"][0]["text"]
                .as_str()
                .unwrap()
                .contains("Riri")
        );
    }

    #[test]
    fn a_system_message_replaces_the_persona_instruction() {
        let vertex = FakeVertex::new([gemini_answer()]);
        let (status, _) = whole(run(
            json!({"model": "ion-auto", "messages": [
                {"role": "system", "content": "Be terse."}, {"role": "user", "content": "hi"}
            ]}),
            &vertex,
        ));
        assert_eq!(status, 200);
        let sent: Value = serde_json::from_slice(&vertex.calls.borrow()[0].body).unwrap();
        assert_eq!(sent["systemInstruction"]["parts"][0]["text"], "Be terse.");
    }

    #[test]
    fn errors_are_in_openai_shape_with_chats_status_codes() {
        let vertex = FakeVertex::new([]);
        let (status, body) = whole(run(
            json!({"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}),
            &vertex,
        ));
        assert_eq!(status, 404);
        assert_eq!(body["error"]["code"], "model_not_found");
        assert_eq!(body["error"]["type"], "not_found_error");

        let (status, body) = whole(run(
            json!({"model": "ion-auto", "messages": [{"role": "user", "content": ""}]}),
            &vertex,
        ));
        assert_eq!(status, 422);
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["code"], "string_too_short");
        assert_eq!(body["error"]["param"], "message");

        let (status, body) = whole(run(
            json!({"model": "ion-auto", "messages": [{"role": "assistant", "content": "x"}]}),
            &vertex,
        ));
        assert_eq!(status, 422);
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("last message")
        );
        assert!(vertex.calls.borrow().is_empty());

        let limited = FakeVertex::new([Scripted::json(
            429,
            json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                   "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "90s"}]}}),
        )]);
        let mut record = ChatRecord::new("/v1/chat/completions");
        let reply = block_on(completions(
            json!({"model": "ion-auto", "messages": [{"role": "user", "content": "hi"}]})
                .to_string()
                .as_bytes(),
            &configured(),
            &limited,
            &FakeClock::default(),
            &mut record,
        ));
        let Reply::Whole(r) = reply else { panic!() };
        assert_eq!(r.status, 429);
        assert_eq!(r.header("retry-after"), Some("90"));
        assert_eq!(r.header("content-type"), Some("application/json"));
    }

    #[test]
    fn a_stream_ends_with_usage_and_done() {
        let vertex = FakeVertex::new([Scripted::sse(&[
            json!({"candidates": [{"content": {"parts": [{"text": "Hel"}]}}]}),
            json!({"candidates": [{"content": {"parts": [{"text": "lo"}]}, "finishReason": "STOP"}],
                   "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2}}),
        ])]);
        let clock = FakeClock::default();
        let reply = run(
            json!({"model": "ion-auto", "stream": true, "stream_options": {"include_usage": true},
                   "messages": [{"role": "user", "content": "hi"}]}),
            &vertex,
        );
        let (sent, _) = crate::reply::tests::relay_to_end(reply, &clock);
        let sent = sent.concat();
        let events: Vec<&str> = sent.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 6, "{events:?}");
        let data = |i: usize| -> Value {
            serde_json::from_str(events[i].trim_start_matches("data: ")).unwrap()
        };
        assert_eq!(data(0)["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(data(1)["choices"][0]["delta"]["content"], "Hel");
        assert_eq!(data(3)["choices"][0]["finish_reason"], "stop");
        assert_eq!(data(4)["usage"]["total_tokens"], 5);
        assert_eq!(events[5], "data: [DONE]");
    }

    #[test]
    fn models_lists_personas_and_the_gemini_model() {
        let r = models(&vars(&[]));
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        let ids: Vec<&str> = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            [
                "ion-auto",
                "ion-lua",
                "ion-elro",
                "ion-riri",
                "ion-nana",
                "gemini-3.5-flash"
            ]
        );
    }

    #[test]
    fn body_failures_keep_the_openai_shape_and_status() {
        for (error, status, code) in [
            (
                ApiError::UnsupportedMediaType {
                    content_type: "text/plain".into(),
                },
                415,
                "unsupported_media_type",
            ),
            (
                ApiError::PayloadTooLarge { limit: 10 },
                413,
                "payload_too_large",
            ),
            (
                ApiError::BodyUnreadable {
                    detail: "reset".into(),
                },
                400,
                "body_unreadable",
            ),
        ] {
            let mut record = ChatRecord::new("/v1/chat/completions");
            let (got, body) = whole(failed::<()>(error, &mut record));
            assert_eq!(got, status);
            assert_eq!(body["error"]["code"], code, "{body}");
            assert_eq!(body["error"]["type"], "invalid_request_error");
            assert_eq!(record.outcome, code);
        }
    }
}
