//! The services a run uses, chosen by the recipe and built once: this is the one place
//! that turns "provider: pexels" into a client. The engine and the stages see only the
//! [`Services`] trait, so tests fill it with scripted providers and run the engine
//! in-process, without ffmpeg, espeak-ng or a network.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use tokio::sync::{Mutex, Semaphore};

use crate::expand::{FootageSpec, ScriptSpec};
use crate::keys::ToolVersions;
use crate::media::{RenderSpec, Tools};
use crate::providers::elevenlabs::{ElevenLabs, ElevenLabsVoice, PlanTier};
use crate::providers::images::{ImageMaker, OfflineImages};
use crate::providers::local::{LocalDrafts, LocalHost, LogNotifier};
use crate::providers::offline::{
    Espeak, GeneratedFootage, LocalFootage, OfflineWriter, TextWriter,
};
use crate::providers::openrouter::OpenRouter;
use crate::providers::pexels::Pexels;
use crate::providers::r2::{R2, R2Config};
use crate::providers::telegram::Telegram;
use crate::providers::tiktok::{Account, TikTokConfig, TikTokDrafts};
use crate::providers::{Drafts, FootageSource, Host, Notifier, ProviderError, ScriptWriter, Voice};
use crate::recipe::{
    FootageProvider, HostProvider, Notify, Publish, ScriptProvider, VoiceDef, VoiceProvider,
};

/// Renders a video from its parts and checks the result before it counts.
#[async_trait]
pub trait Renderer: Send + Sync {
    async fn render(&self, spec: &RenderSpec) -> Result<(), ProviderError>;
    /// The integrated loudness (EBU R128, LUFS) of an audio file: measured once, when
    /// the narration is made, so no render measures it again.
    async fn loudness(&self, audio: &Path) -> Result<f64, ProviderError>;
    /// A frame of a finished video at `at` seconds, as a JPEG at `out`.
    async fn cover(&self, video: &Path, at: f64, out: &Path) -> Result<(), ProviderError>;
}

/// Every service a stage may ask for.
pub trait Services: Send + Sync {
    fn script_writer(&self, spec: &ScriptSpec) -> Result<Arc<dyn ScriptWriter>, ProviderError>;
    fn footage_source(
        &self,
        spec: &FootageSpec,
        recipe_dir: &Path,
    ) -> Result<Arc<dyn FootageSource>, ProviderError>;
    fn voice(&self, def: &VoiceDef) -> Result<Arc<dyn Voice>, ProviderError>;
    /// What draws stills for `provider: image` and `fallback: image`.
    fn image_maker(&self, _spec: &FootageSpec) -> Result<Arc<dyn ImageMaker>, ProviderError> {
        Err(ProviderError::permanent(
            "images",
            "these services draw no stills",
        ))
    }
    fn renderer(&self) -> Arc<dyn Renderer>;
    fn host(&self, publish: &Publish) -> Result<Arc<dyn Host>, ProviderError>;
    fn drafts(&self, publish: &Publish) -> Result<Arc<dyn Drafts>, ProviderError>;
    fn notifier(&self, notify: Option<&Notify>) -> Result<Arc<dyn Notifier>, ProviderError>;
    /// The tool versions that enter stage keys.
    fn versions(&self) -> &ToolVersions;
    /// Digests of input files and folders, computed once per run.
    fn digests(&self) -> &Digests;
    /// The clips this run's jobs have used, so later jobs of a batch pick others where
    /// the results allow; `None` when nothing keeps count.
    fn used_clips(&self) -> Option<&UsedClips> {
        None
    }
}

/// Clip source ids used by the jobs of this run, per recipe.
#[derive(Debug, Default)]
pub struct UsedClips(std::sync::Mutex<HashMap<String, Vec<String>>>);

impl UsedClips {
    /// The clips `recipe`'s jobs have used so far, in the order they were used.
    pub fn of(&self, recipe: &str) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(recipe)
            .cloned()
            .unwrap_or_default()
    }

    /// Records clips a job of `recipe` uses.
    pub fn add(&self, recipe: &str, ids: impl IntoIterator<Item = String>) {
        let mut used = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let list = used.entry(recipe.to_owned()).or_default();
        for id in ids {
            if !list.contains(&id) {
                list.push(id);
            }
        }
    }
}

/// Digests of the files and folders a recipe names (music, local footage), streamed and
/// computed once per run however many jobs use them.
#[derive(Debug, Default)]
pub struct Digests {
    files: Mutex<HashMap<PathBuf, String>>,
}

impl Digests {
    /// The SHA-256 of a file's contents.
    pub async fn file(&self, path: &Path) -> Result<String, String> {
        let mut known = self.files.lock().await;
        if let Some(d) = known.get(path) {
            return Ok(d.clone());
        }
        let (_, digest) = crate::artifacts::hash_file(path)
            .await
            .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
        known.insert(path.to_owned(), digest.clone());
        Ok(digest)
    }

    /// A digest of a folder's contents: every file's name, size and digest, in order, so
    /// a clip added, removed or changed changes it.
    pub async fn folder(&self, dir: &Path) -> Result<String, String> {
        use sha2::{Digest, Sha256};
        let mut names = Vec::new();
        let entries =
            std::fs::read_dir(dir).map_err(|e| format!("cannot read `{}`: {e}", dir.display()))?;
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                names.push(entry.file_name());
            }
        }
        names.sort();
        let mut hasher = Sha256::new();
        for name in names {
            let path = dir.join(&name);
            let digest = self.file(&path).await?;
            let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
            hasher.update(format!("{}\0{bytes}\0{digest}\n", name.to_string_lossy()).as_bytes());
        }
        Ok(hex::encode(hasher.finalize()))
    }
}

/// The real services: offline defaults and the paid clients, created on first use so a
/// recipe that never names a service never needs its key.
pub struct Registry {
    tools: Tools,
    versions: ToolVersions,
    digests: Digests,
    used_clips: UsedClips,
    state_dir: PathBuf,
    store: crate::store::Store,
    /// Where rate budgets are kept: the store, or the shared queue's database on a worker.
    budgets: Arc<dyn crate::providers::Budgets>,
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

impl Registry {
    pub fn new(
        tools: Tools,
        versions: ToolVersions,
        state_dir: PathBuf,
        store: crate::store::Store,
    ) -> Self {
        Self {
            tools,
            versions,
            digests: Digests::default(),
            used_clips: UsedClips::default(),
            state_dir,
            budgets: Arc::new(store.clone()),
            store,
            openrouter: OnceLock::new(),
            pexels: OnceLock::new(),
            elevenlabs_permits: elevenlabs_tier().permits(),
            r2: OnceLock::new(),
            tiktok: OnceLock::new(),
            telegram: OnceLock::new(),
        }
    }

    /// Keeps rate budgets in `budgets` instead of the store (shared by every worker).
    pub fn with_budgets(mut self, budgets: Arc<dyn crate::providers::Budgets>) -> Self {
        self.budgets = budgets;
        self
    }

    fn build_tiktok(&self) -> Result<Arc<TikTokDrafts>, ProviderError> {
        let config = TikTokConfig::from_env().map_err(|e| setup("tiktok")(e.to_string()))?;
        let key = crate::privacy::crypto::Key::resolve(&crate::privacy::key_file(&self.state_dir))
            .map_err(|e| setup("tiktok")(e.to_string()))?;
        let store = Arc::new(crate::privacy::accounts::SealedAccounts::new(
            self.store.clone(),
            key,
        ));
        let seed = Account::from_env().map_err(|e| setup("tiktok")(e.to_string()))?;
        Ok(Arc::new(
            TikTokDrafts::new(config, store)?
                .with_seed_account(seed)
                .with_budgets(Arc::clone(&self.budgets)),
        ))
    }
}

impl Services for Registry {
    fn script_writer(&self, spec: &ScriptSpec) -> Result<Arc<dyn ScriptWriter>, ProviderError> {
        Ok(match spec.provider {
            ScriptProvider::Offline => Arc::new(OfflineWriter),
            ScriptProvider::Text => Arc::new(TextWriter),
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

    fn footage_source(
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
            // Stills are drawn per scene by the footage stage, through `image_maker`.
            FootageProvider::Image => {
                return Err(ProviderError::permanent(
                    "footage",
                    "image footage is drawn by `image_maker`, not fetched",
                ));
            }
            FootageProvider::Pexels => Arc::new(
                self.pexels
                    .get_or_init(|| {
                        Pexels::from_env()
                            .map(|p| p.with_budgets(Arc::clone(&self.budgets)).sharing_searches())
                            .map_err(|e| setup("pexels")(e.to_string()))
                    })
                    .clone()?,
            ),
        })
    }

    fn voice(&self, def: &VoiceDef) -> Result<Arc<dyn Voice>, ProviderError> {
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

    fn image_maker(&self, spec: &FootageSpec) -> Result<Arc<dyn ImageMaker>, ProviderError> {
        if crate::providers::images::is_offline(spec.model.as_deref()) {
            return Ok(Arc::new(OfflineImages {
                tools: self.tools.clone(),
            }));
        }
        Ok(self
            .openrouter
            .get_or_init(|| {
                OpenRouter::from_env()
                    .map(Arc::new)
                    .map_err(|e| setup("openrouter")(e.to_string()))
            })
            .clone()?)
    }

    fn renderer(&self) -> Arc<dyn Renderer> {
        Arc::new(Ffmpeg(self.tools.clone()))
    }

    fn host(&self, publish: &Publish) -> Result<Arc<dyn Host>, ProviderError> {
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

    fn drafts(&self, publish: &Publish) -> Result<Arc<dyn Drafts>, ProviderError> {
        Ok(match &publish.tiktok {
            None => Arc::new(LocalDrafts {
                dir: self.state_dir.join("drafts"),
            }),
            Some(_) => self.tiktok.get_or_init(|| self.build_tiktok()).clone()?,
        })
    }

    fn notifier(&self, notify: Option<&Notify>) -> Result<Arc<dyn Notifier>, ProviderError> {
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

    fn versions(&self) -> &ToolVersions {
        &self.versions
    }

    fn digests(&self) -> &Digests {
        &self.digests
    }

    fn used_clips(&self) -> Option<&UsedClips> {
        Some(&self.used_clips)
    }
}

/// The render through ffmpeg, decoded to the end before it counts.
struct Ffmpeg(Tools);

#[async_trait]
impl Renderer for Ffmpeg {
    async fn render(&self, spec: &RenderSpec) -> Result<(), ProviderError> {
        crate::media::render(&self.0, spec)
            .await
            .map_err(|e| ProviderError::permanent("render", e.to_string()))?;
        // A render cut short must never count as done.
        crate::media::verify_media(&self.0, &spec.out)
            .await
            .map(|_| ())
            .map_err(|e| ProviderError::permanent("render", e.to_string()))
    }

    async fn loudness(&self, audio: &Path) -> Result<f64, ProviderError> {
        crate::media::integrated_lufs(&self.0, audio)
            .await
            .map_err(|e| ProviderError::permanent("loudness", e.to_string()))
    }

    async fn cover(&self, video: &Path, at: f64, out: &Path) -> Result<(), ProviderError> {
        crate::media::cover(&self.0, video, at, out)
            .await
            .map_err(|e| ProviderError::permanent("cover", e.to_string()))
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
