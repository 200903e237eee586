//! One `generateContent` call to Vertex AI, independent of how bytes travel.
//!
//! The [`Transport`] trait is the seam between this logic and the runtime: the component uses
//! `wasi:http` outbound requests, unit tests use a scripted fake.

use std::future::Future;
use std::time::Duration;

use crate::config::Settings;
use crate::error::{UpstreamError, upstream_status_error};
use crate::gemini::{self, Answer, GenerateContentRequest};

/// A POST of a JSON body to Vertex AI.
#[derive(Debug, Clone, PartialEq)]
pub struct VertexCall {
    pub url: String,
    /// `None` when the runtime adds credentials itself.
    pub bearer_token: Option<String>,
    pub body: Vec<u8>,
    /// Deadline for the whole exchange, request to last byte of the reply.
    pub timeout: Duration,
}

/// What came back, before interpretation.
#[derive(Debug, Clone, PartialEq)]
pub struct RawReply {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: Vec<u8>,
}

/// Why no reply came back.
#[derive(Debug, Clone, PartialEq)]
pub enum TransportError {
    /// The runtime's outbound policy refused the destination.
    Denied,
    /// The deadline passed first.
    Timeout,
    /// The runtime was to add credentials and could not obtain any.
    RuntimeCredentials,
    /// Any other failure to exchange the request and reply.
    Failed(String),
}

/// Sends a [`VertexCall`].
pub trait Transport {
    fn post(&self, call: VertexCall) -> impl Future<Output = Result<RawReply, TransportError>>;
}

/// Largest reply body read from Vertex AI; a reply to a 1000-character question is far smaller.
pub const MAX_REPLY_BYTES: usize = 4 * 1024 * 1024;

/// Calls `generateContent` and reads the reply into an [`Answer`] or an honest error.
pub async fn generate(
    transport: &impl Transport,
    settings: &Settings,
    request: &GenerateContentRequest,
) -> Result<Answer, UpstreamError> {
    let url = settings.generate_content_url();
    let call = VertexCall {
        url: url.clone(),
        bearer_token: settings.access_token.clone(),
        body: serde_json::to_vec(request).map_err(|e| UpstreamError::InvalidResponse {
            detail: format!("request could not be encoded: {e}"),
        })?,
        timeout: settings.timeout,
    };

    let reply = transport.post(call).await.map_err(|e| match e {
        TransportError::Denied => UpstreamError::Denied { url },
        TransportError::Timeout => UpstreamError::Timeout {
            after: settings.timeout,
        },
        TransportError::RuntimeCredentials => UpstreamError::CredentialsUnavailable,
        TransportError::Failed(detail) => UpstreamError::Unreachable { detail },
    })?;

    if reply.status != 200 {
        return Err(upstream_status_error(
            reply.status,
            reply.retry_after.as_deref(),
            &reply.body,
        ));
    }
    gemini::read_reply(&reply.body)
}
