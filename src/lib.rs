//! Ion Mentoring API as a WebAssembly component.
//!
//! `POST /chat` analyses a question's tone, pace and intent ([`resonance`]), routes it to one of
//! four mentor personas ([`persona`]), asks Vertex AI Gemini for the answer in that persona's voice
//! ([`gemini`], [`vertex`]) and returns it ([`chat_route`]). A request enters through
//! [`dispatch`], which resolves its route ([`routes`]) and runs the handler. Everything except
//! [`spin_adapter`] and [`spin_store`] is plain Rust that unit-tests natively; the adapter is the
//! `wasi:http` entry point and only exists in the `wasm32` build (its generated export names do
//! not link into a native cdylib).

// Serving a request.
/// Cross-origin requests: the allowed origins and preflights.
pub mod cors;
/// Serving one request, runtime-neutral: handler, access checks, CORS, stream finishing, log.
pub mod dispatch;
/// Every way a request can fail, and its status, code and body.
pub mod error;
/// Reading a request: the bounded JSON body, `Accept` and `Cache-Control`.
pub mod request;
/// A runtime-neutral HTTP response.
pub mod response;
/// The endpoint table: method and path to a route, or a 404, 405 or 307.
pub mod routes;

// The endpoints.
/// API keys, request limits and token budgets; `/usage` and the admin API.
pub mod access;
/// `POST /chat`: this service's chat protocol, its JSON answer and its event stream.
pub mod chat_route;
/// `GET` and `DELETE /conversations/{id}`.
pub mod conversation_route;
/// `/`, `/health`, `/docs` and `/openapi.json`.
pub mod info;
/// `/v1/chat/completions` and `/v1/models`: the OpenAI protocol.
pub mod openai;
/// The chat page's files.
pub mod ui;

// One chat, shared by both chat protocols.
/// A chat from a validated request to a whole answer or a relayed stream.
pub mod chat;
/// The per-chat log line, and its one owner.
pub mod chat_log;
/// The service's variables.
pub mod config;
/// When a chat moves on to the next model of its list.
pub mod fallback;
/// Gemini's request and response formats.
pub mod gemini;
/// The Gemini models a chat may call, in order: `model`, then `fallback_models`.
pub mod model_list;
/// The four mentor personas and routing between them.
pub mod persona;
/// What a chat route answers, and sending a streamed answer to its end.
pub mod reply;
/// Resonance analysis of a message: tone, pace, intent.
pub mod resonance;
/// Backoff between upstream attempts.
pub mod retry;
/// Gemini's safety settings, from the `safety_settings` variable.
pub mod safety;
/// Server-Sent Events framing.
pub mod sse;
/// The `/chat` request's fields and limits.
pub mod validation;
/// Calls to Vertex AI: retries, fallback models, deadlines, streams; the runtime's transport
/// and clock.
pub mod vertex;

// State in the key-value store.
/// The first-turn response cache.
pub mod cache;
/// What a `/chat` turn reads from and writes to the store.
pub mod chat_state;
/// Stored conversations and their turns.
pub mod conversation;
/// The key-value store interface and the state settings.
pub mod store;

#[cfg(test)]
mod spec_contract;

/// The `wasi:http` entry point: Spin's types in, [`dispatch`] out.
#[cfg(target_arch = "wasm32")]
mod spin_adapter;
/// The runtime's key-value store.
#[cfg(target_arch = "wasm32")]
mod spin_store;
