//! Stage keys: the hash of everything that affects a stage's result. Plan and engine
//! both compute them here, so what `plan` predicts the cache saves is what `run` reuses.
//!
//! A key is `sha256("tiktok-factory/stage/<name>/v<version>\n" + canonical JSON of each
//! part + "\n")`, cut to 32 hex digits. Each stage owns its version and the parts it
//! hashes (`src/stages/<stage>.rs`); this module holds the primitive, the tool versions
//! that change results, and the golden tests that pin every key: a key that changes by
//! accident would pay for every script and voice again.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::stages::captions::{inputs as captions_inputs, key as captions_key};
pub use crate::stages::draft::{inputs as draft_inputs, key as draft_key};
pub use crate::stages::footage::{
    inputs as footage_inputs, key as footage_key, planned_key as planned_footage_key,
    scenes as footage_scenes, variant as footage_variant,
};
pub use crate::stages::host::{inputs as host_inputs, key as host_key};
pub use crate::stages::notify::{inputs as notify_inputs, key as notify_key};
pub use crate::stages::render::{inputs as render_inputs, key as render_key};
pub use crate::stages::script::{inputs as script_inputs, key as script_key};
pub use crate::stages::voice::{inputs as voice_inputs, key as voice_key};

/// The named parts a stage key is hashed from, in hashing order: what `factory why`
/// compares between two runs. The names are labels only; the key hashes the values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inputs {
    pub stage: String,
    pub version: u32,
    pub parts: Vec<(String, serde_json::Value)>,
}

impl Inputs {
    pub fn new(stage: crate::stages::Stage, version: u32) -> Self {
        Self {
            stage: stage.as_str().to_owned(),
            version,
            parts: Vec::new(),
        }
    }

    /// Adds a named part.
    pub fn part(mut self, name: &str, value: serde_json::Value) -> Self {
        self.parts.push((name.to_owned(), value));
        self
    }

    /// The stage key these inputs hash to.
    pub fn key(&self) -> String {
        let values: Vec<&serde_json::Value> = self.parts.iter().map(|(_, v)| v).collect();
        stage_key(&self.stage, self.version, &values)
    }
}

/// A stage key from its name, version and parts.
pub fn stage_key(stage: &str, version: u32, parts: &[&serde_json::Value]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(format!("tiktok-factory/stage/{stage}/v{version}\n").as_bytes());
    for p in parts {
        hasher.update(crate::expand::canonical_json(p).as_bytes());
        hasher.update(b"\n");
    }
    hex::encode(&hasher.finalize()[..16])
}

/// The versions of the tools whose output a key depends on: a new ffmpeg renders
/// differently, a new espeak-ng speaks differently, another caption font looks different.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolVersions {
    /// First line of `ffmpeg -version`.
    pub ffmpeg: String,
    /// First line of `espeak-ng --version`.
    pub espeak: String,
    /// The caption font file's name and size.
    pub font: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Script;

    fn job() -> crate::expand::Job {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("golden.yaml");
        std::fs::write(
            &path,
            r#"version: 1
name: golden
voices:
  v: { provider: espeak, voice: en-us, rate: 165 }
templates:
  t:
    script: { provider: offline, seconds: 20 }
    footage: { provider: generated, clips: 3 }
    captions: { style: bold-center, max_words: 3, highlight: word }
    video: { size: 1080x1920, fps: 30, max_seconds: 60 }
    title: "{{ topic }}"
batch:
  template: t
  matrix: { topic: [Owls], voice: [v] }
"#,
        )
        .unwrap();
        let jobs = crate::cli::load_all(&[path]).0;
        jobs[0].jobs[0].clone()
    }

    fn versions() -> ToolVersions {
        ToolVersions {
            ffmpeg: "ffmpeg version 5.1.8".into(),
            espeak: "eSpeak NG 1.51".into(),
            font: "DejaVuSans-Bold.ttf 705684".into(),
        }
    }

    /// Pins every key of one fixed spec. If this fails, a key changed: every cached
    /// artifact of that stage (and every paid script or voice) would be made again.
    /// Change a stage's `VERSION` on purpose, then update the value here.
    #[test]
    fn golden_stage_keys() {
        let job = job();
        let spec = job.spec.clone();
        let v = versions();
        let script = Script {
            hook: "Owls turn heads.".into(),
            sentences: vec!["They see at night.".into()],
            cta: "Follow.".into(),
            title: "Owls".into(),
            caption: "Owls".into(),
            hashtags: vec![],
            visuals: Vec::new(),
            usage: None,
        };
        let spoken = script.spoken();
        let script_k = script_key(&spec);
        let scenes = crate::stages::footage::scenes(&spec, &script);
        let footage_k = footage_key(&spec, &scenes, None, &v);
        let voice_k = voice_key(&spec, &spoken, &v);
        let captions_k = captions_key(&spec, &voice_k, &v);
        let render_k = render_key(&spec, &footage_k, &voice_k, &captions_k, None, &v);
        let host_k = host_key(&spec, "0123456789abcdef", &render_k);
        let draft_k = draft_key(&spec, "0123456789abcdef", &render_k, &["#owls".to_owned()]);
        let notify_k = notify_key(&spec, &draft_k);
        let all = [
            job.id.to_string(),
            script_k,
            footage_k,
            voice_k,
            captions_k,
            render_k,
            host_k,
            draft_k,
            notify_k,
        ];
        insta::assert_debug_snapshot!(all);
    }

    #[test]
    fn a_key_changes_with_any_part() {
        let a = stage_key("x", 1, &[&serde_json::json!({"a": 1})]);
        assert_ne!(a, stage_key("x", 2, &[&serde_json::json!({"a": 1})]));
        assert_ne!(a, stage_key("y", 1, &[&serde_json::json!({"a": 1})]));
        assert_ne!(a, stage_key("x", 1, &[&serde_json::json!({"a": 2})]));
        assert_eq!(a, stage_key("x", 1, &[&serde_json::json!({"a": 1})]));
    }
}
