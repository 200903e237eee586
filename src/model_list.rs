//! The Gemini models a chat may call, in order: the `model` variable, then the
//! `fallback_models` list. Google retires models on published dates and a model can run out of
//! capacity; a later model of the list can still answer (when a chat moves on is
//! [`crate::fallback`]'s to say, how is [`crate::vertex`]'s).

use crate::config::{ConfigError, DEFAULT_MODEL, Variables, is_path_segment};

/// The models to try, primary first; never empty and never the same model twice.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelList {
    primary: String,
    fallbacks: Vec<String>,
}

impl ModelList {
    /// Reads `model` (default [`DEFAULT_MODEL`]) and `fallback_models`: a comma-separated list,
    /// whitespace around ids ignored, empty items skipped. Each id must be usable in the URL
    /// path, as `model` must. A repeated id (the primary among the fallbacks, say) is dropped:
    /// calling a model again would only fail the same way again.
    pub fn load(vars: &impl Variables) -> Result<ModelList, ConfigError> {
        let primary = vars.get("model").unwrap_or_else(|| DEFAULT_MODEL.into());
        let primary = checked("model", &primary)?;
        let mut list = ModelList {
            primary,
            fallbacks: Vec::new(),
        };
        let raw = vars.get("fallback_models").unwrap_or_default();
        for id in raw.split(',').map(str::trim).filter(|id| !id.is_empty()) {
            let id = checked("fallback_models", id)?;
            if !list.iter().any(|known| known == id) {
                list.fallbacks.push(id);
            }
        }
        Ok(list)
    }

    /// The configured `model`: the one every chat tries first.
    pub fn primary(&self) -> &str {
        &self.primary
    }

    /// The models tried after the primary, in order.
    pub fn fallbacks(&self) -> &[String] {
        &self.fallbacks
    }

    /// Every model, primary first.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.primary.as_str()).chain(self.fallbacks.iter().map(String::as_str))
    }
}

/// A model id goes into the URL path; anything else is a configuration error of `variable`.
fn checked(variable: &'static str, id: &str) -> Result<String, ConfigError> {
    if is_path_segment(id) {
        Ok(id.to_owned())
    } else {
        Err(ConfigError::new(
            variable,
            format!("model {id:?} is not a valid model id"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::vars;

    fn models(list: &ModelList) -> Vec<&str> {
        list.iter().collect()
    }

    #[test]
    fn without_fallbacks_the_list_is_the_model_alone() {
        let list = ModelList::load(&vars(&[])).unwrap();
        assert_eq!(models(&list), ["gemini-3.5-flash"]);
        assert!(list.fallbacks().is_empty());
        let list = ModelList::load(&vars(&[("model", "gemini-3.1-flash-lite")])).unwrap();
        assert_eq!(list.primary(), "gemini-3.1-flash-lite");
        assert_eq!(models(&list), ["gemini-3.1-flash-lite"]);
    }

    #[test]
    fn fallbacks_follow_the_primary_in_order_with_whitespace_ignored() {
        let list = ModelList::load(&vars(&[(
            "fallback_models",
            " gemini-3.1-flash-lite ,gemini-3.5-flash-lite,, ",
        )]))
        .unwrap();
        assert_eq!(
            models(&list),
            [
                "gemini-3.5-flash",
                "gemini-3.1-flash-lite",
                "gemini-3.5-flash-lite"
            ]
        );
        assert_eq!(list.primary(), "gemini-3.5-flash");
    }

    #[test]
    fn repeated_models_are_tried_once() {
        let list = ModelList::load(&vars(&[
            ("model", "gemini-3.5-flash"),
            (
                "fallback_models",
                "gemini-3.5-flash, gemini-3.1-flash-lite, gemini-3.5-flash,gemini-3.1-flash-lite",
            ),
        ]))
        .unwrap();
        assert_eq!(models(&list), ["gemini-3.5-flash", "gemini-3.1-flash-lite"]);
    }

    #[test]
    fn an_invalid_id_is_a_configuration_error_naming_its_variable() {
        for bad in ["gemini-3.5-flash, ../x", "a/b", "gemini 3", ".."] {
            let e = ModelList::load(&vars(&[("fallback_models", bad)])).unwrap_err();
            assert_eq!(e.variable, "fallback_models", "{bad}");
            assert!(
                e.problem.contains("is not a valid model id"),
                "{}",
                e.problem
            );
            assert!(
                e.hint().contains("SPIN_VARIABLE_FALLBACK_MODELS"),
                "{}",
                e.hint()
            );
        }
        let e = ModelList::load(&vars(&[("model", "a/b")])).unwrap_err();
        assert_eq!(e.variable, "model");
        assert_eq!(e.problem, "model \"a/b\" is not a valid model id");
    }
}
