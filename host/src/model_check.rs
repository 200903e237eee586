//! The configured Gemini models (`model`, then each of `fallback_models`), checked once at
//! startup against the model families this build knows. A retired or unknown model is logged
//! as an ERROR that names a replacement, so a stale configuration shows in the logs before the
//! first chat meets Vertex AI's 404. Startup continues: the operator may know of a model newer
//! than [`FAMILIES`], and the component's fallback models may still answer.
//!
//! `spin up` has no such hook: there a retired model only shows as the component's
//! `502 upstream_model_not_found` answers.

use serde_json::{Map, json};

use crate::logging::{self, Severity};
use crate::variables::{AppVariables, env_name};

/// A model family, matched by id prefix (see [`Family::matches`]).
struct Family {
    prefix: &'static str,
    /// `None` while Google serves it; else when it was retired, as said in the log line.
    retired: Option<&'static str>,
    /// What to configure instead of a retired model.
    replacements: &'static [&'static str],
}

/// The replacement for a model this table does not single out.
const GENERAL_REPLACEMENT: &[&str] = &["gemini-3.5-flash"];

/// Gemini families on Vertex AI, from Google's "Model versions and lifecycle" page (as read on
/// 2026-12-01; this table checked against it on 2026-12-03): gemini-3.5-flash served
/// until at least 2027-05-19, gemini-3.5-flash-lite until at least 2027-07-21,
/// gemini-3.1-flash-lite until at least 2027-05-07; the 2.5 family retired on 2026-10-16, the
/// 1.x and 2.0 ones before it. The first matching family wins, so specific prefixes come
/// before general ones. When Google retires another family, add it here and to the emulator's
/// `RETIRED_FAMILIES` (tests/emulator/src/route.rs).
const FAMILIES: &[Family] = &[
    // Google's named successors of 2.5 Flash and Flash-Lite.
    retired(
        "gemini-2.5-flash",
        "on 2026-10-16",
        &["gemini-3.5-flash-lite", "gemini-3.1-flash-lite"],
    ),
    // No stable 3.x Pro is in the dated model list this table was checked against (a preview
    // is no replacement to copy into a configuration): the current stable Flash.
    retired("gemini-2.5-pro", "on 2026-10-16", &["gemini-3.5-flash"]),
    retired("gemini-2.5", "on 2026-10-16", GENERAL_REPLACEMENT),
    retired("gemini-2.0", "by 2026-10-16", GENERAL_REPLACEMENT),
    retired("gemini-1.", "by 2026-10-16", GENERAL_REPLACEMENT),
    // The unversioned aliases of Gemini 1.0.
    retired("gemini-pro", "by 2026-10-16", GENERAL_REPLACEMENT),
    retired("gemini-ultra", "by 2026-10-16", GENERAL_REPLACEMENT),
    served("gemini-3.5-flash"), // -lite included
    served("gemini-3.1-flash-lite"),
    served("gemini-3.1-pro"),
    served("gemini-3"),
];

const fn retired(
    prefix: &'static str,
    when: &'static str,
    replacements: &'static [&'static str],
) -> Family {
    Family {
        prefix,
        retired: Some(when),
        replacements,
    }
}

const fn served(prefix: &'static str) -> Family {
    Family {
        prefix,
        retired: None,
        replacements: &[],
    }
}

impl Family {
    /// `gemini-3` matches `gemini-3`, `gemini-3.5-flash` and `gemini-3-pro`, not `gemini-30`:
    /// the prefix must end where the id does, or at a `.` or `-`.
    fn matches(&self, model: &str) -> bool {
        model.strip_prefix(self.prefix).is_some_and(|rest| {
            rest.is_empty() || self.prefix.ends_with(['.', '-']) || rest.starts_with(['.', '-'])
        })
    }
}

/// What is wrong with a configured model.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    /// Google no longer serves it: calls answer 404 NOT_FOUND.
    Retired {
        when: &'static str,
        replacements: &'static [&'static str],
    },
    /// Not a family this build knows.
    Unknown,
}

/// A configured model that is retired or unknown.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// `model` or `fallback_models`.
    pub variable: &'static str,
    pub model: String,
    pub problem: Problem,
}

impl Finding {
    fn replacements(&self) -> &'static [&'static str] {
        match &self.problem {
            Problem::Retired { replacements, .. } => replacements,
            Problem::Unknown => GENERAL_REPLACEMENT,
        }
    }

    /// The log line's message: the model, why, and what to set instead.
    fn message(&self) -> String {
        let why = match &self.problem {
            Problem::Retired { when, .. } => {
                format!("was retired from Vertex AI {when}: calls to it answer 404 NOT_FOUND")
            }
            Problem::Unknown => "is unknown: not a Gemini model this build knows, so Vertex AI \
                                 may answer 404 NOT_FOUND"
                .to_owned(),
        };
        format!(
            "configured model {} ({}) {why}; use {} instead (set {})",
            self.model,
            self.variable,
            self.replacements().join(" or "),
            env_name(self.variable)
        )
    }
}

/// The problem with one model id, if any.
fn problem(model: &str) -> Option<Problem> {
    match FAMILIES.iter().find(|family| family.matches(model)) {
        Some(Family { retired: None, .. }) => None,
        Some(Family {
            retired: Some(when),
            replacements,
            ..
        }) => Some(Problem::Retired { when, replacements }),
        None => Some(Problem::Unknown),
    }
}

/// The configured models that are retired or unknown, in the order the component tries them
/// (each model once). An unset or empty `model` means the component's default, which is served.
pub fn check(values: &AppVariables) -> Vec<Finding> {
    let primary = values
        .get("model")
        .filter(|m| !m.trim().is_empty())
        .map(|m| ("model", m));
    let fallbacks = values
        .get("fallback_models")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(|m| ("fallback_models", m));
    let mut seen: Vec<&str> = Vec::new();
    let mut findings = Vec::new();
    for (variable, model) in primary.into_iter().chain(fallbacks) {
        if seen.contains(&model) {
            continue;
        }
        seen.push(model);
        if let Some(problem) = problem(model) {
            findings.push(Finding {
                variable,
                model: model.to_owned(),
                problem,
            });
        }
    }
    findings
}

/// Logs one ERROR per retired or unknown configured model, with the finding as structured
/// fields (`model_check`) beside the message.
pub fn log_findings(values: &AppVariables) {
    for finding in check(values) {
        let (status, retired) = match &finding.problem {
            Problem::Retired { when, .. } => ("retired", Some(*when)),
            Problem::Unknown => ("unknown", None),
        };
        let mut fields = Map::new();
        fields.insert(
            "model_check".into(),
            json!({
                "variable": finding.variable,
                "model": finding.model,
                "status": status,
                "retired": retired,
                "replacement": finding.replacements(),
            }),
        );
        logging::write(Severity::Error, &finding.message(), fields);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::Capture;
    use crate::manifest::App;
    use std::path::Path;

    /// The project's spin.toml resolved with `env`.
    fn values(env: &'static [(&'static str, &'static str)]) -> AppVariables {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let app = App::parse(
            &std::fs::read_to_string(dir.join("spin.toml")).unwrap(),
            &dir,
        )
        .unwrap();
        AppVariables::resolve(&app, |name| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
        .unwrap()
    }

    #[test]
    fn the_defaults_and_current_models_pass() {
        assert_eq!(check(&values(&[])), []);
        let current = values(&[
            ("SPIN_VARIABLE_MODEL", "gemini-3.5-flash"),
            (
                "SPIN_VARIABLE_FALLBACK_MODELS",
                "gemini-3.5-flash-lite, gemini-3.1-flash-lite,gemini-3.1-pro-preview,gemini-3-flash,gemini-3.5-flash-001",
            ),
        ]);
        assert_eq!(check(&current), []);
    }

    #[test]
    fn retired_families_name_their_replacement() {
        for (model, when, replacements) in [
            (
                "gemini-2.5-flash",
                "on 2026-10-16",
                &["gemini-3.5-flash-lite", "gemini-3.1-flash-lite"][..],
            ),
            (
                "gemini-2.5-flash-lite",
                "on 2026-10-16",
                &["gemini-3.5-flash-lite", "gemini-3.1-flash-lite"],
            ),
            ("gemini-2.5-pro", "on 2026-10-16", &["gemini-3.5-flash"]),
            (
                "gemini-2.5-flash-image",
                "on 2026-10-16",
                &["gemini-3.5-flash-lite", "gemini-3.1-flash-lite"],
            ),
            (
                "gemini-2.0-flash-001",
                "by 2026-10-16",
                &["gemini-3.5-flash"],
            ),
            ("gemini-1.5-pro", "by 2026-10-16", &["gemini-3.5-flash"]),
            ("gemini-pro", "by 2026-10-16", &["gemini-3.5-flash"]),
        ] {
            assert_eq!(
                problem(model),
                Some(Problem::Retired { when, replacements }),
                "{model}"
            );
        }
    }

    #[test]
    fn ids_outside_the_known_families_are_unknown() {
        for model in [
            "gemini-30-flash",
            "gemini-flash-latest",
            "gemini-4-flash",
            "claude-3",
            "gemini-2-flash",
        ] {
            assert_eq!(problem(model), Some(Problem::Unknown), "{model}");
        }
    }

    #[test]
    fn each_bad_model_is_one_error_line_naming_why_and_the_replacement() {
        let configured = values(&[
            ("SPIN_VARIABLE_MODEL", "gemini-2.5-flash"),
            (
                "SPIN_VARIABLE_FALLBACK_MODELS",
                " gemini-3.5-flash, gemini-2.5-flash, gemini-next ,gemini-2.5-pro",
            ),
        ]);
        let log = Capture::start();
        log_findings(&configured);
        let entries = log.entries();
        assert_eq!(entries.len(), 3, "{entries:#?}");
        assert!(entries.iter().all(|e| e["severity"] == "ERROR"));

        let primary = &entries[0];
        assert_eq!(
            primary["message"],
            "configured model gemini-2.5-flash (model) was retired from Vertex AI on 2026-10-16: \
             calls to it answer 404 NOT_FOUND; use gemini-3.5-flash-lite or \
             gemini-3.1-flash-lite instead (set SPIN_VARIABLE_MODEL)"
        );
        assert_eq!(
            primary["model_check"],
            json!({"variable": "model", "model": "gemini-2.5-flash", "status": "retired",
                   "retired": "on 2026-10-16",
                   "replacement": ["gemini-3.5-flash-lite", "gemini-3.1-flash-lite"]})
        );

        let unknown = &entries[1];
        assert_eq!(unknown["model_check"]["model"], "gemini-next");
        assert_eq!(unknown["model_check"]["variable"], "fallback_models");
        assert_eq!(unknown["model_check"]["status"], "unknown");
        assert_eq!(
            unknown["model_check"]["replacement"],
            json!(["gemini-3.5-flash"])
        );
        let message = unknown["message"].as_str().unwrap();
        assert!(message.contains("is unknown"), "{message}");
        assert!(
            message.contains("SPIN_VARIABLE_FALLBACK_MODELS"),
            "{message}"
        );

        assert_eq!(entries[2]["model_check"]["model"], "gemini-2.5-pro");
        assert_eq!(
            entries[2]["model_check"]["replacement"],
            json!(["gemini-3.5-flash"])
        );
    }

    #[test]
    fn the_legacy_model_name_is_checked_too() {
        let legacy = values(&[("MODEL_NAME", "gemini-1.5-flash")]);
        let findings = check(&legacy);
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].model, "gemini-1.5-flash");
        assert_eq!(findings[0].variable, "model");
    }
}
