//! Expansion: a resolved recipe becomes jobs. Each job is a [`JobSpec`] with every
//! template string rendered, and a [`JobId`] derived from it.
//!
//! # The canonical form behind a `JobId`
//!
//! `JobId = first 16 hex digits of sha256("tiktok-factory/job/v1\n" + canonical JSON of
//! the JobSpec)`. The canonical JSON has object keys sorted, no whitespace, and holds
//! only resolved meaning: rendered strings, the full voice definition (not just its
//! name), defaults filled in. So comments, key order, indentation, quoting style, YAML
//! anchors or moving a definition into `factory.yaml` never change an id; changing
//! anything a job would produce differently always does.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use minijinja::{Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::recipe::diagnostic::Diagnostic;
use crate::recipe::{
    CaptionsDef, Cell, FootageProvider, Notify, Origin, Publish, Resolved, ScriptProvider,
    TemplateDef, VideoDef, VoiceDef,
};

/// Instructions one template render may spend; stops runaway loops in a recipe.
const FUEL: u64 = 100_000;

/// Diagnostic codes about template strings themselves, meaningful even when the
/// recipe has other mistakes.
pub const TEMPLATE_CODES: [&str; 5] = [
    "template-syntax",
    "template-unbounded",
    "undefined-variable",
    "unknown-filter",
    "reserved-var",
];

/// Filter names minijinja may provide, for the did-you-mean of an unknown one; only
/// those the environment really has are offered.
const FILTER_NAMES: &[&str] = &[
    "abs",
    "attr",
    "bool",
    "capitalize",
    "count",
    "d",
    "default",
    "dictsort",
    "e",
    "escape",
    "first",
    "float",
    "int",
    "items",
    "join",
    "last",
    "length",
    "lines",
    "list",
    "lower",
    "max",
    "min",
    "replace",
    "reverse",
    "round",
    "safe",
    "sort",
    "split",
    "string",
    "sum",
    "title",
    "trim",
    "unique",
    "upper",
    "urlencode",
];

/// Whether the template environment has a filter of this name: a one-line template
/// using it renders, or fails for any other reason than an unknown filter.
fn has_filter(env: &Environment<'_>, name: &str) -> bool {
    env.render_str(&format!("{{{{ '' | {name} }}}}"), ())
        .map_or_else(
            |e| e.kind() != minijinja::ErrorKind::UnknownFilter,
            |_| true,
        )
}

/// The longest each rendered string may be, in characters. A caption is what TikTok
/// accepts (2,200); a hashtag, a title and a footage query are far shorter in practice.
pub mod bounds {
    pub const TITLE: usize = 150;
    pub const CAPTION: usize = 2_200;
    pub const HASHTAG: usize = 100;
    pub const PROMPT: usize = 20_000;
    pub const CTA: usize = 300;
    pub const QUERY: usize = 200;
    /// A narration of one's own: about five minutes of speech, and what ElevenLabs'
    /// smallest per-request limit takes.
    pub const TEXT: usize = 5_000;
    /// Any value a filter makes while rendering (`replace`, `join`), in bytes.
    pub const VALUE_BYTES: usize = 4 * PROMPT;
    /// Operators (`~`, `+`, `|`) one template string may use. With no loops, sets or
    /// macros, each runs at most once, so no value grows past this many times the
    /// largest input.
    pub const OPERATORS: usize = 64;
}

/// Names every job's template context provides besides the vars.
const BUILTIN_VARS: [&str; 5] = ["topic", "voice", "template", "recipe", "seconds"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId([u8; 8]);

impl JobId {
    pub fn of(spec: &JobSpec) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"tiktok-factory/job/v1\n");
        hasher.update(canonical_json(&serde_json::to_value(spec).unwrap_or_default()).as_bytes());
        let digest = hasher.finalize();
        let mut id = [0; 8];
        id.copy_from_slice(&digest[..8]);
        Self(id)
    }

    pub fn parse(text: &str) -> Option<Self> {
        let bytes = hex::decode(text).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// Everything a job needs, resolved. Serialized canonically, it is the job's identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    pub recipe: String,
    pub topic: String,
    pub voice_name: String,
    pub template: String,
    pub script: ScriptSpec,
    pub footage: FootageSpec,
    pub voice: VoiceDef,
    pub captions: CaptionsDef,
    pub video: VideoDef,
    pub title: String,
    pub caption: Option<String>,
    pub hashtags: Vec<String>,
    pub publish: Publish,
    pub notify: Option<Notify>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScriptSpec {
    pub provider: ScriptProvider,
    /// Primary model first, then fallbacks.
    pub models: Vec<String>,
    pub prompt: Option<String>,
    pub temperature: Option<f64>,
    pub seed: Option<u64>,
    pub seconds: u32,
    pub cta: Option<String>,
    /// A `text` script's narration, rendered; absent for the writers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FootageSpec {
    pub provider: FootageProvider,
    pub query: Option<String>,
    /// Relative to the recipe directory.
    pub dir: Option<String>,
    pub clips: u32,
    /// Per scene (the default) or per video; left out of the spec's JSON when per scene.
    #[serde(default, skip_serializing_if = "crate::recipe::FootagePer::is_scene")]
    pub per: crate::recipe::FootagePer,
}

/// One job of a recipe.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: JobId,
    /// The matrix cell: the same cell across edits is the "same" job, changed.
    pub cell: String,
    pub spec: JobSpec,
}

/// Stable text for a matrix cell.
pub fn cell_key(topic: &str, voice: &str, template: &str) -> String {
    serde_json::to_string(&[topic, voice, template]).unwrap_or_default()
}

/// JSON with object keys sorted at every level, whatever map type produced it.
pub fn canonical_json(value: &Value) -> String {
    fn write(value: &Value, out: &mut String) {
        match value {
            Value::Object(map) => {
                out.push('{');
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    write(&map[k], out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

/// A template string of a template definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Field {
    Prompt,
    Text,
    Cta,
    Query,
    Title,
    Caption,
    Hashtag(usize),
}

impl Field {
    /// The longest the rendered string may be, in characters.
    fn bound(self) -> usize {
        match self {
            Self::Prompt => bounds::PROMPT,
            Self::Text => bounds::TEXT,
            Self::Cta => bounds::CTA,
            Self::Query => bounds::QUERY,
            Self::Title => bounds::TITLE,
            Self::Caption => bounds::CAPTION,
            Self::Hashtag(_) => bounds::HASHTAG,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Prompt => "script.prompt",
            Self::Text => "script.text",
            Self::Cta => "script.cta",
            Self::Query => "footage.query",
            Self::Title => "title",
            Self::Caption => "caption",
            Self::Hashtag(_) => "a hashtag",
        }
    }

    fn pointer(self) -> String {
        match self {
            Self::Prompt => "/script/prompt".into(),
            Self::Text => "/script/text".into(),
            Self::Cta => "/script/cta".into(),
            Self::Query => "/footage/query".into(),
            Self::Title => "/title".into(),
            Self::Caption => "/caption".into(),
            Self::Hashtag(i) => format!("/hashtags/{i}"),
        }
    }
}

fn fields(t: &TemplateDef) -> Vec<(Field, &str)> {
    let mut out = Vec::new();
    if let Some(p) = &t.script.prompt {
        out.push((Field::Prompt, p.as_str()));
    }
    if t.script.provider == ScriptProvider::Text {
        // Without `text`, the narration is the var `script` (a topics file's column).
        out.push((
            Field::Text,
            t.script.text.as_deref().unwrap_or("{{ script }}"),
        ));
    }
    if let Some(c) = &t.script.cta {
        out.push((Field::Cta, c.as_str()));
    }
    if let Some(q) = &t.footage.query {
        out.push((Field::Query, q.as_str()));
    }
    out.push((Field::Title, t.title.as_str()));
    if let Some(c) = &t.caption {
        out.push((Field::Caption, c.as_str()));
    }
    for (i, h) in t.hashtags.iter().enumerate() {
        out.push((Field::Hashtag(i), h.as_str()));
    }
    out
}

fn template_name(template: &str, field: Field) -> String {
    format!("{template}{}", field.pointer())
}

/// A matrix cell before rendering.
struct CellPlan<'a> {
    topic: &'a str,
    voice: &'a str,
    template: &'a str,
    extra: Option<&'a BTreeMap<String, Value>>,
    pointer: String,
}

/// Expands a resolved recipe into jobs, or reports every problem found on the way:
/// template syntax errors, undefined variables, render failures, duplicate jobs.
pub fn expand(r: &Resolved) -> Result<Vec<Job>, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let env = environment();
    let globals: BTreeSet<String> = env.globals().map(|(k, _)| k.to_owned()).collect();
    let mut env = env;

    let mut compiled: HashMap<String, bool> = HashMap::new();
    for (name, t) in &r.templates {
        for (field, text) in fields(&t.value) {
            let key = template_name(name, field);
            if let Some((range, why)) = unbounded(text) {
                let pointer = format!("{}{}", t.pointer, field.pointer());
                let src = r.source(t.origin);
                diags.push(
                    Diagnostic::new(
                        &src.file,
                        locate(src, &pointer, text, range),
                        "template-unbounded",
                        why,
                    )
                    .with_hint("recipe templates are expressions: `{{ }}`, `{% if %}` and filters"),
                );
                compiled.insert(key, false);
                continue;
            }
            match env.add_template_owned(key.clone(), text.to_owned()) {
                Ok(()) => {
                    compiled.insert(key, true);
                }
                Err(e) => {
                    let pointer = format!("{}{}", t.pointer, field.pointer());
                    diags.push(template_error(
                        r,
                        t.origin,
                        &pointer,
                        text,
                        &e,
                        "template-syntax",
                        None,
                    ));
                    compiled.insert(key, false);
                }
            }
        }
    }

    let limit = r.recipe.batch.max_jobs.unwrap_or(DEFAULT_MAX_JOBS);
    if limit > MAX_JOBS {
        diags.push(r.diag(
            Origin::Recipe,
            "/batch/max_jobs",
            "out-of-range",
            format!("`batch.max_jobs` is {limit} but must be at most {MAX_JOBS}"),
        ));
        return Err(diags);
    }
    let count = count_jobs(r);
    if count > limit {
        diags.push(
            r.diag_key(
                Origin::Recipe,
                "/batch/matrix",
                "too-many-jobs",
                format!(
                    "the batch makes {count} jobs; the limit is {limit} (topics × voices × templates, less `exclude`, plus `include`)"
                ),
            )
            .with_hint(if limit < MAX_JOBS {
                format!("split the recipe, or raise the limit with `batch.max_jobs` (at most {MAX_JOBS})")
            } else {
                "split the recipe".to_owned()
            }),
        );
        return Err(diags);
    }
    let cells = cells(r);
    if cells.is_empty() && diags.is_empty() {
        diags.push(
            r.diag_key(
                Origin::Recipe,
                "/batch/matrix",
                "empty-batch",
                "the batch expands to no jobs",
            )
            .with_hint("check `exclude`: it removes every combination"),
        );
    }

    let base_vars = {
        let mut v = r.vars.clone();
        v.extend(r.recipe.batch.vars.clone());
        v
    };
    for reserved in BUILTIN_VARS.iter().filter(|n| **n != "seconds") {
        if base_vars.contains_key(*reserved) {
            let origin = if r.recipe.batch.vars.contains_key(*reserved)
                || r.recipe.vars.contains_key(*reserved)
            {
                Origin::Recipe
            } else {
                Origin::Project
            };
            let pointer = if r.recipe.batch.vars.contains_key(*reserved) {
                format!("/batch/vars/{reserved}")
            } else {
                format!("/vars/{reserved}")
            };
            diags.push(r.diag_key(
                origin,
                &pointer,
                "reserved-var",
                format!("`{reserved}` is set by the matrix and cannot be a var"),
            ));
        }
    }

    // Undefined variables: every template string, against what a job's context can hold.
    let mut known: BTreeSet<&str> = BUILTIN_VARS.iter().copied().collect();
    known.extend(base_vars.keys().map(String::as_str));
    for cell in &r.recipe.batch.matrix.include {
        known.extend(cell.vars.keys().map(String::as_str));
    }
    for topic in &r.topics {
        known.extend(topic.vars.keys().map(String::as_str));
    }
    for (name, t) in &r.templates {
        for (field, text) in fields(&t.value) {
            let key = template_name(name, field);
            if compiled.get(&key) != Some(&true) {
                continue;
            }
            let Ok(tmpl) = env.get_template(&key) else {
                continue;
            };
            // An unknown filter is found here, once per string, not once per job at render.
            let src = r.source(t.origin);
            let mut told = BTreeSet::new();
            for (filter, range) in crate::recipe::check::filters_used(text) {
                if has_filter(&env, &filter) || !told.insert(filter.clone()) {
                    continue;
                }
                let pointer = format!("{}{}", t.pointer, field.pointer());
                let candidates: Vec<&str> = FILTER_NAMES
                    .iter()
                    .copied()
                    .filter(|f| has_filter(&env, f))
                    .collect();
                let hint = crate::recipe::diagnostic::did_you_mean(&filter, candidates)
                    .unwrap_or_else(|| {
                        "see the filters minijinja provides; `lower`, `upper`, `title`, `replace` and `trim` are common".to_owned()
                    });
                diags.push(
                    Diagnostic::new(
                        &src.file,
                        locate(src, &pointer, text, range),
                        "unknown-filter",
                        format!("template filter `{filter}` is not known"),
                    )
                    .with_hint(hint),
                );
            }
            let mut vars: Vec<String> = tmpl.undeclared_variables(false).into_iter().collect();
            vars.sort();
            for var in vars {
                if known.contains(var.as_str()) || globals.contains(&var) {
                    continue;
                }
                let pointer = format!("{}{}", t.pointer, field.pointer());
                let src = r.source(t.origin);
                let pos = locate(src, &pointer, text, find_identifier(text, &var));
                let hint = crate::recipe::diagnostic::did_you_mean(&var, known.iter().copied())
                    .unwrap_or_else(|| {
                        format!("define `{var}` under `vars:` (recipe, project file or batch)")
                    });
                diags.push(
                    Diagnostic::new(
                        &src.file,
                        pos,
                        "undefined-variable",
                        format!("template variable `{var}` is not defined"),
                    )
                    .with_hint(hint),
                );
            }
        }
    }
    if !diags.is_empty() {
        return Err(dedup(diags));
    }

    let mut jobs = Vec::with_capacity(cells.len());
    let mut seen: HashMap<JobId, String> = HashMap::with_capacity(cells.len());
    for cell in &cells {
        match render_job(r, &env, &base_vars, cell) {
            Ok(spec) => {
                let id = JobId::of(&spec);
                if let Some(first) = seen.get(&id) {
                    let pos = r.source.at(&cell.pointer);
                    diags.push(
                        Diagnostic::new(&r.source.file, pos, "duplicate-job", format!(
                            "this makes the same job as {} (topic `{}`, voice `{}`, template `{}`)",
                            crate::recipe::schema::display_path(first), cell.topic, cell.voice, cell.template
                        ))
                        .with_hint("remove the repeated entry"),
                    );
                    continue;
                }
                seen.insert(id, cell.pointer.clone());
                jobs.push(Job {
                    id,
                    cell: cell_key(cell.topic, cell.voice, cell.template),
                    spec,
                });
            }
            Err(d) => diags.push(d),
        }
    }
    if diags.is_empty() {
        Ok(jobs)
    } else {
        Err(dedup(diags))
    }
}

fn dedup(mut diags: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut seen = BTreeSet::new();
    diags.retain(|d| seen.insert((d.path.clone(), d.line, d.column, d.message.clone())));
    diags
}

/// Jobs a batch makes unless `batch.max_jobs` says otherwise.
pub const DEFAULT_MAX_JOBS: u64 = 10_000;
/// The most `batch.max_jobs` may allow.
pub const MAX_JOBS: u64 = 1_000_000;

/// How many cells the matrix makes, counted without making them: per voice and
/// template, the topics no `exclude` entry drops, plus what `include` adds. Saturates
/// at `u64::MAX`.
pub fn count_jobs(r: &Resolved) -> u64 {
    let m = &r.recipe.batch.matrix;
    let templates: Vec<&str> = if m.template.is_empty() {
        r.recipe.batch.template.as_deref().into_iter().collect()
    } else {
        m.template.iter().map(String::as_str).collect()
    };
    let topics = r.topics.len() as u64;
    let pairs = (m.voice.len() as u64).saturating_mul(templates.len() as u64);
    let mut count: u64 = if m.exclude.is_empty() || pairs > 1_000_000 {
        // Too many pairs to look at one by one: excludes are not subtracted.
        topics.saturating_mul(pairs)
    } else {
        let mut occurrences: HashMap<&str, u64> = HashMap::new();
        for t in &r.topics {
            *occurrences.entry(t.text.as_str()).or_default() += 1;
        }
        let mut count: u64 = 0;
        for voice in &m.voice {
            for template in &templates {
                let matching: Vec<_> = m
                    .exclude
                    .iter()
                    .filter(|f| {
                        f.voice.as_deref().is_none_or(|v| v == voice)
                            && f.template.as_deref().is_none_or(|t| t == *template)
                    })
                    .collect();
                if matching.iter().any(|f| f.topic.is_none()) {
                    continue;
                }
                let dropped: BTreeSet<&str> =
                    matching.iter().filter_map(|f| f.topic.as_deref()).collect();
                let dropped: u64 = dropped
                    .iter()
                    .map(|t| occurrences.get(t).copied().unwrap_or(0))
                    .sum();
                count = count.saturating_add(topics - dropped);
            }
        }
        count
    };
    for cell in &m.include {
        let voices = if cell.voice.is_some() {
            1
        } else {
            m.voice.len() as u64
        };
        let temps = if cell.template.is_some() {
            1
        } else {
            templates.len() as u64
        };
        count = count.saturating_add(voices.saturating_mul(temps));
    }
    count
}

fn cells(r: &Resolved) -> Vec<CellPlan<'_>> {
    let m = &r.recipe.batch.matrix;
    let templates: Vec<&str> = if m.template.is_empty() {
        r.recipe.batch.template.as_deref().into_iter().collect()
    } else {
        m.template.iter().map(String::as_str).collect()
    };
    let excluded = |topic: &str, voice: &str, template: &str| {
        m.exclude.iter().any(|f| {
            f.topic.as_deref().is_none_or(|t| t == topic)
                && f.voice.as_deref().is_none_or(|v| v == voice)
                && f.template.as_deref().is_none_or(|t| t == template)
        })
    };
    let mut out = Vec::new();
    for topic in &r.topics {
        for voice in &m.voice {
            for template in &templates {
                if !excluded(&topic.text, voice, template) {
                    out.push(CellPlan {
                        topic: &topic.text,
                        voice,
                        template,
                        extra: (!topic.vars.is_empty()).then_some(&topic.vars),
                        pointer: topic.pointer.clone(),
                    });
                }
            }
        }
    }
    for (
        i,
        Cell {
            topic,
            voice,
            template,
            vars,
        },
    ) in m.include.iter().enumerate()
    {
        let voices: Vec<&str> = voice
            .as_deref()
            .map_or_else(|| m.voice.iter().map(String::as_str).collect(), |v| vec![v]);
        let temps: Vec<&str> = template
            .as_deref()
            .map_or_else(|| templates.clone(), |t| vec![t]);
        for v in &voices {
            for t in &temps {
                out.push(CellPlan {
                    topic,
                    voice: v,
                    template: t,
                    extra: Some(vars),
                    pointer: format!("/batch/matrix/include/{i}"),
                });
            }
        }
    }
    out
}

fn render_job(
    r: &Resolved,
    env: &Environment<'_>,
    base_vars: &BTreeMap<String, Value>,
    cell: &CellPlan<'_>,
) -> Result<JobSpec, Diagnostic> {
    let (Some(t), Some(voice)) = (r.templates.get(cell.template), r.voices.get(cell.voice)) else {
        return Err(r.diag(
            Origin::Recipe,
            &cell.pointer,
            "undefined-reference",
            "undefined voice or template",
        ));
    };
    let def = &t.value;
    let mut ctx: BTreeMap<&str, Value> = BTreeMap::new();
    ctx.insert("seconds", Value::from(def.script.seconds));
    for (k, v) in base_vars {
        ctx.insert(k, v.clone());
    }
    if let Some(extra) = cell.extra {
        for (k, v) in extra {
            ctx.insert(k, v.clone());
        }
    }
    ctx.insert("topic", Value::from(cell.topic));
    ctx.insert("voice", Value::from(cell.voice));
    ctx.insert("template", Value::from(cell.template));
    ctx.insert("recipe", Value::from(r.name.as_str()));
    let seconds =
        ctx.get("seconds")
            .and_then(Value::as_u64)
            .and_then(|s| u32::try_from(s).ok())
            .filter(|s| *s >= crate::recipe::check::MIN_SECONDS && *s <= def.video.max_seconds)
            .ok_or_else(|| {
                r.diag(Origin::Recipe, &cell.pointer, "out-of-range", format!(
                "var `seconds` must be a whole number between {} and `video.max_seconds` ({})",
                crate::recipe::check::MIN_SECONDS,
                def.video.max_seconds
            ))
            })?;
    let language = ctx.get("language").and_then(Value::as_str);
    let voice_def = voice.value.in_language(language).map_err(|known| {
        r.diag(
            voice.origin,
            &voice.pointer,
            "unknown-language",
            format!(
                "voice `{}` has no voice for language `{}` (topic `{}`); it speaks {}",
                cell.voice,
                language.unwrap_or_default(),
                shorten(cell.topic),
                known
                    .iter()
                    .map(|l| format!("`{l}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .with_hint(format!(
            "add `{}` under the voice's `languages`",
            language.unwrap_or_default()
        ))
    })?;
    let ctx = minijinja::Value::from_serialize(&ctx);
    let render = |field: Field| -> Result<String, Diagnostic> {
        let name = template_name(cell.template, field);
        let tmpl = env.get_template(&name).map_err(|e| {
            r.diag(
                t.origin,
                &format!("{}{}", t.pointer, field.pointer()),
                "template-render",
                e.to_string(),
            )
        })?;
        let pointer = format!("{}{}", t.pointer, field.pointer());
        let too_long = || {
            r.diag(
                t.origin,
                &pointer,
                "too-long",
                format!(
                    "{} renders to more than {} characters for topic `{}`",
                    field.name(),
                    field.bound(),
                    shorten(cell.topic)
                ),
            )
        };
        // Rendering stops as soon as the output passes the bound (in bytes, at most
        // four per character), so a runaway template never fills memory.
        let mut out = Capped::new(field.bound() * 4);
        let rendered = tmpl.render_captured_to(&ctx, &mut out);
        if out.overflowed {
            return Err(too_long());
        }
        rendered.map_err(|e| {
            let text = fields(def)
                .into_iter()
                .find(|(f, _)| *f == field)
                .map_or("", |(_, s)| s);
            template_error(
                r,
                t.origin,
                &pointer,
                text,
                &e,
                "template-render",
                Some(cell.topic),
            )
        })?;
        let text = String::from_utf8_lossy(&out.bytes).trim().to_owned();
        if text.chars().count() > field.bound() {
            return Err(too_long());
        }
        if let Some((what, _)) = crate::recipe::secrets::find_secret(&text) {
            let src = r.source(t.origin);
            return Err(crate::recipe::check::secret_diag(src, &pointer, what, ""));
        }
        let lines = matches!(field, Field::Prompt | Field::Caption | Field::Text);
        if let Some(c) = crate::recipe::check::control_char(&text, lines) {
            return Err(r.diag(
                t.origin,
                &pointer,
                "control-character",
                format!(
                    "{} renders with the control character {} for topic `{}`",
                    field.name(),
                    crate::recipe::check::describe(c),
                    shorten(cell.topic)
                ),
            ));
        }
        Ok(text)
    };
    let opt = |present: bool, field: Field| -> Result<Option<String>, Diagnostic> {
        if present {
            render(field).map(Some)
        } else {
            Ok(None)
        }
    };
    let own_words = def.script.provider == ScriptProvider::Text;
    let cta = match opt(def.script.cta.is_some(), Field::Cta)? {
        Some(c) => Some(c),
        // One's own words end as written: only an explicit `script.cta` is added.
        None if own_words => None,
        None => base_vars
            .get("cta")
            .or_else(|| cell.extra.and_then(|e| e.get("cta")))
            .and_then(Value::as_str)
            .map(str::to_owned),
    };
    let text = match opt(own_words, Field::Text)? {
        Some(text) if text.trim().is_empty() => {
            return Err(r
                .diag(
                    t.origin,
                    &format!("{}/script", t.pointer),
                    "empty-script",
                    format!("the narration of topic `{}` is empty", shorten(cell.topic)),
                )
                .with_hint("give `script.text`, or fill the row's `script` column"));
        }
        text => text,
    };
    let mut hashtags = Vec::with_capacity(def.hashtags.len());
    for i in 0..def.hashtags.len() {
        let tag = render(Field::Hashtag(i))?;
        let tag = tag.trim_start_matches('#').replace(char::is_whitespace, "");
        if !tag.is_empty() {
            hashtags.push(tag);
        }
    }
    let s = &def.script;
    Ok(JobSpec {
        recipe: r.name.clone(),
        topic: cell.topic.to_owned(),
        voice_name: cell.voice.to_owned(),
        template: cell.template.to_owned(),
        script: ScriptSpec {
            provider: s.provider,
            models: s.model.iter().chain(&s.fallback_models).cloned().collect(),
            prompt: opt(s.prompt.is_some(), Field::Prompt)?,
            temperature: s.temperature,
            seed: s.seed,
            seconds,
            cta,
            text,
        },
        footage: FootageSpec {
            provider: def.footage.provider,
            query: opt(def.footage.query.is_some(), Field::Query)?,
            dir: def.footage.dir.clone(),
            clips: def.footage.clips,
            per: def.footage.per,
        },
        voice: voice_def,
        captions: def.captions.clone(),
        video: def.video.clone(),
        title: render(Field::Title)?,
        caption: opt(def.caption.is_some(), Field::Caption)?,
        hashtags,
        publish: r.publish.clone(),
        notify: r.notify.clone(),
    })
}

/// The template environment: strict about undefined names, fuelled, and without the
/// loops, globals and filters that could make a string without bound. `replace` and
/// `join` are replaced by versions that refuse a result above [`bounds::VALUE_BYTES`].
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    // No loader: `include`/`import` cannot reach any file, inside the recipe dir or not.
    for name in ["range", "namespace", "cycler", "joiner", "lipsum", "debug"] {
        env.remove_global(name);
    }
    // Each applies a filter once per item, or pads and indents to any width.
    for name in [
        "map",
        "select",
        "reject",
        "selectattr",
        "rejectattr",
        "groupby",
        "batch",
        "slice",
        "indent",
        "format",
        "pprint",
        "tojson",
    ] {
        env.remove_filter(name);
    }
    env.add_filter("replace", bounded_replace);
    env.add_filter("join", bounded_join);
    env
}

fn too_large() -> minijinja::Error {
    minijinja::Error::new(
        minijinja::ErrorKind::InvalidOperation,
        format!(
            "the result would be longer than {} bytes",
            bounds::VALUE_BYTES
        ),
    )
}

fn bounded_replace(value: String, from: String, to: String) -> Result<String, minijinja::Error> {
    let count = if from.is_empty() {
        value.chars().count() + 1
    } else {
        value.matches(from.as_str()).count()
    };
    let grows = to.len().saturating_sub(from.len());
    if value.len().saturating_add(count.saturating_mul(grows)) > bounds::VALUE_BYTES {
        return Err(too_large());
    }
    Ok(value.replace(from.as_str(), &to))
}

fn bounded_join(
    value: minijinja::Value,
    joiner: Option<String>,
) -> Result<String, minijinja::Error> {
    let joiner = joiner.unwrap_or_default();
    let mut out = String::new();
    for (i, item) in value.try_iter()?.enumerate() {
        if i > 0 {
            out.push_str(&joiner);
        }
        let text = item.to_string();
        if out.len() + text.len() > bounds::VALUE_BYTES {
            return Err(too_large());
        }
        out.push_str(&text);
    }
    Ok(out)
}

/// Output that refuses to grow past `cap` bytes: the render stops at the first write
/// that would pass it.
struct Capped {
    bytes: Vec<u8>,
    cap: usize,
    overflowed: bool,
}

impl Capped {
    fn new(cap: usize) -> Self {
        Self {
            bytes: Vec::new(),
            cap,
            overflowed: false,
        }
    }
}

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > self.cap {
            self.overflowed = true;
            return Err(std::io::Error::other("output bound passed"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A topic short enough for a message.
fn shorten(text: &str) -> String {
    if text.chars().count() <= 60 {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(60).collect::<String>())
    }
}

/// Why a template string could render without bound, and where: string repetition
/// (`*`), the tags that bind or repeat (`set`, `with`, `for`, `macro`, `call`, and the
/// file tags), or more operators than [`bounds::OPERATORS`].
fn unbounded(text: &str) -> Option<(std::ops::Range<usize>, String)> {
    const TAGS: [&str; 9] = [
        "set", "with", "for", "macro", "call", "include", "import", "from", "extends",
    ];
    let bytes = text.as_bytes();
    let mut operators = 0;
    let mut i = 0;
    while i + 1 < bytes.len() {
        let open = &bytes[i..i + 2];
        if open == b"{#" {
            i = text[i..].find("#}").map_or(bytes.len(), |j| i + j + 2);
            continue;
        }
        if open != b"{{" && open != b"{%" {
            i += 1;
            continue;
        }
        let close: &[u8] = if open == b"{{" { b"}}" } else { b"%}" };
        let mut j = i + 2;
        if open == b"{%" {
            let rest = text[j..].trim_start_matches(['-', '+', ' ', '\t', '\n', '\r']);
            let start = text.len() - rest.len();
            let word: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if TAGS.contains(&word.as_str()) {
                return Some((
                    start..start + word.len(),
                    format!("`{{% {word} %}}` is not allowed in recipe templates"),
                ));
            }
        }
        while j < bytes.len() && !bytes[j..].starts_with(close) {
            match bytes[j] {
                q @ (b'\'' | b'"') => {
                    j += 1;
                    while j < bytes.len() && bytes[j] != q {
                        j += if bytes[j] == b'\\' { 2 } else { 1 };
                    }
                }
                b'*' => {
                    return Some((
                        j..j + 1,
                        "`*` is not allowed in recipe templates (it repeats strings without bound)"
                            .to_owned(),
                    ));
                }
                b'~' | b'+' | b'|' => {
                    operators += 1;
                    if operators > bounds::OPERATORS {
                        return Some((
                            j..j + 1,
                            format!(
                                "a template string may use at most {} operators (`~`, `+`, `|`)",
                                bounds::OPERATORS
                            ),
                        ));
                    }
                }
                _ => {}
            }
            j += 1;
        }
        i = j + 2;
    }
    None
}

fn template_error(
    r: &Resolved,
    origin: Origin,
    pointer: &str,
    text: &str,
    e: &minijinja::Error,
    code: &'static str,
    topic: Option<&str>,
) -> Diagnostic {
    let src = r.source(origin);
    let range = e.range().unwrap_or(0..0);
    let pos = locate(src, pointer, text, range);
    let mut message = e
        .detail()
        .map_or_else(|| e.kind().to_string(), str::to_owned);
    if code == "template-syntax" {
        message = format!("template syntax error: {message}");
    } else if let Some(topic) = topic {
        message = format!("cannot render template for topic `{topic}`: {message}");
    }
    Diagnostic::new(&src.file, pos, code, message)
}

/// Byte range of the first use of `name` as an identifier in a template.
fn find_identifier(text: &str, name: &str) -> std::ops::Range<usize> {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut from = 0;
    while let Some(i) = text[from..].find(name) {
        let start = from + i;
        let end = start + name.len();
        let before = text[..start].chars().next_back();
        let after = text[end..].chars().next();
        if !before.is_some_and(is_ident) && !after.is_some_and(is_ident) && before != Some('.') {
            return start..end;
        }
        from = end;
    }
    0..0
}

/// Maps a byte range inside a template string to the recipe file: finds the template's
/// lines in the source after the string's start. Exact for plain, quoted and block
/// scalars without escapes; falls back to the string's start otherwise.
fn locate(
    src: &crate::recipe::Source,
    pointer: &str,
    text: &str,
    range: std::ops::Range<usize>,
) -> crate::recipe::yaml::Pos {
    let value = src.at(pointer);
    let start = range.start.min(text.len());
    let source = &*src.file.text;
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_no = text[..start].matches('\n').count();
    let mut cursor = value.offset;
    for (i, line) in text.split('\n').enumerate() {
        if line.is_empty() && i != line_no {
            continue;
        }
        let Some(found) = source.get(cursor..).and_then(|s| s.find(line)) else {
            return value;
        };
        let at = cursor + found;
        if i == line_no {
            let offset = at + (start - line_start);
            let len = range.end.saturating_sub(range.start).max(1);
            return src.file.pos_at(offset, len);
        }
        cursor = at + line.len();
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recipe with one `fact` template whose `field` line is `field_yaml`, and the
    /// given topics, loaded from a temporary folder.
    fn recipe(template_lines: &str, topics: &str) -> (tempfile::TempDir, Resolved) {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("r.yaml");
        let text = format!(
            "version: 1\nname: r\nvoices:\n  narrator: {{ provider: espeak, voice: en-us }}\n\
             templates:\n  fact:\n    script: {{ provider: offline }}\n{template_lines}\n\
             batch:\n  template: fact\n  matrix:\n    topic: {topics}\n    voice: [narrator]\n"
        );
        std::fs::write(&path, text).unwrap();
        let r = crate::recipe::load(&path).unwrap_or_else(|d| panic!("{d:?}"));
        (tmp, r)
    }

    fn errors(template_lines: &str, topics: &str) -> Vec<Diagnostic> {
        let (_tmp, r) = recipe(template_lines, topics);
        expand(&r).expect_err("the recipe must be refused")
    }

    #[test]
    fn a_hashtag_repeating_a_string_a_hundred_million_times_is_refused_before_rendering() {
        let d = errors(
            "    title: \"{{ topic }}\"\n    hashtags: [\"{{ 'x' * 100000000 }}\"]",
            "[Owls]",
        );
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].code, "template-unbounded");
        assert_eq!((d[0].line, d[0].column), (9, 24), "points at the `*`");
    }

    #[test]
    fn a_doubling_loop_is_refused_before_rendering() {
        let d = errors(
            "    title: \"{{ topic }}\"\n    caption: \"{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}\"",
            "[Owls]",
        );
        assert_eq!(d[0].code, "template-unbounded", "{d:?}");
        for tag in [
            "with a = topic ~ topic",
            "macro m(x)",
            "for t in [1]",
            "call m()",
        ] {
            let d = errors(&format!("    title: \"{{% {tag} %}}x\""), "[Owls]");
            assert_eq!(d[0].code, "template-unbounded", "{tag}: {d:?}");
        }
    }

    #[test]
    fn a_replace_chain_stops_at_the_value_bound() {
        let step = "| replace('', '0123456789') ";
        let d = errors(
            &format!("    title: \"{{{{ topic {} }}}}\"", step.repeat(8)),
            "[Owls]",
        );
        assert_eq!(d[0].code, "template-render", "{d:?}");
        assert!(d[0].message.contains("longer than"), "{}", d[0].message);
    }

    #[test]
    fn loops_and_repeating_filters_are_not_available() {
        for text in [
            "{{ [topic] | map('upper') | join }}",
            "{{ range(3) | join }}",
            "{{ topic | indent(100000000) }}",
            "{{ '%s' | format(topic) }}",
        ] {
            let d = errors(&format!("    title: \"{text}\""), "[Owls]");
            assert!(!d.is_empty(), "{text}");
        }
    }

    #[test]
    fn a_title_over_150_characters_is_refused_at_the_title() {
        let long = "o".repeat(151);
        let d = errors("    title: \"{{ topic }}\"", &format!("[{long}]"));
        assert_eq!(d[0].code, "too-long", "{d:?}");
        assert_eq!(d[0].line, 8, "points at the title");
        assert!(d[0].message.contains("150"), "{}", d[0].message);
        let (_tmp, ok) = recipe(
            "    title: \"{{ topic }}\"",
            &format!("[{}]", "o".repeat(150)),
        );
        assert!(expand(&ok).is_ok());
    }

    #[test]
    fn a_caption_of_a_million_characters_stops_rendering_at_its_bound() {
        let mut out = Capped::new(bounds::CAPTION * 4);
        let env = environment();
        let t = env.template_from_str("{{ topic ~ topic }}").unwrap();
        let topic = "x".repeat(1_000_000);
        let r = t.render_captured_to(minijinja::context! { topic }, &mut out);
        assert!(r.is_err() && out.overflowed);
        assert!(out.bytes.len() <= bounds::CAPTION * 4);
    }

    /// `n` topics, `v` voices and `t` templates, with `extra` added under `batch:`.
    fn matrix(n: usize, v: usize, t: usize, extra: &str) -> (tempfile::TempDir, Resolved) {
        let tmp = tempfile::tempdir().unwrap();
        let voices: String = (0..v)
            .map(|i| format!("  v{i}: {{ provider: espeak, voice: en-us }}\n"))
            .collect();
        let templates: String = (0..t)
            .map(|i| format!("  t{i}:\n    script: {{ provider: offline }}\n    title: \"{{{{ topic }}}} {i}\"\n"))
            .collect();
        let topics: Vec<String> = (0..n).map(|i| format!("topic {i}")).collect();
        std::fs::write(tmp.path().join("topics.txt"), topics.join("\n")).unwrap();
        let names = |p: &str, k: usize| {
            (0..k)
                .map(|i| format!("{p}{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let text = format!(
            "version: 1\nname: r\nvoices:\n{voices}templates:\n{templates}batch:\n{extra}  matrix:\n    topics_file: topics.txt\n    voice: [{}]\n    template: [{}]\n",
            names("v", v),
            names("t", t)
        );
        let path = tmp.path().join("r.yaml");
        std::fs::write(&path, text).unwrap();
        let r = crate::recipe::load(&path).unwrap_or_else(|d| panic!("{d:?}"));
        (tmp, r)
    }

    #[test]
    fn a_million_job_batch_is_refused_at_the_matrix_before_expanding() {
        let (_tmp, r) = matrix(10_000, 10, 10, "");
        let started = std::time::Instant::now();
        let d = expand(&r).expect_err("refused");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].code, "too-many-jobs");
        assert!(d[0].message.contains("1000000 jobs"), "{}", d[0].message);
        let matrix_line = r
            .source
            .file
            .text
            .lines()
            .position(|l| l.trim() == "matrix:")
            .unwrap();
        assert_eq!(
            d[0].line as usize,
            matrix_line + 1,
            "points at `batch.matrix`"
        );
    }

    #[test]
    fn max_jobs_raises_the_limit_and_excludes_are_counted() {
        let (_tmp, r) = matrix(6_000, 2, 1, "  max_jobs: 12000\n");
        assert_eq!(expand(&r).map(|j| j.len()).ok(), Some(12_000));
        let (_tmp, r) = matrix(6_000, 2, 1, "");
        assert_eq!(count_jobs(&r), 12_000);
        assert_eq!(expand(&r).unwrap_err()[0].code, "too-many-jobs");
        let (_tmp, r) = matrix(6_000, 2, 1, "  max_jobs: 2000000\n");
        assert_eq!(expand(&r).unwrap_err()[0].code, "out-of-range");
    }

    #[test]
    fn ordinary_templates_still_render() {
        let (_tmp, r) = recipe(
            "    title: \"{{ topic | replace(' ', '') | lower }} {% if seconds > 10 %}long{% endif %}\"\n    hashtags: [\"{{ [topic, 'x'] | join('-') }}\"]",
            "[Black holes]",
        );
        let jobs = expand(&r).unwrap_or_else(|d| panic!("{d:?}"));
        assert_eq!(jobs[0].spec.title, "blackholes long");
        assert_eq!(jobs[0].spec.hashtags, ["Blackholes-x"]);
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a: Value =
            serde_json::from_str(r#"{"b":1,"a":{"d":[1,{"z":1,"y":2}],"c":null}}"#).unwrap();
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"c":null,"d":[1,{"y":2,"z":1}]},"b":1}"#
        );
    }

    #[test]
    fn identifiers_match_whole_words_only() {
        assert_eq!(find_identifier("{{ topics }} {{ topic }}", "topic"), 16..21);
        assert_eq!(
            find_identifier("{{ x.topic }} {{ topic }}", "topic"),
            17..22
        );
    }

    #[test]
    fn job_id_round_trips_through_text() {
        let id = JobId([1, 2, 3, 4, 5, 6, 7, 255]);
        assert_eq!(id.to_string(), "01020304050607ff");
        assert_eq!(JobId::parse("01020304050607ff"), Some(id));
        assert_eq!(JobId::parse("xyz"), None);
    }

    fn load_text(text: &str) -> (tempfile::TempDir, Resolved) {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("r.yaml");
        std::fs::write(&path, text).unwrap();
        let r = crate::recipe::load(&path).unwrap_or_else(|d| panic!("{d:?}"));
        (tmp, r)
    }

    const LANGUAGES: &str = "version: 1\nname: r\nvars: { language: en }\nvoices:\n  narrator:\n    provider: espeak\n    voice: en-us\n    language: en\n    languages:\n      fr: { voice: fr-fr }\n      de: { voice: de }\n  any: { provider: espeak, voice: en-gb }\ntemplates:\n  fact:\n    script: { provider: offline, prompt: \"In {{ language }}.\" }\n    title: \"{{ topic }}\"\nbatch:\n  template: fact\n  matrix:\n    topic: [Owls]\n    voice: [narrator, any]\n    include:\n      - { topic: Hiboux, voice: narrator, vars: { language: fr } }\n      - { topic: Eulen, voice: narrator, vars: { language: de } }\n";

    #[test]
    fn a_language_var_picks_the_voice_for_that_language() {
        let (_tmp, r) = load_text(LANGUAGES);
        let jobs = expand(&r).unwrap();
        let voices: Vec<(&str, &str, Option<&str>)> = jobs
            .iter()
            .map(|j| {
                (
                    j.spec.topic.as_str(),
                    j.spec.voice.voice.as_deref().unwrap(),
                    j.spec.voice.language.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            voices,
            [
                ("Owls", "en-us", Some("en")),
                ("Owls", "en-gb", None),
                ("Hiboux", "fr-fr", Some("fr")),
                ("Eulen", "de", Some("de")),
            ]
        );
        assert_eq!(jobs[2].spec.script.prompt.as_deref(), Some("In fr."));
        assert!(jobs.iter().all(|j| j.spec.voice.languages.is_empty()));

        // Another language for the voice changes no job that does not speak it.
        let more = LANGUAGES.replace(
            "      de: { voice: de }\n",
            "      de: { voice: de }\n      es: { voice: es }\n",
        );
        let (_tmp, r) = load_text(&more);
        let again: Vec<JobId> = expand(&r).unwrap().iter().map(|j| j.id).collect();
        assert_eq!(again, jobs.iter().map(|j| j.id).collect::<Vec<_>>());
    }

    #[test]
    fn a_language_the_voice_does_not_speak_is_refused_at_the_voice() {
        let text = LANGUAGES.replace("vars: { language: de }", "vars: { language: it }");
        let (_tmp, r) = load_text(&text);
        let errors = expand(&r).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].code, "unknown-language");
        assert_eq!(
            errors[0].message,
            "voice `narrator` has no voice for language `it` (topic `Eulen`); it speaks `en`, `de`, `fr`"
        );
        assert_eq!(errors[0].line, 6);
    }

    fn with_topics(
        recipe: &str,
        csv: &str,
    ) -> (tempfile::TempDir, Result<Resolved, Vec<Diagnostic>>) {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("topics.csv"), csv).unwrap();
        let path = tmp.path().join("r.yaml");
        std::fs::write(&path, recipe).unwrap();
        let r = crate::recipe::load(&path);
        (tmp, r)
    }

    const OWN_WORDS: &str = "version: 1\nname: r\nvars: { cta: Follow for more. }\nvoices:\n  n: { provider: espeak, voice: en-us }\ntemplates:\n  own:\n    script: { provider: text }\n    title: \"{{ topic }} ({{ mood }})\"\nbatch:\n  template: own\n  matrix: { topics_file: topics.csv, voice: [n] }\n";

    #[test]
    fn a_script_column_is_the_rows_narration_and_other_columns_are_vars() {
        let csv = "topic,script,mood\nOwls,\"Owls cannot move their eyes.\nSo they turn their heads.\",calm\nBats,Bats see with sound.,wild\n";
        let (_tmp, r) = with_topics(OWN_WORDS, csv);
        let jobs = expand(&r.unwrap()).unwrap();
        assert_eq!(jobs.len(), 2);
        assert_eq!(
            jobs[0].spec.script.text.as_deref(),
            Some("Owls cannot move their eyes.\nSo they turn their heads.")
        );
        assert_eq!(jobs[1].spec.title, "Bats (wild)");
        // One's own words are not given the project's call to action.
        assert_eq!(jobs[0].spec.script.cta, None);

        let (_tmp, r) = with_topics(
            OWN_WORDS,
            &csv.replace("Bats see with sound.", "Bats hunt moths."),
        );
        let again = expand(&r.unwrap()).unwrap();
        assert_eq!(again[0].id, jobs[0].id);
        assert_ne!(
            again[1].id, jobs[1].id,
            "the row's narration is part of its job"
        );
    }

    #[test]
    fn a_text_script_without_narration_is_refused() {
        let (_tmp, r) = with_topics(OWN_WORDS, "topic,mood\nOwls,calm\n");
        let errors = r.unwrap_err();
        assert!(
            errors.iter().any(|d| d.code == "missing-key"
                && d.message.contains("a `text` script needs its narration")),
            "{errors:?}"
        );
        let (_tmp, r) = with_topics(OWN_WORDS, "topic,script,mood\nOwls,,calm\n");
        let errors = expand(&r.unwrap()).unwrap_err();
        assert_eq!(errors[0].code, "empty-script", "{errors:?}");
        assert_eq!(errors[0].message, "the narration of topic `Owls` is empty");
    }

    #[test]
    fn an_inline_text_is_a_template_with_its_bound() {
        let recipe = OWN_WORDS.replace(
            "{ provider: text }",
            "{ provider: text, text: \"{{ topic }} are {{ mood }}. Really.\" }",
        );
        let (_tmp, r) = with_topics(&recipe, "topic,mood\nOwls,calm\n");
        let jobs = expand(&r.unwrap()).unwrap();
        assert_eq!(
            jobs[0].spec.script.text.as_deref(),
            Some("Owls are calm. Really.")
        );
        let long = "x".repeat(bounds::TEXT + 1);
        let (_tmp, r) = with_topics(&recipe, &format!("topic,mood\nOwls,{long}\n"));
        let errors = expand(&r.unwrap()).unwrap_err();
        assert_eq!(errors[0].code, "too-long", "{errors:?}");
    }
}
