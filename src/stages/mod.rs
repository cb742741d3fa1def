//! The pipeline of a job, one file per stage: script → footage → voice → captions →
//! render → host → draft → notify. Each stage owns its `VERSION`, its key and its run;
//! this module owns their order. How a stage is cached, retried, recorded or reconciled
//! is the engine's business, not theirs.

pub mod captions;
pub mod draft;
pub mod footage;
pub mod host;
pub mod notify;
pub mod render;
pub mod script;
pub mod voice;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::engine::{Halt, JobRun, Lane};
use crate::providers::ProviderError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Script,
    Footage,
    Voice,
    Captions,
    Render,
    Host,
    Draft,
    Notify,
}

impl Stage {
    /// Pipeline order: the one definition every listing sorts by.
    pub const ALL: [Self; 8] = [
        Self::Script,
        Self::Footage,
        Self::Voice,
        Self::Captions,
        Self::Render,
        Self::Host,
        Self::Draft,
        Self::Notify,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Script => "script",
            Self::Footage => "footage",
            Self::Voice => "voice",
            Self::Captions => "captions",
            Self::Render => "render",
            Self::Host => "host",
            Self::Draft => "draft",
            Self::Notify => "notify",
        }
    }

    /// 1-based position in the pipeline (`stage 5/8`).
    pub fn number(self) -> usize {
        self as usize + 1
    }

    /// The concurrency budget the stage draws on.
    pub fn lane(self) -> Lane {
        match self {
            Self::Script => Lane::Llm,
            Self::Footage => Lane::Fetch,
            Self::Voice => Lane::Tts,
            Self::Captions => Lane::Inline,
            Self::Render => Lane::Cpu,
            Self::Host | Self::Draft | Self::Notify => Lane::Publish,
        }
    }

    /// How long one attempt may take before it counts as hung.
    pub fn timeout(self) -> Duration {
        Duration::from_secs(match self {
            Self::Render => 3_600,
            Self::Draft | Self::Host => 1_800,
            _ => 900,
        })
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Stage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|stage| stage.as_str() == s)
            .ok_or_else(|| format!("unknown stage `{s}`"))
    }
}

/// What the stages up to the render made.
pub struct Rendered {
    pub script: crate::providers::Script,
    pub footage: footage::Footage,
    pub video: std::path::PathBuf,
    pub render_key: String,
    pub expires: i64,
}

/// Script, footage, voice, captions and render: the part of the pipeline a preview runs
/// too.
pub async fn render_job(job: &mut JobRun<'_>) -> Result<Rendered, Halt> {
    let script = script::run(job).await?;
    let (footage, footage_key) = footage::run(job, &script).await?;
    let (narration, voice_key) = voice::run(job, &script).await?;
    let (captions, captions_key) = captions::run(job, &narration, &voice_key).await?;
    let (video, render_key, expires) = render::run(
        job,
        render::Inputs {
            footage: &footage,
            footage_key: &footage_key,
            script: &script,
            narration: &narration,
            voice_key: &voice_key,
            captions,
            captions_key: &captions_key,
        },
    )
    .await?;
    Ok(Rendered {
        script,
        footage,
        video,
        render_key,
        expires,
    })
}

/// The eight stages in order.
pub struct Pipeline;

#[async_trait::async_trait]
impl crate::engine::Pipeline for Pipeline {
    async fn run(&self, job: &mut JobRun<'_>) -> Result<(), Halt> {
        let Rendered {
            script,
            footage,
            video,
            render_key,
            expires,
        } = render_job(job).await?;
        let spec = job.spec();
        let hosted = host::run(job, &video, &render_key, expires).await?;
        let caption = spec
            .caption
            .clone()
            .unwrap_or_else(|| script.caption.clone());
        let hashtags = crate::plan::hashtags(spec, &script);
        let credits: Vec<_> = footage
            .clips
            .iter()
            .filter_map(|c| c.credit.clone())
            .collect();
        let words = draft::Words {
            title: &spec.title,
            caption: &caption,
            hashtags: &hashtags,
            credits: &credits,
        };
        let receipt = draft::run(job, &video, &render_key, &words).await?;
        let draft_key = draft::key(spec, &job.id(), &render_key, &hashtags);
        let text = notify::text(
            &spec.title,
            &caption,
            &hashtags,
            &credits,
            hosted["url"].as_str().unwrap_or_default(),
            receipt["external_id"].as_str().unwrap_or_default(),
            hosted["expires_at"].as_i64().unwrap_or(expires),
        );
        notify::run(job, &draft_key, text).await?;
        Ok(())
    }
}

async fn write_json(path: &Path, value: &Value) -> Result<(), ProviderError> {
    tokio::fs::write(path, serde_json::to_vec_pretty(value).unwrap_or_default())
        .await
        .map_err(|e| {
            ProviderError::permanent("cache", format!("cannot write `{}`: {e}", path.display()))
        })
}
