//! Ion Mentoring API as a WebAssembly component.
//!
//! `POST /chat` analyses a question's tone, pace and intent ([`resonance`]), routes it to one of
//! four mentor personas ([`persona`]), asks Vertex AI Gemini for the answer in that persona's voice
//! ([`gemini`], [`vertex`]) and returns it ([`api`]). Everything except [`spin_adapter`] is plain
//! Rust that unit-tests natively; the adapter is the `wasi:http` entry point and only exists in
//! the `wasm32` build (its generated export names do not link into a native cdylib).

pub mod access;
pub mod api;
pub mod cache;
pub mod chat;
pub mod chat_log;
pub mod chat_state;
pub mod config;
pub mod conversation;
pub mod cors;
pub mod error;
pub mod gemini;
pub mod openai;
pub mod persona;
pub mod resonance;
pub mod response;
pub mod retry;
pub mod sse;
pub mod store;
pub mod ui;
pub mod validation;
pub mod vertex;

#[cfg(test)]
mod spec_contract;

#[cfg(target_arch = "wasm32")]
mod spin_adapter;
#[cfg(target_arch = "wasm32")]
mod spin_store;
