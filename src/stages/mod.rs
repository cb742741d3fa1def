//! The stages of a job and the choice of provider for each. The recipe chooses the
//! provider; this is the one place that turns that choice into an implementation.

use std::path::Path;

use crate::expand::{FootageSpec, JobSpec, ScriptSpec};
use crate::media::RenderSpec;
use crate::media::Tools;
use crate::media::{CaptionPosition, CaptionStyle};
use crate::providers::local::{LocalDrafts, LocalHost, LogNotifier};
use crate::providers::offline::{Espeak, GeneratedFootage, LocalFootage, OfflineWriter};
use crate::providers::{
    Clip, Credit, Drafts, FootageSource, Host, Narration, Notifier, ProviderError, ScriptWriter,
    Voice, WordTiming,
};
use crate::recipe::{
    CaptionStyleName, CaptionsDef, FootageProvider, Highlight, HostProvider, Notify, Publish,
    ScriptProvider, VoiceDef, VoiceProvider,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

    pub fn name(self) -> &'static str {
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
}

fn unavailable(service: &'static str, what: &str) -> ProviderError {
    ProviderError::permanent(
        service,
        format!("{what} is not available in this build; use the offline provider"),
    )
}

pub fn script_writer(spec: &ScriptSpec) -> Result<Box<dyn ScriptWriter>, ProviderError> {
    match spec.provider {
        ScriptProvider::Offline => Ok(Box::new(OfflineWriter)),
        ScriptProvider::Openrouter => Err(unavailable("openrouter", "OpenRouter scripts")),
    }
}

pub fn footage_source(
    spec: &FootageSpec,
    recipe_dir: &Path,
    tools: &Tools,
) -> Result<Box<dyn FootageSource>, ProviderError> {
    Ok(match spec.provider {
        FootageProvider::Generated => Box::new(GeneratedFootage::new(tools.clone())),
        FootageProvider::Local => Box::new(LocalFootage::new(
            tools.clone(),
            recipe_dir.join(spec.dir.as_deref().unwrap_or(".")),
        )),
        FootageProvider::Pexels => return Err(unavailable("pexels", "Pexels footage")),
    })
}

pub fn voice(def: &VoiceDef, tools: &Tools) -> Result<Box<dyn Voice>, ProviderError> {
    Ok(match def.provider {
        VoiceProvider::Espeak => Box::new(Espeak::new(
            tools.clone(),
            def.voice.clone().unwrap_or_else(|| "en-us".into()),
            def.rate.unwrap_or(165),
            def.pitch.unwrap_or(50),
        )),
        VoiceProvider::Elevenlabs => return Err(unavailable("elevenlabs", "ElevenLabs narration")),
    })
}

pub fn caption_style(def: &CaptionsDef) -> CaptionStyle {
    CaptionStyle {
        max_words: u8::try_from(def.max_words.clamp(1, 3)).unwrap_or(3),
        highlight_word: def.highlight == Highlight::Word,
        position: if def.style == CaptionStyleName::BoldLower {
            CaptionPosition::Lower
        } else {
            CaptionPosition::Center
        },
        ..CaptionStyle::default()
    }
}

pub fn captions(def: &CaptionsDef, words: &[WordTiming]) -> String {
    crate::media::ass(words, &caption_style(def), 1080, 1920)
}

pub async fn render(
    tools: &Tools,
    spec: &JobSpec,
    clips: &[Clip],
    narration: &Narration,
    captions: Option<std::path::PathBuf>,
    recipe_dir: &Path,
    out: &Path,
) -> Result<(), ProviderError> {
    let mut r = RenderSpec::new(
        clips.iter().map(|c| c.path.clone()).collect(),
        narration.audio.clone(),
        narration.duration,
        out.to_owned(),
    );
    r.captions = captions;
    r.music = spec.video.music.as_ref().map(|m| recipe_dir.join(m));
    r.fps = spec.video.fps;
    if narration.duration > f64::from(spec.video.max_seconds) {
        return Err(ProviderError::permanent(
            "render",
            format!(
                "the narration is {:.1} s but `video.max_seconds` is {}; shorten the script (`script.seconds`)",
                narration.duration, spec.video.max_seconds
            ),
        ));
    }
    crate::media::render(tools, &r)
        .await
        .map(|_| ())
        .map_err(|e| ProviderError::permanent("render", e.to_string()))
}

pub fn host(publish: &Publish, state_dir: &Path) -> Result<Box<dyn Host>, ProviderError> {
    match publish.host {
        HostProvider::Local => Ok(Box::new(LocalHost {
            dir: state_dir.join("hosted"),
        })),
        HostProvider::R2 => Err(unavailable("r2", "R2 hosting")),
    }
}

pub fn drafts(publish: &Publish, state_dir: &Path) -> Result<Box<dyn Drafts>, ProviderError> {
    match &publish.tiktok {
        None => Ok(Box::new(LocalDrafts {
            dir: state_dir.join("drafts"),
        })),
        Some(_) => Err(unavailable("tiktok", "TikTok inbox upload")),
    }
}

pub fn notifier(notify: Option<&Notify>) -> Result<Box<dyn Notifier>, ProviderError> {
    match notify.and_then(|n| n.telegram.as_ref()) {
        None => Ok(Box::new(LogNotifier)),
        Some(_) => Err(unavailable("telegram", "Telegram notices")),
    }
}

/// The notice a creator reads: what to paste when posting the draft by hand.
pub fn notice_text(
    title: &str,
    caption: &str,
    hashtags: &[String],
    credits: &[Credit],
    link: &str,
    draft: &str,
) -> String {
    let mut text = format!("New draft: {title}\n\n{caption}");
    if !hashtags.is_empty() {
        text.push_str("\n\n");
        text.push_str(
            &hashtags
                .iter()
                .map(|h| format!("#{h}"))
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    if !credits.is_empty() {
        text.push_str("\n\nFootage: ");
        text.push_str(
            &credits
                .iter()
                .map(|c| format!("{} ({})", c.creator, c.url))
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    text.push_str(&format!("\n\nVideo: {link}\nDraft: {draft}"));
    text
}
