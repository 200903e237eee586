//! Closed-loop HTTP/1.1 load: `concurrency` workers, each with its own keep-alive connection,
//! each sending its next request as soon as the previous response has been read in full.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HOST};
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{Barrier, watch};
use tokio::time::Instant;

/// Where the load goes: a plain-HTTP URL on a loopback address.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// `host[:port]` as written in the URL, sent as the Host header.
    pub authority: String,
    pub path_and_query: String,
}

impl Target {
    /// Accepts `http://` URLs whose host resolves to a loopback address only: this tool
    /// generates load, and load belongs on this machine.
    pub fn parse(url: &str) -> Result<Target> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("{url:?} is not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => bail!("{url:?}: only http:// is supported, not {other}://"),
            None => bail!("{url:?}: give a full URL such as http://127.0.0.1:8080/health"),
        }
        let authority = uri
            .authority()
            .with_context(|| format!("{url:?} has no host"))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(80);
        let addr = (host, port)
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {host}"))?
            .next()
            .with_context(|| format!("{host} resolves to no address"))?;
        if !addr.ip().is_loopback() {
            bail!(
                "{url:?} resolves to {}, which is not a loopback address",
                addr.ip()
            );
        }
        Ok(Target {
            addr,
            authority: authority.as_str().to_owned(),
            path_and_query: uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        })
    }
}

/// One load run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: Target,
    pub method: Method,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Request bodies: worker `i` sends `bodies[i % len]` (never empty).
    pub bodies: Vec<Bytes>,
    pub concurrency: usize,
    /// Length of the measured window (after the warm-up); also the bound in `requests` mode.
    pub duration: Duration,
    /// Stop after this many measured requests, if set.
    pub requests: Option<u64>,
    /// Requests sent before the measured window are not recorded.
    pub warmup: Duration,
    /// Worker `i` of `n` sends its first request `ramp_up × i / n` after the start, so that
    /// the workers' request cycles are spread out rather than in step. At most `warmup`.
    pub ramp_up: Duration,
    /// Longest wait for one response (head and body); past it the request counts as an error.
    pub timeout: Duration,
    /// The status that counts as success; other statuses are errors.
    pub expect_status: u16,
}

/// What a run observed.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Latency of every measured request answered with the expected status, in nanoseconds.
    pub latencies: Vec<u64>,
    /// Measured responses by status, including the expected one.
    pub statuses: BTreeMap<u16, u64>,
    /// Measured requests that got no complete response (connection errors, timeouts).
    pub failures: u64,
    /// The first failure's description, to show the reader.
    pub first_failure: Option<String>,
    /// Measured window: from its start until the last measured request finished.
    pub window: Duration,
    /// Connections that could not be opened at the start.
    pub connect_failures: usize,
    /// Responses received in all, warm-up included (for work-per-request figures).
    pub responses_total: u64,
}

impl Outcome {
    pub fn errors(&self, expect_status: u16) -> u64 {
        self.failures
            + self
                .statuses
                .iter()
                .filter(|(s, _)| **s != expect_status)
                .map(|(_, n)| n)
                .sum::<u64>()
    }
}

/// Per-worker results, merged at the end.
#[derive(Default)]
struct WorkerLog {
    latencies: Vec<u64>,
    statuses: BTreeMap<u16, u64>,
    failures: u64,
    first_failure: Option<String>,
    last_done: Option<Instant>,
    connect_failed: bool,
    responses_total: u64,
}

/// Runs the plan on the current tokio runtime.
pub async fn run(plan: Plan) -> Result<Outcome> {
    if plan.concurrency == 0 {
        bail!("concurrency must be at least 1");
    }
    if plan.ramp_up > plan.warmup {
        bail!("the ramp-up must not be longer than the warm-up");
    }
    let plan = Arc::new(plan);
    // Every worker connects first; the clock starts once all have (or have failed to).
    let connected = Arc::new(Barrier::new(plan.concurrency + 1));
    let (start_tx, start_rx) = watch::channel(None::<Instant>);
    let budget = Arc::new(AtomicU64::new(plan.requests.unwrap_or(u64::MAX)));
    let mut workers = Vec::with_capacity(plan.concurrency);
    for index in 0..plan.concurrency {
        let (plan, connected, start_rx, budget) = (
            plan.clone(),
            connected.clone(),
            start_rx.clone(),
            budget.clone(),
        );
        workers.push(tokio::spawn(worker(
            index, plan, connected, start_rx, budget,
        )));
    }
    connected.wait().await;
    let start = Instant::now();
    start_tx.send_replace(Some(start));
    let measure_from = start + plan.warmup;

    let mut outcome = Outcome::default();
    let mut last_done = measure_from;
    for worker in workers {
        let log = worker.await.context("a load worker panicked")?;
        outcome.latencies.extend_from_slice(&log.latencies);
        for (status, n) in log.statuses {
            *outcome.statuses.entry(status).or_default() += n;
        }
        outcome.failures += log.failures;
        if outcome.first_failure.is_none() {
            outcome.first_failure = log.first_failure;
        }
        if let Some(done) = log.last_done {
            last_done = last_done.max(done);
        }
        outcome.connect_failures += usize::from(log.connect_failed);
        outcome.responses_total += log.responses_total;
    }
    outcome.window = last_done.saturating_duration_since(measure_from);
    if outcome.connect_failures == plan.concurrency {
        bail!(
            "no connection to {} could be opened: {}",
            plan.target.addr,
            outcome.first_failure.as_deref().unwrap_or("unknown error")
        );
    }
    Ok(outcome)
}

async fn worker(
    index: usize,
    plan: Arc<Plan>,
    connected: Arc<Barrier>,
    mut start_rx: watch::Receiver<Option<Instant>>,
    budget: Arc<AtomicU64>,
) -> WorkerLog {
    let mut log = WorkerLog::default();
    let first = connect(plan.target.addr, plan.timeout).await;
    connected.wait().await;
    let Ok(start) = start_rx
        .wait_for(Option::is_some)
        .await
        .map(|s| (*s).expect("the start time is set"))
    else {
        return log;
    };
    let mut sender = match first {
        Ok(sender) => Some(sender),
        Err(e) => {
            log.connect_failed = true;
            log.first_failure = Some(format!("{e:#}"));
            return log;
        }
    };
    let measure_from = start + plan.warmup;
    let end = measure_from + plan.duration;
    tokio::time::sleep_until(start + ramp_offset(plan.ramp_up, index, plan.concurrency)).await;

    loop {
        let sent = Instant::now();
        if sent >= end {
            break;
        }
        let measured = sent >= measure_from;
        if measured
            && budget
                .try_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_err()
        {
            break;
        }
        let conn = match sender.take() {
            Some(conn) => Ok(conn),
            None => connect(plan.target.addr, plan.timeout).await,
        };
        let result = match conn {
            Ok(conn) => exchange(&plan, &plan.bodies[index % plan.bodies.len()], conn).await,
            Err(e) => Err(e),
        };
        let done = Instant::now();
        match result {
            Ok((status, conn)) => {
                sender = conn;
                log.responses_total += 1;
                if measured {
                    *log.statuses.entry(status).or_default() += 1;
                    if status == plan.expect_status {
                        log.latencies.push(crate::stats::nanos(done - sent));
                    }
                }
            }
            Err(e) => {
                if measured {
                    log.failures += 1;
                    log.first_failure.get_or_insert_with(|| format!("{e:#}"));
                }
                // Do not spin on a server that refuses connections.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        if measured {
            log.last_done = Some(done);
        }
    }
    log
}

/// When worker `index` of `workers` starts: spread evenly over `[0, ramp_up)`.
fn ramp_offset(ramp_up: Duration, index: usize, workers: usize) -> Duration {
    let nanos = ramp_up.as_nanos() * index as u128 / workers.max(1) as u128;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// Opens one keep-alive HTTP/1.1 connection.
async fn connect(addr: SocketAddr, timeout: Duration) -> Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .with_context(|| format!("connecting to {addr} timed out"))?
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP/1.1 handshake failed")?;
    tokio::spawn(async move {
        // Ends when the server closes the connection or the sender is dropped.
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends one request and reads the whole response body. Returns the status and the
/// connection if it can carry another request.
async fn exchange(
    plan: &Plan,
    body: &Bytes,
    mut sender: SendRequest<Full<Bytes>>,
) -> Result<(u16, Option<SendRequest<Full<Bytes>>>)> {
    let mut request = Request::builder()
        .method(plan.method.clone())
        .uri(plan.target.path_and_query.as_str())
        .header(HOST, plan.target.authority.as_str());
    for (name, value) in &plan.headers {
        request = request.header(name, value);
    }
    if !body.is_empty() || plan.method == Method::POST || plan.method == Method::PUT {
        request = request.header(CONTENT_LENGTH, body.len());
    }
    let request = request
        .body(Full::new(body.clone()))
        .context("cannot build the request")?;
    let round_trip = async {
        sender.ready().await.context("connection closed")?;
        let response = sender
            .send_request(request)
            .await
            .context("request failed")?;
        let status = response.status().as_u16();
        response
            .into_body()
            .collect()
            .await
            .context("reading the response body failed")?;
        anyhow::Ok(status)
    };
    let status = tokio::time::timeout(plan.timeout, round_trip)
        .await
        .with_context(|| format!("no complete response within {:?}", plan.timeout))??;
    let reusable = !sender.is_closed();
    Ok((status, reusable.then_some(sender)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramp_up_spreads_worker_starts_evenly() {
        let ramp = Duration::from_secs(2);
        assert_eq!(ramp_offset(ramp, 0, 4), Duration::ZERO);
        assert_eq!(ramp_offset(ramp, 1, 4), Duration::from_millis(500));
        assert_eq!(ramp_offset(ramp, 3, 4), Duration::from_millis(1500));
        assert_eq!(ramp_offset(Duration::ZERO, 999, 1000), Duration::ZERO);
    }

    #[test]
    fn targets_must_be_plain_http_on_loopback() {
        let t = Target::parse("http://127.0.0.1:8080/chat?x=1").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert_eq!(t.path_and_query, "/chat?x=1");
        assert_eq!(Target::parse("http://[::1]:9/").unwrap().addr.port(), 9);
        assert_eq!(
            Target::parse("http://127.0.0.1:81").unwrap().path_and_query,
            "/"
        );
        assert!(Target::parse("https://127.0.0.1/").is_err());
        assert!(Target::parse("127.0.0.1:8080/health").is_err());
        assert!(Target::parse("http://10.0.0.1/").is_err());
    }
}
