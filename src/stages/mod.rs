//! The stages of a job and the choice of provider for each. The recipe chooses the
//! provider; this is the one place that turns that choice into an implementation.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use tokio::sync::Semaphore;

use crate::expand::{FootageSpec, JobSpec, ScriptSpec};
use crate::media::RenderSpec;
use crate::media::Tools;
use crate::media::{CaptionPosition, CaptionStyle};
use crate::providers::elevenlabs::{ElevenLabs, ElevenLabsVoice, PlanTier};
use crate::providers::local::{LocalDrafts, LocalHost, LogNotifier};
use crate::providers::offline::{Espeak, GeneratedFootage, LocalFootage, OfflineWriter};
use crate::providers::openrouter::OpenRouter;
use crate::providers::pexels::Pexels;
use crate::providers::r2::{R2, R2Config};
use crate::providers::telegram::Telegram;
use crate::providers::tiktok::{Account, SqliteAccountStore, TikTokConfig, TikTokDrafts};
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

/// Every provider a run uses, built once and shared by all jobs: rate-limit state
/// (Pexels), concurrency caps (ElevenLabs) and token refreshes (TikTok) are per account,
/// not per job. Real clients are created on first use, so a recipe that never names a
/// service never needs its key.
pub struct Providers {
    tools: Tools,
    state_dir: PathBuf,
    pool: sqlx::SqlitePool,
    openrouter: OnceLock<Result<Arc<OpenRouter>, ProviderError>>,
    pexels: OnceLock<Result<Pexels, ProviderError>>,
    elevenlabs_permits: Arc<Semaphore>,
    r2: OnceLock<Result<Arc<R2>, ProviderError>>,
    tiktok: OnceLock<Result<Arc<TikTokDrafts>, ProviderError>>,
    telegram: OnceLock<Result<Arc<Telegram>, ProviderError>>,
}

/// A missing key or a bad base URL: nothing to retry until the environment changes.
fn setup(service: &'static str) -> impl Fn(String) -> ProviderError {
    move |message| ProviderError::permanent(service, message)
}

impl Providers {
    pub fn new(tools: Tools, state_dir: PathBuf, pool: sqlx::SqlitePool) -> Self {
        Self {
            tools,
            state_dir,
            pool,
            openrouter: OnceLock::new(),
            pexels: OnceLock::new(),
            elevenlabs_permits: elevenlabs_tier().permits(),
            r2: OnceLock::new(),
            tiktok: OnceLock::new(),
            telegram: OnceLock::new(),
        }
    }

    pub fn script_writer(&self, spec: &ScriptSpec) -> Result<Arc<dyn ScriptWriter>, ProviderError> {
        Ok(match spec.provider {
            ScriptProvider::Offline => Arc::new(OfflineWriter),
            ScriptProvider::Openrouter => self
                .openrouter
                .get_or_init(|| {
                    OpenRouter::from_env()
                        .map(Arc::new)
                        .map_err(|e| setup("openrouter")(e.to_string()))
                })
                .clone()?,
        })
    }

    pub fn footage_source(
        &self,
        spec: &FootageSpec,
        recipe_dir: &Path,
    ) -> Result<Arc<dyn FootageSource>, ProviderError> {
        Ok(match spec.provider {
            FootageProvider::Generated => Arc::new(GeneratedFootage::new(self.tools.clone())),
            FootageProvider::Local => Arc::new(LocalFootage::new(
                self.tools.clone(),
                recipe_dir.join(spec.dir.as_deref().unwrap_or(".")),
            )),
            FootageProvider::Pexels => Arc::new(
                self.pexels
                    .get_or_init(|| Pexels::from_env().map_err(|e| setup("pexels")(e.to_string())))
                    .clone()?,
            ),
        })
    }

    pub fn voice(&self, def: &VoiceDef) -> Result<Arc<dyn Voice>, ProviderError> {
        Ok(match def.provider {
            VoiceProvider::Espeak => Arc::new(Espeak::new(
                self.tools.clone(),
                def.voice.clone().unwrap_or_else(|| "en-us".into()),
                def.rate.unwrap_or(165),
                def.pitch.unwrap_or(50),
            )),
            VoiceProvider::Elevenlabs => Arc::new(
                ElevenLabs::from_env(elevenlabs_voice(def), Arc::clone(&self.elevenlabs_permits))
                    .map_err(|e| setup("elevenlabs")(e.to_string()))?,
            ),
        })
    }

    pub fn host(&self, publish: &Publish) -> Result<Arc<dyn Host>, ProviderError> {
        Ok(match publish.host {
            HostProvider::Local => Arc::new(LocalHost {
                dir: self.state_dir.join("hosted"),
            }),
            HostProvider::R2 => self
                .r2
                .get_or_init(|| {
                    R2Config::from_env()
                        .and_then(R2::new)
                        .map(Arc::new)
                        .map_err(|e| setup("r2")(e.to_string()))
                })
                .clone()?,
        })
    }

    pub fn drafts(&self, publish: &Publish) -> Result<Arc<dyn Drafts>, ProviderError> {
        Ok(match &publish.tiktok {
            None => Arc::new(LocalDrafts {
                dir: self.state_dir.join("drafts"),
            }),
            Some(_) => self.tiktok.get_or_init(|| self.build_tiktok()).clone()?,
        })
    }

    fn build_tiktok(&self) -> Result<Arc<TikTokDrafts>, ProviderError> {
        let config = TikTokConfig::from_env().map_err(|e| setup("tiktok")(e.to_string()))?;
        let key = crate::privacy::crypto::Key::resolve(&crate::privacy::key_file(&self.state_dir))
            .map_err(|e| setup("tiktok")(e.to_string()))?;
        let store = Arc::new(SqliteAccountStore::new(self.pool.clone(), key));
        let seed = Account::from_env().map_err(|e| setup("tiktok")(e.to_string()))?;
        Ok(Arc::new(
            TikTokDrafts::new(config, store)?.with_seed_account(seed),
        ))
    }

    pub fn notifier(&self, notify: Option<&Notify>) -> Result<Arc<dyn Notifier>, ProviderError> {
        Ok(match notify.and_then(|n| n.telegram.as_ref()) {
            None => Arc::new(LogNotifier::new(self.state_dir.join("notices.log"))),
            Some(_) => self
                .telegram
                .get_or_init(|| {
                    Telegram::from_env()
                        .map(Arc::new)
                        .map_err(|e| setup("telegram")(e.to_string()))
                })
                .clone()?,
        })
    }
}

/// The ElevenLabs plan sets how many requests may run at once (`ELEVENLABS_TIER`,
/// default `free`: the cautious choice).
fn elevenlabs_tier() -> PlanTier {
    std::env::var("ELEVENLABS_TIER")
        .ok()
        .and_then(|t| PlanTier::from_tier(&t))
        .unwrap_or(PlanTier::Free)
}

fn elevenlabs_voice(def: &VoiceDef) -> ElevenLabsVoice {
    let mut v = ElevenLabsVoice::new(def.voice_id.clone().unwrap_or_default());
    if let Some(model) = &def.model {
        v.model.clone_from(model);
    }
    v.stability = def.stability;
    v.similarity_boost = def.similarity_boost;
    v.style = def.style;
    v.use_speaker_boost = def.use_speaker_boost;
    v.speed = def.speed;
    v.seed = def.seed;
    v
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
        .map_err(|e| ProviderError::permanent("render", e.to_string()))?;
    // Decode the end of the file too: a render cut short must never count as done.
    crate::media::verify_media(tools, out)
        .await
        .map(|_| ())
        .map_err(|e| ProviderError::permanent("render", e.to_string()))
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
