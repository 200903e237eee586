//! One request, from its parsed head to the component's response: header checks, admission,
//! the body, an instance slot, then the guest under the request deadline. The response body
//! keeps the guest, its slot and the client's place until its last byte (see `stream`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Result;
use http::header::{CONTENT_LENGTH, HOST, USER_AGENT};
use http::{HeaderMap, HeaderValue};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::oneshot;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::Server;
use super::admission::InstanceSlot;
use super::body::{self, BufferedBody};
use super::errors::HostError;
use super::stream::{Cut, GuestBody, GuestTask};
use crate::kv::Unsynced;
use crate::logging::{self, HttpRequestEntry, RequestContext, Severity, Trace};
use crate::runtime::GuestInstance;
use crate::telemetry::{self, RequestHead};

impl Server {
    pub(super) async fn handle(
        &self,
        request: hyper::Request<Incoming>,
        peer: SocketAddr,
    ) -> hyper::Response<HyperOutgoingBody> {
        let started = Instant::now();
        let client_ip = self.admission.clients.client_ip(request.headers(), peer);
        let inbound = Trace::from_headers(request.headers());
        let telemetry = telemetry::start_request(
            inbound.as_ref(),
            || RequestHead {
                method: request.method().to_string(),
                path: request.uri().path().to_owned(),
                user_agent: user_agent(request.headers()).map(str::to_owned),
                client_address: client_ip.to_string(),
                protocol: protocol_version(request.version()),
            },
            started,
        );
        let context = Arc::new(RequestContext {
            request_id: format!(
                "{:08x}-{:x}",
                self.id_prefix,
                self.next_request.fetch_add(1, Ordering::Relaxed)
            ),
            trace: telemetry.as_ref().map(|t| t.log_trace()).or(inbound),
            telemetry,
        });
        let entry = HttpRequestEntry {
            method: request.method().to_string(),
            url: crate::logging::logged_url(&request.uri().to_string()),
            status: 0,
            request_size: content_length(request.headers()),
            user_agent: user_agent(request.headers()).map(str::to_owned),
            remote_ip: client_ip.to_string(),
            protocol: format!("{:?}", request.version()),
            latency: Duration::ZERO,
        };
        let path = request.uri().path().to_owned();
        let cors = self.cors.headers_for(request.headers());

        // If the client goes away first, hyper drops this future: the guard still logs the
        // request, as 499 (client closed request).
        let mut pending = PendingLog {
            context: context.clone(),
            entry: Some(entry),
            started,
        };
        let mut response = match self
            .respond(request, &path, (client_ip, peer), context.clone(), started)
            .await
        {
            Ok(response) => response,
            Err(e) => e.into_response(&path, &cors),
        };
        if let Ok(id) = HeaderValue::from_str(&context.request_id) {
            response.headers_mut().insert("x-request-id", id);
        }
        pending.finish(response.status().as_u16());
        response
    }

    async fn respond(
        &self,
        request: hyper::Request<Incoming>,
        path: &str,
        (client, peer): (IpAddr, SocketAddr),
        context: Arc<RequestContext>,
        started: Instant,
    ) -> Result<hyper::Response<HyperOutgoingBody>, HostError> {
        check_headers(request.headers())?;
        let (mut head, body) = request.into_parts();
        crate::client_ip::set_client_addr(&mut head.headers, client, peer);
        // Counted from here to the last byte of the answer.
        let in_progress = self
            .admission
            .clients
            .begin(path, client)
            .map_err(|limit| HostError::ClientBusy {
                limit,
                retry_after: self.admission.retry_after(),
            })?;
        self.admission.check_head(&head, client)?;
        // The body is read before a slot is taken: a slow upload holds body memory (bounded by
        // the budget and the body timeout), never an instance slot.
        let announced = content_length(&head.headers);
        let body = body::read(body, announced, self.limits.body, &self.admission).await?;
        let deadline = Instant::now() + self.limits.deadline;
        let slot = self.admission.instance_slot(path, deadline).await?;

        // wasi:http needs an authority; HTTP/1.0 clients may send no Host header.
        if head.uri.authority().is_none()
            && !head.headers.contains_key(HOST)
            && let Ok(host) = HeaderValue::from_str(&self.local_addr.to_string())
        {
            head.headers.insert(HOST, host);
        }
        let request = hyper::Request::from_parts(head, body);

        let mut cut = self.cut(deadline);
        let unsynced = Arc::new(Unsynced::default());
        let (response, guest) = tokio::select! {
            result = self.run_guest(request, context.clone(), unsynced.clone(), slot) => match result {
                Ok(answer) => answer,
                Err(GuestFailure::Store(detail)) => {
                    context.write(Severity::Error, &detail);
                    return Err(HostError::StoreUnavailable);
                }
                Err(GuestFailure::Component(e)) => {
                    context.write(Severity::Error, &format!("component failed: {e:#}"));
                    return Err(HostError::Internal);
                }
            },
            reason = &mut cut => {
                if reason == HostError::DeadlineExceeded {
                    context.write(
                        Severity::Error,
                        &format!("component gave no response within {:?}", self.limits.deadline),
                    );
                }
                return Err(reason);
            }
        };
        let (parts, body) = response.into_parts();
        let body = GuestBody::new(
            &parts,
            path,
            body,
            guest,
            cut,
            deadline,
            started,
            context,
            unsynced,
            in_progress,
        );
        Ok(hyper::Response::from_parts(parts, body.boxed_unsync()))
    }

    /// Resolves with the reason a request must end: its deadline, or the end of shutdown's
    /// grace period.
    fn cut(&self, deadline: Instant) -> Cut {
        let mut stopping = self.cut_streams.subscribe();
        let deadline = tokio::time::Instant::from_std(deadline);
        Box::pin(async move {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => HostError::DeadlineExceeded,
                stopped = async { stopping.wait_for(|stop| *stop).await.is_ok() } => {
                    if !stopped {
                        // The server is gone; only the deadline is left.
                        tokio::time::sleep_until(deadline).await;
                        return HostError::DeadlineExceeded;
                    }
                    HostError::ShuttingDown
                }
            }
        })
    }

    /// Starts the guest on `request`; returns its response head, once what the guest stored
    /// before it is on disk, and the task that keeps running the guest (and writing the body)
    /// after that.
    async fn run_guest(
        &self,
        request: hyper::Request<BufferedBody>,
        context: Arc<RequestContext>,
        unsynced: Arc<Unsynced>,
        slot: InstanceSlot,
    ) -> Result<(hyper::Response<HyperOutgoingBody>, GuestTask), GuestFailure> {
        let mut instance = self.runtime.instance(context, unsynced.clone());
        let (sender, receiver) = oneshot::channel();
        let request = instance
            .store_mut()
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)?;
        let outparam = instance
            .store_mut()
            .data_mut()
            .http()
            .new_response_outparam(sender)?;
        let idle = self.runtime.idle().clone();
        let running = Running {
            instance,
            _slot: slot,
        };

        // The guest runs in its own task so it can keep streaming the body after the
        // response head has been handed to hyper. If the task is aborted (the client went
        // away, the deadline passed) the instance goes with it; it is reused only when its
        // handler returned. The slot is given back once the instance is idle or gone.
        let task = tokio::spawn(async move {
            // Moves `running` in whole: a block that only named `running.instance` would
            // capture that field alone, and the slot would be freed when this function returns.
            let mut running = running;
            let result = running.instance.handle(request, outparam).await;
            running.instance.flush_output();
            if result.is_ok() {
                idle.put(running.instance);
            }
            result
        });
        // Until the response head exists, the request is ours to cancel: if the client goes
        // away (hyper drops this future) or the deadline passes, the guest and its upstream
        // calls stop too. After it, the response body owns the task.
        let mut guard = AbortOnDrop(Some(task));

        match receiver.await {
            Ok(Ok(response)) => {
                if unsynced.is_pending() {
                    unsynced.settle().await.map_err(GuestFailure::Store)?;
                }
                let task = guard.0.take().expect("task is still owned");
                Ok((response, task))
            }
            Ok(Err(code)) => Err(GuestFailure::Component(anyhow::anyhow!(
                "the component answered with error {code:?}"
            ))),
            Err(_) => {
                let task = guard.0.take().expect("task is still owned");
                let outcome = match task.await {
                    Ok(Ok(())) => anyhow::anyhow!("the component returned without a response"),
                    Ok(Err(e)) => anyhow::Error::from(e),
                    Err(e) => anyhow::Error::from(e),
                };
                Err(GuestFailure::Component(
                    outcome.context("no response from the component"),
                ))
            }
        }
    }
}

/// Why a guest gave no response head.
enum GuestFailure {
    /// The component failed, trapped or answered nothing.
    Component(anyhow::Error),
    /// It answered, but what it stored first could not be put on disk.
    Store(String),
}

impl From<wasmtime::Error> for GuestFailure {
    fn from(e: wasmtime::Error) -> GuestFailure {
        GuestFailure::Component(anyhow::Error::from(e))
    }
}

/// An instance at work, then its slot (fields drop in this order, also when the task is
/// aborted): a slot is free only once its instance is idle or gone, so the pools never hold
/// more instances than there are slots.
struct Running {
    instance: GuestInstance,
    _slot: InstanceSlot,
}

fn user_agent(headers: &HeaderMap) -> Option<&str> {
    headers.get(USER_AGENT).and_then(|v| v.to_str().ok())
}

/// `network.protocol.version` of a request.
fn protocol_version(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
}

/// Header values must be visible ASCII, space or tab (hyper already refused control
/// characters), and `Host` a valid authority: wasi:http hands the authority to the guest as a
/// string, and wasmtime fails the whole request (a 500) on a `Host` it cannot convert.
fn check_headers(headers: &HeaderMap) -> Result<(), HostError> {
    for (name, value) in headers {
        if value.to_str().is_err() {
            return Err(HostError::InvalidHeader {
                name: name.as_str().to_owned(),
            });
        }
    }
    if let Some(host) = headers.get(HOST)
        && !host.is_empty()
        && host
            .to_str()
            .ok()
            .and_then(|h| h.parse::<http::uri::Authority>().ok())
            .is_none()
    {
        return Err(HostError::InvalidHost);
    }
    Ok(())
}

/// Writes a request's access-log entry exactly once: on completion, or as 499 if dropped.
struct PendingLog {
    context: Arc<RequestContext>,
    entry: Option<HttpRequestEntry>,
    started: Instant,
}

impl PendingLog {
    fn finish(&mut self, status: u16) {
        if let Some(mut entry) = self.entry.take() {
            if let Some(telemetry) = &self.context.telemetry {
                telemetry.set_status(status);
            }
            entry.status = status;
            entry.latency = self.started.elapsed();
            logging::request(&self.context, &entry);
        }
    }
}

impl Drop for PendingLog {
    fn drop(&mut self) {
        self.finish(499);
    }
}

/// Aborts the guest task when dropped while still holding it.
struct AbortOnDrop(Option<GuestTask>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        pairs
            .iter()
            .map(|(n, v)| {
                (
                    http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                    HeaderValue::from_bytes(v).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn header_bytes_beyond_ascii_are_the_clients_error() {
        assert_eq!(
            check_headers(&headers(&[("host", b"example.com:8080")])),
            Ok(())
        );
        assert_eq!(
            check_headers(&headers(&[("host", b"exa\xffmple.com")])),
            Err(HostError::InvalidHeader {
                name: "host".into()
            })
        );
        assert_eq!(
            check_headers(&headers(&[("x-name", "café".as_bytes())])),
            Err(HostError::InvalidHeader {
                name: "x-name".into()
            })
        );
        assert_eq!(
            check_headers(&headers(&[("host", b"a b")])),
            Err(HostError::InvalidHost)
        );
    }
}
