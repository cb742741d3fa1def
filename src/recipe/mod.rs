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
    /// The other columns of its row in a CSV topics file: vars of this topic's jobs.
    pub vars: BTreeMap<String, Value>,
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
    let found = schema::check(kind, &doc.value, &file, &doc.map);
    let source = Source { file, map: doc.map };
    let typed = read_typed::<T>(&doc.value, &found);
    if typed.is_none() && found.diags.is_empty() {
        // The schema is generated from the types; this means they disagree.
        if let Err(e) = serde_json::from_value::<T>(doc.value.clone()) {
            diags.push(Diagnostic::new(
                &source.file,
                source.at(""),
                "invalid-value",
                e.to_string(),
            ));
        }
    }
    diags.extend(found.diags);
    Ok(Parsed {
        typed,
        source,
        raw: doc.value,
        diags,
    })
}

/// The typed value with what the schema rejected pruned and misspelt choices assumed,
/// so one broken definition does not hide the mistakes in the rest of the file.
fn read_typed<T: DeserializeOwned>(value: &Value, found: &schema::Findings) -> Option<T> {
    let mut value = value.clone();
    for (pointer, choice) in &found.assumed {
        if let Some(v) = value.pointer_mut(pointer) {
            *v = Value::String(choice.clone());
        }
    }
    if found.prune.iter().any(String::is_empty) {
        return None;
    }
    // Deepest and last first, so removing a list item does not shift the ones still to go.
    let mut pointers: Vec<Vec<PointerSegment<'_>>> = found
        .prune
        .iter()
        .map(|p| p.split('/').skip(1).map(PointerSegment::of).collect())
        .collect();
    pointers.sort();
    pointers.dedup();
    for segments in pointers.iter().rev() {
        let pointer: String = segments.iter().map(|s| format!("/{}", s.text())).collect();
        prune(&mut value, &pointer);
    }
    serde_json::from_value(value).ok()
}

/// A pointer segment that orders list indices numerically (`/9` before `/10`).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum PointerSegment<'a> {
    Index(usize),
    Key(&'a str),
}

impl<'a> PointerSegment<'a> {
    fn of(segment: &'a str) -> Self {
        segment.parse().map_or(Self::Key(segment), Self::Index)
    }
    fn text(&self) -> String {
        match self {
            Self::Index(i) => i.to_string(),
            Self::Key(k) => (*k).to_owned(),
        }
    }
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
        diags.extend(check::secrets(&parsed.source, &parsed.raw));
        return (None, diags);
    };
    let (project, project_raw) = match project {
        Some((p, s, raw)) => (Some((p, s)), Some(raw)),
        None => (None, None),
    };
    let mut resolved = resolve(recipe, parsed.source, project, path, &dir);
    diags.extend(check::check(&mut resolved));
    // Without espeak-ng there is nothing to check against; the tool check says it is missing.
    if let Some(known) = crate::providers::offline::EspeakVoices::installed() {
        diags.extend(check::espeak_voices(&resolved, known));
    }
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
            vars: BTreeMap::new(),
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
///
/// Links to directories are not followed (a link back up, `ln -s . recipes/a`, would
/// otherwise walk forever), no real directory is entered twice, and a file reached
/// under two names (a link to a recipe) is read once.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Diagnostic> {
    let mut walk = Walk::default();
    for path in paths {
        if path.is_dir() {
            walk.dir(path).map_err(|e| {
                Diagnostic::file(
                    path,
                    "unreadable",
                    format!("cannot read `{}`: {e}", path.display()),
                )
            })?;
        } else if path.exists() {
            walk.file(path.clone());
        } else {
            return Err(Diagnostic::file(
                path,
                "not-found",
                format!("`{}` does not exist", path.display()),
            ));
        }
    }
    let mut out = walk.files;
    out.sort();
    out.dedup();
    Ok(out)
}

/// The folders entered and the files found so far, by their real paths.
#[derive(Default)]
struct Walk {
    dirs: std::collections::HashSet<PathBuf>,
    real_files: std::collections::HashSet<PathBuf>,
    files: Vec<PathBuf>,
}

impl Walk {
    fn file(&mut self, path: PathBuf) {
        let real = path.canonicalize().unwrap_or_else(|_| path.clone());
        if self.real_files.insert(real) {
            self.files.push(path);
        }
    }

    fn dir(&mut self, dir: &Path) -> std::io::Result<()> {
        let real = dir.canonicalize()?;
        if !self.dirs.insert(real) {
            return Ok(());
        }
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            // The entry's own type: a link is a link, whatever it points at.
            let kind = entry.file_type()?;
            entries.push((kind.is_symlink(), entry.file_name(), kind, entry));
        }
        // Real files before links, then by name: of two names of one file, the file's own
        // is kept, whatever order the disk lists them in.
        entries.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        for (_, _, kind, entry) in entries {
            let path = entry.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name.starts_with('.') {
                continue;
            }
            if kind.is_dir() {
                self.dir(&path)?;
            } else if (name.ends_with(".yaml") || name.ends_with(".yml"))
                && name != PROJECT_FILE
                && !(kind.is_symlink() && path.is_dir())
            {
                self.file(path);
            }
        }
        Ok(())
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::sync::mpsc;
    use std::time::Duration;

    /// `discover` on `dir`, or a failure if it does not return within ten seconds.
    fn discover_within(dir: &Path) -> Vec<PathBuf> {
        let (tx, rx) = mpsc::channel();
        let dir = dir.to_owned();
        std::thread::spawn(move || {
            let _ = tx.send(discover(&[dir]));
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("discover returned within ten seconds")
            .expect("discover succeeded")
    }

    #[test]
    fn a_symlink_loop_does_not_hang_discovery() {
        let tmp = tempfile::tempdir().unwrap();
        let recipes = tmp.path().join("recipes");
        std::fs::create_dir(&recipes).unwrap();
        std::fs::write(recipes.join("one.yaml"), "name: one\n").unwrap();
        symlink(".", recipes.join("a")).unwrap();
        symlink(".", recipes.join("b")).unwrap();
        let found = discover_within(&recipes);
        assert_eq!(found, [recipes.join("one.yaml")]);
    }

    #[test]
    fn a_self_link_reads_every_recipe_once() {
        let tmp = tempfile::tempdir().unwrap();
        let recipes = tmp.path().join("recipes");
        std::fs::create_dir_all(recipes.join("sub")).unwrap();
        std::fs::write(recipes.join("one.yaml"), "name: one\n").unwrap();
        std::fs::write(recipes.join("sub/two.yaml"), "name: two\n").unwrap();
        symlink(".", recipes.join("self")).unwrap();
        symlink("..", recipes.join("sub/up")).unwrap();
        symlink("one.yaml", recipes.join("also-one.yaml")).unwrap();
        let found = discover_within(&recipes);
        assert_eq!(
            found,
            [recipes.join("one.yaml"), recipes.join("sub/two.yaml")]
        );
    }
}
