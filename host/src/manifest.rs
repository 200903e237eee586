//! The part of a Spin manifest (`spin.toml`, version 2) that ion-host honours: the HTTP trigger's
//! component, its `source`, its variables, its `allowed_outbound_hosts` and its
//! `key_value_stores`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::template::Template;

#[derive(Debug, Deserialize)]
struct RawManifest {
    spin_manifest_version: u32,
    #[serde(default)]
    variables: BTreeMap<String, VariableDecl>,
    #[serde(default)]
    trigger: Triggers,
    #[serde(default)]
    component: BTreeMap<String, RawComponent>,
}

#[derive(Debug, Default, Deserialize)]
struct Triggers {
    #[serde(default)]
    http: Vec<HttpTrigger>,
}

#[derive(Debug, Deserialize)]
struct HttpTrigger {
    route: String,
    component: String,
}

#[derive(Debug, Deserialize)]
struct RawComponent {
    source: String,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    #[serde(default)]
    key_value_stores: Vec<String>,
}

/// An application variable declaration (`[variables]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VariableDecl {
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub secret: bool,
    pub description: Option<String>,
}

/// The component ion-host serves, as the manifest describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    pub component_id: String,
    /// Path of the `.wasm`, resolved against the manifest's directory.
    pub source: PathBuf,
    pub variables: BTreeMap<String, VariableDecl>,
    /// Component variable templates, e.g. `project_id = "{{ project_id }}"`.
    pub component_variables: BTreeMap<String, Template>,
    /// Allow-list entries, templates not yet rendered.
    pub allowed_outbound_hosts: Vec<Template>,
    /// Key-value store labels the component may open (`key_value_stores`).
    pub key_value_stores: Vec<String>,
}

impl App {
    pub fn load(path: &Path) -> Result<App> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read manifest {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        App::parse(&text, base).with_context(|| format!("invalid manifest {}", path.display()))
    }

    /// Parses manifest text; relative `source` paths are resolved against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<App> {
        let raw: RawManifest = toml::from_str(text)?;
        if raw.spin_manifest_version != 2 {
            bail!(
                "spin_manifest_version is {}, only version 2 is supported",
                raw.spin_manifest_version
            );
        }
        let trigger = match raw.trigger.http.as_slice() {
            [one] => one,
            [] => bail!("no [[trigger.http]] is declared"),
            _ => bail!("ion-host serves exactly one [[trigger.http]] (with route \"/...\")"),
        };
        if trigger.route != "/..." {
            bail!(
                "the HTTP trigger's route is {:?}; ion-host serves one component on \"/...\"",
                trigger.route
            );
        }
        let component = raw.component.get(&trigger.component).with_context(|| {
            format!(
                "the HTTP trigger names component {:?}, which has no [component.{}] table",
                trigger.component, trigger.component
            )
        })?;

        for (name, decl) in &raw.variables {
            check_variable_name(name)?;
            match (&decl.default, decl.required) {
                (Some(_), true) => bail!("variable {name:?} cannot be both required and defaulted"),
                (None, false) => bail!("variable {name:?} needs a default or required = true"),
                _ => {}
            }
        }
        let mut component_variables = BTreeMap::new();
        for (name, text) in &component.variables {
            check_variable_name(name)?;
            let template =
                Template::parse(text).with_context(|| format!("component variable {name:?}"))?;
            if let Some(reference) = template
                .references()
                .find(|r| !raw.variables.contains_key(*r))
            {
                bail!(
                    "component variable {name:?} refers to undeclared application variable {reference:?}"
                );
            }
            component_variables.insert(name.clone(), template);
        }
        let allowed_outbound_hosts = component
            .allowed_outbound_hosts
            .iter()
            .map(|entry| {
                Template::parse(entry)
                    .with_context(|| format!("allowed_outbound_hosts entry {entry:?}"))
            })
            .collect::<Result<_>>()?;

        let mut key_value_stores = Vec::new();
        for label in &component.key_value_stores {
            if label.is_empty() {
                bail!("key_value_stores has an empty label");
            }
            if !key_value_stores.contains(label) {
                key_value_stores.push(label.clone());
            }
        }

        Ok(App {
            component_id: trigger.component.clone(),
            source: base.join(&component.source),
            variables: raw.variables,
            component_variables,
            allowed_outbound_hosts,
            key_value_stores,
        })
    }
}

/// Spin variable names: lowercase ASCII letters, digits and underscores, starting with a letter.
pub fn is_valid_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn check_variable_name(name: &str) -> Result<()> {
    if !is_valid_variable_name(name) {
        bail!("invalid variable name {name:?}: use lowercase letters, digits and underscores");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"
spin_manifest_version = 2
[application]
name = "demo"
[variables]
project_id = { default = "" }
access_token = { required = true, secret = true }
[[trigger.http]]
route = "/..."
component = "api"
[component.api]
source = "target/api.wasm"
allowed_outbound_hosts = ["https://*.googleapis.com", "{{ project_id }}"]
key_value_stores = ["default", "cache", "default"]
[component.api.variables]
project_id = "{{ project_id }}"
token = "Bearer {{access_token}}"
[component.api.build]
command = "cargo build"
"#;

    #[test]
    fn parses_the_served_component() {
        let app = App::parse(MANIFEST, Path::new("/srv")).unwrap();
        assert_eq!(app.component_id, "api");
        assert_eq!(app.source, Path::new("/srv/target/api.wasm"));
        assert!(app.variables["access_token"].required);
        assert!(app.variables["access_token"].secret);
        assert_eq!(
            app.component_variables["token"],
            Template::parse("Bearer {{access_token}}").unwrap()
        );
        assert_eq!(app.allowed_outbound_hosts.len(), 2);
        assert_eq!(app.key_value_stores, ["default", "cache"]);
    }

    #[test]
    fn rejects_inconsistent_manifests() {
        let cases = [
            (MANIFEST.replace("= 2", "= 1"), "version"),
            (
                MANIFEST.replace("component = \"api\"", "component = \"x\""),
                "no [component.x]",
            ),
            (
                MANIFEST.replace("route = \"/...\"", "route = \"/chat\""),
                "route",
            ),
            (
                MANIFEST.replace("{{access_token}}", "{{ nope }}"),
                "undeclared",
            ),
            (
                MANIFEST.replace("{ default = \"\" }", "{ }"),
                "needs a default",
            ),
            (
                MANIFEST.replace("project_id = { default", "Project = { default"),
                "invalid variable",
            ),
            (MANIFEST.replace("source = ", "sauce = "), "source"),
            (
                MANIFEST.replace("[\"default\", \"cache\"", "[\"\", \"cache\""),
                "empty label",
            ),
            (
                MANIFEST.replace("key_value_stores = [", "key_value_stores = [3, "),
                "key_value_stores",
            ),
        ];
        for (text, expected) in cases {
            let err = format!("{:#}", App::parse(&text, Path::new(".")).unwrap_err());
            assert!(err.contains(expected), "{expected:?} not in {err:?}");
        }
    }
}
