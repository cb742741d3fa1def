//! Semantic checks: what the schema cannot say. Every check runs and every mistake is
//! reported; nothing stops at the first.

use serde_json::Value;

use super::diagnostic::{Diagnostic, did_you_mean};
use super::schema::display_path;
use super::{
    FootageProvider, Origin, Resolved, ScriptProvider, Source, Topic, VoiceDef, VoiceProvider,
    secrets, topics,
};

/// The shortest script any voice can speak: a hook and a call to action.
pub const MIN_SECONDS: u32 = 3;

pub fn check(r: &mut Resolved) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if r.recipe.version != 1 {
        out.push(
            r.diag(
                Origin::Recipe,
                "/version",
                "unsupported-version",
                format!(
                    "recipe format version {} is not supported",
                    r.recipe.version
                ),
            )
            .with_hint("this factory reads version 1"),
        );
    }
    if !is_slug(&r.recipe.name) {
        out.push(
            r.diag(
                Origin::Recipe,
                "/name",
                "invalid-name",
                format!(
                    "recipe name `{}` must be lowercase letters, digits and dashes",
                    r.recipe.name
                ),
            )
            .with_hint(format!("for example `{}`", slugify(&r.recipe.name))),
        );
    }
    for (name, v) in r.vars.iter().chain(&r.recipe.batch.vars) {
        if let Value::String(text) = v
            && let Some(c) = control_char(text, true)
        {
            let pointer = if r.recipe.batch.vars.contains_key(name) {
                format!("/batch/vars/{name}")
            } else {
                format!("/vars/{name}")
            };
            let origin =
                if r.recipe.vars.contains_key(name) || r.recipe.batch.vars.contains_key(name) {
                    Origin::Recipe
                } else {
                    Origin::Project
                };
            out.push(r.diag(
                origin,
                &pointer,
                "control-character",
                format!("var `{name}` holds the control character {}", describe(c)),
            ));
        }
    }
    for (name, v) in &r.vars {
        if matches!(v, Value::Array(_) | Value::Object(_)) {
            let origin = if r.recipe.vars.contains_key(name) {
                Origin::Recipe
            } else {
                Origin::Project
            };
            out.push(r.diag(
                origin,
                &format!("/vars/{name}"),
                "invalid-var",
                format!("var `{name}` must be a string, number or boolean"),
            ));
        }
    }
    for (name, v) in &r.voices {
        voice(r, name, &v.value, v.origin, &v.pointer, &mut out);
    }
    for t in r.templates.values() {
        template(r, &t.value, t.origin, &t.pointer, &mut out);
    }
    batch(r, &mut out);
    // After `batch`: the topics file's columns are read there.
    let script_var = has_script_var(r);
    for t in r.templates.values() {
        let s = &t.value.script;
        if s.provider == ScriptProvider::Text && s.text.is_none() && !script_var {
            out.push(
                r.diag_key(
                    t.origin,
                    &format!("{}/script", t.pointer),
                    "missing-key",
                    "a `text` script needs its narration: `text`, a var `script`, or a `script` column in a CSV topics file",
                )
                .with_hint("for example `text: \"Owls cannot move their eyes. So they turn their heads.\"`"),
            );
        }
    }
    retention(r, &mut out);
    out
}

/// Whether a job can have a var `script`: in vars, an include entry or a topics row.
fn has_script_var(r: &Resolved) -> bool {
    r.vars.contains_key("script")
        || r.recipe.batch.vars.contains_key("script")
        || r.recipe
            .batch
            .matrix
            .include
            .iter()
            .any(|c| c.vars.contains_key("script"))
        || r.topics.iter().any(|t| t.vars.contains_key("script"))
}

/// espeak voices against the names espeak-ng on this machine lists: espeak-ng speaks an
/// unknown name as some other voice without a word, so the recipe is told instead.
pub fn espeak_voices(
    r: &Resolved,
    known: &crate::providers::offline::EspeakVoices,
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (name, v) in &r.voices {
        let def = &v.value;
        if def.provider != VoiceProvider::Espeak {
            continue;
        }
        let named = def
            .voice
            .as_deref()
            .map(|voice| (format!("{}/voice", v.pointer), voice))
            .into_iter()
            .chain(def.languages.iter().filter_map(|(language, entry)| {
                entry
                    .voice
                    .as_deref()
                    .map(|voice| (format!("{}/languages/{language}/voice", v.pointer), voice))
            }));
        for (pointer, voice) in named {
            let Err(closest) = known.check(voice) else {
                continue;
            };
            out.push(
                r.diag(
                    v.origin,
                    &pointer,
                    "unknown-voice",
                    format!("espeak-ng has no voice `{voice}` (voice `{name}`)"),
                )
                .with_hint(closest.map_or_else(
                    || "`espeak-ng --voices` lists the voices installed here".to_owned(),
                    |c| format!("did you mean `{c}`?"),
                )),
            );
        }
    }
    out
}

/// The policy keeps videos 14 days at most; longer needs an explicit, visible opt-in.
fn retention(r: &Resolved, out: &mut Vec<Diagnostic>) {
    let p = &r.publish;
    let origin = if r.recipe.publish.is_some() {
        Origin::Recipe
    } else {
        Origin::Project
    };
    let max = if p.allow_longer_retention { 365 } else { 14 };
    if p.retention_days == 0 || p.retention_days > max {
        out.push(
            r.diag(origin, "/publish/retention_days", "out-of-range", format!(
                "`publish.retention_days` is {} but must be between 1 and {max}",
                p.retention_days
            ))
            .with_hint_opt((max == 14).then(|| {
                "the privacy policy deletes videos after 14 days; `allow_longer_retention: true` overrides it, and every run says so".to_owned()
            })),
        );
    }
}

fn voice(
    r: &Resolved,
    name: &str,
    v: &VoiceDef,
    origin: Origin,
    at: &str,
    out: &mut Vec<Diagnostic>,
) {
    let espeak_only = [
        ("voice", v.voice.is_some()),
        ("rate", v.rate.is_some()),
        ("pitch", v.pitch.is_some()),
    ];
    let eleven_only = [
        ("voice_id", v.voice_id.is_some()),
        ("model", v.model.is_some()),
        ("stability", v.stability.is_some()),
        ("similarity_boost", v.similarity_boost.is_some()),
        ("style", v.style.is_some()),
        ("speed", v.speed.is_some()),
        ("use_speaker_boost", v.use_speaker_boost.is_some()),
        ("seed", v.seed.is_some()),
    ];
    let (foreign, provider, other) = match v.provider {
        VoiceProvider::Espeak => (&eleven_only[..], "espeak", "elevenlabs"),
        VoiceProvider::Elevenlabs => (&espeak_only[..], "elevenlabs", "espeak"),
    };
    for (key, set) in foreign {
        if *set {
            out.push(
                r.diag_key(
                    origin,
                    &format!("{at}/{key}"),
                    "wrong-provider-setting",
                    format!("`{key}` is an {other} setting; voice `{name}` uses `{provider}`"),
                )
                .with_hint(format!("remove `{key}` or set `provider: {other}`")),
            );
        }
    }
    if v.provider == VoiceProvider::Elevenlabs && v.voice_id.is_none() {
        out.push(r.diag_key(
            origin,
            at,
            "missing-key",
            format!("voice `{name}` uses elevenlabs and needs a `voice_id`"),
        ));
    }
    for (language, entry) in &v.languages {
        let here = format!("{at}/languages/{language}");
        let (wrong, allowed) = match v.provider {
            VoiceProvider::Espeak => (
                [
                    ("voice_id", entry.voice_id.is_some()),
                    ("model", entry.model.is_some()),
                ]
                .into_iter()
                .find(|(_, set)| *set)
                .map(|(key, _)| key),
                "`voice`",
            ),
            VoiceProvider::Elevenlabs => (
                entry.voice.is_some().then_some("voice"),
                "`voice_id` and `model`",
            ),
        };
        if let Some(key) = wrong {
            out.push(
                r.diag_key(
                    origin,
                    &format!("{here}/{key}"),
                    "wrong-provider-setting",
                    format!("`{key}` is not a setting of voice `{name}` in `{language}`; it uses `{provider}`"),
                )
                .with_hint(format!("a language of a {provider} voice sets {allowed}")),
            );
        } else if entry.voice.is_none() && entry.voice_id.is_none() && entry.model.is_none() {
            out.push(
                r.diag(
                    origin,
                    &here,
                    "empty-language",
                    format!("voice `{name}` in `{language}` changes nothing"),
                )
                .with_hint(format!("set {allowed}, or remove `{language}`")),
            );
        }
        if v.language.as_deref() == Some(language.as_str()) {
            out.push(r.diag_key(
                origin,
                &here,
                "duplicate-language",
                format!("voice `{name}` already speaks `{language}` (its `language`)"),
            ));
        }
    }
    range_u(r, origin, &format!("{at}/rate"), v.rate, 80, 450, out);
    range_u(r, origin, &format!("{at}/pitch"), v.pitch, 0, 99, out);
    for (key, value) in [
        ("stability", v.stability),
        ("similarity_boost", v.similarity_boost),
        ("style", v.style),
    ] {
        range_f(r, origin, &format!("{at}/{key}"), value, 0.0, 1.0, out);
    }
    range_f(r, origin, &format!("{at}/speed"), v.speed, 0.7, 1.2, out);
}

// `r` and `t` are the recipe and the template that every check below reads.
#[allow(clippy::many_single_char_names)]
fn template(
    r: &Resolved,
    t: &super::TemplateDef,
    origin: Origin,
    at: &str,
    out: &mut Vec<Diagnostic>,
) {
    let s = &t.script;
    let script_at = format!("{at}/script");
    match s.provider {
        ScriptProvider::Openrouter => {
            if s.model.is_none() {
                out.push(
                    r.diag_key(
                        origin,
                        &script_at,
                        "missing-key",
                        "openrouter scripts need a `model`",
                    )
                    .with_hint("for example `model: openai/gpt-4o-mini`"),
                );
            }
            if s.prompt.is_none() {
                out.push(r.diag_key(
                    origin,
                    &script_at,
                    "missing-key",
                    "openrouter scripts need a `prompt`",
                ));
            }
            for (i, m) in s.model.iter().chain(&s.fallback_models).enumerate() {
                if !m.contains('/') {
                    let ptr = if i == 0 {
                        format!("{script_at}/model")
                    } else {
                        format!("{script_at}/fallback_models/{}", i - 1)
                    };
                    out.push(
                        r.diag(
                            origin,
                            &ptr,
                            "invalid-value",
                            format!("model `{m}` needs its organisation prefix"),
                        )
                        .with_hint("OpenRouter model slugs look like `openai/gpt-4o-mini`"),
                    );
                }
            }
        }
        ScriptProvider::Offline | ScriptProvider::Text => {
            let provider = if s.provider == ScriptProvider::Text {
                "text"
            } else {
                "offline"
            };
            let text_only = s.provider == ScriptProvider::Offline && s.text.is_some();
            if text_only {
                out.push(
                    r.diag_key(
                        origin,
                        &format!("{script_at}/text"),
                        "wrong-provider-setting",
                        "`text` is the narration of a `text` script; this script uses `offline`",
                    )
                    .with_hint("remove `text` or set `provider: text`"),
                );
            }
            for (key, set) in [
                ("model", s.model.is_some()),
                ("fallback_models", !s.fallback_models.is_empty()),
                ("temperature", s.temperature.is_some()),
                ("seed", s.seed.is_some()),
                (
                    "prompt",
                    s.provider == ScriptProvider::Text && s.prompt.is_some(),
                ),
            ] {
                if set {
                    out.push(
                        r.diag_key(
                            origin,
                            &format!("{script_at}/{key}"),
                            "wrong-provider-setting",
                            format!(
                                "`{key}` is an openrouter setting; this script uses `{provider}`"
                            ),
                        )
                        .with_hint(format!("remove `{key}` or set `provider: openrouter`")),
                    );
                }
            }
        }
    }
    range_f(
        r,
        origin,
        &format!("{script_at}/temperature"),
        s.temperature,
        0.0,
        2.0,
        out,
    );
    if s.seconds < MIN_SECONDS || s.seconds > t.video.max_seconds {
        out.push(
            r.diag(
                origin,
                &format!("{script_at}/seconds"),
                "out-of-range",
                format!(
                    "`seconds` is {} but must be between {MIN_SECONDS} and `video.max_seconds` ({})",
                    s.seconds, t.video.max_seconds
                ),
            )
            .with_hint_opt((s.seconds < MIN_SECONDS).then(|| {
                format!("a script needs at least {MIN_SECONDS} seconds for its hook and call to action")
            })),
        );
    }

    let f = &t.footage;
    let footage_at = format!("{at}/footage");
    match f.provider {
        FootageProvider::Local => match &f.dir {
            None => out.push(r.diag_key(
                origin,
                &footage_at,
                "missing-key",
                "local footage needs a `dir` of clips",
            )),
            Some(dir) => match topics::inside(&r.dir, dir) {
                Err(why) => {
                    out.push(r.diag(origin, &format!("{footage_at}/dir"), "path-outside", why));
                }
                Ok(p) if !p.is_dir() => out.push(r.diag(
                    origin,
                    &format!("{footage_at}/dir"),
                    "not-found",
                    format!("footage folder `{dir}` does not exist next to the recipe"),
                )),
                Ok(_) => {}
            },
        },
        FootageProvider::Pexels => {
            if f.query.is_none() {
                out.push(
                    r.diag_key(
                        origin,
                        &footage_at,
                        "missing-key",
                        "pexels footage needs a `query`",
                    )
                    .with_hint("for example `query: \"{{ topic }}\"`"),
                );
            }
        }
        FootageProvider::Generated => {}
    }
    if f.provider != FootageProvider::Local && f.dir.is_some() {
        out.push(r.diag_key(
            origin,
            &format!("{footage_at}/dir"),
            "wrong-provider-setting",
            "`dir` applies to `provider: local` only",
        ));
    }
    if f.provider != FootageProvider::Pexels && f.query.is_some() {
        out.push(r.diag_key(
            origin,
            &format!("{footage_at}/query"),
            "wrong-provider-setting",
            "`query` applies to `provider: pexels` only",
        ));
    }
    range_u(
        r,
        origin,
        &format!("{footage_at}/clips"),
        Some(f.clips),
        1,
        12,
        out,
    );
    range_u(
        r,
        origin,
        &format!("{at}/captions/max_words"),
        Some(t.captions.max_words),
        1,
        3,
        out,
    );

    let v = &t.video;
    if v.size != "1080x1920" {
        out.push(
            r.diag(
                origin,
                &format!("{at}/video/size"),
                "invalid-value",
                format!("video size `{}` is not supported", v.size),
            )
            .with_hint("TikTok drafts are vertical: `1080x1920`"),
        );
    }
    range_u(
        r,
        origin,
        &format!("{at}/video/fps"),
        Some(v.fps),
        23,
        60,
        out,
    );
    range_u(
        r,
        origin,
        &format!("{at}/video/max_seconds"),
        Some(v.max_seconds),
        MIN_SECONDS,
        600,
        out,
    );
    if let Some(music) = &v.music {
        let ptr = format!("{at}/video/music");
        match topics::inside(&r.dir, music) {
            Err(why) => out.push(r.diag(origin, &ptr, "path-outside", why)),
            Ok(p) if !p.is_file() => out.push(r.diag(
                origin,
                &ptr,
                "not-found",
                format!("music file `{music}` does not exist next to the recipe"),
            )),
            Ok(_) => {}
        }
    }
}

fn batch(r: &mut Resolved, out: &mut Vec<Diagnostic>) {
    let b = r.recipe.batch.clone();
    let m = &b.matrix;
    if b.template.is_none() && m.template.is_empty() {
        out.push(
            r.diag_key(
                Origin::Recipe,
                "/batch",
                "missing-key",
                "the batch names no template",
            )
            .with_hint("set `batch.template`, or list several in `batch.matrix.template`"),
        );
    }
    if let Some(t) = &b.template {
        reference(r, "template", t, "/batch/template", out);
    }
    for (i, t) in m.template.iter().enumerate() {
        reference(
            r,
            "template",
            t,
            &format!("/batch/matrix/template/{i}"),
            out,
        );
    }
    for (i, v) in m.voice.iter().enumerate() {
        reference(r, "voice", v, &format!("/batch/matrix/voice/{i}"), out);
    }
    // Voices and templates named by `include` and `exclude` entries must exist too.
    let named = m
        .include
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("/batch/matrix/include/{i}"), &c.voice, &c.template))
        .chain(
            m.exclude
                .iter()
                .enumerate()
                .map(|(i, f)| (format!("/batch/matrix/exclude/{i}"), &f.voice, &f.template)),
        );
    for (at, voice, template) in named {
        if let Some(v) = voice {
            reference(r, "voice", v, &format!("{at}/voice"), out);
        }
        if let Some(t) = template {
            reference(r, "template", t, &format!("{at}/template"), out);
        }
    }
    for (i, f) in m.exclude.iter().enumerate() {
        if f.topic.is_none() && f.voice.is_none() && f.template.is_none() {
            out.push(r.diag(
                Origin::Recipe,
                &format!("/batch/matrix/exclude/{i}"),
                "invalid-value",
                "an empty `exclude` entry would drop every job",
            ));
        }
    }
    if let Some(file) = &m.topics_file {
        let ptr = "/batch/matrix/topics_file";
        match topics::inside(&r.dir, file) {
            Err(why) => out.push(r.diag(Origin::Recipe, ptr, "path-outside", why)),
            Ok(p) if !p.is_file() => out.push(
                r.diag(
                    Origin::Recipe,
                    ptr,
                    "not-found",
                    format!("topics file `{file}` does not exist next to the recipe"),
                )
                .with_hint("paths are relative to the recipe's directory"),
            ),
            Ok(p) => match topics::read(&p) {
                Ok(list) => r.topics.extend(list.into_iter().map(|row| {
                    Topic {
                        text: row.topic,
                        pointer: ptr.to_owned(),
                        vars: row
                            .vars
                            .into_iter()
                            .map(|(name, value)| (name, Value::String(value)))
                            .collect(),
                    }
                })),
                Err(why) => out.push(r.diag(Origin::Recipe, ptr, "invalid-topics", why)),
            },
        }
    }
    for t in &r.topics {
        if t.pointer == "/batch/matrix/topics_file"
            && let Some((what, _)) = secrets::find_secret(&t.text)
        {
            out.push(
                r.diag(
                    Origin::Recipe,
                    &t.pointer,
                    "secret-in-recipe",
                    format!(
                        "a topic in this file looks like {what}; secrets never belong in a recipe"
                    ),
                )
                .with_hint("remove it from the topics file, and revoke it if it was committed"),
            );
        }
        for (name, value) in &t.vars {
            let text = value.as_str().unwrap_or_default();
            if let Some((what, _)) = secrets::find_secret(text) {
                out.push(
                    r.diag(
                        Origin::Recipe,
                        &t.pointer,
                        "secret-in-recipe",
                        format!("column `{name}` of topic `{}` looks like {what}; secrets never belong in a recipe", t.text),
                    )
                    .with_hint("remove it from the topics file, and revoke it if it was committed"),
                );
            }
            // A narration may run over several lines; every other value is one line.
            if let Some(c) = control_char(text, name == "script") {
                out.push(r.diag(
                    Origin::Recipe,
                    &t.pointer,
                    "control-character",
                    format!(
                        "column `{name}` of topic `{}` holds the control character {}",
                        t.text,
                        describe(c)
                    ),
                ));
            }
        }
        if let Some(c) = control_char(&t.text, false) {
            out.push(
                r.diag(
                    Origin::Recipe,
                    &t.pointer,
                    "control-character",
                    format!("a topic holds the control character {}", describe(c)),
                )
                .with_hint("topics are one line of plain text"),
            );
        }
        if t.text.trim().is_empty() {
            out.push(r.diag(
                Origin::Recipe,
                &t.pointer,
                "invalid-value",
                "a topic is empty",
            ));
        }
    }
    if r.topics.is_empty() && m.include.is_empty() && m.topics_file.is_none() {
        out.push(
            r.diag_key(
                Origin::Recipe,
                "/batch/matrix",
                "empty-batch",
                "the batch has no topics",
            )
            .with_hint("list them in `batch.matrix.topic`, or name a `topics_file`"),
        );
    }
    if m.voice.is_empty() && m.include.iter().all(|c| c.voice.is_none()) {
        out.push(r.diag_key(
            Origin::Recipe,
            "/batch/matrix/voice",
            "empty-batch",
            "the batch has no voices",
        ));
    }
    for (name, _) in b
        .vars
        .iter()
        .filter(|(_, v)| matches!(v, Value::Array(_) | Value::Object(_)))
    {
        out.push(r.diag(
            Origin::Recipe,
            &format!("/batch/vars/{name}"),
            "invalid-var",
            format!("var `{name}` must be a string, number or boolean"),
        ));
    }
}

fn reference(r: &Resolved, kind: &str, name: &str, pointer: &str, out: &mut Vec<Diagnostic>) {
    let known: Vec<&str> = if kind == "voice" {
        r.voices.keys().map(String::as_str).collect()
    } else {
        r.templates.keys().map(String::as_str).collect()
    };
    // A definition the file has but that was dropped for its own mistakes (reported
    // there) is not also reported as missing.
    let pointer_of = format!("/{kind}s/{}", super::yaml::escape_pointer(name));
    let written = r.source.map.contains(&pointer_of)
        || r.project
            .as_ref()
            .is_some_and(|p| p.map.contains(&pointer_of));
    if !known.contains(&name) && !written {
        let hint = did_you_mean(name, known.iter().copied()).or_else(|| {
            if known.is_empty() {
                Some(format!(
                    "define it under `{kind}s:` in the recipe or in `factory.yaml`"
                ))
            } else {
                Some(format!(
                    "defined {kind}s: {}",
                    known
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
        });
        out.push(
            r.diag(
                Origin::Recipe,
                pointer,
                "undefined-reference",
                format!("{kind} `{name}` is not defined"),
            )
            .with_hint_opt(hint),
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn range_u(
    r: &Resolved,
    origin: Origin,
    pointer: &str,
    value: Option<u32>,
    min: u32,
    max: u32,
    out: &mut Vec<Diagnostic>,
) {
    if let Some(v) = value
        && (v < min || v > max)
    {
        out.push(r.diag(
            origin,
            pointer,
            "out-of-range",
            format!(
                "{} is {v} but must be between {min} and {max}",
                display_path(pointer)
            ),
        ));
    }
}

fn range_f(
    r: &Resolved,
    origin: Origin,
    pointer: &str,
    value: Option<f64>,
    min: f64,
    max: f64,
    out: &mut Vec<Diagnostic>,
) {
    if let Some(v) = value
        && !(min..=max).contains(&v)
    {
        out.push(r.diag(
            origin,
            pointer,
            "out-of-range",
            format!(
                "{} is {v} but must be between {min} and {max}",
                display_path(pointer)
            ),
        ));
    }
}

/// Every string in the file that looks like a credential, and every var named like one.
pub fn secrets(src: &Source, value: &Value) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    walk(src, value, &mut String::new(), &mut out);
    out
}

fn walk(src: &Source, value: &Value, pointer: &mut String, out: &mut Vec<Diagnostic>) {
    match value {
        Value::String(s) => {
            if let Some((what, range)) = secrets::find_secret(s) {
                out.push(secret_diag(src, pointer, what, &s[range]));
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = pointer.len();
                pointer.push_str(&format!("/{i}"));
                walk(src, item, pointer, out);
                pointer.truncate(len);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&super::yaml::escape_pointer(k));
                let in_vars = pointer.contains("/vars/");
                if in_vars && secrets::is_secret_name(k) {
                    out.push(
                        Diagnostic::new(&src.file, src.key_at(pointer), "secret-in-recipe", format!(
                            "var `{k}` is named like a credential; secrets never belong in a recipe"
                        ))
                        .with_hint("keys come from the environment, e.g. `OPENROUTER_API_KEY`"),
                    );
                } else {
                    walk(src, v, pointer, out);
                }
                pointer.truncate(len);
            }
        }
        _ => {}
    }
}

/// The first control character of `text`, if any. With `lines`, newline and tab are
/// allowed (a prompt or a caption has lines); a carriage return never is.
pub fn control_char(text: &str, lines: bool) -> Option<char> {
    text.chars().find(|c| {
        (c.is_control() && !(lines && matches!(c, '\n' | '\t')))
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    })
}

/// A control character named so a reader can find it: `U+001B (escape)`.
pub fn describe(c: char) -> String {
    let name = match c {
        '\n' => " (newline)",
        '\r' => " (carriage return)",
        '\t' => " (tab)",
        '\u{1b}' => " (escape)",
        '\u{0}' => " (NUL)",
        _ => "",
    };
    format!("U+{:04X}{name}", c as u32)
}

/// A credential found at `pointer`, masked in the snippet: where `found` is written
/// literally in the value's span, that text; otherwise the whole value (a key built
/// by a template, or written with escapes).
pub fn secret_diag(src: &Source, pointer: &str, what: &str, found: &str) -> Diagnostic {
    let pos = src.at(pointer);
    let span = src
        .file
        .text
        .get(pos.offset..pos.offset + pos.len)
        .unwrap_or_default();
    let (offset, len) = match span.find(found) {
        Some(i) if !found.is_empty() => (pos.offset + i, found.len()),
        _ => (pos.offset, pos.len),
    };
    Diagnostic::new(&src.file, pos, "secret-in-recipe", format!(
        "this looks like {what}; secrets never belong in a recipe"
    ))
    .with_hint("remove it, revoke it if it was committed, and set it in the environment (e.g. `OPENROUTER_API_KEY`)")
    .with_masked(offset, len)
}

fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn slugify(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_owned()
}

/// The filters a template string applies (`{{ topic | lowr }}` → `lowr`), with their
/// byte ranges: every `|` followed by a name inside `{{ }}` or `{% %}`, outside quoted
/// strings. Text outside the blocks (`Owls | facts`) is not a filter.
pub fn filters_used(text: &str) -> Vec<(String, std::ops::Range<usize>)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut in_block = false;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        if !in_block {
            if b == b'{' && matches!(next, Some(b'{' | b'%')) {
                in_block = true;
                i += 2;
                continue;
            }
        } else if let Some(q) = quote {
            if b == b'\\' {
                i += 1;
            } else if b == q {
                quote = None;
            }
        } else if matches!(b, b'"' | b'\'') {
            quote = Some(b);
        } else if matches!(b, b'}' | b'%') && next == Some(b'}') {
            in_block = false;
            i += 2;
            continue;
        } else if b == b'|' && next != Some(b'|') {
            let mut start = i + 1;
            while start < bytes.len() && bytes[start].is_ascii_whitespace() {
                start += 1;
            }
            let mut end = start;
            while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
                end += 1;
            }
            if end > start {
                out.push((text[start..end].to_owned(), start..end));
            }
            i = end.max(i + 1);
            continue;
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::recipe::Diagnostic;

    /// Loads `text` as `r.yaml` in a temporary folder holding `files`.
    fn load(text: &str, files: &[(&str, &str)]) -> Vec<Diagnostic> {
        let tmp = tempfile::tempdir().unwrap();
        for (name, body) in files {
            std::fs::write(tmp.path().join(name), body).unwrap();
        }
        let path = tmp.path().join("r.yaml");
        std::fs::write(&path, text).unwrap();
        match crate::recipe::load(Path::new(&path)) {
            Ok(r) => crate::expand::expand(&r).err().unwrap_or_default(),
            Err(d) => d,
        }
    }

    fn recipe(title: &str, matrix: &str, vars: &str) -> String {
        format!(
            "version: 1\nname: r\n{vars}voices:\n  narrator: {{ provider: espeak, voice: en-us }}\ntemplates:\n  fact:\n    script: {{ provider: offline }}\n    title: {title}\nbatch:\n  template: fact\n  matrix:\n{matrix}    voice: [narrator]\n"
        )
    }

    #[test]
    fn a_topic_with_a_newline_and_a_workflow_command_is_refused() {
        let text = recipe(
            "\"{{ topic }}\"",
            "    topic: [\"Comets\\n::warning title=x::INJECTED\"]\n",
            "",
        );
        let d = load(&text, &[]);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].code, "control-character");
        assert_eq!(d[0].line, 12, "points at the topic");
    }

    #[test]
    fn control_characters_in_a_topics_file_vars_or_a_rendered_title_are_refused() {
        let text = recipe("\"{{ topic }}\"", "    topics_file: topics.txt\n", "");
        let d = load(&text, &[("topics.txt", "Owls\n\u{1b}[31mRed\n")]);
        assert_eq!(d[0].code, "control-character", "{d:?}");
        let text = recipe(
            "\"{{ topic }} {{ mood }}\"",
            "    topic: [Owls]\n",
            "vars:\n  mood: \"calm\\e[2J\"\n",
        );
        let d = load(&text, &[]);
        assert!(
            d.iter()
                .any(|d| d.code == "control-character" && d.line == 4),
            "{d:?}"
        );
        let text = recipe("\"{{ topic }}\\u0007\"", "    topic: [Owls]\n", "");
        let d = load(&text, &[]);
        assert_eq!(d[0].code, "control-character", "{d:?}");
        assert_eq!(d[0].line, 8, "points at the title");
    }

    const KEY: &str = "sk-or-v1-0123456789abcdef0123456789abcdef";

    #[test]
    fn a_key_inside_a_sentence_after_bearer_is_found_and_masked_in_the_snippet() {
        let text = recipe(
            &format!("\"{{{{ topic }}}} Authorization: Bearer {KEY} thanks\""),
            "    topic: [Owls]\n",
            "",
        );
        let d = load(&text, &[]);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].code, "secret-in-recipe");
        let shown = d[0].render();
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
        assert!(shown.contains("sk-or-*"), "{shown}");
    }

    #[test]
    fn a_key_built_by_a_template_is_found_in_the_rendered_value() {
        let text = recipe(
            "\"{{ topic }} {{ 'sk-or-v1-' ~ '0123456789abcdef' ~ '0123456789abcdef' }}\"",
            "    topic: [Owls]\n",
            "",
        );
        let d = load(&text, &[]);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!((d[0].code, d[0].line), ("secret-in-recipe", 8), "{d:?}");
        assert!(!d[0].render().contains("0123456789abcdef"));
    }

    #[test]
    fn keys_in_a_topics_file_jwts_and_pem_keys_are_found() {
        let text = recipe("\"{{ topic }}\"", "    topics_file: topics.txt\n", "");
        let d = load(&text, &[("topics.txt", &format!("Owls\nmy key {KEY}\n"))]);
        assert!(d.iter().any(|d| d.code == "secret-in-recipe"), "{d:?}");
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        let text = recipe(
            "\"{{ topic }}\"",
            "    topic: [Owls]\n",
            &format!("vars:\n  note: \"use {jwt}\"\n"),
        );
        assert!(
            load(&text, &[])
                .iter()
                .any(|d| d.code == "secret-in-recipe")
        );
        let text = recipe(
            "\"{{ topic }}\"",
            "    topic: [Owls]\n",
            "vars:\n  note: |\n    -----BEGIN PRIVATE KEY-----\n    MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n    -----END PRIVATE KEY-----\n",
        );
        let d = load(&text, &[]);
        assert!(d.iter().any(|d| d.code == "secret-in-recipe"), "{d:?}");
        assert!(!d.iter().any(|d| d.render().contains("MIIEvQIBADAN")));
    }

    #[test]
    fn one_second_scripts_in_one_second_videos_are_refused() {
        let text = recipe(
            "\"{{ topic }}\"\n    video: { max_seconds: 1 }",
            "    topic: [Owls]\n",
            "",
        )
        .replace(
            "script: { provider: offline }",
            "script: { provider: offline, seconds: 1 }",
        );
        let d = load(&text, &[]);
        let codes: Vec<_> = d.iter().map(|d| (d.code, d.line)).collect();
        assert_eq!(codes, [("out-of-range", 7), ("out-of-range", 9)], "{d:?}");
        assert!(d[0].message.contains("between 3 and"), "{}", d[0].message);
        let text = recipe(
            "\"{{ topic }}\"",
            "    topic: [Owls]\n",
            "vars:\n  seconds: 2\n",
        );
        let d = load(&text, &[]);
        assert_eq!(
            d[0].code, "out-of-range",
            "a `seconds` var is held to it too: {d:?}"
        );
    }

    #[test]
    fn a_topic_no_and_a_voice_named_n_are_strings() {
        let text = "version: 1\nname: r\nvoices:\n  n: { provider: espeak, voice: en-us }\n  off: { provider: espeak, voice: en-gb }\ntemplates:\n  fact:\n    script: { provider: offline }\n    title: \"{{ topic }}\"\nbatch:\n  template: fact\n  matrix:\n    topic: [Owls, no, yes]\n    voice: [n, off]\n";
        assert_eq!(load(text, &[]), []);
    }

    #[test]
    fn a_tab_or_a_newline_in_a_prompt_var_is_fine() {
        let text = recipe(
            "\"{{ topic }}\"",
            "    topic: [Owls]\n",
            "vars:\n  style: \"one\\ttwo\\nthree\"\n",
        );
        assert_eq!(load(&text, &[]), []);
    }
}
