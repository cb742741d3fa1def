//! Stills for scenes: a picture per scene, drawn by an image model (OpenRouter) or
//! offline, for `footage.provider: image` and `footage.fallback: image`. The render moves
//! every still (see `media::still`).

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Clip, ProviderError, Usage};
use crate::media::Tools;

/// The model name that draws stills offline, and what a recipe without `model` gets.
pub const OFFLINE_MODEL: &str = "offline";
/// TikTok's frame.
pub const ASPECT: &str = "9:16";
/// What a still is made from: bump when the prompt wording or the offline drawing
/// changes, so cached stills are made again.
pub const VERSION: u32 = 1;

const OFFLINE_WIDTH: u32 = 1080;
const OFFLINE_HEIGHT: u32 = 1920;

/// Whether `model` (a recipe's `footage.model`) draws offline.
pub fn is_offline(model: Option<&str>) -> bool {
    model.is_none_or(|m| m.trim().is_empty() || m.trim() == OFFLINE_MODEL)
}

/// The model that draws, as the footage key and the store name it.
pub fn model_name(model: Option<&str>) -> &str {
    if is_offline(model) {
        OFFLINE_MODEL
    } else {
        model.unwrap_or(OFFLINE_MODEL).trim()
    }
}

/// What one still is asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRequest {
    pub model: String,
    /// What the picture shows: the scene's visual query.
    pub subject: String,
    /// The whole instruction an image model gets.
    pub prompt: String,
    /// `9:16`.
    pub aspect: String,
    /// A stable number per still, so two stills of one subject differ.
    pub seed: u64,
}

impl ImageRequest {
    pub fn new(model: Option<&str>, subject: &str, seed: u64) -> Self {
        let subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
        Self {
            model: model_name(model).to_owned(),
            prompt: prompt(&subject),
            subject,
            aspect: ASPECT.to_owned(),
            seed,
        }
    }
}

/// The instruction for a still of `subject`: a photograph-like vertical frame with no
/// lettering (the captions carry the words).
pub fn prompt(subject: &str) -> String {
    format!(
        "A vertical 9:16 photograph for a short video: {subject}. Natural light, one clear \
         subject, rich detail, room around it. No text, letters, captions, logos or watermarks."
    )
}

/// A still written to disk.
#[derive(Debug, Clone, PartialEq)]
pub struct Still {
    pub path: PathBuf,
    /// `image:<model>:<digest>`.
    pub source_id: String,
    /// What it cost, for a paid model.
    pub usage: Option<Usage>,
}

/// Something that draws stills.
#[async_trait]
pub trait ImageMaker: Send + Sync {
    /// Writes one still for `request` into `dir` (which exists), named `stem` plus the
    /// extension of the format it came in.
    async fn draw(
        &self,
        request: &ImageRequest,
        dir: &Path,
        stem: &str,
    ) -> Result<Still, ProviderError>;
}

/// The source id of a still: the model and a digest of what it was asked (model,
/// prompt, aspect, seed and [`VERSION`]), which is also what finds it again.
pub fn source_id(request: &ImageRequest) -> String {
    let digest = crate::media::still::text_hash(&format!(
        "{}\n{}\n{}\n{}\n{VERSION}",
        request.model, request.prompt, request.aspect, request.seed
    ));
    format!("image:{}:{digest:016x}", request.model)
}

/// Stills drawn with ffmpeg: a gradient chosen by the subject and seed, the subject's
/// words set large over it. Free, offline, deterministic.
#[derive(Debug, Clone)]
pub struct OfflineImages {
    pub tools: Tools,
}

#[async_trait]
impl ImageMaker for OfflineImages {
    async fn draw(
        &self,
        request: &ImageRequest,
        dir: &Path,
        stem: &str,
    ) -> Result<Still, ProviderError> {
        let path = dir.join(format!("{stem}.png"));
        let seed = crate::media::still::text_hash(&request.subject) ^ request.seed;
        crate::media::still::draw(
            &self.tools,
            &request.subject,
            seed,
            OFFLINE_WIDTH,
            OFFLINE_HEIGHT,
            &path,
        )
        .await
        .map_err(|e| ProviderError::permanent("offline images", e.to_string()))?;
        Ok(Still {
            path,
            source_id: source_id(request),
            usage: None,
        })
    }
}

/// A still as a clip: it lasts as long as its scene (a duration of 0 says so).
pub fn still_clip(still: Still) -> Clip {
    Clip {
        path: still.path,
        source_id: still.source_id,
        duration: 0.0,
        credit: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_offline_model_draws_offline() {
        assert!(is_offline(None));
        assert!(is_offline(Some("offline")));
        assert!(is_offline(Some(" ")));
        assert!(!is_offline(Some("google/gemini-2.5-flash-image")));
        assert_eq!(model_name(Some(" offline ")), "offline");
        let request = ImageRequest::new(None, "  owl   at night ", 4);
        assert_eq!(request.subject, "owl at night");
        assert!(
            request.prompt.contains(": owl at night."),
            "{}",
            request.prompt
        );
        assert_eq!(request.aspect, "9:16");
        let other = ImageRequest {
            seed: 5,
            ..request.clone()
        };
        assert_ne!(source_id(&request), source_id(&other));
        assert!(source_id(&request).starts_with("image:offline:"));
    }
}
