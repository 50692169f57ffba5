//! A JSON value that validates against a JSON Schema, for simulated tool-call arguments and
//! structured output. Covers the schema subset tools use: type (also as a list), properties,
//! required, items, enum, const, anyOf/oneOf/allOf, $ref into $defs/definitions, and bounds.

use serde_json::{Map, Value, json};

/// A sample instance of `schema`.
pub fn sample(schema: &Value) -> Value {
    Sampler { root: schema }.value(schema, 0)
}

struct Sampler<'a> {
    root: &'a Value,
}

impl Sampler<'_> {
    fn value(&self, schema: &Value, depth: usize) -> Value {
        if depth > 16 {
            return Value::Null;
        }
        let Some(s) = schema.as_object() else {
            return json!("sample");
        };
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            return match self.resolve(r) {
                Some(target) => self.value(target, depth + 1),
                None => Value::Null,
            };
        }
        if let Some(c) = s.get("const") {
            return c.clone();
        }
        if let Some(first) = s
            .get("enum")
            .and_then(Value::as_array)
            .and_then(|e| e.first())
        {
            return first.clone();
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(options) = s.get(key).and_then(Value::as_array) {
                let pick = options
                    .iter()
                    .find(|o| o.get("type").and_then(Value::as_str) != Some("null"))
                    .or(options.first());
                if let Some(o) = pick {
                    return self.value(o, depth + 1);
                }
            }
        }
        if let Some(all) = s.get("allOf").and_then(Value::as_array) {
            let mut merged = Map::new();
            for part in all {
                if let Value::Object(o) = self.value(part, depth + 1) {
                    merged.extend(o);
                }
            }
            return Value::Object(merged);
        }
        let kind = match s.get("type") {
            Some(Value::String(t)) => t.as_str(),
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null")
                .unwrap_or("null"),
            _ if s.contains_key("properties") => "object",
            _ if s.contains_key("items") => "array",
            _ => "string",
        };
        match kind {
            "object" => {
                let mut out = Map::new();
                if let Some(props) = s.get("properties").and_then(Value::as_object) {
                    for (name, prop) in props {
                        out.insert(name.clone(), self.value(prop, depth + 1));
                    }
                }
                Value::Object(out)
            }
            "array" => {
                let n = s
                    .get("minItems")
                    .and_then(Value::as_u64)
                    .unwrap_or(1)
                    .max(1);
                let item = s
                    .get("items")
                    .map_or(json!("sample"), |i| self.value(i, depth + 1));
                Value::Array((0..n).map(|_| item.clone()).collect())
            }
            "integer" => {
                let min = s.get("minimum").and_then(Value::as_i64).unwrap_or(1);
                let max = s.get("maximum").and_then(Value::as_i64).unwrap_or(i64::MAX);
                json!(min.min(max))
            }
            "number" => {
                let min = s.get("minimum").and_then(Value::as_f64).unwrap_or(1.5);
                let max = s.get("maximum").and_then(Value::as_f64).unwrap_or(f64::MAX);
                json!(min.min(max))
            }
            "boolean" => json!(true),
            "null" => Value::Null,
            _ => {
                let min = s.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
                let mut text = match s.get("format").and_then(Value::as_str) {
                    Some("date") => "2026-01-01".to_owned(),
                    Some("date-time") => "2026-01-01T00:00:00Z".to_owned(),
                    Some("email") => "user@example.com".to_owned(),
                    Some("uri") => "https://example.com".to_owned(),
                    _ => "sample".to_owned(),
                };
                while text.len() < min {
                    text.push('x');
                }
                if let Some(max) = s.get("maxLength").and_then(Value::as_u64) {
                    text.truncate(max as usize);
                }
                Value::String(text)
            }
        }
    }

    fn resolve(&self, reference: &str) -> Option<&Value> {
        let pointer = reference.strip_prefix('#')?;
        self.root.pointer(pointer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_with_required_typed_fields() {
        let schema = json!({
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
                "note": {"type": ["string", "null"]}
            },
            "required": ["city", "days", "unit", "tags", "note"],
            "additionalProperties": false
        });
        let v = sample(&schema);
        assert_eq!(v["city"], "sample");
        assert_eq!(v["days"], 1);
        assert_eq!(v["unit"], "celsius");
        assert_eq!(v["tags"].as_array().unwrap().len(), 2);
        assert_eq!(v["note"], "sample");
    }

    #[test]
    fn refs_and_any_of_resolve() {
        let schema = json!({
            "type": "object",
            "properties": { "step": {"$ref": "#/$defs/step"}, "x": {"anyOf": [{"type": "null"}, {"type": "number"}]} },
            "$defs": { "step": {"type": "object", "properties": {"n": {"type": "boolean"}}} }
        });
        let v = sample(&schema);
        assert_eq!(v["step"]["n"], true);
        assert_eq!(v["x"], 1.5);
    }
}
