//! Spin's variable templates (`"https://{{ host }}/v1"`), parsed once into literal and variable
//! parts (the shape of Spin's own `Template { parts }`) so that checking which variables a
//! template uses and rendering it share one scanner.
//!
//! Written by hand: the syntax is only `{{ name }}` between literal text, with no escapes.

use anyhow::{Result, bail};

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// `{{ name }}`, trimmed.
    Variable(String),
}

impl Template {
    pub fn parse(text: &str) -> Result<Template> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                bail!("unclosed '{{{{' in template {text:?}");
            };
            parts.push(Part::Variable(after[..end].trim().to_owned()));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(Template {
            source: text.to_owned(),
            parts,
        })
    }

    /// Names of the variables the template uses, in order.
    pub fn references(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Variable(name) => Some(name.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// The text with every variable replaced by `value(name)`; the first unknown name is an error.
    pub fn render<'a>(&self, value: impl Fn(&str) -> Option<&'a str>) -> Result<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Variable(name) => match value(name) {
                    Some(v) => out.push_str(v),
                    None => bail!("template {self} uses unknown variable {name:?}"),
                },
            }
        }
        Ok(out)
    }
}

/// The template as written, for messages.
impl std::fmt::Display for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_literals_and_variables() {
        let t = Template::parse("a {{x}} b {{ y }}").unwrap();
        assert_eq!(t.references().collect::<Vec<_>>(), ["x", "y"]);
        let values = |name: &str| match name {
            "x" => Some("1"),
            "y" => Some("2"),
            _ => None,
        };
        assert_eq!(t.render(values).unwrap(), "a 1 b 2");
        assert_eq!(
            Template::parse("plain").unwrap().render(values).unwrap(),
            "plain"
        );
        assert_eq!(Template::parse("").unwrap().render(values).unwrap(), "");
    }

    #[test]
    fn errors_name_the_template() {
        let err = Template::parse("{{ open").unwrap_err().to_string();
        assert!(err.contains("unclosed"), "{err}");
        let err = Template::parse("x{{ nope }}")
            .unwrap()
            .render(|_| None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "template \"x{{ nope }}\" uses unknown variable \"nope\""
        );
    }
}
