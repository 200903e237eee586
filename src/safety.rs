//! Gemini's `safetySettings`: the blocking threshold per harm category, from the
//! `safety_settings` variable.
//!
//! The value is a comma-separated list of `CATEGORY=THRESHOLD` (Vertex AI's enum names, the
//! `HARM_CATEGORY_` prefix optional). Unset, [`DEFAULT`] applies: the four categories at
//! `BLOCK_MEDIUM_AND_ABOVE`, stated here rather than left to Vertex AI's per-model defaults,
//! so a mentoring answer is filtered the same way on every model. `none` sends no settings
//! at all (Vertex AI's defaults then apply). A blocked answer is `content_blocked` on `/chat`
//! and `finish_reason: "content_filter"` on `/v1`.

use crate::config::{ConfigError, Variables};
use crate::gemini::SafetySetting;

/// The categories Vertex AI filters on (`HARM_CATEGORY_*`; checked 2026-12-03).
pub const CATEGORIES: &[&str] = &[
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_CIVIC_INTEGRITY",
];

/// `HarmBlockThreshold` values, from most to least blocking.
pub const THRESHOLDS: &[&str] = &[
    "BLOCK_LOW_AND_ABOVE",
    "BLOCK_MEDIUM_AND_ABOVE",
    "BLOCK_ONLY_HIGH",
    "BLOCK_NONE",
    "OFF",
];

/// The settings sent when the variable is unset.
pub const DEFAULT: &str = "HATE_SPEECH=BLOCK_MEDIUM_AND_ABOVE,DANGEROUS_CONTENT=BLOCK_MEDIUM_AND_ABOVE,\
HARASSMENT=BLOCK_MEDIUM_AND_ABOVE,SEXUALLY_EXPLICIT=BLOCK_MEDIUM_AND_ABOVE";

const VARIABLE: &str = "safety_settings";

/// Reads the `safety_settings` variable.
pub fn load(vars: &impl Variables) -> Result<Vec<SafetySetting>, ConfigError> {
    let raw = vars.get(VARIABLE).unwrap_or_else(|| DEFAULT.into());
    parse(&raw).map_err(|why| ConfigError::new(VARIABLE, why))
}

fn parse(raw: &str) -> Result<Vec<SafetySetting>, String> {
    if raw.trim().eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    let mut settings: Vec<SafetySetting> = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((category, threshold)) = item.split_once('=') else {
            return Err(format!("{item:?} is not CATEGORY=THRESHOLD"));
        };
        let category = category.trim().to_ascii_uppercase();
        let category = if category.starts_with("HARM_CATEGORY_") {
            category
        } else {
            format!("HARM_CATEGORY_{category}")
        };
        if !CATEGORIES.contains(&category.as_str()) {
            return Err(format!(
                "{category:?} is not a harm category (one of {})",
                CATEGORIES.join(", ")
            ));
        }
        let threshold = threshold.trim().to_ascii_uppercase();
        if !THRESHOLDS.contains(&threshold.as_str()) {
            return Err(format!(
                "{threshold:?} is not a threshold (one of {})",
                THRESHOLDS.join(", ")
            ));
        }
        if settings.iter().any(|s| s.category == category) {
            return Err(format!("{category} is listed twice"));
        }
        settings.push(SafetySetting {
            category,
            threshold,
        });
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::vars;

    fn pairs(settings: &[SafetySetting]) -> Vec<(&str, &str)> {
        settings
            .iter()
            .map(|s| (s.category.as_str(), s.threshold.as_str()))
            .collect()
    }

    #[test]
    fn the_default_filters_the_four_categories_at_medium() {
        let settings = load(&vars(&[])).unwrap();
        assert_eq!(settings.len(), 4);
        assert!(
            settings
                .iter()
                .all(|s| s.threshold == "BLOCK_MEDIUM_AND_ABOVE")
        );
        assert_eq!(settings[0].category, "HARM_CATEGORY_HATE_SPEECH");
    }

    #[test]
    fn a_configured_list_and_none() {
        let settings = load(&vars(&[(
            "safety_settings",
            " harassment=block_only_high , HARM_CATEGORY_CIVIC_INTEGRITY=OFF",
        )]))
        .unwrap();
        assert_eq!(
            pairs(&settings),
            [
                ("HARM_CATEGORY_HARASSMENT", "BLOCK_ONLY_HIGH"),
                ("HARM_CATEGORY_CIVIC_INTEGRITY", "OFF")
            ]
        );
        assert!(
            load(&vars(&[("safety_settings", "none")]))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn mistakes_name_the_variable() {
        for bad in [
            "HARASSMENT",
            "VIOLENCE=BLOCK_NONE",
            "HARASSMENT=SOMETIMES",
            "HARASSMENT=OFF,HARM_CATEGORY_HARASSMENT=BLOCK_NONE",
        ] {
            let e = load(&vars(&[("safety_settings", bad)])).unwrap_err();
            assert_eq!(e.variable, "safety_settings", "{bad}");
        }
    }
}
