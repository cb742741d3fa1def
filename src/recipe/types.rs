//! The recipe format, version 1, as Rust types. `schemas/recipe.schema.json` is
//! generated from these (`factory schema`), so every doc comment here is also the help
//! text an editor shows.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A recipe: topics, voices and templates that expand into video jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Format version. Only `1` exists.
    #[schemars(extend("const" = 1))]
    pub version: u32,
    /// Recipe name: lowercase letters, digits and dashes. Names the drafts folder and the
    /// jobs in the store, so keep it stable.
    #[schemars(
        regex(pattern = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"),
        length(min = 1, max = 64),
        example = &"space-facts"
    )]
    pub name: String,
    /// What this recipe is for (not used in output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Values available to every template string. Scalars only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, Value>,
    /// Voices by name. Voices in the project file (`factory.yaml` beside the recipe) are
    /// available too; a voice defined here replaces one of the same name there.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub voices: BTreeMap<String, VoiceDef>,
    /// Templates by name; merged with the project file's like `voices`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub templates: BTreeMap<String, TemplateDef>,
    /// Which jobs to make: the matrix of topics × voices × templates.
    pub batch: Batch,
    /// Where finished videos go. Defaults to the project file's, else local folders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<Publish>,
    /// Who hears about finished drafts. Defaults to the project file's, else a log line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Notify>,
}

/// The project file, `factory.yaml`, beside the recipes: what several recipes share.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Project {
    /// Format version. Only `1` exists.
    #[schemars(extend("const" = 1))]
    pub version: u32,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub voices: BTreeMap<String, VoiceDef>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub templates: BTreeMap<String, TemplateDef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<Publish>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Notify>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum VoiceProvider {
    /// espeak-ng on this machine: free, offline, robotic.
    Espeak,
    /// ElevenLabs text-to-speech (needs `ELEVENLABS_API_KEY`).
    Elevenlabs,
}

/// A narrator. Settings apply to one provider each; the others are rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VoiceDef {
    pub provider: VoiceProvider,
    /// espeak: voice name, e.g. `en-us`, `en-gb`, `en-us+f3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"en-us", example = &"en-gb")]
    pub voice: Option<String>,
    /// espeak: speed in words per minute (80–450).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 80, max = 450), example = 165)]
    pub rate: Option<u32>,
    /// espeak: pitch, 0–99.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 99), example = 50)]
    pub pitch: Option<u32>,
    /// elevenlabs: the voice id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"21m00Tcm4TlvDq8N00")]
    pub voice_id: Option<String>,
    /// elevenlabs: model id, e.g. `eleven_multilingual_v2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"eleven_multilingual_v2")]
    pub model: Option<String>,
    /// elevenlabs: 0–1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub stability: Option<f64>,
    /// elevenlabs: 0–1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub similarity_boost: Option<f64>,
    /// elevenlabs: 0–1; above 0 adds latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub style: Option<f64>,
    /// elevenlabs: 0.7–1.2; 1 is normal speed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.7, max = 1.2))]
    pub speed: Option<f64>,
    /// elevenlabs: boost similarity to the original speaker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_speaker_boost: Option<bool>,
    /// elevenlabs: best-effort determinism.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u32>,
    /// The language this voice speaks with the settings above (ISO 639-1, e.g. `en`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// The voice in other languages, chosen by a job's `language` var (set in `vars`,
    /// an `include` entry or a column of the topics file): espeak `{ fr: { voice: fr-fr } }`,
    /// elevenlabs `{ fr: { voice_id: …, model: eleven_multilingual_v2 } }`. A job whose
    /// language is neither `language` nor listed here is an error, never another voice.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub languages: BTreeMap<String, VoiceLanguage>,
}

/// What changes when a voice speaks another language; the rest of the voice stays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VoiceLanguage {
    /// espeak: voice name for this language, e.g. `fr-fr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
    /// elevenlabs: the voice id for this language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice_id: Option<String>,
    /// elevenlabs: model id for this language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

impl VoiceDef {
    /// The voice a job in `language` speaks with: this one with that language's settings,
    /// and without the others (so adding a language changes no other job). `Err` names
    /// the languages the voice has when it has none for `language`.
    pub fn in_language(&self, language: Option<&str>) -> Result<Self, Vec<String>> {
        let mut voice = Self {
            languages: BTreeMap::new(),
            ..self.clone()
        };
        let Some(language) = language.filter(|_| !self.languages.is_empty()) else {
            return Ok(voice);
        };
        if self.language.as_deref() == Some(language) {
            return Ok(voice);
        }
        let Some(other) = self.languages.get(language) else {
            return Err(self
                .language
                .iter()
                .chain(self.languages.keys())
                .cloned()
                .collect());
        };
        if let Some(v) = &other.voice {
            voice.voice = Some(v.clone());
        }
        if let Some(id) = &other.voice_id {
            voice.voice_id = Some(id.clone());
        }
        if let Some(model) = &other.model {
            voice.model = Some(model.clone());
        }
        voice.language = Some(language.to_owned());
        Ok(voice)
    }
}

/// How one kind of video is made. String fields marked *template* are minijinja
/// templates rendered per job with `topic`, `voice`, `template`, `recipe`, `seconds` and
/// every var.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateDef {
    pub script: ScriptDef,
    #[serde(default)]
    pub footage: FootageDef,
    #[serde(default)]
    pub captions: CaptionsDef,
    #[serde(default)]
    pub video: VideoDef,
    /// Draft title (*template*).
    pub title: String,
    /// Post caption the creator pastes when publishing (*template*). Defaults to the
    /// script's own caption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    /// Hashtags without `#` (each a *template*).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hashtags: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScriptProvider {
    /// A deterministic writer: no network, no cost.
    Offline,
    /// OpenRouter chat completions (needs `OPENROUTER_API_KEY`).
    Openrouter,
    /// Your own words: `text` (or the topics file's `script` column) is spoken exactly
    /// as written, one line per sentence, never rewritten.
    Text,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScriptDef {
    pub provider: ScriptProvider,
    /// openrouter: model slug with its organisation, e.g. `openai/gpt-4o-mini`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"openai/gpt-4o-mini")]
    pub model: Option<String>,
    /// openrouter: models to try, in order, when the first fails.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallback_models: Vec<String>,
    /// The instruction for the writer (*template*). Required for `openrouter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// openrouter: 0–2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 2.0))]
    pub temperature: Option<f64>,
    /// openrouter: sampling seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Target narration length in seconds (also the template variable `seconds`, unless
    /// a var of that name overrides it). At least 3 (a hook and a call to action), at
    /// most `video.max_seconds`.
    #[serde(default = "default_seconds")]
    #[schemars(range(min = 3, max = 600), example = 20)]
    pub seconds: u32,
    /// Closing line (*template*), e.g. `Follow for more.` Defaults to the var `cta`
    /// (a `text` script ends with its own last sentence unless `cta` is set here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cta: Option<String>,
    /// text: the narration (*template*), split into sentences exactly as written. Defaults
    /// to the var `script`, which a `script` column of a CSV topics file gives per row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

fn default_seconds() -> u32 {
    30
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FootageProvider {
    /// Abstract motion generated with ffmpeg, different for every job.
    #[default]
    Generated,
    /// Video files from a folder inside the recipe directory.
    Local,
    /// Pexels stock video search (needs `PEXELS_API_KEY`).
    Pexels,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FootageDef {
    #[serde(default)]
    pub provider: FootageProvider,
    /// pexels: search words (*template*).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"{{ topic }}")]
    pub query: Option<String>,
    /// local: folder of clips, relative to the recipe and inside its directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// Clips per video, 1–12, when the footage is chosen per video (`per: video`).
    #[serde(default = "default_clips")]
    #[schemars(range(min = 1, max = 12))]
    pub clips: u32,
    /// `scene` (the default): one clip per spoken line, searched with that line's visual
    /// query and cut where the narration starts it. `video`: one query for the whole
    /// video, `clips` clips sharing it evenly.
    #[serde(default, skip_serializing_if = "FootagePer::is_scene")]
    pub per: FootagePer,
}

/// How footage is chosen: per scene, or once for the whole video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FootagePer {
    /// A clip per spoken line, from that line's visual query; cuts on the line starts.
    #[default]
    Scene,
    /// One query for the video; `clips` clips share it evenly.
    Video,
}

impl FootagePer {
    pub fn is_scene(&self) -> bool {
        *self == Self::Scene
    }
}

fn default_clips() -> u32 {
    4
}

impl Default for FootageDef {
    fn default() -> Self {
        Self {
            provider: FootageProvider::Generated,
            query: None,
            dir: None,
            clips: default_clips(),
            per: FootagePer::Scene,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CaptionStyleName {
    /// Large bold white words with a black outline, centred.
    #[default]
    BoldCenter,
    /// The same, low on the frame, just above TikTok's description.
    BoldLower,
    /// Two words at a time in capitals, the spoken one yellow and popping, centred.
    Pop,
    /// Regular white words with a thin outline, low on the frame.
    Clean,
    /// No burned-in captions.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Highlight {
    /// The word being spoken changes colour.
    #[default]
    Word,
    /// No highlight.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaptionsDef {
    #[serde(default)]
    pub style: CaptionStyleName,
    /// Words on screen at once, 1–3.
    #[serde(default = "default_max_words")]
    #[schemars(range(min = 1, max = 3))]
    pub max_words: u32,
    #[serde(default)]
    pub highlight: Highlight,
}

fn default_max_words() -> u32 {
    3
}

impl Default for CaptionsDef {
    fn default() -> Self {
        Self {
            style: CaptionStyleName::default(),
            max_words: default_max_words(),
            highlight: Highlight::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VideoDef {
    /// Frame size. TikTok's vertical format is the only one: `1080x1920`.
    #[serde(default = "default_size")]
    #[schemars(regex(pattern = r"^1080x1920$"), example = &"1080x1920")]
    pub size: String,
    /// Frames per second, 23–60.
    #[serde(default = "default_fps")]
    #[schemars(range(min = 23, max = 60))]
    pub fps: u32,
    /// Longest allowed video, in seconds (3 to 600).
    #[serde(default = "default_max_seconds")]
    #[schemars(range(min = 3, max = 600))]
    pub max_seconds: u32,
    /// Background music file, relative to the recipe and inside its directory; ducked
    /// under the narration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"assets/lofi.mp3")]
    pub music: Option<String>,
}

fn default_size() -> String {
    "1080x1920".to_owned()
}
fn default_fps() -> u32 {
    30
}
fn default_max_seconds() -> u32 {
    60
}

impl Default for VideoDef {
    fn default() -> Self {
        Self {
            size: default_size(),
            fps: default_fps(),
            max_seconds: default_max_seconds(),
            music: None,
        }
    }
}

/// The matrix of jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// The template every job uses, unless `matrix.template` lists several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    pub matrix: Matrix,
    /// Vars for every job of this batch (override recipe and project vars).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, Value>,
    /// The most jobs this batch may expand to (default 10,000; at most 1,000,000). A
    /// larger matrix is refused before any job is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub max_jobs: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Matrix {
    /// Topics, inline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topic: Vec<String>,
    /// Topics from a file inside the recipe directory: `.txt` (one per line, `#`
    /// comments) or `.csv` (a `topic` column, or the first column). Every other CSV
    /// column is a var of its row's jobs; a `script` column is the row's narration for a
    /// `text` script.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"topics.csv")]
    pub topics_file: Option<String>,
    /// Voice names.
    pub voice: Vec<String>,
    /// Template names; defaults to `batch.template`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub template: Vec<String>,
    /// Extra jobs. Axes an entry leaves out take every value of that axis; `vars`
    /// apply to the added jobs only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<Cell>,
    /// Jobs to drop: every job matching all the given axes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<CellFilter>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cell {
    pub topic: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CellFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HostProvider {
    /// A folder in the state directory.
    #[default]
    Local,
    /// Cloudflare R2 (needs the `R2_*` variables).
    R2,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Publish {
    /// Where the rendered video is hosted for the notice link.
    #[serde(default)]
    pub host: HostProvider,
    /// Days hosted copies and local renders are kept, 1–14 (the privacy policy's limit).
    #[serde(default = "default_retention_days")]
    #[schemars(range(min = 1, max = 365))]
    pub retention_days: u32,
    /// Allow `retention_days` above 14 (up to 365). Every run that uses it says so in its
    /// output: the privacy policy promises deletion after 14 days.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_longer_retention: bool,
    /// Upload to this TikTok account's inbox as a draft. Without it, drafts go to the
    /// local drafts folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiktok: Option<TikTokTarget>,
}

fn default_retention_days() -> u32 {
    14
}

impl Default for Publish {
    fn default() -> Self {
        Self {
            host: HostProvider::Local,
            retention_days: default_retention_days(),
            allow_longer_retention: false,
            tiktok: None,
        }
    }
}

/// Always an inbox draft: the creator publishes by hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TikTokTarget {
    /// Account name given at `factory auth tiktok login --account NAME`.
    #[schemars(example = &"main")]
    pub account: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telegram: Option<TelegramTarget>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TelegramTarget {
    /// Chat id or `@channel` (the bot token comes from `TELEGRAM_BOT_TOKEN`).
    #[schemars(example = &"@my_alerts")]
    pub chat: String,
}
