//! The OpenAI chat-completions protocol on `/v1/...`, over the same chat flow as `/chat`:
//! `messages` map to Gemini's system instruction and contents (function calls and their
//! results included); persona routing applies unless the request has a system message or names
//! a persona as its model (`ion-lua`, …). Errors use OpenAI's shapes and status codes.

mod error;
mod request;
mod response;
mod tools;

use serde_json::json;

use crate::chat::{self, Chat};
use crate::chat_log::ChatRecord;
use crate::config::{DEFAULT_MODEL, Variables};
use crate::error::ApiError;
use crate::model_list::ModelList;
use crate::persona::Persona;
use crate::reply::{Reply, StreamSource};
use crate::response::ApiResponse;
use crate::routes::MODELS_PREFIX;
use crate::vertex::{Clock, Transport};

pub use error::{error_response, failed, route_error};
use response::{CompletionChunks, Header};

/// The model name that routes by resonance.
pub const AUTO_MODEL: &str = "ion-auto";

/// Paths this protocol answers for, unknown ones included.
pub fn owns(path_and_query: &str) -> bool {
    let path = path_and_query.split('?').next().unwrap_or_default();
    path == "/v1" || path.starts_with("/v1/")
}

/// Every model `/v1` offers: the persona choices, then the configured Gemini models, primary
/// first, then the fallbacks (routed like `ion-auto`), with who owns each.
fn offered(vars: &impl Variables) -> Vec<(String, &'static str)> {
    let mut models = vec![(AUTO_MODEL.to_owned(), "ion-mentoring")];
    models.extend(
        Persona::ALL.map(|p| (format!("ion-{}", p.name().to_lowercase()), "ion-mentoring")),
    );
    models.extend(gemini_models(vars).into_iter().map(|id| (id, "google")));
    models
}

/// The Gemini model ids a request may name: the configured list or, when it is invalid (chats
/// then answer 503 saying why), the `model` variable as it is.
pub(crate) fn gemini_models(vars: &impl Variables) -> Vec<String> {
    match ModelList::load(vars) {
        Ok(list) => list.iter().map(str::to_owned).collect(),
        Err(_) => vec![vars.get("model").unwrap_or_else(|| DEFAULT_MODEL.into())],
    }
}

fn model_json(id: &str, owner: &str) -> serde_json::Value {
    json!({ "id": id, "object": "model", "created": 0, "owned_by": owner })
}

/// `GET /v1/models`.
pub fn models(vars: &impl Variables) -> ApiResponse {
    let data: Vec<_> = offered(vars)
        .iter()
        .map(|(id, owner)| model_json(id, owner))
        .collect();
    ApiResponse::json(200, &json!({ "object": "list", "data": data }))
}

/// `GET /v1/models/{model}`: one of [`models`], or OpenAI's 404.
pub fn model(vars: &impl Variables, path_and_query: &str) -> ApiResponse {
    let path = path_and_query.split('?').next().unwrap_or_default();
    let id = path.strip_prefix(MODELS_PREFIX).unwrap_or_default();
    let id = percent_encoding::percent_decode_str(id).decode_utf8_lossy();
    match offered(vars).iter().find(|(m, _)| *m == id.as_ref()) {
        Some((id, owner)) => ApiResponse::json(200, &model_json(id, owner)),
        None => error_response(&ApiError::ModelNotFound {
            model: id.chars().filter(|c| !c.is_control()).take(100).collect(),
        }),
    }
}

/// `POST /v1/chat/completions`.
pub async fn completions<T: Transport>(
    body: &[u8],
    vars: &impl Variables,
    transport: &T,
    clock: &impl Clock,
    record: &mut ChatRecord,
) -> Reply<T::Body> {
    let completion = match request::parse(body, vars) {
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
    let random = || (clock.random() * u64::MAX as f64) as u64;
    let header = Header {
        id: format!("chatcmpl-{:016x}{:016x}", random(), random()),
        created: clock.unix_seconds(),
        model: completion.model,
        ids: random(),
    };

    if completion.chat.stream {
        let (opened, stats) = chat::open(&mut chat, transport, clock).await;
        record.note_call(&stats);
        let chunks = CompletionChunks::new(header, completion.include_usage);
        return match opened {
            Ok(opened) => Reply::stream(
                chat,
                StreamSource::Upstream {
                    opened: Box::new(opened),
                    stats,
                },
                Box::new(chunks),
            ),
            Err(e) => {
                let error = ApiError::Upstream(e).with_attempts(stats.attempts);
                match response::content_filter(&error) {
                    Some((reason, stage)) => {
                        record.note_content_filter(&error);
                        Reply::Whole(chunks.filtered_stream(&chat, reason, stage, stats.attempts))
                    }
                    None => failed(error, record),
                }
            }
        };
    }

    let (answer, stats) = chat::answer(&mut chat, transport, clock).await;
    record.note_call(&stats);
    match answer {
        Ok(answer) => {
            record.note_answer(&answer);
            Reply::Whole(ApiResponse::json(
                200,
                &response::completion(&header, &chat, &answer, stats.attempts),
            ))
        }
        Err(e) => {
            let error = ApiError::Upstream(e).with_attempts(stats.attempts);
            match response::content_filter(&error) {
                Some((reason, stage)) => {
                    record.note_content_filter(&error);
                    Reply::Whole(ApiResponse::json(
                        200,
                        &response::filtered(&header, &chat, reason, stage, stats.attempts),
                    ))
                }
                None => failed(error, record),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::vars;
    use crate::vertex::tests::{FakeClock, FakeVertex, Scripted};
    use futures::executor::block_on;
    use serde_json::Value;

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

        let sent = sent(&vertex, 0);
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
        let sent = sent(&vertex, 0);
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
        assert_eq!(status, 400);
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["code"], "value_error");
        assert_eq!(body["error"]["param"], "messages.0.content");

        let (status, body) = whole(run(
            json!({"model": "ion-auto", "messages": [{"role": "assistant", "content": "x"}]}),
            &vertex,
        ));
        assert_eq!(status, 400);
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("needs a user message")
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

    fn sent(vertex: &FakeVertex, n: usize) -> Value {
        serde_json::from_slice(&vertex.calls.borrow()[n].body).unwrap()
    }

    fn user(text: &str) -> Value {
        json!({"role": "user", "content": text})
    }

    #[test]
    fn a_two_step_tool_call_carries_the_signature_through_the_id() {
        let weather = json!({"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}});
        let vertex = FakeVertex::new([Scripted::json(
            200,
            json!({"candidates": [{"content": {"role": "model", "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Seoul"}}, "thoughtSignature": "U0lH"}
            ]}, "finishReason": "STOP"}]}),
        )]);
        let (status, body) = whole(run(
            json!({"model": "ion-auto", "messages": [user("Weather in Seoul?")],
                   "tools": [weather.clone()], "tool_choice": "auto"}),
            &vertex,
        ));
        assert_eq!(status, 200, "{body}");
        let choice = &body["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], Value::Null);
        let call = &choice["message"]["tool_calls"][0];
        assert_eq!(call["type"], "function");
        assert_eq!(call["function"]["name"], "get_weather");
        assert_eq!(call["function"]["arguments"], "{\"city\":\"Seoul\"}");
        let id = call["id"].as_str().unwrap();
        assert!(
            id.starts_with("call_") && id.ends_with("__thought__U0lH"),
            "{id}"
        );
        let first = sent(&vertex, 0);
        assert_eq!(
            first["tools"][0]["functionDeclarations"][0]["name"],
            "get_weather"
        );
        assert_eq!(first["toolConfig"]["functionCallingConfig"]["mode"], "AUTO");

        // The client sends the call back with its result.
        let vertex = FakeVertex::new([gemini_answer()]);
        let (status, _) = whole(run(
            json!({"model": "ion-auto", "tools": [weather], "messages": [
                user("Weather in Seoul?"),
                {"role": "assistant", "content": null, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": id, "content": "{\"temp_c\": 3}"}
            ]}),
            &vertex,
        ));
        assert_eq!(status, 200);
        let contents = &sent(&vertex, 0)["contents"];
        assert_eq!(
            contents,
            &json!([
                {"role": "user", "parts": [{"text": "Weather in Seoul?"}]},
                {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Seoul"}},
                                             "thoughtSignature": "U0lH"}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"temp_c": 3}}}]}
            ])
        );
    }

    #[test]
    fn a_streamed_tool_call_is_one_delta_with_an_index() {
        let vertex = FakeVertex::new([Scripted::sse(&[
            json!({"candidates": [{"content": {"parts": [
            {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "U0lH"},
            {"functionCall": {"name": "g", "args": {"x": 1}}}
        ]}, "finishReason": "STOP"}]}),
        ])]);
        let tool = |name: &str| json!({"type": "function", "function": {"name": name}});
        let reply = run(
            json!({"model": "ion-auto", "stream": true, "messages": [user("go")],
                   "tools": [tool("f"), tool("g")]}),
            &vertex,
        );
        let (sent, end) = crate::reply::tests::relay_to_end(reply, &FakeClock::default());
        assert_eq!(end.calls.len(), 2);
        let events: Vec<Value> = sent
            .concat()
            .split("\n\n")
            .filter(|e| e.starts_with("data: {"))
            .map(|e| serde_json::from_str(&e["data: ".len()..]).unwrap())
            .collect();
        let calls = &events[1]["choices"][0]["delta"]["tool_calls"];
        assert_eq!(calls[0]["index"], 0);
        assert_eq!(calls[1]["index"], 1);
        assert!(
            calls[0]["id"]
                .as_str()
                .unwrap()
                .ends_with("__thought__U0lH")
        );
        assert!(!calls[1]["id"].as_str().unwrap().contains("__thought__"));
        assert_ne!(calls[0]["id"], calls[1]["id"]);
        assert_eq!(calls[1]["function"]["arguments"], "{\"x\":1}");
        assert_eq!(events[2]["choices"][0]["finish_reason"], "tool_calls");
    }

    #[test]
    fn response_format_asks_gemini_for_json() {
        let schema = json!({"type": "object", "properties": {"n": {"type": "integer"}},
                            "required": ["n"], "additionalProperties": false});
        for (format, mime, json_schema) in [
            (
                json!({"type": "json_object"}),
                json!("application/json"),
                Value::Null,
            ),
            (
                json!({"type": "json_schema", "json_schema": {"name": "N", "schema": schema, "strict": true}}),
                json!("application/json"),
                schema.clone(),
            ),
            (json!({"type": "text"}), Value::Null, Value::Null),
        ] {
            let vertex = FakeVertex::new([gemini_answer()]);
            let (status, _) = whole(run(
                json!({"model": "ion-auto", "messages": [user("n?")], "response_format": format}),
                &vertex,
            ));
            assert_eq!(status, 200);
            let config = &sent(&vertex, 0)["generationConfig"];
            assert_eq!(config["responseMimeType"], mime);
            assert_eq!(config["responseJsonSchema"], json_schema);
        }
        let (status, body) = whole(run(
            json!({"model": "ion-auto", "messages": [user("n?")],
                   "response_format": {"type": "json_schema", "json_schema": {"schema": {}}}}),
            &FakeVertex::new([]),
        ));
        assert_eq!(status, 400);
        assert_eq!(body["error"]["param"], "response_format.json_schema.name");
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_by_name() {
        for (extra, param) in [
            (json!({"logprobs": true}), "logprobs"),
            (json!({"logit_bias": {"50256": -100}}), "logit_bias"),
            (json!({"functions": [{"name": "f"}]}), "functions"),
            (json!({"modalities": ["text", "audio"]}), "modalities"),
            (
                json!({"stream_options": {"include_usage": "yes"}}),
                "stream_options.include_usage",
            ),
            (json!({"top_p": 3}), "top_p"),
            (json!({"seed": "x"}), "seed"),
            (
                json!({"response_format": {"type": "xml"}}),
                "response_format",
            ),
        ] {
            let mut body = json!({"model": "ion-auto", "messages": [user("hi")]});
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let (status, error) = whole(run(body, &FakeVertex::new([])));
            assert_eq!(status, 400, "{extra}");
            assert_eq!(error["error"]["param"], param, "{extra}");
        }
        // Their neutral values are fine, and the options Gemini has are passed on.
        let vertex = FakeVertex::new([gemini_answer()]);
        let (status, _) = whole(run(
            json!({"model": "ion-auto", "messages": [user("hi")], "logprobs": false,
                   "logit_bias": {}, "store": false, "modalities": ["text"],
                   "top_p": 0.5, "seed": 7, "presence_penalty": 0.1, "frequency_penalty": -0.1}),
            &vertex,
        ));
        assert_eq!(status, 200);
        let config = &sent(&vertex, 0)["generationConfig"];
        assert_eq!(config["topP"], 0.5);
        assert_eq!(config["seed"], 7);
        assert_eq!(config["presencePenalty"], 0.1);
        assert_eq!(config["frequencyPenalty"], -0.1);
    }

    #[test]
    fn a_system_message_alone_is_the_prompt() {
        let vertex = FakeVertex::new([gemini_answer()]);
        let (status, _) = whole(run(
            json!({"model": "ion-auto", "messages": [{"role": "system", "content": "Say hi."}]}),
            &vertex,
        ));
        assert_eq!(status, 200);
        assert_eq!(
            sent(&vertex, 0)["contents"],
            json!([{"role": "user", "parts": [{"text": "Say hi."}]}])
        );
        let (status, body) = whole(run(
            json!({"model": "ion-auto", "messages": [user("a"), {"role": "assistant", "content": "b"}]}),
            &FakeVertex::new([]),
        ));
        assert_eq!(status, 400);
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("last message")
        );
    }

    #[test]
    fn a_token_limit_spent_on_thinking_is_an_empty_answer_of_length() {
        let vertex = FakeVertex::new([Scripted::json(
            200,
            json!({"candidates": [{"finishReason": "MAX_TOKENS"}],
                   "usageMetadata": {"promptTokenCount": 4, "thoughtsTokenCount": 16, "totalTokenCount": 20}}),
        )]);
        let (status, body) = whole(run(
            json!({"model": "ion-auto", "messages": [user("hi")], "max_completion_tokens": 16}),
            &vertex,
        ));
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["choices"][0]["finish_reason"], "length");
        assert_eq!(body["choices"][0]["message"]["content"], "");
        assert_eq!(
            body["usage"]["completion_tokens_details"]["reasoning_tokens"],
            16
        );
    }

    #[test]
    fn a_withheld_answer_is_finish_reason_content_filter() {
        let blocked = || Scripted::json(200, json!({"candidates": [{"finishReason": "SAFETY"}]}));
        let vertex = FakeVertex::new([blocked()]);
        let mut record = ChatRecord::new("/v1/chat/completions");
        let reply = block_on(completions(
            json!({"model": "ion-auto", "messages": [user("hi")]})
                .to_string()
                .as_bytes(),
            &configured(),
            &vertex,
            &FakeClock::default(),
            &mut record,
        ));
        let (status, body) = whole(reply);
        assert_eq!(status, 200);
        assert_eq!(body["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(body["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(body["ion"]["content_filter"]["block_reason"], "SAFETY");
        assert_eq!(
            (record.status, record.outcome.as_str()),
            (200, "content_blocked")
        );
        assert!(record.to_line().contains("\"severity\":\"WARNING\""));

        let vertex = FakeVertex::new([Scripted::sse(&[
            json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}}),
        ])]);
        let Reply::Whole(r) = run(
            json!({"model": "ion-auto", "stream": true, "messages": [user("hi")]}),
            &vertex,
        ) else {
            panic!("a stream withheld before it began is sent whole")
        };
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-type"),
            Some("text/event-stream; charset=utf-8")
        );
        let text = String::from_utf8(r.body).unwrap();
        assert!(
            text.contains("\"finish_reason\":\"content_filter\""),
            "{text}"
        );
        assert!(text.ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn a_request_vertex_ai_refuses_is_the_callers_400() {
        let vertex = FakeVertex::new([Scripted::json(
            400,
            json!({"error": {"code": 400, "status": "INVALID_ARGUMENT",
                   "message": "Function call is missing a thought_signature in functionCall parts."}}),
        )]);
        let (status, body) = whole(run(
            json!({"model": "ion-auto", "messages": [user("hi")]}),
            &vertex,
        ));
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["code"], "upstream_rejected");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("thought_signature")
        );
    }

    #[test]
    fn tool_results_answer_calls_by_unique_id() {
        let call = |id: &str| json!({"id": id, "type": "function", "function": {"name": "f", "arguments": "{}"}});
        let (status, body) = whole(run(
            json!({"model": "ion-auto", "messages": [
                user("hi"),
                {"role": "assistant", "tool_calls": [call("c1"), call("c1")]},
                {"role": "tool", "tool_call_id": "c1", "content": "ok"}
            ]}),
            &FakeVertex::new([]),
        ));
        assert_eq!(status, 400);
        assert_eq!(body["error"]["param"], "messages.1.tool_calls");
        let (status, body) = whole(run(
            json!({"model": "ion-auto", "messages": [
                user("hi"), {"role": "tool", "tool_call_id": "nobody", "content": "ok"}
            ]}),
            &FakeVertex::new([]),
        ));
        assert_eq!(status, 400);
        assert_eq!(body["error"]["param"], "messages.1.tool_call_id");
    }
}
