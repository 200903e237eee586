//! Outbound `wasi:http` requests from the component: the allow-list from `spin.toml`, Google
//! credentials added to requests bound for the Vertex AI endpoint, and the pooled client.

mod observed;
pub mod policy;
pub mod vertex_auth;

use std::sync::Arc;

use http::header::AUTHORIZATION;
use http::{HeaderValue, Uri};
use http_body_util::{BodyExt, Limited};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::http_client::{
    BodyTimeout, BoxError, ClientBody, HttpClient, SendError, Timeouts, full_body,
};
use crate::logging::RequestContext;
use crate::telemetry::AttemptHandle;
use observed::ObservedBody;
use policy::AllowList;
use vertex_auth::VertexAuth;

/// Largest request body buffered so that a request can be replayed after a 401.
const MAX_REPLAY_BODY: usize = 1024 * 1024;

/// Shared by all requests; cloned into each store's hooks.
pub struct Outbound {
    pub allowed: AllowList,
    pub client: HttpClient,
    pub auth: Option<VertexAuth>,
}

/// The per-store `wasi:http` hooks.
pub struct OutboundHooks {
    pub outbound: Arc<Outbound>,
    /// The request the component is serving: the host's messages about its calls are part of
    /// it.
    pub served: Arc<RequestContext>,
}

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                    ),
                    HttpError,
                >,
            > + Send,
    > {
        drop(fut);
        let outbound = self.outbound.clone();
        let served = self.served.clone();
        Box::new(async move {
            let response = outbound.send(request, options, &served).await?;
            Ok((
                response,
                Box::new(async { Ok(()) }) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

impl Outbound {
    /// Sends one request of the component, which is serving `served`.
    async fn send(
        &self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        served: &Arc<RequestContext>,
    ) -> Result<http::Response<WasiBody>, HttpError> {
        if !self.allowed.allows(request.uri()) {
            served.warn(&format!(
                "outbound request to {} denied: not in allowed_outbound_hosts",
                origin_of(request.uri())
            ));
            // Fail only once the guest has finished writing the body: failing at once would
            // close the body stream under a guest that writes before it awaits the response,
            // and it would see a closed stream instead of HttpRequestDenied (as Spin reports).
            let _ = request.into_body().collect().await;
            return Err(HttpError::HttpRequestDenied);
        }
        // The trace goes on to Vertex AI: a call to a model gets a span of its own.
        let mut request = request;
        let attempt = served
            .telemetry
            .as_ref()
            .and_then(|t| t.start_attempt(request.uri()));
        let traceparent = match (&attempt, &served.telemetry) {
            (Some(attempt), _) => Some(attempt.traceparent()),
            (None, Some(telemetry)) => Some(telemetry.traceparent()),
            (None, None) => served.trace.as_ref().and_then(|t| t.traceparent()),
        };
        if let Some(value) = traceparent.and_then(|v| HeaderValue::from_str(&v).ok()) {
            request.headers_mut().insert(TRACEPARENT, value);
        }
        if let Some(attempt) = attempt.as_ref().filter(|a| a.captures_content()) {
            request = recorded_input(request, attempt).await?;
        }
        let result = self.send_allowed(request, options, served).await;
        let Some(attempt) = attempt else {
            return result;
        };
        match result {
            Ok(response) => {
                attempt.responded(response.status().as_u16());
                Ok(response.map(|body| ObservedBody::new(body, attempt).boxed_unsync()))
            }
            Err(e) => {
                attempt.failed(observed::error_type(&e));
                Err(e)
            }
        }
    }

    /// Sends an allowed request, with credentials when it is bound for Vertex AI.
    async fn send_allowed(
        &self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        served: &Arc<RequestContext>,
    ) -> Result<http::Response<WasiBody>, HttpError> {
        let timeouts = self.timeouts(options);

        let auth = self.auth.as_ref().filter(|a| {
            a.applies_to(request.uri()) && !request.headers().contains_key(AUTHORIZATION)
        });
        let Some(auth) = auth else {
            let request = request.map(|body| body.map_err(BoxError::from).boxed_unsync());
            return self.exchange(request, timeouts).await;
        };

        // Buffer the (small) body so the request can be sent again with a fresh token.
        let (parts, body) = request.into_parts();
        let body = buffered(body).await?;
        let build = |token: &str| -> Result<http::Request<ClientBody>, HttpError> {
            let mut request = http::Request::new(full_body(body.clone()));
            *request.method_mut() = parts.method.clone();
            *request.uri_mut() = parts.uri.clone();
            *request.version_mut() = parts.version;
            *request.headers_mut() = parts.headers.clone();
            add_credentials(
                request.headers_mut(),
                token,
                auth.credentials.quota_project(),
            )?;
            Ok(request)
        };

        let token = self.token(auth, served).await?;
        let response = self.exchange(build(&token)?, timeouts).await?;
        if response.status() != http::StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        // The token was revoked or expired early: refresh once and try again.
        auth.credentials.invalidate(&token);
        let token = self.token(auth, served).await?;
        self.exchange(build(&token)?, timeouts).await
    }

    async fn token(
        &self,
        auth: &VertexAuth,
        served: &Arc<RequestContext>,
    ) -> Result<String, HttpError> {
        auth.credentials.token_for(served).await.map_err(|e| {
            served.error(&format!("cannot obtain Google credentials: {e:#}"));
            HttpError::ConfigurationError
        })
    }

    fn timeouts(&self, options: Option<RequestOptions>) -> Timeouts {
        let defaults = self.client.timeouts();
        let Some(options) = options else {
            return defaults;
        };
        Timeouts {
            connect: options.connect_timeout.unwrap_or(defaults.connect),
            first_byte: options.first_byte_timeout.unwrap_or(defaults.first_byte),
            between_bytes: options
                .between_bytes_timeout
                .unwrap_or(defaults.between_bytes),
        }
    }

    async fn exchange(
        &self,
        request: http::Request<ClientBody>,
        timeouts: Timeouts,
    ) -> Result<http::Response<WasiBody>, HttpError> {
        let response = self
            .client
            .send(request, timeouts)
            .await
            .map_err(|e| match e {
                SendError::Connect {
                    timed_out: true, ..
                } => HttpError::ConnectionTimeout,
                SendError::Connect { .. } => HttpError::ConnectionRefused,
                SendError::Tls(_) => HttpError::TlsProtocolError,
                SendError::FirstByteTimeout => HttpError::ConnectionReadTimeout,
                SendError::Protocol(_) => HttpError::HttpProtocolError,
            })?;
        Ok(response.map(|body| {
            body.map_err(|e| {
                if e.is::<BodyTimeout>() {
                    HttpError::ConnectionReadTimeout
                } else {
                    HttpError::HttpResponseIncomplete
                }
            })
            .boxed_unsync()
        }))
    }
}

/// A request body read into memory (at most [`MAX_REPLAY_BODY`]).
async fn buffered(body: WasiBody) -> Result<bytes::Bytes, HttpError> {
    Ok(Limited::new(body, MAX_REPLAY_BODY)
        .collect()
        .await
        .map_err(|_| HttpError::HttpRequestBodySize(Some(MAX_REPLAY_BODY as u64)))?
        .to_bytes())
}

/// Reads a request's body (to record its messages on the attempt's span) and gives back the
/// same request with the body in memory.
async fn recorded_input(
    request: http::Request<WasiBody>,
    attempt: &AttemptHandle,
) -> Result<http::Request<WasiBody>, HttpError> {
    let (parts, body) = request.into_parts();
    let body = buffered(body).await?;
    attempt.record_input(&body);
    let body = http_body_util::Full::new(body)
        .map_err(|never| match never {})
        .boxed_unsync();
    Ok(http::Request::from_parts(parts, body))
}

/// Sets `Authorization: Bearer <token>` and, for credentials that name a quota project,
/// `x-goog-user-project` (unless the component set its own).
fn add_credentials(
    headers: &mut http::HeaderMap,
    token: &str,
    quota_project: Option<&str>,
) -> Result<(), HttpError> {
    let value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| HttpError::ConfigurationError)?;
    headers.insert(AUTHORIZATION, value);
    if let Some(project) = quota_project
        && !headers.contains_key(USER_PROJECT)
    {
        let value = HeaderValue::from_str(project).map_err(|_| HttpError::ConfigurationError)?;
        headers.insert(USER_PROJECT, value);
    }
    Ok(())
}

/// W3C Trace Context's header.
const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");

/// The project Google bills for a call made with user credentials.
const USER_PROJECT: http::HeaderName = http::HeaderName::from_static("x-goog-user-project");

/// `scheme://host:port` of a URI, for logs (never the path or query).
fn origin_of(uri: &Uri) -> String {
    format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("?"),
        uri.authority().map_or("?", |a| a.as_str())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http_client::empty_body;
    use crate::logging::{Capture, Trace};

    #[tokio::test]
    async fn a_denied_call_is_logged_as_part_of_the_request() {
        let outbound = Outbound {
            allowed: AllowList::default(),
            client: HttpClient::new(Timeouts::default()),
            auth: None,
        };
        let served = Arc::new(RequestContext {
            request_id: "r-out".into(),
            telemetry: None,
            trace: Some(Trace {
                trace_id: "105445aa7843bc8bf206b12000100000".into(),
                span_id: Some("000000000000007b".into()),
                sampled: Some(false),
            }),
        });
        let call = http::Request::builder()
            .uri("https://elsewhere.example:8443/v1/path?key=secret")
            .body(
                empty_body()
                    .map_err(|_| HttpError::HttpProtocolError)
                    .boxed_unsync(),
            )
            .unwrap();

        let log = Capture::start();
        let answer = outbound.send(call, None, &served).await;
        assert!(matches!(answer, Err(HttpError::HttpRequestDenied)));

        let entries = log.entries();
        assert_eq!(entries.len(), 1, "{entries:?}");
        let warning = &entries[0];
        assert_eq!(warning["severity"], "WARNING");
        assert_eq!(
            warning["message"],
            "outbound request to https://elsewhere.example:8443 denied: not in \
             allowed_outbound_hosts"
        );
        assert_eq!(
            warning["logging.googleapis.com/labels"]["request_id"],
            "r-out"
        );
        assert!(
            warning["logging.googleapis.com/trace"]
                .as_str()
                .unwrap()
                .ends_with("105445aa7843bc8bf206b12000100000")
        );
        assert_eq!(warning["logging.googleapis.com/spanId"], "000000000000007b");
        assert_eq!(warning["logging.googleapis.com/trace_sampled"], false);
    }

    #[test]
    fn credentials_add_the_token_and_the_quota_project() {
        let mut headers = http::HeaderMap::new();
        add_credentials(&mut headers, "ya29.t", Some("billing-project")).unwrap();
        assert_eq!(headers[AUTHORIZATION], "Bearer ya29.t");
        assert_eq!(headers["x-goog-user-project"], "billing-project");

        let mut headers = http::HeaderMap::new();
        add_credentials(&mut headers, "ya29.t", None).unwrap();
        assert!(!headers.contains_key("x-goog-user-project"));

        // The component's own choice stands.
        let mut headers = http::HeaderMap::new();
        headers.insert("x-goog-user-project", HeaderValue::from_static("mine"));
        add_credentials(&mut headers, "ya29.t", Some("billing-project")).unwrap();
        assert_eq!(headers["x-goog-user-project"], "mine");

        let mut headers = http::HeaderMap::new();
        assert!(add_credentials(&mut headers, "bad\ntoken", None).is_err());
    }
}
