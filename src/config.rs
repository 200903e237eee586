//! The component's configuration, read from Spin variables (declared in `spin.toml`).
//!
//! Reading is separated from the variables interface by [`Variables`] so that parsing and
//! validation unit-test natively.

use std::time::Duration;

use crate::model_list::ModelList;

/// Where variable values come from.
pub trait Variables {
    /// The value of a variable, `None` when it is unset or empty.
    fn get(&self, name: &str) -> Option<String>;
}

/// Everything a chat call needs to reach Gemini.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub project_id: String,
    pub location: String,
    /// The models to call, primary (`model`) first, then `fallback_models`.
    pub models: ModelList,
    /// Base URL of the Vertex AI REST API, e.g. `https://aiplatform.googleapis.com`.
    pub endpoint: String,
    /// OAuth2 bearer token the component sends; `None` when the runtime authenticates
    /// (`credentials = "runtime"`: ion-host adds Google credentials itself).
    pub access_token: Option<String>,
    /// Sampling temperature; `None` (the default) sends none, leaving Gemini 3.x at the value
    /// its reasoning is tuned for.
    pub temperature: Option<f64>,
    /// Answer *and* thinking tokens: Gemini bills thoughts against this limit.
    pub max_output_tokens: u32,
    /// How hard Gemini thinks before answering.
    pub thinking_level: ThinkingLevel,
    /// Deadline for one chat's upstream work, retries included (for a stream: until its first
    /// chunk, then the longest wait between chunks).
    pub timeout: Duration,
    /// Upstream attempts per chat, the first included (1 = no retries).
    pub max_attempts: u32,
    /// Gemini's blocking threshold per harm category (see [`crate::safety`]).
    pub safety_settings: Vec<crate::gemini::SafetySetting>,
}

/// `generationConfig.thinkingConfig.thinkingLevel` (Gemini 3 and later).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThinkingLevel {
    Minimal,
    Low,
    Medium,
    High,
}

impl ThinkingLevel {
    pub const ALL: [ThinkingLevel; 4] = [
        ThinkingLevel::Minimal,
        ThinkingLevel::Low,
        ThinkingLevel::Medium,
        ThinkingLevel::High,
    ];

    /// The name callers and operators use (`low`).
    pub fn as_str(self) -> &'static str {
        match self {
            ThinkingLevel::Minimal => "minimal",
            ThinkingLevel::Low => "low",
            ThinkingLevel::Medium => "medium",
            ThinkingLevel::High => "high",
        }
    }

    /// The protobuf enum name Vertex AI documents (`LOW`).
    pub fn wire_name(self) -> &'static str {
        match self {
            ThinkingLevel::Minimal => "MINIMAL",
            ThinkingLevel::Low => "LOW",
            ThinkingLevel::Medium => "MEDIUM",
            ThinkingLevel::High => "HIGH",
        }
    }

    /// Case-insensitive.
    pub fn parse(value: &str) -> Option<ThinkingLevel> {
        let value = value.trim();
        Self::ALL
            .into_iter()
            .find(|level| level.as_str().eq_ignore_ascii_case(value))
    }
}

/// A configuration problem, reported as 503 with what to set.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl ConfigError {
    pub(crate) fn new(variable: &'static str, problem: impl Into<String>) -> Self {
        ConfigError {
            variable,
            problem: problem.into(),
        }
    }

    /// What an operator should do, naming both ways of setting the variable.
    pub fn hint(&self) -> String {
        format!(
            "{}: set the `{}` variable (SPIN_VARIABLE_{})",
            self.problem,
            self.variable,
            self.variable.to_ascii_uppercase()
        )
    }
}

pub const DEFAULT_LOCATION: &str = "global";
/// Google's region-less Vertex AI endpoint, used by the `global` location.
pub const GLOBAL_ENDPOINT: &str = "https://aiplatform.googleapis.com";
/// Google's latest stable Flash on Vertex AI, served until at least 2027-05-19 (Google's
/// model-versions page, checked 2026-12-01). Move on before its retirement date: see docs/configuration.md.
pub const DEFAULT_MODEL: &str = "gemini-3.5-flash";
/// Low keeps a chat responsive; `medium`, the model's own default, roughly doubles latency.
pub const DEFAULT_THINKING_LEVEL: ThinkingLevel = ThinkingLevel::Low;
/// Room for a long answer plus thinking at any level, so thoughts never starve the answer.
pub const DEFAULT_MAX_OUTPUT_TOKENS: u32 = 8192;
/// Largest `max_output_tokens` Gemini 3.x Flash accepts.
pub const MAX_OUTPUT_TOKENS_LIMIT: u32 = 65_536;
const DEFAULT_TIMEOUT_MS: u64 = 30_000;
const DEFAULT_MAX_ATTEMPTS: u32 = 3;

impl Settings {
    /// Reads and validates the settings.
    pub fn load(vars: &impl Variables) -> Result<Settings, ConfigError> {
        let project_id = vars.get("project_id").ok_or_else(|| {
            ConfigError::new("project_id", "no Google Cloud project is configured")
        })?;
        if !is_path_segment(&project_id) {
            return Err(ConfigError::new(
                "project_id",
                format!("project id {project_id:?} is not a valid project id"),
            ));
        }
        let location = vars
            .get("location")
            .unwrap_or_else(|| DEFAULT_LOCATION.into());
        if !is_path_segment(&location) {
            return Err(ConfigError::new(
                "location",
                format!("location {location:?} is not a valid location"),
            ));
        }
        let models = ModelList::load(vars)?;
        let endpoint = match vars.get("vertex_endpoint") {
            // The manifest default (it must be a valid outbound host for Spin) stands for
            // "Google's endpoint for this location".
            Some(url) if url.trim_end_matches('/') == GLOBAL_ENDPOINT => {
                default_endpoint(&location)
            }
            Some(url) => {
                let url = url.trim_end_matches('/').to_owned();
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(ConfigError::new(
                        "vertex_endpoint",
                        format!("endpoint {url:?} must start with https:// or http://"),
                    ));
                }
                url
            }
            None => default_endpoint(&location),
        };

        Ok(Settings {
            project_id,
            models,
            endpoint,
            access_token: match vars.get("credentials").as_deref() {
                None | Some("access_token") => Some(vars.get("access_token").ok_or_else(|| {
                    ConfigError::new(
                        "access_token",
                        "no Vertex AI credentials are configured (e.g. $(gcloud auth print-access-token))",
                    )
                })?),
                Some("runtime") => None,
                Some(other) => {
                    return Err(ConfigError::new(
                        "credentials",
                        format!("{other:?} is neither \"access_token\" nor \"runtime\""),
                    ));
                }
            },
            temperature: match vars.get("temperature") {
                None => None,
                Some(_) => Some(parse_number(vars, "temperature", 1.0, 0.0..=2.0)?),
            },
            max_output_tokens: parse_number(
                vars,
                "max_output_tokens",
                DEFAULT_MAX_OUTPUT_TOKENS,
                1..=MAX_OUTPUT_TOKENS_LIMIT,
            )?,
            thinking_level: match vars.get("thinking_level") {
                None => DEFAULT_THINKING_LEVEL,
                Some(raw) => ThinkingLevel::parse(&raw).ok_or_else(|| {
                    ConfigError::new(
                        "thinking_level",
                        format!("{raw:?} is not one of minimal, low, medium, high"),
                    )
                })?,
            },
            max_attempts: parse_number(vars, "max_attempts", DEFAULT_MAX_ATTEMPTS, 1..=10)?,
            safety_settings: crate::safety::load(vars)?,
            timeout: Duration::from_millis(parse_number(
                vars,
                "request_timeout_ms",
                DEFAULT_TIMEOUT_MS,
                100..=600_000,
            )?),
            location,
        })
    }

    /// `…/v1/projects/P/locations/L/publishers/google/models/M:generateContent` for `model`
    /// (one of [`Settings::models`]: a chat may call several).
    pub fn generate_content_url(&self, model: &str) -> String {
        format!("{}:generateContent", self.model_url(model))
    }

    /// `…:streamGenerateContent?alt=sse` (Server-Sent Events, one reply chunk per event).
    pub fn stream_generate_content_url(&self, model: &str) -> String {
        format!("{}:streamGenerateContent?alt=sse", self.model_url(model))
    }

    fn model_url(&self, model: &str) -> String {
        format!(
            "{}/v1/projects/{}/locations/{}/publishers/google/models/{model}",
            self.endpoint, self.project_id, self.location
        )
    }
}

/// The `global` location uses the region-less host; a region uses its own host.
pub fn default_endpoint(location: &str) -> String {
    if location == "global" {
        GLOBAL_ENDPOINT.into()
    } else {
        format!("https://{location}-aiplatform.googleapis.com")
    }
}

/// Project ids, locations and model ids go into a URL path: letters, digits, `-`, `_`, `.`.
pub(crate) fn is_path_segment(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 128
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && value != "."
        && value != ".."
}

pub(crate) fn parse_number<T>(
    vars: &impl Variables,
    name: &'static str,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    let Some(raw) = vars.get(name) else {
        return Ok(default);
    };
    match raw.trim().parse::<T>() {
        Ok(value) if range.contains(&value) => Ok(value),
        _ => Err(ConfigError::new(
            name,
            format!(
                "{raw:?} is not a number between {} and {}",
                range.start(),
                range.end()
            ),
        )),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Variables from a fixed list, for tests.
    pub struct Fixed(pub HashMap<&'static str, &'static str>);

    impl Variables for Fixed {
        fn get(&self, name: &str) -> Option<String> {
            self.0
                .get(name)
                .filter(|v| !v.is_empty())
                .map(|v| v.to_string())
        }
    }

    pub fn vars(pairs: &[(&'static str, &'static str)]) -> Fixed {
        Fixed(pairs.iter().copied().collect())
    }

    #[test]
    fn defaults_use_the_global_endpoint() {
        let s = Settings::load(&vars(&[("project_id", "my-proj"), ("access_token", "t")])).unwrap();
        assert_eq!(s.location, "global");
        assert_eq!(s.models.iter().collect::<Vec<_>>(), ["gemini-3.5-flash"]);
        assert_eq!(
            s.generate_content_url(s.models.primary()),
            "https://aiplatform.googleapis.com/v1/projects/my-proj/locations/global/publishers/google/models/gemini-3.5-flash:generateContent"
        );
        assert_eq!(s.timeout, Duration::from_secs(30));
        assert_eq!(s.access_token.as_deref(), Some("t"));
        assert_eq!(s.temperature, None, "Gemini 3.x keeps its tuned default");
        assert_eq!(s.thinking_level, ThinkingLevel::Low);
        assert_eq!(s.max_output_tokens, 8192);
        assert_eq!(s.max_attempts, 3);
        assert!(
            s.stream_generate_content_url("gemini-3.5-flash")
                .ends_with("/models/gemini-3.5-flash:streamGenerateContent?alt=sse")
        );
    }

    #[test]
    fn thinking_level_and_temperature_are_read() {
        let s = Settings::load(&vars(&[
            ("project_id", "p"),
            ("access_token", "t"),
            ("thinking_level", " HIGH "),
            ("temperature", "0.2"),
        ]))
        .unwrap();
        assert_eq!(s.thinking_level, ThinkingLevel::High);
        assert_eq!(s.temperature, Some(0.2));
        let e = Settings::load(&vars(&[
            ("project_id", "p"),
            ("access_token", "t"),
            ("thinking_level", "extreme"),
        ]))
        .unwrap_err();
        assert_eq!(e.variable, "thinking_level");
        let e = Settings::load(&vars(&[
            ("project_id", "p"),
            ("access_token", "t"),
            ("max_attempts", "0"),
        ]))
        .unwrap_err();
        assert_eq!(e.variable, "max_attempts");
    }

    #[test]
    fn regional_location_uses_the_regional_host() {
        let s = Settings::load(&vars(&[
            ("project_id", "p"),
            ("access_token", "t"),
            ("location", "europe-west4"),
            ("model", "gemini-3.5-flash-lite"),
            ("vertex_endpoint", "https://aiplatform.googleapis.com"),
        ]))
        .unwrap();
        let url = s.generate_content_url(s.models.primary());
        assert!(url.starts_with(
            "https://europe-west4-aiplatform.googleapis.com/v1/projects/p/locations/europe-west4/"
        ));
        assert!(url.ends_with("/models/gemini-3.5-flash-lite:generateContent"));
    }

    #[test]
    fn fallback_models_follow_the_model_and_each_has_its_url() {
        let s = Settings::load(&vars(&[
            ("project_id", "p"),
            ("access_token", "t"),
            ("model", "gemini-2.5-flash"),
            (
                "fallback_models",
                " gemini-3.5-flash , gemini-2.5-flash,gemini-3.1-flash-lite",
            ),
        ]))
        .unwrap();
        let models: Vec<&str> = s.models.iter().collect();
        assert_eq!(
            models,
            [
                "gemini-2.5-flash",
                "gemini-3.5-flash",
                "gemini-3.1-flash-lite"
            ],
            "primary first, whitespace ignored, the primary's duplicate removed"
        );
        assert!(
            s.generate_content_url(models[2])
                .ends_with("/models/gemini-3.1-flash-lite:generateContent")
        );
        assert!(
            s.stream_generate_content_url(models[1])
                .ends_with("/models/gemini-3.5-flash:streamGenerateContent?alt=sse")
        );

        let e = Settings::load(&vars(&[
            ("project_id", "p"),
            ("access_token", "t"),
            ("fallback_models", "gemini-3.1-flash-lite,models/../x"),
        ]))
        .unwrap_err();
        assert_eq!(e.variable, "fallback_models");
        assert_eq!(e.problem, "model \"models/../x\" is not a valid model id");
    }

    #[test]
    fn endpoint_override_wins() {
        let s = Settings::load(&vars(&[
            ("project_id", "p"),
            ("access_token", "t"),
            ("vertex_endpoint", "http://127.0.0.1:9000/"),
        ]))
        .unwrap();
        assert!(
            s.generate_content_url("m")
                .starts_with("http://127.0.0.1:9000/v1/projects/p/locations/global/")
        );
    }

    #[test]
    fn missing_or_bad_values_say_what_to_set() {
        let e = Settings::load(&vars(&[])).unwrap_err();
        assert_eq!(e.variable, "project_id");
        assert!(
            e.hint().contains("SPIN_VARIABLE_PROJECT_ID"),
            "{}",
            e.hint()
        );

        let e = Settings::load(&vars(&[("project_id", "p")])).unwrap_err();
        assert_eq!(e.variable, "access_token");
        let s = Settings::load(&vars(&[("project_id", "p"), ("credentials", "runtime")])).unwrap();
        assert_eq!(s.access_token, None, "the runtime authenticates");
        let e =
            Settings::load(&vars(&[("project_id", "p"), ("credentials", "magic")])).unwrap_err();
        assert_eq!(e.variable, "credentials");
        let e = Settings::load(&vars(&[("project_id", "a/../b")])).unwrap_err();
        assert_eq!(e.variable, "project_id");
        let e = Settings::load(&vars(&[
            ("project_id", "p"),
            ("access_token", "t"),
            ("temperature", "hot"),
        ]))
        .unwrap_err();
        assert_eq!(e.variable, "temperature");
        let e = Settings::load(&vars(&[
            ("project_id", "p"),
            ("access_token", "t"),
            ("temperature", "3"),
        ]))
        .unwrap_err();
        assert_eq!(e.variable, "temperature");
        let e = Settings::load(&vars(&[
            ("project_id", "p"),
            ("access_token", "t"),
            ("vertex_endpoint", "ftp://x"),
        ]))
        .unwrap_err();
        assert_eq!(e.variable, "vertex_endpoint");
        let e = Settings::load(&vars(&[
            ("project_id", "p"),
            ("access_token", "t"),
            ("request_timeout_ms", "5"),
        ]))
        .unwrap_err();
        assert_eq!(e.variable, "request_timeout_ms");
    }
}
