//! Spin variables, resolved the way Spin resolves them: `SPIN_VARIABLE_<NAME>` from the
//! environment, else the manifest default; `required` variables without a value stop startup.
//! Component variables are templates over application variables (`"{{ project_id }}"`).
//! Values are resolved once at startup and served through `fermyon:spin/variables@2.0.0`.
//!
//! ion-host also reads the environment variables of the Python service this one replaced
//! ([`LEGACY_NAMES`]), so that a Cloud Run service still configured for it keeps its settings;
//! the `SPIN_VARIABLE_*` name wins when both are set. Each use is reported in [`AppVariables::notices`].

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};

use crate::manifest::App;
use crate::template::Template;

/// The original service's environment variables, and the application variable each one sets:
/// `(legacy name, variable)`. Only a non-empty value counts as set.
pub const LEGACY_NAMES: &[(&str, &str)] = &[
    ("GCP_PROJECT_ID", "project_id"),
    ("GCP_LOCATION", "location"),
    ("MODEL_NAME", "model"),
    ("ALLOWED_ORIGINS", "allowed_origins"),
];

/// Application variable values, after environment overrides.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppVariables {
    values: BTreeMap<String, String>,
    notices: Vec<String>,
}

impl AppVariables {
    /// Resolves every declared variable; `env` looks up environment variables. A variable comes
    /// from `SPIN_VARIABLE_<NAME>`, else from its legacy name (see [`LEGACY_NAMES`]), else from
    /// its default.
    pub fn resolve(app: &App, env: impl Fn(&str) -> Option<String>) -> Result<AppVariables> {
        let mut values = BTreeMap::new();
        let mut notices = Vec::new();
        let mut missing = Vec::new();
        for (name, decl) in &app.variables {
            let env_name = env_name(name);
            let value = env(&env_name);
            let legacy = LEGACY_NAMES
                .iter()
                .find(|(_, variable)| variable == name)
                .and_then(|(legacy, _)| Some((*legacy, env(legacy).filter(|v| !v.is_empty())?)));
            let value = match (value, legacy) {
                (Some(value), Some((legacy, _))) => {
                    notices.push(format!(
                        "{legacy} is ignored because {env_name} is also set: \
                         {env_name} wins; remove {legacy} from the environment"
                    ));
                    Some(value)
                }
                (Some(value), None) => Some(value),
                (None, Some((legacy, legacy_value))) => {
                    notices.push(format!(
                        "variable {name} is taken from {legacy}, the original service's name \
                         for it; set {env_name} instead"
                    ));
                    Some(legacy_value_for(name, legacy_value))
                }
                (None, None) => decl.default.clone(),
            };
            match value {
                Some(value) => {
                    values.insert(name.clone(), value);
                }
                None => missing.push(format!("{name} (set {env_name})")),
            }
        }
        if !missing.is_empty() {
            bail!("required variables have no value: {}", missing.join(", "));
        }
        Ok(AppVariables { values, notices })
    }

    /// What resolving noticed about the environment (legacy names in use), one line each.
    pub fn notices(&self) -> &[String] {
        &self.notices
    }

    /// The value of an application variable.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Replaces a value the host discovered itself (e.g. the project id from the metadata server).
    pub fn set(&mut self, name: &str, value: String) {
        self.values.insert(name.to_owned(), value);
    }

    /// Renders a template such as `"https://{{ host }}"` with these values.
    pub fn render(&self, template: &Template) -> Result<String> {
        template.render(|name| self.get(name))
    }
}

/// A legacy value in this service's format: the original may have been given its origins as a
/// JSON list (`["https://a.example"]`); `allowed_origins` is a comma-separated list.
fn legacy_value_for(variable: &str, value: String) -> String {
    if variable == "allowed_origins"
        && let Ok(list) = serde_json::from_str::<Vec<String>>(&value)
    {
        return list.join(",");
    }
    value
}

/// `project_id` → `SPIN_VARIABLE_PROJECT_ID`
pub fn env_name(variable: &str) -> String {
    format!("SPIN_VARIABLE_{}", variable.to_ascii_uppercase())
}

/// The values one component may read: its `[component.x.variables]`, rendered.
#[derive(Debug, Clone, Default)]
pub struct ComponentVariables(BTreeMap<String, String>);

impl ComponentVariables {
    pub fn render(app: &App, values: &AppVariables) -> Result<ComponentVariables> {
        let rendered = app
            .component_variables
            .iter()
            .map(|(name, template)| {
                values
                    .render(template)
                    .with_context(|| format!("component variable {name:?}"))
                    .map(|v| (name.clone(), v))
            })
            .collect::<Result<_>>()?;
        Ok(ComponentVariables(rendered))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn app() -> App {
        App::parse(
            r#"
spin_manifest_version = 2
[variables]
project_id = { default = "" }
location = { default = "global" }
access_token = { required = true, secret = true }
[[trigger.http]]
route = "/..."
component = "api"
[component.api]
source = "api.wasm"
[component.api.variables]
project_id = "{{ project_id }}"
url = "https://{{location}}.example.com/{{ project_id }}"
"#,
            Path::new("."),
        )
        .unwrap()
    }

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn environment_overrides_defaults_and_templates_render() {
        let values = AppVariables::resolve(
            &app(),
            env(&[
                ("SPIN_VARIABLE_ACCESS_TOKEN", "t"),
                ("SPIN_VARIABLE_PROJECT_ID", "p1"),
            ]),
        )
        .unwrap();
        let vars = ComponentVariables::render(&app(), &values).unwrap();
        assert_eq!(vars.get("project_id"), Some("p1"));
        assert_eq!(vars.get("url"), Some("https://global.example.com/p1"));
        // Application variables not listed for the component stay invisible to it.
        assert_eq!(vars.get("access_token"), None);
    }

    #[test]
    fn required_variables_must_be_set() {
        let err = AppVariables::resolve(&app(), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("access_token"), "{err}");
        assert!(err.contains("SPIN_VARIABLE_ACCESS_TOKEN"), "{err}");
    }

    /// The project's own spin.toml: the legacy names must map onto what it declares.
    fn project_app() -> App {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        App::parse(
            &std::fs::read_to_string(dir.join("spin.toml")).unwrap(),
            &dir,
        )
        .unwrap()
    }

    #[test]
    fn legacy_names_map_to_variables_the_component_reads() {
        let app = project_app();
        for (legacy, variable) in LEGACY_NAMES {
            assert!(
                app.variables.contains_key(*variable),
                "{legacy} maps to {variable}, which spin.toml does not declare"
            );
            assert!(
                app.component_variables.contains_key(*variable),
                "{legacy} maps to {variable}, which the component cannot read"
            );
        }
        let names: Vec<&str> = LEGACY_NAMES.iter().map(|(legacy, _)| *legacy).collect();
        assert_eq!(
            names,
            [
                "GCP_PROJECT_ID",
                "GCP_LOCATION",
                "MODEL_NAME",
                "ALLOWED_ORIGINS"
            ]
        );
    }

    #[test]
    fn legacy_names_are_honoured_with_a_notice_naming_the_new_variable() {
        let values = AppVariables::resolve(
            &project_app(),
            env(&[
                ("GCP_PROJECT_ID", "old-project"),
                ("GCP_LOCATION", "us-central1"),
                ("MODEL_NAME", "gemini-next"),
                ("ALLOWED_ORIGINS", "https://app.example.com"),
            ]),
        )
        .unwrap();
        assert_eq!(values.get("project_id"), Some("old-project"));
        assert_eq!(values.get("location"), Some("us-central1"));
        assert_eq!(values.get("model"), Some("gemini-next"));
        assert_eq!(
            values.get("allowed_origins"),
            Some("https://app.example.com")
        );
        assert_eq!(values.notices().len(), 4, "{:?}", values.notices());
        for (legacy, variable) in LEGACY_NAMES {
            let new_name = env_name(variable);
            assert!(
                values
                    .notices()
                    .iter()
                    .any(|n| n.contains(legacy) && n.contains(&new_name)),
                "no notice names {legacy} and {new_name}: {:?}",
                values.notices()
            );
        }
        // The component sees them under its own names.
        let vars = ComponentVariables::render(&project_app(), &values).unwrap();
        assert_eq!(vars.get("location"), Some("us-central1"));
    }

    #[test]
    fn the_spin_variable_wins_over_the_legacy_name() {
        let values = AppVariables::resolve(
            &project_app(),
            env(&[
                ("GCP_LOCATION", "us-central1"),
                ("SPIN_VARIABLE_LOCATION", "europe-west4"),
                ("SPIN_VARIABLE_MODEL", "gemini-a"),
            ]),
        )
        .unwrap();
        assert_eq!(values.get("location"), Some("europe-west4"));
        assert_eq!(values.get("model"), Some("gemini-a"));
        assert_eq!(values.notices().len(), 1, "{:?}", values.notices());
        let notice = &values.notices()[0];
        assert!(
            notice.contains("GCP_LOCATION") && notice.contains("SPIN_VARIABLE_LOCATION wins"),
            "{notice}"
        );
    }

    #[test]
    fn without_legacy_names_nothing_changes() {
        let values = AppVariables::resolve(
            &project_app(),
            // Empty legacy values count as unset: the defaults stay.
            env(&[("GCP_LOCATION", ""), ("MODEL_NAME", "")]),
        )
        .unwrap();
        assert_eq!(values.get("location"), Some("global"));
        assert_eq!(
            values.get("model"),
            project_app().variables["model"].default.as_deref()
        );
        assert!(values.notices().is_empty(), "{:?}", values.notices());
    }

    #[test]
    fn legacy_origins_given_as_a_json_list_become_a_comma_separated_list() {
        let values = AppVariables::resolve(
            &project_app(),
            env(&[(
                "ALLOWED_ORIGINS",
                r#"["https://a.example.com", "https://b.example.com"]"#,
            )]),
        )
        .unwrap();
        assert_eq!(
            values.get("allowed_origins"),
            Some("https://a.example.com,https://b.example.com")
        );
        // The new name is taken as it is.
        let values = AppVariables::resolve(
            &project_app(),
            env(&[("SPIN_VARIABLE_ALLOWED_ORIGINS", r#"["x"]"#)]),
        )
        .unwrap();
        assert_eq!(values.get("allowed_origins"), Some(r#"["x"]"#));
    }

    #[test]
    fn unknown_variables_are_render_errors() {
        let values = AppVariables::default();
        let unknown = Template::parse("{{ unknown }}").unwrap();
        assert!(values.render(&unknown).is_err());
        let plain = Template::parse("plain").unwrap();
        assert_eq!(values.render(&plain).unwrap(), "plain");
    }
}
