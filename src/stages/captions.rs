//! Captions: an ASS script timed from the narration's words.

use serde_json::json;

use super::Stage;
use crate::engine::{Built, Halt, JobRun};
use crate::expand::JobSpec;
use crate::keys::{Inputs, ToolVersions};
use crate::media::{CaptionPosition, CaptionStyle, Rgb};
use crate::providers::{Narration, WordTiming};
use crate::recipe::{CaptionStyleName, CaptionsDef, Highlight};

/// 2: the presets' positions come from the safe area; `pop` and `clean`.
pub const VERSION: u32 = 2;
const FILE: &str = "captions.ass";

/// The caption settings, the narration (by its key) and the font.
pub fn key(spec: &JobSpec, voice_key: &str, versions: &ToolVersions) -> String {
    inputs(spec, voice_key, versions).key()
}

/// What [`key`] hashes, by name.
pub fn inputs(spec: &JobSpec, voice_key: &str, versions: &ToolVersions) -> Inputs {
    Inputs::new(Stage::Captions, VERSION)
        .part("captions", json!(spec.captions))
        .part("voice_key", json!(voice_key))
        .part("tools", json!({ "font": versions.font }))
}

/// The preset's look, with the recipe's words per line and highlight.
pub fn style(def: &CaptionsDef) -> CaptionStyle {
    let base = CaptionStyle {
        max_words: u8::try_from(def.max_words.clamp(1, 3)).unwrap_or(3),
        highlight_word: def.highlight == Highlight::Word,
        ..CaptionStyle::default()
    };
    match def.style {
        CaptionStyleName::BoldCenter | CaptionStyleName::None => base,
        CaptionStyleName::BoldLower => CaptionStyle {
            position: CaptionPosition::Lower,
            ..base
        },
        CaptionStyleName::Pop => CaptionStyle {
            max_words: base.max_words.min(2),
            uppercase: true,
            pop: true,
            font_size: 100,
            outline: 8,
            ..base
        },
        CaptionStyleName::Clean => CaptionStyle {
            position: CaptionPosition::Lower,
            bold: false,
            font_size: 76,
            outline: 4,
            highlight_colour: Rgb::new(0x7F, 0xE0, 0xFF),
            ..base
        },
    }
}

pub fn ass(def: &CaptionsDef, words: &[WordTiming]) -> String {
    crate::media::ass(words, &style(def), 1080, 1920)
}

/// The caption file to burn in, or `None` when the recipe turns captions off; and the key.
pub async fn run(
    job: &mut JobRun<'_>,
    narration: &Narration,
    voice_key: &str,
) -> Result<(Option<std::path::PathBuf>, String), Halt> {
    let spec = job.spec();
    let key = key(spec, voice_key, job.services().versions());
    let enabled = spec.captions.style != CaptionStyleName::None;
    let hit = job
        .cached(Stage::Captions, &key, None, |work| async move {
            tokio::fs::write(work.join(FILE), ass(&spec.captions, &narration.words))
                .await
                .map_err(|e| {
                    crate::providers::ProviderError::permanent("captions", e.to_string())
                })?;
            Ok(Built {
                main: FILE.to_owned(),
                output: json!({ "file": FILE, "enabled": enabled }),
                cost: None,
            })
        })
        .await?;
    Ok((enabled.then(|| hit.path(FILE)), key))
}
