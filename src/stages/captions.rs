//! Captions: an ASS script timed from the narration's words.

use serde_json::json;

use super::Stage;
use crate::engine::{Built, Halt, JobRun};
use crate::expand::JobSpec;
use crate::keys::{Inputs, ToolVersions};
use crate::media::{CaptionPosition, CaptionStyle, Rgb};
use crate::providers::{Narration, WordTiming};
use crate::recipe::{CaptionPlace, CaptionStyleName, CaptionsDef, Highlight};

/// 2: the presets' positions come from the safe area; `pop` and `clean`.
/// 3: words in Cyrillic, Greek, accented Latin and CJK are measured as drawn, so they
/// shrink only as much as their line needs.
pub const VERSION: u32 = 3;
const FILE: &str = "captions.ass";

/// The caption settings, the narration (by its key) and the font.
pub fn key(spec: &JobSpec, voice_key: &str, versions: &ToolVersions) -> String {
    inputs(spec, voice_key, versions).key()
}

/// What [`key`] hashes, by name.
pub fn inputs(spec: &JobSpec, voice_key: &str, versions: &ToolVersions) -> Inputs {
    let inputs = Inputs::new(Stage::Captions, VERSION)
        .part("captions", json!(spec.captions))
        .part("voice_key", json!(voice_key))
        .part("tools", json!({ "font": versions.font }));
    // A font of the recipe's own: the file it is drawn from, so a new version of it draws
    // the captions again. Only such jobs have the part; the others keep their keys.
    match &spec.captions.font {
        Some(family) => {
            let look = style(&spec.captions);
            inputs.part(
                "font_file",
                json!(crate::media::font_file(family, look.bold)),
            )
        }
        None => inputs,
    }
}

/// The preset's look, with the recipe's words per line, highlight and overrides.
pub fn style(def: &CaptionsDef) -> CaptionStyle {
    let base = CaptionStyle {
        max_words: u8::try_from(def.max_words.clamp(1, 3)).unwrap_or(3),
        highlight_word: def.highlight == Highlight::Word,
        ..CaptionStyle::default()
    };
    let preset = match def.style {
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
    };
    overridden(preset, def)
}

/// The preset with each setting the recipe gives instead. Values out of range were
/// reported when the recipe loaded; here they are clamped, so a style is always drawable.
fn overridden(mut style: CaptionStyle, def: &CaptionsDef) -> CaptionStyle {
    if let Some(font) = &def.font {
        style.font.clone_from(font);
    }
    if let Some(bold) = def.bold {
        style.bold = bold;
    }
    if let Some(size) = def.size {
        style.font_size = size.clamp(MIN_SIZE, MAX_SIZE);
    }
    let colour = |hex: &Option<String>, default: Rgb| {
        hex.as_deref().and_then(Rgb::from_hex).unwrap_or(default)
    };
    style.text_colour = colour(&def.color, style.text_colour);
    style.highlight_colour = colour(&def.highlight_color, style.highlight_colour);
    style.outline_colour = colour(&def.outline_color, style.outline_colour);
    if let Some(outline) = def.outline {
        style.outline = outline.min(MAX_OUTLINE);
    }
    if let Some(upper) = def.upper {
        style.uppercase = upper;
    }
    if let Some(pop) = def.pop {
        style.pop = pop;
    }
    match def.position {
        Some(CaptionPlace::Center) => style.position = CaptionPosition::Center,
        Some(CaptionPlace::Lower) => style.position = CaptionPosition::Lower,
        None => {}
    }
    style
}

/// The caption sizes a recipe may ask for, in pixels of a 1920-pixel-high frame: the
/// largest still fits three lines inside the safe area.
pub const MIN_SIZE: u32 = 40;
pub const MAX_SIZE: u32 = 140;
pub const MAX_OUTLINE: u32 = 12;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_on_top_of_the_preset_and_enter_the_key() {
        let pop = CaptionsDef {
            style: CaptionStyleName::Pop,
            ..CaptionsDef::default()
        };
        let preset = style(&pop);
        let custom = CaptionsDef {
            font: Some("Liberation Sans".into()),
            size: Some(120),
            color: Some("#10a0FF".into()),
            outline: Some(0),
            upper: Some(false),
            position: Some(CaptionPlace::Lower),
            ..pop.clone()
        };
        let looks = style(&custom);
        assert_eq!(looks.font, "Liberation Sans");
        assert_eq!(looks.font_size, 120);
        assert_eq!(looks.text_colour, Rgb::new(0x10, 0xA0, 0xFF));
        assert_eq!(looks.outline, 0);
        assert!(!looks.uppercase);
        assert_eq!(looks.position, CaptionPosition::Lower);
        // What was not overridden stays the preset's.
        assert!(looks.pop);
        assert_eq!(looks.max_words, 2);
        assert_eq!(looks.highlight_colour, preset.highlight_colour);
        assert_eq!(looks.outline_colour, preset.outline_colour);
        // Out of range (reported at load) is clamped, never drawn off the frame.
        let huge = style(&CaptionsDef {
            size: Some(900),
            outline: Some(99),
            ..pop.clone()
        });
        assert_eq!((huge.font_size, huge.outline), (MAX_SIZE, MAX_OUTLINE));

        // A recipe without overrides keeps the key it had; each override changes it.
        let versions = ToolVersions::default();
        let key_of = |captions: &str| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("k.yaml");
            std::fs::write(
                &path,
                format!(
                    "version: 1\nname: k\nvoices:\n  v: {{ provider: espeak, voice: en-us }}\ntemplates:\n  t:\n    script: {{ provider: offline }}\n    captions: {captions}\n    title: \"{{{{ topic }}}}\"\nbatch:\n  template: t\n  matrix: {{ topic: [Owls], voice: [v] }}\n"
                ),
            )
            .unwrap();
            let loaded = crate::cli::load_all(&[path]);
            key(&loaded.0[0].jobs[0].spec, "voice", &versions)
        };
        let plain = key_of("{ style: pop }");
        assert_eq!(
            plain,
            key_of("{ style: pop, max_words: 3, highlight: word }")
        );
        assert_ne!(plain, key_of("{ style: pop, size: 120 }"));
        // The recipe's font is keyed by the file fontconfig draws it from.
        assert!(
            crate::media::font_file("Liberation Sans", true)
                .starts_with("LiberationSans-Bold.ttf "),
            "{}",
            crate::media::font_file("Liberation Sans", true)
        );
        assert_ne!(
            key_of("{ style: pop, font: Liberation Sans }"),
            key_of("{ style: pop, font: DejaVu Sans }")
        );
        assert_ne!(
            key_of("{ style: pop, size: 120 }"),
            key_of("{ style: pop, size: 121 }")
        );
        assert_ne!(plain, key_of("{ style: pop, outline_color: \"#202020\" }"));
    }
}
