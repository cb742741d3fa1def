//! The JSON Schema of the recipe format, generated from the types (draft-07, which
//! yaml-language-server reads), and structural validation against it.

use std::sync::LazyLock;

use jsonschema::error::ValidationErrorKind;
use serde_json::Value;

use super::diagnostic::{Diagnostic, SourceFile, did_you_mean};
use super::types::{Project, Recipe};
use super::yaml::{SourceMap, escape_pointer};

pub fn recipe_schema() -> Value {
    generate::<Recipe>("TikTok Factory recipe")
}

pub fn project_schema() -> Value {
    generate::<Project>("TikTok Factory project file (factory.yaml)")
}

fn generate<T: schemars::JsonSchema>(title: &str) -> Value {
    let generator = schemars::generate::SchemaSettings::draft07().into_generator();
    let mut schema = generator.into_root_schema_for::<T>().to_value();
    if let Some(obj) = schema.as_object_mut() {
        obj.insert("title".into(), Value::String(title.into()));
    }
    schema
}

/// The committed schema text: what `factory schema` prints and `schemas/` holds.
pub fn to_pretty(schema: &Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_default();
    text.push('\n');
    text
}

static RECIPE: LazyLock<jsonschema::Validator> = LazyLock::new(|| compile(&recipe_schema()));
static PROJECT: LazyLock<jsonschema::Validator> = LazyLock::new(|| compile(&project_schema()));

fn compile(schema: &Value) -> jsonschema::Validator {
    // The schema is generated from our own types; failing to compile it is a bug.
    #[allow(clippy::expect_used)]
    jsonschema::draft7::new(schema).expect("generated schema compiles")
}

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Recipe,
    Project,
}

/// Every structural error: unknown and missing keys, wrong types, bad enum values. Also
/// returns the pointers of the offending values, so the caller can prune them.
pub fn check(
    kind: Kind,
    value: &Value,
    file: &SourceFile,
    map: &SourceMap,
) -> (Vec<Diagnostic>, Vec<String>) {
    let (validator, schema) = match kind {
        Kind::Recipe => (&*RECIPE, recipe_schema()),
        Kind::Project => (&*PROJECT, project_schema()),
    };
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for error in validator.iter_errors(value) {
        let pointer = error.instance_path.as_str().to_owned();
        if !matches!(
            error.kind,
            ValidationErrorKind::AdditionalProperties { .. } | ValidationErrorKind::Required { .. }
        ) {
            bad.push(pointer.clone());
        }
        let here = display_path(&pointer);
        match &error.kind {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                let known = known_keys(&schema, value, &pointer);
                for key in unexpected {
                    let key_ptr = format!("{pointer}/{}", escape_pointer(key));
                    bad.push(key_ptr.clone());
                    let hint = did_you_mean(key, known.iter().map(String::as_str)).or_else(|| {
                        (!known.is_empty()).then(|| {
                            format!(
                                "allowed keys here: {}",
                                known
                                    .iter()
                                    .map(|k| format!("`{k}`"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        })
                    });
                    out.push(
                        Diagnostic::new(
                            file,
                            map.key(&key_ptr),
                            "unknown-key",
                            format!("unknown key `{key}` in {here}"),
                        )
                        .with_hint_opt(hint),
                    );
                }
            }
            ValidationErrorKind::Required { property } => {
                let name = property.as_str().unwrap_or_default();
                out.push(Diagnostic::new(
                    file,
                    map.key(&pointer),
                    "missing-key",
                    format!("missing key `{name}` in {here}"),
                ));
            }
            ValidationErrorKind::Type { kind } => {
                let expected = match kind {
                    jsonschema::error::TypeKind::Single(t) => t.to_string(),
                    jsonschema::error::TypeKind::Multiple(set) => set
                        .iter()
                        .map(|t| t.to_string())
                        .filter(|t| t != "null")
                        .collect::<Vec<_>>()
                        .join(" or "),
                };
                out.push(Diagnostic::new(
                    file,
                    map.value(&pointer),
                    "wrong-type",
                    format!(
                        "{here} must be {} {expected}, not {}",
                        article(&expected),
                        describe(&error.instance)
                    ),
                ));
            }
            ValidationErrorKind::Enum { options } => {
                let choices: Vec<&str> = options
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let got = error.instance.as_str().unwrap_or_default();
                let hint = did_you_mean(got, choices.iter().copied()).unwrap_or_else(|| {
                    format!(
                        "one of {}",
                        choices
                            .iter()
                            .map(|c| format!("`{c}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                });
                out.push(
                    Diagnostic::new(
                        file,
                        map.value(&pointer),
                        "invalid-value",
                        format!(
                            "{} is not a valid value for {here}",
                            describe(&error.instance)
                        ),
                    )
                    .with_hint(hint),
                );
            }
            ValidationErrorKind::Minimum { limit } => out.push(Diagnostic::new(
                file,
                map.value(&pointer),
                "out-of-range",
                format!("{here} must be at least {limit}"),
            )),
            _ => out.push(Diagnostic::new(
                file,
                map.value(&pointer),
                "invalid-value",
                format!("{here}: {error}"),
            )),
        }
    }
    (out, bad)
}

/// `/batch/matrix/voice/1` → "`batch.matrix.voice[1]`"; the root → "the recipe".
pub fn display_path(pointer: &str) -> String {
    if pointer.is_empty() {
        return "the top level".to_owned();
    }
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if seg.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    format!("`{out}`")
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null (empty)".to_owned(),
        Value::Bool(b) => format!("the boolean `{b}`"),
        Value::Number(n) => format!("the number `{n}`"),
        Value::String(s) => format!("`{s}`"),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "a mapping".to_owned(),
    }
}

/// The property names the schema allows at `pointer`, for hints.
fn known_keys(schema: &Value, _instance: &Value, pointer: &str) -> Vec<String> {
    let mut node = schema;
    for seg in pointer.split('/').skip(1) {
        node = resolve(schema, node);
        if let Some(props) = node.get("properties") {
            node = props.get(seg).unwrap_or(&Value::Null);
        } else if let Some(items) = node.get("items") {
            node = items;
        } else if let Some(add) = node.get("additionalProperties") {
            node = add;
        } else {
            return Vec::new();
        }
    }
    let node = resolve(schema, node);
    node.get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// Follows `$ref` and single-entry `anyOf` wrappers (how optional fields are written).
fn resolve<'a>(root: &'a Value, mut node: &'a Value) -> &'a Value {
    for _ in 0..8 {
        if let Some(r) = node.get("$ref").and_then(Value::as_str) {
            let path = r.trim_start_matches('#');
            node = root.pointer(path).unwrap_or(&Value::Null);
        } else if let Some(any) = node.get("anyOf").and_then(Value::as_array) {
            node = any
                .iter()
                .find(|v| v.get("type") != Some(&Value::String("null".into())))
                .unwrap_or(&Value::Null);
        } else {
            break;
        }
    }
    node
}
