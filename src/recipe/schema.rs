//! The JSON Schema of the recipe format, generated from the types (draft-07, which
//! yaml-language-server reads), and structural validation against it.

use std::sync::LazyLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{JsonType, ValidationError};
use serde_json::Value;

use super::diagnostic::{Diagnostic, SourceFile, closest, did_you_mean};
use super::types::{Project, Recipe};
use super::yaml::{SourceMap, escape_pointer};

/// The schemas' stable ids: they name the format version, not a place, so a schema
/// copied into a project (`factory init`) or served anywhere is the same schema.
pub const RECIPE_ID: &str = "urn:tiktok-factory:schema:recipe:1";
pub const PROJECT_ID: &str = "urn:tiktok-factory:schema:project:1";

pub fn recipe_schema() -> Value {
    generate::<Recipe>("TikTok Factory recipe", RECIPE_ID)
}

pub fn project_schema() -> Value {
    generate::<Project>("TikTok Factory project file (factory.yaml)", PROJECT_ID)
}

fn generate<T: schemars::JsonSchema>(title: &str, id: &str) -> Value {
    let generator = schemars::generate::SchemaSettings::draft07().into_generator();
    let mut schema = generator.into_root_schema_for::<T>().to_value();
    if let Some(obj) = schema.as_object_mut() {
        obj.insert("$id".into(), Value::String(id.into()));
        obj.insert("title".into(), Value::String(title.into()));
    }
    schema
}

/// Limits the schema states for editors that the semantic checks report themselves,
/// with the value, the allowed range and a hint (`version`, names, ranges, the video
/// size): the structural pass leaves them to those checks, so each mistake is reported
/// once, and the typed read keeps the value the checks look at. A negative number is
/// still structural: no unsigned field can hold it.
fn left_to_checks(error: &ValidationError<'_>) -> bool {
    match &error.kind {
        ValidationErrorKind::Constant { .. }
        | ValidationErrorKind::Pattern { .. }
        | ValidationErrorKind::Maximum { .. }
        | ValidationErrorKind::MinLength { .. }
        | ValidationErrorKind::MaxLength { .. } => true,
        ValidationErrorKind::Minimum { .. } => error.instance.as_f64().is_some_and(|n| n >= 0.0),
        _ => false,
    }
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

/// What the structural check found, and how to turn the document into something the
/// types can read so the semantic checks still run.
#[derive(Debug, Default)]
pub struct Findings {
    pub diags: Vec<Diagnostic>,
    /// What to remove before the typed read: each rejected value, or, when the type
    /// cannot do without it, the nearest enclosing value it can do without (a whole
    /// voice, say). The empty pointer means nothing typed can be had.
    pub prune: Vec<String>,
    /// Misspelt choices and the choice they are one typo away from. The typed read
    /// assumes that choice, so the settings next to it are still checked against it.
    pub assumed: Vec<(String, String)>,
}

/// Every structural error: unknown and missing keys, wrong types, bad enum values.
pub fn check(kind: Kind, value: &Value, file: &SourceFile, map: &SourceMap) -> Findings {
    let (validator, schema) = match kind {
        Kind::Recipe => (&*RECIPE, recipe_schema()),
        Kind::Project => (&*PROJECT, project_schema()),
    };
    let mut found = Findings::default();
    // Rejected values, and objects a required key is missing from.
    let mut bad = Vec::new();
    let out = &mut found.diags;
    let mut errors = Vec::new();
    for error in validator.iter_errors(value) {
        unwrap_optional(error.to_owned(), &mut errors);
    }
    errors.retain(|e| !left_to_checks(e));
    for error in errors {
        let pointer = error.instance_path.as_str().to_owned();
        let here = display_path(&pointer);
        let choices = match &error.kind {
            ValidationErrorKind::Enum { options } => options.as_array().map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            }),
            // Enums whose variants are documented become a `oneOf` of constants.
            ValidationErrorKind::OneOfNotValid { context } => constants(context),
            _ => None,
        };
        if let Some(choices) = choices {
            let got = error.instance.as_str().unwrap_or_default();
            let suggestion = closest(got, choices.iter().map(String::as_str)).map(str::to_owned);
            let hint = suggestion.as_ref().map_or_else(
                || {
                    format!(
                        "one of {}",
                        choices
                            .iter()
                            .map(|c| format!("`{c}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                },
                |c| format!("did you mean `{c}`?"),
            );
            match suggestion {
                Some(c) => found.assumed.push((pointer.clone(), c)),
                None => bad.push(pointer.clone()),
            }
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
            continue;
        }
        if !matches!(error.kind, ValidationErrorKind::AdditionalProperties { .. }) {
            bad.push(pointer.clone());
        }
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
                    TypeKind::Single(t) => yaml_type(*t).to_owned(),
                    TypeKind::Multiple(set) => set
                        .iter()
                        .filter(|t| *t != JsonType::Null)
                        .map(yaml_type)
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
    found.prune = bad
        .into_iter()
        .map(|mut pointer| {
            while is_required(&schema, &pointer) {
                pointer.truncate(pointer.rfind('/').unwrap_or(0));
            }
            pointer
        })
        .collect();
    found
}

/// An optional section (`publish`, `notify`, …) is `anyOf: [section, null]`; a mistake
/// inside it fails both branches, and is reported as the section's own errors, which
/// point at the mistake, rather than as the `anyOf`, which points at the section.
fn unwrap_optional(error: ValidationError<'static>, out: &mut Vec<ValidationError<'static>>) {
    let is_null = |branch: &[ValidationError<'static>]| {
        matches!(
            branch,
            [ValidationError {
                kind: ValidationErrorKind::Type {
                    kind: TypeKind::Single(JsonType::Null)
                },
                ..
            }]
        )
    };
    let section = match &error.kind {
        ValidationErrorKind::AnyOf { context } if context.len() == 2 => context
            .iter()
            .position(|b| is_null(b))
            .map(|null| 1 - null)
            .filter(|&other| !context[other].is_empty()),
        _ => None,
    };
    match (section, error.kind) {
        (Some(i), ValidationErrorKind::AnyOf { mut context }) => {
            for inner in context.swap_remove(i) {
                unwrap_optional(inner, out);
            }
        }
        (_, kind) => out.push(ValidationError { kind, ..error }),
    }
}

/// Whether the object holding `pointer` cannot be read without it.
fn is_required(schema: &Value, pointer: &str) -> bool {
    let Some((parent, key)) = pointer.rsplit_once('/') else {
        return false;
    };
    let key = key.replace("~1", "/").replace("~0", "~");
    node_at(schema, parent)
        .get("required")
        .and_then(Value::as_array)
        .is_some_and(|r| r.iter().any(|k| k.as_str() == Some(key.as_str())))
}

/// The allowed strings when every branch of a `oneOf` failed only for not being its
/// constant; `None` for any other `oneOf`.
fn constants(context: &[Vec<ValidationError<'static>>]) -> Option<Vec<String>> {
    context
        .iter()
        .map(|branch| match branch.as_slice() {
            [only] => match &only.kind {
                ValidationErrorKind::Constant {
                    expected_value: Value::String(c),
                } => Some(c.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
        .filter(|c| !c.is_empty())
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

/// JSON Schema's type names in the words YAML users know (and `describe` uses).
fn yaml_type(t: JsonType) -> &'static str {
    match t {
        JsonType::Array => "list",
        JsonType::Boolean => "boolean",
        JsonType::Integer => "integer",
        JsonType::Null => "null",
        JsonType::Number => "number",
        JsonType::Object => "mapping",
        JsonType::String => "string",
    }
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
    node_at(schema, pointer)
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// The schema of the value at `pointer`, references followed; null when unknown.
fn node_at<'a>(schema: &'a Value, pointer: &str) -> &'a Value {
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
            return &Value::Null;
        }
    }
    resolve(schema, node)
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
