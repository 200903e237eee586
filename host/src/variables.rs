//! Spin variables, resolved the way Spin resolves them: `SPIN_VARIABLE_<NAME>` from the
//! environment, else the manifest default; `required` variables without a value stop startup.
//! Component variables are templates over application variables (`"{{ project_id }}"`).
//! Values are resolved once at startup and served through `fermyon:spin/variables@2.0.0`.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};

use crate::manifest::App;
use crate::template::Template;

/// Application variable values, after environment overrides.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppVariables(BTreeMap<String, String>);

impl AppVariables {
    /// Resolves every declared variable; `env` looks up environment variables.
    pub fn resolve(app: &App, env: impl Fn(&str) -> Option<String>) -> Result<AppVariables> {
        let mut values = BTreeMap::new();
        let mut missing = Vec::new();
        for (name, decl) in &app.variables {
            let env_name = env_name(name);
            match env(&env_name).or_else(|| decl.default.clone()) {
                Some(value) => {
                    values.insert(name.clone(), value);
                }
                None => missing.push(format!("{name} (set {env_name})")),
            }
        }
        if !missing.is_empty() {
            bail!("required variables have no value: {}", missing.join(", "));
        }
        Ok(AppVariables(values))
    }

    /// The value of an application variable.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Replaces a value the host discovered itself (e.g. the project id from the metadata server).
    pub fn set(&mut self, name: &str, value: String) {
        self.0.insert(name.to_owned(), value);
    }

    /// Renders a template such as `"https://{{ host }}"` with these values.
    pub fn render(&self, template: &Template) -> Result<String> {
        template.render(|name| self.get(name))
    }
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

    #[test]
    fn unknown_variables_are_render_errors() {
        let values = AppVariables::default();
        let unknown = Template::parse("{{ unknown }}").unwrap();
        assert!(values.render(&unknown).is_err());
        let plain = Template::parse("plain").unwrap();
        assert_eq!(values.render(&plain).unwrap(), "plain");
    }
}
