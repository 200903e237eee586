//! A deterministic instance of a schema: the arguments of an emulated function call and the
//! answer of an `application/json` request with a schema.
//!
//! Works on JSON Schema (`parametersJsonSchema`, `responseJsonSchema`) and on Vertex AI's
//! OpenAPI subset (`parameters`, `responseSchema`, normalised to camelCase, with `$ref` and
//! `$defs`) alike. The instance validates against the schema for what the emulator models:
//! `type` (a name in any case, or a list: the first non-null one), `const` and `enum` (the first
//! value), `$ref` into the root (`#/$defs/…`, `#/definitions/…`, any JSON pointer), `allOf`
//! (merged), `anyOf` / `oneOf` (the first branch), objects (every property, in
//! `propertyOrdering` order if given; `required` names without a property get a value too;
//! `minProperties`), arrays (`minItems` items, at least one unless `maxItems` is 0;
//! `prefixItems`), strings (the given text cut to [`TEXT_CHARS`] characters, or `"text"` if it
//! is empty, padded with `x` to `minLength` and cut to `maxLength`; `format` and `pattern` are
//! not honoured), integers (`minimum`, else 1) and numbers (`minimum`, else 1.5) kept inside
//! every bound, booleans (`true`) and `null`. A schema without a type that nothing else
//! describes gives `null`.

use serde_json::{Map, Number, Value, json};

/// Longest string value taken from the user's text, in characters.
pub const TEXT_CHARS: usize = 40;

/// How deep `$ref`s and nesting are followed before giving up with `null` (recursive schemas).
const MAX_DEPTH: usize = 32;

/// The string every string value starts from: `text` cut to [`TEXT_CHARS`] characters, or
/// `"text"` when it is empty.
pub fn base_string(text: &str) -> String {
    let cut: String = text.chars().take(TEXT_CHARS).collect();
    if cut.is_empty() { "text".into() } else { cut }
}

/// An instance of `schema` whose strings come from `text`.
pub fn instance(schema: &Value, text: &str) -> Value {
    Generator {
        root: schema,
        text: base_string(text),
    }
    .generate(schema, 0)
}

struct Generator<'a> {
    root: &'a Value,
    text: String,
}

fn number(map: &Map<String, Value>, key: &str) -> Option<f64> {
    map.get(key).and_then(Value::as_f64)
}

fn count(map: &Map<String, Value>, key: &str) -> Option<usize> {
    map.get(key).and_then(|v| match v {
        Value::String(s) => s.parse().ok(),
        _ => v.as_u64().map(|n| n as usize),
    })
}

/// Merges `more` into `into`: `properties` and `$defs` maps are joined, `required` lists
/// united, other keywords taken from `more`.
fn merge(into: &mut Map<String, Value>, more: Map<String, Value>) {
    for (key, value) in more {
        match (key.as_str(), into.get_mut(&key), value) {
            (
                "properties" | "$defs" | "definitions",
                Some(Value::Object(old)),
                Value::Object(new),
            ) => {
                old.extend(new);
            }
            ("required", Some(Value::Array(old)), Value::Array(new)) => {
                for name in new {
                    if !old.contains(&name) {
                        old.push(name);
                    }
                }
            }
            (_, _, value) => {
                into.insert(key, value);
            }
        }
    }
}

impl Generator<'_> {
    /// A `$ref` target: a JSON pointer into the root, or a definition by name in `$defs`,
    /// `defs` or `definitions` whichever of them the reference names.
    fn resolve(&self, reference: &str) -> Option<&Value> {
        let pointer = reference.strip_prefix('#')?;
        if pointer.is_empty() {
            return Some(self.root);
        }
        if let Some(found) = self.root.pointer(pointer) {
            return Some(found);
        }
        let name = ["/$defs/", "/defs/", "/definitions/"]
            .iter()
            .find_map(|prefix| pointer.strip_prefix(prefix))?;
        ["$defs", "defs", "definitions"]
            .iter()
            .find_map(|defs| self.root.get(defs)?.get(name))
    }

    /// The schema with its `$ref`, `allOf` and first `anyOf` / `oneOf` branch folded in.
    fn flatten(&self, schema: &Value, depth: usize) -> Option<Map<String, Value>> {
        if depth > MAX_DEPTH {
            return None;
        }
        let object = match schema {
            Value::Object(object) => object,
            Value::Bool(true) => return Some(Map::new()),
            _ => return None,
        };
        let mut flat = Map::new();
        if let Some(reference) = object
            .get("$ref")
            .or_else(|| object.get("ref"))
            .and_then(Value::as_str)
        {
            merge(
                &mut flat,
                self.flatten(self.resolve(reference)?, depth + 1)?,
            );
        }
        let mut rest = object.clone();
        for key in ["$ref", "ref", "allOf", "anyOf", "oneOf"] {
            rest.remove(key);
        }
        merge(&mut flat, rest);
        if let Some(Value::Array(all)) = object.get("allOf") {
            for branch in all {
                merge(&mut flat, self.flatten(branch, depth + 1)?);
            }
        }
        let first = ["anyOf", "oneOf"]
            .iter()
            .find_map(|key| match object.get(*key) {
                Some(Value::Array(branches)) => branches.first(),
                _ => None,
            });
        if let Some(branch) = first {
            merge(&mut flat, self.flatten(branch, depth + 1)?);
        }
        Some(flat)
    }

    fn generate(&self, schema: &Value, depth: usize) -> Value {
        let Some(schema) = self.flatten(schema, depth) else {
            return Value::Null;
        };
        let kind = type_of(&schema);
        if let Some(constant) = schema.get("const") {
            return constant.clone();
        }
        if let Some(first) = schema
            .get("enum")
            .and_then(Value::as_array)
            .and_then(|e| e.first())
        {
            // The OpenAPI subset lists the values of numeric enums as strings.
            return match (kind.as_deref(), first) {
                (Some("integer" | "number"), Value::String(s)) => s
                    .parse::<i64>()
                    .map(Value::from)
                    .or_else(|_| s.parse::<f64>().map(|f| json!(f)))
                    .unwrap_or_else(|_| first.clone()),
                _ => first.clone(),
            };
        }
        match kind.as_deref() {
            Some("object") => self.object(&schema, depth),
            Some("array") => self.array(&schema, depth),
            Some("string") => Value::String(self.string(&schema)),
            Some("integer") => Value::from(integer(&schema)),
            Some("number") => Number::from_f64(float(&schema)).map_or(Value::Null, Value::Number),
            Some("boolean") => Value::Bool(true),
            _ => Value::Null,
        }
    }

    fn object(&self, schema: &Map<String, Value>, depth: usize) -> Value {
        let mut out = Map::new();
        let empty = Map::new();
        let properties = schema
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let mut names: Vec<&String> = Vec::new();
        if let Some(Value::Array(order)) = schema.get("propertyOrdering") {
            names.extend(
                order
                    .iter()
                    .filter_map(Value::as_str)
                    .filter_map(|name| properties.get_key_value(name).map(|(k, _)| k)),
            );
        }
        for name in properties.keys() {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        for name in names {
            out.insert(name.clone(), self.generate(&properties[name], depth + 1));
        }
        let extra = |generator: &Self| match schema.get("additionalProperties") {
            Some(value @ Value::Object(_)) => generator.generate(value, depth + 1),
            _ => Value::String(generator.text.clone()),
        };
        if let Some(Value::Array(required)) = schema.get("required") {
            for name in required.iter().filter_map(Value::as_str) {
                if !out.contains_key(name) {
                    out.insert(name.to_string(), extra(self));
                }
            }
        }
        let additional_allowed = schema.get("additionalProperties") != Some(&Value::Bool(false));
        let wanted = count(schema, "minProperties").unwrap_or(0);
        let mut n = 1;
        while additional_allowed && out.len() < wanted {
            out.insert(format!("extra_{n}"), extra(self));
            n += 1;
        }
        Value::Object(out)
    }

    fn array(&self, schema: &Map<String, Value>, depth: usize) -> Value {
        let max = count(schema, "maxItems");
        // Draft 4 tuples are `items: [..]`; 2020-12 ones `prefixItems`.
        let (prefix, items) = match (schema.get("prefixItems"), schema.get("items")) {
            (Some(Value::Array(prefix)), items) => (prefix.as_slice(), items),
            (_, Some(Value::Array(prefix))) => (prefix.as_slice(), schema.get("additionalItems")),
            (_, items) => (&[][..], items),
        };
        let mut n = count(schema, "minItems")
            .unwrap_or(0)
            .max(1)
            .max(prefix.len());
        if let Some(max) = max {
            n = n.min(max);
        }
        (0..n)
            .map(|i| match (prefix.get(i), items) {
                (Some(item), _) | (None, Some(item)) => self.generate(item, depth + 1),
                (None, None) => Value::String(self.text.clone()),
            })
            .collect()
    }

    fn string(&self, schema: &Map<String, Value>) -> String {
        let mut text = self.text.clone();
        if let Some(min) = count(schema, "minLength") {
            let have = text.chars().count();
            text.extend(std::iter::repeat_n('x', min.saturating_sub(have)));
        }
        if let Some(max) = count(schema, "maxLength") {
            text = text.chars().take(max).collect();
        }
        text
    }
}

/// The lower-case type name: `type` (a name, or the first non-null name of a list), else what
/// the keywords imply.
fn type_of(schema: &Map<String, Value>) -> Option<String> {
    match schema.get("type") {
        Some(Value::String(name)) if !name.eq_ignore_ascii_case("TYPE_UNSPECIFIED") => {
            return Some(name.to_ascii_lowercase());
        }
        Some(Value::Array(names)) => {
            let names: Vec<&str> = names.iter().filter_map(Value::as_str).collect();
            let first = names
                .iter()
                .find(|name| !name.eq_ignore_ascii_case("null"))
                .or(names.first());
            if let Some(name) = first {
                return Some(name.to_ascii_lowercase());
            }
        }
        _ => {}
    }
    let has = |keys: &[&str]| keys.iter().any(|key| schema.contains_key(*key));
    let implied = if has(&[
        "properties",
        "required",
        "additionalProperties",
        "minProperties",
    ]) {
        "object"
    } else if has(&["items", "prefixItems", "minItems", "maxItems"]) {
        "array"
    } else if has(&["minLength", "maxLength", "pattern"]) {
        "string"
    } else if has(&["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"]) {
        "number"
    } else {
        return None;
    };
    Some(implied.into())
}

/// The bounds of a number: (inclusive low, exclusive low, inclusive high, exclusive high).
/// Draft 4's boolean `exclusiveMinimum` / `exclusiveMaximum` turn `minimum` / `maximum`
/// exclusive.
fn bounds(schema: &Map<String, Value>) -> [Option<f64>; 4] {
    let (mut low, mut high) = (number(schema, "minimum"), number(schema, "maximum"));
    let mut exclusive_low = number(schema, "exclusiveMinimum");
    let mut exclusive_high = number(schema, "exclusiveMaximum");
    if schema.get("exclusiveMinimum") == Some(&Value::Bool(true)) {
        exclusive_low = low.take();
    }
    if schema.get("exclusiveMaximum") == Some(&Value::Bool(true)) {
        exclusive_high = high.take();
    }
    [low, exclusive_low, high, exclusive_high]
}

fn integer(schema: &Map<String, Value>) -> i64 {
    let [low, exclusive_low, high, exclusive_high] = bounds(schema);
    let mut value = low.map_or(1, |low| low.ceil() as i64);
    if let Some(bound) = exclusive_low
        && value as f64 <= bound
    {
        value = bound.floor() as i64 + 1;
    }
    if let Some(step) = number(schema, "multipleOf").filter(|s| *s >= 1.0 && s.fract() == 0.0) {
        let step = step as i64;
        value = value.div_euclid(step) * step + if value % step == 0 { 0 } else { step };
    }
    if let Some(bound) = high
        && value as f64 > bound
    {
        value = bound.floor() as i64;
    }
    if let Some(bound) = exclusive_high
        && value as f64 >= bound
    {
        value = bound.ceil() as i64 - 1;
    }
    value
}

fn float(schema: &Map<String, Value>) -> f64 {
    let [low, exclusive_low, high, exclusive_high] = bounds(schema);
    let mut value = low.unwrap_or(1.5);
    if let Some(bound) = exclusive_low
        && value <= bound
    {
        value = bound + 1.0;
    }
    if let Some(bound) = high
        && value > bound
    {
        value = bound;
    }
    if let Some(bound) = exclusive_high
        && value >= bound
    {
        value = match low.or(exclusive_low) {
            Some(floor) if floor < bound => (floor + bound) / 2.0,
            _ => bound - 1.0,
        };
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_type_gets_its_value() {
        let schema = json!({
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
                "from": {"type": "integer", "minimum": 3},
                "ratio": {"type": "number"},
                "low": {"type": "number", "minimum": -2.5},
                "flag": {"type": "boolean"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "where": {"type": "object", "properties": {"lat": {"type": "number"}}},
                "anything": {},
                "nothing": {"type": "null"}
            }
        });
        assert_eq!(
            instance(
                &schema,
                "What is the weather in Paris tomorrow and the day after?"
            ),
            json!({
                "city": "What is the weather in Paris tomorrow an",
                "unit": "celsius",
                "days": 1,
                "from": 3,
                "ratio": 1.5,
                "low": -2.5,
                "flag": true,
                "tags": ["What is the weather in Paris tomorrow an"],
                "where": {"lat": 1.5},
                "anything": null,
                "nothing": null
            })
        );
        assert_eq!(instance(&json!({"type": "string"}), ""), json!("text"));
    }

    #[test]
    fn openapi_subset_names_in_any_case() {
        let schema = json!({
            "type": "OBJECT",
            "properties": {"n": {"type": "INTEGER", "enum": ["101", "201"]}, "s": {"type": "STRING"}},
            "required": ["n"]
        });
        assert_eq!(instance(&schema, "hi"), json!({"n": 101, "s": "hi"}));
    }

    #[test]
    fn refs_defs_and_combinators() {
        // What pydantic emits for a model with a nested model and an optional field.
        let schema = json!({
            "$defs": {
                "Address": {"type": "object", "properties": {"street": {"type": "string"}},
                            "required": ["street"]},
                "Kind": {"enum": ["home", "work"], "type": "string"}
            },
            "type": "object",
            "properties": {
                "address": {"$ref": "#/$defs/Address"},
                "kind": {"$ref": "#/$defs/Kind", "default": "home"},
                "note": {"anyOf": [{"type": "string", "maxLength": 3}, {"type": "null"}]},
                "old": {"allOf": [{"$ref": "#/definitions/Legacy"}], "description": "x"},
                "pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "boolean"}]},
                "version": {"const": 2},
                "maybe": {"type": ["null", "integer"], "exclusiveMinimum": 1}
            },
            "definitions": {"Legacy": {"properties": {"id": {"type": "integer", "minimum": 7}}}},
            "required": ["address", "must"],
            "additionalProperties": false
        });
        assert_eq!(
            instance(&schema, "hello"),
            json!({
                "address": {"street": "hello"},
                "kind": "home",
                "note": "hel",
                "old": {"id": 7},
                "pair": [1, true],
                "version": 2,
                "maybe": 2,
                "must": "hello"
            })
        );
        // A recursive schema stops instead of looping.
        let recursive = json!({"$ref": "#", "type": "object"});
        assert_eq!(instance(&recursive, "x"), Value::Null);
        let tree = json!({"type": "object", "properties": {"child": {"$ref": "#"}}});
        assert!(instance(&tree, "x").is_object());
    }

    #[test]
    fn bounds_and_lengths_are_kept() {
        let cases = [
            (json!({"type": "integer", "maximum": -4}), json!(-4)),
            (json!({"type": "integer", "minimum": 0.5}), json!(1)),
            (json!({"type": "integer", "exclusiveMinimum": 5}), json!(6)),
            (
                json!({"type": "integer", "minimum": 5, "exclusiveMinimum": true}),
                json!(6),
            ),
            (json!({"type": "integer", "exclusiveMaximum": 1}), json!(0)),
            (
                json!({"type": "integer", "minimum": 3, "multipleOf": 5}),
                json!(5),
            ),
            (
                json!({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}),
                json!(0.5),
            ),
            (json!({"type": "number", "maximum": 1}), json!(1.0)),
            (json!({"type": "string", "minLength": 5}), json!("abxxx")),
            (json!({"type": "string", "maxLength": 1}), json!("a")),
            (
                json!({"type": "array", "minItems": 2, "items": {"type": "boolean"}}),
                json!([true, true]),
            ),
            (json!({"type": "array", "maxItems": 0}), json!([])),
            (
                json!({"type": "object", "minProperties": 1}),
                json!({"extra_1": "ab"}),
            ),
            (json!({"minLength": 3}), json!("abx")),
            (json!({}), Value::Null),
            (json!(true), Value::Null),
        ];
        for (schema, expected) in cases {
            assert_eq!(instance(&schema, "ab"), expected, "{schema}");
        }
    }
}
