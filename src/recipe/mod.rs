//! Recipes: the YAML format ([`types`]), loading with positions ([`yaml`]), structural
//! checks against the generated JSON Schema ([`schema`]), and the semantic checks
//! ([`check`]) that need the whole recipe and its project file.
//!
//! [`load`] is the one entry point: a path in, a [`Resolved`] recipe (project file
//! merged, topics read) or every [`Diagnostic`] at once.

pub mod check;
pub mod diagnostic;
pub mod schema;
pub mod secrets;
pub mod topics;
pub mod types;
pub mod yaml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

pub use diagnostic::{Diagnostic, SourceFile};
pub use types::*;
use yaml::SourceMap;

/// The project file's name; it sits beside the recipes it serves.
pub const PROJECT_FILE: &str = "factory.yaml";

/// A parsed YAML file with its positions.
#[derive(Debug, Clone)]
pub struct Source {
    pub file: SourceFile,
    pub map: SourceMap,
}

impl Source {
    pub fn at(&self, pointer: &str) -> yaml::Pos {
        self.map.value(pointer)
    }
    pub fn key_at(&self, pointer: &str) -> yaml::Pos {
        self.map.key(pointer)
    }
}

/// Which file a definition came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Recipe,
    Project,
}

/// A definition with where it was written.
#[derive(Debug, Clone)]
pub struct Located<T> {
    pub value: T,
    pub origin: Origin,
    pub pointer: String,
}

/// One topic and where it came from (a list entry, or the topics file).
#[derive(Debug, Clone)]
pub struct Topic {
    pub text: String,
    pub pointer: String,
}

/// A recipe with its project file merged in: what expansion works from.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub name: String,
    pub path: PathBuf,
    /// The recipe's directory: relative paths inside the recipe are relative to it.
    pub dir: PathBuf,
    pub recipe: Recipe,
    pub source: Source,
    pub project: Option<Source>,
    /// Project vars overridden by recipe vars (batch vars are applied per job).
    pub vars: BTreeMap<String, Value>,
    pub voices: BTreeMap<String, Located<VoiceDef>>,
    pub templates: BTreeMap<String, Located<TemplateDef>>,
    pub topics: Vec<Topic>,
    pub publish: Publish,
    pub notify: Option<Notify>,
}

impl Resolved {
    pub fn source(&self, origin: Origin) -> &Source {
        match (origin, &self.project) {
            (Origin::Project, Some(p)) => p,
            _ => &self.source,
        }
    }

    /// A diagnostic at `pointer` in the file `origin` names.
    pub fn diag(
        &self,
        origin: Origin,
        pointer: &str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Diagnostic {
        let src = self.source(origin);
        Diagnostic::new(&src.file, src.at(pointer), code, message)
    }

    /// Like [`Self::diag`], pointing at the key of the entry instead of its value.
    pub fn diag_key(
        &self,
        origin: Origin,
        pointer: &str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Diagnostic {
        let src = self.source(origin);
        Diagnostic::new(&src.file, src.key_at(pointer), code, message)
    }
}

/// A parsed file: its typed value when it could be had, and the mistakes found so far.
struct Parsed<T> {
    typed: Option<T>,
    source: Source,
    raw: Value,
    diags: Vec<Diagnostic>,
}

/// Reads and parses one YAML file, reporting syntax errors, duplicate keys and schema
/// errors. Where the schema rejects some values, they are pruned and the rest is still
/// typed, so the semantic checks can report their mistakes in the same run.
fn parse_file<T: DeserializeOwned>(
    path: &Path,
    kind: schema::Kind,
) -> Result<Parsed<T>, Vec<Diagnostic>> {
    let bytes = std::fs::read(path).map_err(|e| {
        vec![Diagnostic::file(
            path,
            "unreadable",
            format!("cannot read `{}`: {e}", path.display()),
        )]
    })?;
    if bytes.len() > yaml::MAX_BYTES {
        return Err(vec![Diagnostic::file(
            path,
            "too-large",
            format!(
                "file is {} bytes; recipes are limited to {} bytes",
                bytes.len(),
                yaml::MAX_BYTES
            ),
        )]);
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        vec![Diagnostic::file(
            path,
            "not-utf8",
            format!("`{}` is not UTF-8 text: {e}", path.display()),
        )]
    })?;
    let file = SourceFile {
        path: path.to_owned(),
        text: Arc::from(text),
    };
    let doc = yaml::parse(&file.text).map_err(|e| {
        vec![Diagnostic::new(
            &file,
            e.pos,
            "yaml-syntax",
            format!("invalid YAML: {}", e.message),
        )]
    })?;
    let mut diags: Vec<Diagnostic> = doc
        .map
        .duplicates()
        .iter()
        .map(|(pointer, pos)| {
            let first = doc.map.key(pointer);
            Diagnostic::new(
                &file,
                *pos,
                "duplicate-key",
                format!(
                    "duplicate key {} (first written on line {})",
                    schema::display_path(pointer),
                    first.line
                ),
            )
            .with_hint("remove one of them; YAML keys must be unique")
        })
        .collect();
    if doc.value.is_null() {
        diags.push(Diagnostic::file(path, "empty", "the file is empty"));
        return Err(diags);
    }
    let (schema_diags, bad) = schema::check(kind, &doc.value, &file, &doc.map);
    diags.extend(schema_diags);
    let source = Source { file, map: doc.map };
    let mut pruned = doc.value.clone();
    for pointer in &bad {
        prune(&mut pruned, pointer);
    }
    let typed = match serde_json::from_value::<T>(pruned) {
        Ok(t) => Some(t),
        Err(e) => {
            if bad.is_empty() {
                diags.push(Diagnostic::new(
                    &source.file,
                    source.at(""),
                    "invalid-value",
                    e.to_string(),
                ));
            }
            None
        }
    };
    Ok(Parsed {
        typed,
        source,
        raw: doc.value,
        diags,
    })
}

/// Removes the value at `pointer` (an invalid one) so the rest can still be read.
fn prune(value: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let key = last.replace("~1", "/").replace("~0", "~");
    match value.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.remove(&key);
        }
        Some(Value::Array(items)) => {
            if let Ok(i) = key.parse::<usize>()
                && i < items.len()
            {
                items.remove(i);
            }
        }
        _ => {}
    }
}

/// Loads a recipe and its project file, merges them, reads topics, and runs every check
/// that does not need expansion.
pub fn load(path: &Path) -> Result<Resolved, Vec<Diagnostic>> {
    match load_partial(path) {
        (Some(r), d) if d.is_empty() => Ok(r),
        (_, d) => Err(d),
    }
}

/// Like [`load`], but also returns the recipe when it has mistakes yet could be read,
/// so later checks (template syntax, variables) can still report theirs.
pub fn load_partial(path: &Path) -> (Option<Resolved>, Vec<Diagnostic>) {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_owned);
    let project_path = dir.join(PROJECT_FILE);
    let mut diags = Vec::new();
    let project = if project_path.is_file() {
        match parse_file::<Project>(&project_path, schema::Kind::Project) {
            Ok(p) => {
                diags.extend(p.diags);
                p.typed.map(|t| (t, p.source, p.raw))
            }
            Err(d) => {
                diags.extend(d);
                None
            }
        }
    } else {
        None
    };
    let parsed = match parse_file::<Recipe>(path, schema::Kind::Recipe) {
        Ok(p) => p,
        Err(d) => {
            diags.extend(d);
            return (None, diags);
        }
    };
    diags.extend(parsed.diags);
    let Some(recipe) = parsed.typed else {
        return (None, diags);
    };
    let (project, project_raw) = match project {
        Some((p, s, raw)) => (Some((p, s)), Some(raw)),
        None => (None, None),
    };
    let mut resolved = resolve(recipe, parsed.source, project, path, &dir);
    diags.extend(check::check(&mut resolved));
    diags.extend(check::secrets(&resolved.source, &parsed.raw));
    if let (Some(src), Some(raw)) = (&resolved.project, &project_raw) {
        diags.extend(check::secrets(src, raw));
    }
    (Some(resolved), diags)
}

fn resolve(
    recipe: Recipe,
    source: Source,
    project: Option<(Project, Source)>,
    path: &Path,
    dir: &Path,
) -> Resolved {
    let mut vars = BTreeMap::new();
    let mut voices = BTreeMap::new();
    let mut templates = BTreeMap::new();
    let mut publish = None;
    let mut notify = None;
    let mut project_source = None;
    if let Some((p, src)) = project {
        vars.extend(p.vars);
        for (name, v) in p.voices {
            let pointer = format!("/voices/{}", yaml::escape_pointer(&name));
            voices.insert(
                name,
                Located {
                    value: v,
                    origin: Origin::Project,
                    pointer,
                },
            );
        }
        for (name, t) in p.templates {
            let pointer = format!("/templates/{}", yaml::escape_pointer(&name));
            templates.insert(
                name,
                Located {
                    value: t,
                    origin: Origin::Project,
                    pointer,
                },
            );
        }
        publish = p.publish;
        notify = p.notify;
        project_source = Some(src);
    }
    vars.extend(recipe.vars.clone());
    for (name, v) in &recipe.voices {
        let pointer = format!("/voices/{}", yaml::escape_pointer(name));
        voices.insert(
            name.clone(),
            Located {
                value: v.clone(),
                origin: Origin::Recipe,
                pointer,
            },
        );
    }
    for (name, t) in &recipe.templates {
        let pointer = format!("/templates/{}", yaml::escape_pointer(name));
        templates.insert(
            name.clone(),
            Located {
                value: t.clone(),
                origin: Origin::Recipe,
                pointer,
            },
        );
    }
    let topics = recipe
        .batch
        .matrix
        .topic
        .iter()
        .enumerate()
        .map(|(i, t)| Topic {
            text: t.clone(),
            pointer: format!("/batch/matrix/topic/{i}"),
        })
        .collect();
    Resolved {
        name: recipe.name.clone(),
        path: path.to_owned(),
        dir: dir.to_owned(),
        publish: recipe.publish.clone().or(publish).unwrap_or_default(),
        notify: recipe.notify.clone().or(notify),
        recipe,
        source,
        project: project_source,
        vars,
        voices,
        templates,
        topics,
    }
}

/// Recipe files under `paths`: files as given, directories searched recursively for
/// `*.yaml`/`*.yml` (skipping the project file, hidden and state directories), sorted.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Diagnostic> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            walk(path, &mut out).map_err(|e| {
                Diagnostic::file(
                    path,
                    "unreadable",
                    format!("cannot read `{}`: {e}", path.display()),
                )
            })?;
        } else if path.exists() {
            out.push(path.clone());
        } else {
            return Err(Diagnostic::file(
                path,
                "not-found",
                format!("`{}` does not exist", path.display()),
            ));
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            walk(&path, out)?;
        } else if (name.ends_with(".yaml") || name.ends_with(".yml")) && name != PROJECT_FILE {
            out.push(path);
        }
    }
    Ok(())
}
