//! Telemetry configuration from the standard OpenTelemetry environment variables. Off unless an
//! OTLP endpoint is set (or `OTEL_TRACES_EXPORTER=console`).
//!
//! - `OTEL_EXPORTER_OTLP_ENDPOINT` (base URL: `/v1/traces` and `/v1/metrics` are appended), or
//!   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `..._METRICS_ENDPOINT` (full URLs, used as given).
//! - `OTEL_EXPORTER_OTLP_HEADERS` (and `..._TRACES_HEADERS` / `..._METRICS_HEADERS`):
//!   `key=value,key2=value2`, values percent-encoded.
//! - `OTEL_EXPORTER_OTLP_TIMEOUT` (and per signal), milliseconds; default 10 000.
//! - `OTEL_EXPORTER_OTLP_PROTOCOL` (and per signal): only `http/protobuf`.
//! - `OTEL_TRACES_EXPORTER` / `OTEL_METRICS_EXPORTER`: `otlp` (default), `none`; traces also
//!   `console` (one log line per span).
//! - `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`: the standard samplers; default
//!   `parentbased_always_on`.
//! - `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`,
//!   `OTEL_METRIC_EXPORT_INTERVAL`, `OTEL_METRIC_EXPORT_TIMEOUT`: batching.
//! - `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`: the resource.
//! - `OTEL_SDK_DISABLED=true`: everything off.
//! - `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`: the instruction, messages and
//!   answer of each Vertex AI call on its span (off: spans carry no message text).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use http::Uri;
use http::header::{HeaderName, HeaderValue};

/// Google's OTLP endpoint: requests to it carry the host's Google credentials.
pub const GOOGLE_TELEMETRY_HOST: &str = "telemetry.googleapis.com";

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub traces: Option<TraceExport>,
    pub metrics: Option<Endpoint>,
    pub sampler: Sampler,
    pub batch: BatchConfig,
    pub metric_interval: Duration,
    pub metric_timeout: Duration,
    /// `key=value` pairs of `OTEL_RESOURCE_ATTRIBUTES`, `service.name` resolved.
    pub resource: Vec<(String, String)>,
    /// Message content on the client spans (an operator's opt-in).
    pub capture_content: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TraceExport {
    Otlp(Endpoint),
    /// Each span as a log line (for local runs).
    Console,
}

/// Where one signal goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub url: Uri,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub timeout: Duration,
    /// The endpoint is Google's: add the host's Google credentials.
    pub google_auth: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchConfig {
    pub max_queue: usize,
    pub max_batch: usize,
    pub delay: Duration,
}

/// Which traces are recorded (the standard samplers).
#[derive(Debug, Clone, PartialEq)]
pub enum Sampler {
    AlwaysOn,
    AlwaysOff,
    /// Traces whose id falls in this fraction of the id space.
    Ratio(f64),
    /// The caller's decision when it sent one, else the root sampler's.
    ParentBased(Box<Sampler>),
}

impl Sampler {
    /// Whether to record a trace: `parent` is the caller's sampled flag, when it sent a trace.
    pub fn sample(&self, parent: Option<bool>, trace_id: &[u8; 16]) -> bool {
        match self {
            Sampler::AlwaysOn => true,
            Sampler::AlwaysOff => false,
            Sampler::Ratio(ratio) => {
                // The id's last 8 bytes are random (W3C Trace Context level 2).
                let low = u64::from_be_bytes(trace_id[8..].try_into().expect("8 bytes"));
                *ratio >= 1.0 || (low as f64) < ratio * (u64::MAX as f64)
            }
            Sampler::ParentBased(root) => match parent {
                Some(sampled) => sampled,
                None => root.sample(None, trace_id),
            },
        }
    }

    fn parse(name: &str, arg: Option<&str>) -> Result<Sampler> {
        let ratio = || -> Result<f64> {
            match arg {
                None => Ok(1.0),
                Some(arg) => arg
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .with_context(|| {
                        format!("OTEL_TRACES_SAMPLER_ARG={arg:?} is not a ratio from 0 to 1")
                    }),
            }
        };
        Ok(match name.trim() {
            "always_on" => Sampler::AlwaysOn,
            "always_off" => Sampler::AlwaysOff,
            "traceidratio" => Sampler::Ratio(ratio()?),
            "parentbased_always_on" => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            "parentbased_always_off" => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
            "parentbased_traceidratio" => Sampler::ParentBased(Box::new(Sampler::Ratio(ratio()?))),
            other => bail!(
                "OTEL_TRACES_SAMPLER={other:?} is not one of always_on, always_off, traceidratio, \
                 parentbased_always_on, parentbased_always_off, parentbased_traceidratio"
            ),
        })
    }
}

/// The sampler as `OTEL_TRACES_SAMPLER` names it (with its ratio), for the startup log.
impl std::fmt::Display for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sampler::AlwaysOn => f.write_str("always_on"),
            Sampler::AlwaysOff => f.write_str("always_off"),
            Sampler::Ratio(ratio) => write!(f, "traceidratio {ratio}"),
            Sampler::ParentBased(root) => write!(f, "parentbased_{root}"),
        }
    }
}

/// The default `service.name`.
pub const DEFAULT_SERVICE_NAME: &str = "ion-mentoring";

impl Config {
    /// `None` when telemetry is off.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Option<Config>> {
        let var = |name: &str| {
            env(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let traces = match var("OTEL_TRACES_EXPORTER").as_deref().unwrap_or("otlp") {
            "otlp" => endpoint(&var, "TRACES", "v1/traces")?.map(TraceExport::Otlp),
            "console" => Some(TraceExport::Console),
            "none" => None,
            other => {
                bail!("OTEL_TRACES_EXPORTER={other:?} is not one of otlp, console, none")
            }
        };
        let metrics = match var("OTEL_METRICS_EXPORTER").as_deref().unwrap_or("otlp") {
            "otlp" => endpoint(&var, "METRICS", "v1/metrics")?,
            "none" => None,
            other => bail!("OTEL_METRICS_EXPORTER={other:?} is not one of otlp, none"),
        };
        if traces.is_none() && metrics.is_none() {
            return Ok(None);
        }
        let sampler = match var("OTEL_TRACES_SAMPLER") {
            Some(name) => Sampler::parse(&name, var("OTEL_TRACES_SAMPLER_ARG").as_deref())?,
            None => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        };
        let number = |name: &str, default: u64| -> Result<u64> {
            match var(name) {
                None => Ok(default),
                Some(v) => v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .with_context(|| format!("{name}={v:?} is not a positive whole number")),
            }
        };
        let batch = BatchConfig {
            max_queue: number("OTEL_BSP_MAX_QUEUE_SIZE", 2048)? as usize,
            max_batch: number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)? as usize,
            delay: Duration::from_millis(number("OTEL_BSP_SCHEDULE_DELAY", 5000)?),
        };
        if batch.max_batch > batch.max_queue {
            bail!("OTEL_BSP_MAX_EXPORT_BATCH_SIZE must be at most OTEL_BSP_MAX_QUEUE_SIZE");
        }
        Ok(Some(Config {
            traces,
            metrics,
            sampler,
            batch,
            metric_interval: Duration::from_millis(number("OTEL_METRIC_EXPORT_INTERVAL", 60_000)?),
            metric_timeout: Duration::from_millis(number("OTEL_METRIC_EXPORT_TIMEOUT", 30_000)?),
            resource: resource_attributes(
                var("OTEL_RESOURCE_ATTRIBUTES").as_deref(),
                var("OTEL_SERVICE_NAME"),
            )?,
            capture_content: var("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
        }))
    }
}

/// One signal's endpoint: the signal's own variables first, then the general ones. `None`
/// when no endpoint is set.
fn endpoint(
    var: &impl Fn(&str) -> Option<String>,
    signal: &str,
    path: &str,
) -> Result<Option<Endpoint>> {
    let own = |suffix: &str| format!("OTEL_EXPORTER_OTLP_{signal}_{suffix}");
    let either =
        |suffix: &str| var(&own(suffix)).or_else(|| var(&format!("OTEL_EXPORTER_OTLP_{suffix}")));
    let url = match var(&own("ENDPOINT")) {
        Some(url) => url,
        None => match var("OTEL_EXPORTER_OTLP_ENDPOINT") {
            Some(base) => format!("{}/{path}", base.trim_end_matches('/')),
            None => return Ok(None),
        },
    };
    let url: Uri = url
        .parse()
        .ok()
        .filter(|u: &Uri| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some())
        .with_context(|| format!("the OTLP {signal} endpoint {url:?} is not an http(s) URL"))?;
    if let Some(protocol) = either("PROTOCOL")
        && protocol != "http/protobuf"
    {
        bail!("OTLP protocol {protocol:?} is not supported: ion-host exports http/protobuf");
    }
    if let Some(compression) = either("COMPRESSION")
        && compression != "none"
    {
        bail!("OTLP compression {compression:?} is not supported: ion-host sends none");
    }
    let timeout = match either("TIMEOUT") {
        None => Duration::from_secs(10),
        Some(ms) => {
            Duration::from_millis(ms.parse::<u64>().ok().filter(|n| *n > 0).with_context(|| {
                format!("the OTLP timeout {ms:?} is not a positive number of milliseconds")
            })?)
        }
    };
    let headers = match either("HEADERS") {
        None => Vec::new(),
        Some(list) => parse_headers(&list)?,
    };
    let google_auth = url
        .host()
        .is_some_and(|h| h.eq_ignore_ascii_case(GOOGLE_TELEMETRY_HOST));
    Ok(Some(Endpoint {
        url,
        headers,
        timeout,
        google_auth,
    }))
}

/// `key=value,key2=value2`, keys and values percent-decoded.
fn parse_headers(list: &str) -> Result<Vec<(HeaderName, HeaderValue)>> {
    pairs(list, "OTEL_EXPORTER_OTLP_HEADERS")?
        .into_iter()
        .map(|(k, v)| {
            let name = HeaderName::from_bytes(k.as_bytes())
                .with_context(|| format!("OTLP header name {k:?} is not valid"))?;
            let value = HeaderValue::from_str(&v)
                .with_context(|| format!("the value of OTLP header {k:?} is not valid"))?;
            Ok((name, value))
        })
        .collect()
}

/// `OTEL_RESOURCE_ATTRIBUTES` with `service.name` resolved: `OTEL_SERVICE_NAME`, else the one
/// in the list, else [`DEFAULT_SERVICE_NAME`].
fn resource_attributes(
    list: Option<&str>,
    service_name: Option<String>,
) -> Result<Vec<(String, String)>> {
    let mut attributes = match list {
        Some(list) => pairs(list, "OTEL_RESOURCE_ATTRIBUTES")?,
        None => Vec::new(),
    };
    let named = attributes
        .iter()
        .position(|(k, _)| k == super::semconv::SERVICE_NAME);
    match (service_name, named) {
        (Some(name), Some(i)) => attributes[i].1 = name,
        (Some(name), None) => attributes.push((super::semconv::SERVICE_NAME.into(), name)),
        (None, Some(_)) => {}
        (None, None) => attributes.push((
            super::semconv::SERVICE_NAME.into(),
            DEFAULT_SERVICE_NAME.into(),
        )),
    }
    Ok(attributes)
}

/// The W3C Baggage-like list the OTel variables use.
fn pairs(list: &str, what: &str) -> Result<Vec<(String, String)>> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s.trim())
            .decode_utf8()
            .map(|s| s.into_owned())
            .with_context(|| format!("{what}: {s:?} is not UTF-8 once decoded"))
    };
    list.split(',')
        .filter(|item| !item.trim().is_empty())
        .map(|item| {
            let (key, value) = item
                .split_once('=')
                .with_context(|| format!("{what}: {item:?} is not key=value"))?;
            let key = decode(key)?;
            if key.is_empty() {
                bail!("{what}: {item:?} has an empty key");
            }
            Ok((key, decode(value)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Option<Config>> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_env(|name| vars.get(name).cloned())
    }

    #[test]
    fn off_unless_an_endpoint_is_set() {
        assert_eq!(config(&[]).unwrap(), None);
        assert_eq!(config(&[("OTEL_SERVICE_NAME", "x")]).unwrap(), None);
        let disabled = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ]);
        assert_eq!(disabled.unwrap(), None);
        let none = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_TRACES_EXPORTER", "none"),
            ("OTEL_METRICS_EXPORTER", "none"),
        ]);
        assert_eq!(none.unwrap(), None);
    }

    #[test]
    fn the_base_endpoint_gets_each_signals_path() {
        let c = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")])
            .unwrap()
            .unwrap();
        let Some(TraceExport::Otlp(traces)) = &c.traces else {
            panic!("{c:?}")
        };
        assert_eq!(traces.url, "http://collector:4318/v1/traces");
        assert_eq!(
            c.metrics.as_ref().unwrap().url,
            "http://collector:4318/v1/metrics"
        );
        assert_eq!(traces.timeout, Duration::from_secs(10));
        assert!(!traces.google_auth);
        assert_eq!(c.sampler, Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
        assert_eq!(
            c.resource,
            vec![("service.name".to_owned(), "ion-mentoring".to_owned())]
        );
        assert!(
            !c.capture_content,
            "no message text unless an operator opts in"
        );
        let opted_in = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true"),
        ]);
        assert!(opted_in.unwrap().unwrap().capture_content);
    }

    #[test]
    fn signal_variables_win_and_are_used_as_given() {
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://telemetry.googleapis.com/v1/traces",
            ),
            ("OTEL_EXPORTER_OTLP_HEADERS", "a=1,b=x%20y"),
            ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "c=3"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_METRICS_EXPORTER", "otlp"),
        ])
        .unwrap()
        .unwrap();
        let Some(TraceExport::Otlp(traces)) = &c.traces else {
            panic!("{c:?}")
        };
        assert_eq!(traces.url, "https://telemetry.googleapis.com/v1/traces");
        assert!(traces.google_auth);
        assert_eq!(traces.headers.len(), 2);
        assert_eq!(traces.headers[1].1, "x y");
        assert_eq!(traces.timeout, Duration::from_millis(2500));
        let metrics = c.metrics.unwrap();
        assert_eq!(metrics.headers.len(), 1);
        assert_eq!(metrics.headers[0].0, "c");
        assert!(!metrics.google_auth);
    }

    #[test]
    fn console_traces_need_no_endpoint() {
        let c = config(&[("OTEL_TRACES_EXPORTER", "console")])
            .unwrap()
            .unwrap();
        assert_eq!(c.traces, Some(TraceExport::Console));
        assert_eq!(c.metrics, None);
    }

    #[test]
    fn mistakes_are_startup_errors_that_name_the_variable() {
        for (vars, named) in [
            (
                vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")],
                "endpoint",
            ),
            (
                vec![
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ],
                "http/protobuf",
            ),
            (
                vec![
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                    ("OTEL_TRACES_SAMPLER", "sometimes"),
                ],
                "OTEL_TRACES_SAMPLER",
            ),
            (
                vec![
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                    ("OTEL_TRACES_SAMPLER", "traceidratio"),
                    ("OTEL_TRACES_SAMPLER_ARG", "2"),
                ],
                "OTEL_TRACES_SAMPLER_ARG",
            ),
            (
                vec![
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                    ("OTEL_EXPORTER_OTLP_HEADERS", "novalue"),
                ],
                "OTEL_EXPORTER_OTLP_HEADERS",
            ),
            (
                vec![
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                    ("OTEL_BSP_MAX_QUEUE_SIZE", "0"),
                ],
                "OTEL_BSP_MAX_QUEUE_SIZE",
            ),
        ] {
            let error = format!("{:#}", config(&vars).unwrap_err());
            assert!(error.contains(named), "{vars:?}: {error}");
        }
    }

    #[test]
    fn service_name_comes_from_its_variable_then_the_resource_list() {
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=a,cloud.region=europe-west1",
            ),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            c.resource,
            vec![
                ("service.name".to_owned(), "a".to_owned()),
                ("cloud.region".to_owned(), "europe-west1".to_owned())
            ]
        );
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=a"),
            ("OTEL_SERVICE_NAME", "b"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            c.resource,
            vec![("service.name".to_owned(), "b".to_owned())]
        );
    }

    #[test]
    fn samplers_follow_the_parent_then_the_ratio() {
        let low = [0u8; 16];
        let mut high = [0u8; 16];
        high[8..].copy_from_slice(&u64::MAX.to_be_bytes());
        let half = Sampler::Ratio(0.5);
        assert!(half.sample(None, &low));
        assert!(!half.sample(None, &high));
        let parent = Sampler::ParentBased(Box::new(Sampler::AlwaysOff));
        assert!(parent.sample(Some(true), &high));
        assert!(!parent.sample(Some(false), &low));
        assert!(!parent.sample(None, &low));
        assert!(!Sampler::Ratio(0.0).sample(None, &low));
        assert!(Sampler::Ratio(1.0).sample(None, &high));
        assert!(Sampler::AlwaysOn.sample(Some(false), &low));
        assert_eq!(
            Sampler::ParentBased(Box::new(Sampler::Ratio(0.25))).to_string(),
            "parentbased_traceidratio 0.25"
        );
    }
}
