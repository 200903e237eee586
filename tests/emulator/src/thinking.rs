//! Thinking, modelled deterministically: how many thought tokens a request spends, from
//! `generationConfig.thinkingConfig` and the model, with Vertex AI's rules and error wording.
//!
//! Gemini 3 models think by default (Flash at `MEDIUM`, Pro at `HIGH`). `thinkingLevel` picks a
//! level, `thinkingBudget` (the Gemini 2.5 control, still accepted) a token count; setting both
//! is a 400. The tokens per level are fixed here ([`Level::thought_tokens`]) so tests can
//! compute exactly what a reply will contain; they are billed against `maxOutputTokens` by
//! [`crate::reply`].

use crate::protocol::ThinkingConfig;
use crate::route;
use crate::status::ApiError;

/// A thinking level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Minimal,
    Low,
    Medium,
    High,
}

/// Largest `thinkingBudget` accepted (Gemini's largest budget); `-1` means "dynamic".
pub const MAX_THINKING_BUDGET: i64 = 32_768;

impl Level {
    /// The thought tokens one request spends at this level.
    pub const fn thought_tokens(self) -> u64 {
        match self {
            Level::Minimal => 16,
            Level::Low => 64,
            Level::Medium => 512,
            Level::High => 2048,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Level::Minimal => "MINIMAL",
            Level::Low => "LOW",
            Level::Medium => "MEDIUM",
            Level::High => "HIGH",
        }
    }

    /// The level of a canonical enum name; `None` for `THINKING_LEVEL_UNSPECIFIED`.
    fn from_name(name: &str) -> Option<Level> {
        match name {
            "MINIMAL" => Some(Level::Minimal),
            "LOW" => Some(Level::Low),
            "MEDIUM" => Some(Level::Medium),
            "HIGH" => Some(Level::High),
            _ => None,
        }
    }

    /// What a model does when the request leaves the level to it.
    pub fn default_for(model: &str) -> Level {
        if route::is_pro(model) {
            Level::High
        } else {
            Level::Medium
        }
    }
}

/// How a request thinks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thinking {
    /// The level used; `None` when an explicit `thinkingBudget` decided instead.
    pub level: Option<Level>,
    /// Thought tokens the model wants to spend (before `maxOutputTokens` caps them).
    pub tokens: u64,
    /// `includeThoughts`: the reply carries a thought summary part.
    pub include_thoughts: bool,
}

/// Works out the thinking of a request to `model`, or the 400 Vertex AI answers.
pub fn plan(model: &str, config: Option<&ThinkingConfig>) -> Result<Thinking, ApiError> {
    let default = Level::default_for(model);
    let config = config.cloned().unwrap_or_default();
    // Proto3: the zero value THINKING_LEVEL_UNSPECIFIED is the same as not setting the field.
    let level = config.thinking_level.as_deref().and_then(Level::from_name);
    let include_thoughts = config.include_thoughts == Some(true);
    let thinking = match (level, config.thinking_budget) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_argument(
                "You can only set only one of thinking budget and thinking level.",
            ));
        }
        (Some(level), None) => {
            if route::is_pro(model) && matches!(level, Level::Minimal | Level::Medium) {
                return Err(ApiError::invalid_argument(format!(
                    "Thinking level {} is not supported for this model. Supported levels: LOW, \
                     HIGH.",
                    level.name()
                )));
            }
            Thinking {
                level: Some(level),
                tokens: level.thought_tokens(),
                include_thoughts,
            }
        }
        (None, Some(-1)) | (None, None) => Thinking {
            level: Some(default),
            tokens: default.thought_tokens(),
            include_thoughts,
        },
        (None, Some(budget)) if (0..=MAX_THINKING_BUDGET).contains(&budget) => Thinking {
            level: None,
            tokens: budget as u64,
            include_thoughts,
        },
        (None, Some(budget)) => {
            return Err(ApiError::invalid_argument(format!(
                "The thinking budget ({budget}) is invalid."
            )));
        }
    };
    if thinking.tokens == 0 && include_thoughts {
        return Err(ApiError::invalid_argument(
            "Unable to submit request because Thinking_config.include_thoughts is only enabled \
             when thinking is enabled.. Learn more: \
             https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/gemini",
        ));
    }
    Ok(thinking)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(level: Option<&str>, budget: Option<i64>, include: Option<bool>) -> ThinkingConfig {
        ThinkingConfig {
            thinking_budget: budget,
            thinking_level: level.map(str::to_string),
            include_thoughts: include,
        }
    }

    const FLASH: &str = "gemini-3.5-flash";

    #[test]
    fn flash_thinks_at_medium_by_default() {
        let thinking = plan(FLASH, None).unwrap();
        assert_eq!(thinking.level, Some(Level::Medium));
        assert_eq!(thinking.tokens, 512);
        assert!(!thinking.include_thoughts);
        let unspecified = config(Some("THINKING_LEVEL_UNSPECIFIED"), None, None);
        assert_eq!(plan(FLASH, Some(&unspecified)).unwrap(), thinking);
        let dynamic = config(None, Some(-1), None);
        assert_eq!(plan(FLASH, Some(&dynamic)).unwrap(), thinking);
        assert_eq!(plan("gemini-3-pro", None).unwrap().tokens, 2048);
    }

    #[test]
    fn each_level_has_its_token_count() {
        for (name, tokens) in [
            ("MINIMAL", 16),
            ("LOW", 64),
            ("MEDIUM", 512),
            ("HIGH", 2048),
        ] {
            let thinking = plan(FLASH, Some(&config(Some(name), None, None))).unwrap();
            assert_eq!(thinking.tokens, tokens, "{name}");
            assert_eq!(thinking.level.map(Level::name), Some(name));
        }
    }

    #[test]
    fn budget_is_spent_exactly() {
        let thinking = plan(FLASH, Some(&config(None, Some(300), Some(true)))).unwrap();
        assert_eq!((thinking.level, thinking.tokens), (None, 300));
        assert!(thinking.include_thoughts);
        assert_eq!(
            plan(FLASH, Some(&config(None, Some(0), None)))
                .unwrap()
                .tokens,
            0
        );
        let unspecified_and_budget = config(Some("THINKING_LEVEL_UNSPECIFIED"), Some(10), None);
        assert_eq!(
            plan(FLASH, Some(&unspecified_and_budget)).unwrap().tokens,
            10
        );
    }

    #[test]
    fn invalid_combinations_are_400() {
        let both = plan(FLASH, Some(&config(Some("LOW"), Some(100), None))).unwrap_err();
        assert_eq!((both.code, both.status), (400, "INVALID_ARGUMENT"));
        assert_eq!(
            both.message,
            "You can only set only one of thinking budget and thinking level."
        );
        for budget in [-2, MAX_THINKING_BUDGET + 1] {
            let err = plan(FLASH, Some(&config(None, Some(budget), None))).unwrap_err();
            assert_eq!(
                err.message,
                format!("The thinking budget ({budget}) is invalid.")
            );
        }
        let off_with_thoughts = plan(FLASH, Some(&config(None, Some(0), Some(true)))).unwrap_err();
        assert!(
            off_with_thoughts
                .message
                .contains("include_thoughts is only enabled")
        );
        let pro = plan("gemini-3-pro", Some(&config(Some("MEDIUM"), None, None))).unwrap_err();
        assert!(
            pro.message
                .contains("Thinking level MEDIUM is not supported")
        );
        assert!(plan("gemini-3-pro", Some(&config(Some("LOW"), None, None))).is_ok());
    }
}
