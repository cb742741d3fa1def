//! Script: the words a video says, written by an LLM or the offline writer, sized to the
//! seconds asked for at the pace of the job's voice. Paid: its key never changes by
//! accident (see the golden keys in `keys`).

use serde_json::{Value, json};

use super::Stage;
use crate::artifacts::{ArtifactStore, Hit, Lookup};
use crate::engine::{Built, Halt, JobRun};
use crate::expand::JobSpec;
use crate::keys::{Inputs, ToolVersions, stage_key};
use crate::providers::{Pace, ProviderError, Script, ScriptRequest};
use crate::recipe::{ScriptProvider, VoiceDef, VoiceProvider};

/// 2: scripts carry a footage query per spoken line and are sized to the voice's pace.
pub const VERSION: u32 = 2;
const FILE: &str = "script.json";

/// Where measured paces are kept in the artifact store, one entry per voice and rate.
pub const PACE_ENTRY: &str = "pace";
const PACE_FILE: &str = "pace.json";

/// espeak-ng's defaults when the recipe gives none.
pub const ESPEAK_VOICE: &str = "en-us";
pub const ESPEAK_RATE: u32 = 165;

/// ElevenLabs prices about one minute of speech per 1,000 characters; English runs about
/// six characters a word with its space and punctuation.
const ELEVENLABS_CHARACTERS_PER_SECOND: f64 = 1_000.0 / 60.0;
const CHARACTERS_PER_WORD: f64 = 6.0;

/// espeak-ng speaks a little under its nominal words a minute (measured here: 2.65 words a
/// second at 165); the estimate before a measurement allows for that.
const ESPEAK_NOMINAL_FACTOR: f64 = 0.96;

/// The script settings, the topic, and what sets the voice's pace (espeak-ng's voice and
/// rate, ElevenLabs' speed): a voice that speaks faster needs a longer script.
pub fn key(spec: &JobSpec) -> String {
    inputs(spec).key()
}

/// What [`key`] hashes, by name.
pub fn inputs(spec: &JobSpec) -> Inputs {
    let inputs = Inputs::new(Stage::Script, VERSION)
        .part("script", json!(spec.script))
        .part("topic", json!(spec.topic));
    // One's own words are the same whichever voice speaks them.
    if spec.script.provider == ScriptProvider::Text {
        return inputs;
    }
    inputs.part("pace", pace_basis(&spec.voice))
}

/// The voice settings a pace depends on.
fn pace_basis(voice: &VoiceDef) -> Value {
    match voice.provider {
        VoiceProvider::Espeak => json!({
            "espeak": voice.voice.as_deref().unwrap_or(ESPEAK_VOICE),
            "rate": voice.rate.unwrap_or(ESPEAK_RATE),
        }),
        VoiceProvider::Elevenlabs => json!({ "elevenlabs": voice.speed.unwrap_or(1.0) }),
    }
}

/// The pace a voice is planned at before (or without) a measurement: espeak-ng's rate is
/// in words a minute, with the pause it leaves between lines; ElevenLabs' documented
/// characters a minute, scaled by `speed`, with its pauses inside the speech.
pub fn planned_pace(voice: &VoiceDef) -> Pace {
    match voice.provider {
        VoiceProvider::Espeak => Pace {
            words_per_second: f64::from(voice.rate.unwrap_or(ESPEAK_RATE)) / 60.0
                * ESPEAK_NOMINAL_FACTOR,
            pause_seconds: crate::providers::offline::LINE_PAUSE_SECONDS,
        },
        VoiceProvider::Elevenlabs => Pace {
            words_per_second: ELEVENLABS_CHARACTERS_PER_SECOND / CHARACTERS_PER_WORD
                * voice.speed.unwrap_or(1.0),
            pause_seconds: 0.0,
        },
    }
}

/// The key of a voice's measured pace: the voice, its rate and the espeak-ng that speaks.
pub fn pace_key(voice: &VoiceDef, versions: &ToolVersions) -> String {
    stage_key(
        PACE_ENTRY,
        1,
        &[&pace_basis(voice), &json!({ "espeak": versions.espeak })],
    )
}

/// The measured pace of a voice, when the artifact store holds one (for `plan`, which
/// only reads).
pub async fn stored_pace(
    artifacts: &ArtifactStore,
    voice: &VoiceDef,
    versions: &ToolVersions,
) -> Option<Pace> {
    if voice.provider != VoiceProvider::Espeak {
        return None;
    }
    match artifacts
        .inspect(PACE_ENTRY, &pace_key(voice, versions))
        .await
    {
        Ok(Lookup::Hit(hit)) => hit.output().ok(),
        _ => None,
    }
}

/// What the writer is asked for.
pub fn request(spec: &JobSpec, pace: Pace) -> ScriptRequest {
    ScriptRequest {
        topic: spec.topic.clone(),
        // A `text` script's writer reads the narration where the others read the prompt.
        prompt: spec
            .script
            .text
            .clone()
            .or_else(|| spec.script.prompt.clone())
            .unwrap_or_default(),
        seconds: spec.script.seconds,
        cta: spec.script.cta.clone(),
        models: spec.script.models.clone(),
        temperature: spec.script.temperature,
        seed: spec.script.seed,
        pace,
    }
}

pub async fn run(job: &mut JobRun<'_>) -> Result<Script, Halt> {
    let spec = job.spec();
    let services = job.services();
    let key = key(spec);
    // Only a script still to be written needs the pace measured.
    let pace = if ArtifactStore::at(job.artifacts_dir()).contains(Stage::Script.as_str(), &key) {
        planned_pace(&spec.voice)
    } else {
        pace(job).await?
    };
    let hit = job
        .cached(Stage::Script, &key, None, |work| async move {
            let writer = services.script_writer(&spec.script)?;
            let script = writer.write(&request(spec, pace)).await?;
            let value = json!(script);
            super::write_json(&work.join(FILE), &value).await?;
            Ok(Built {
                main: FILE.to_owned(),
                output: value,
                cost: script.usage.as_ref().and_then(|u| u.cost),
            })
        })
        .await?;
    output(&hit)
}

/// The pace the job's voice speaks at: measured once per voice, rate and espeak-ng and
/// kept in the artifact store; the planned pace for voices that cannot be measured for
/// free.
async fn pace(job: &JobRun<'_>) -> Result<Pace, Halt> {
    let spec = job.spec();
    let services = job.services();
    let planned = planned_pace(&spec.voice);
    if spec.voice.provider != VoiceProvider::Espeak || spec.script.provider == ScriptProvider::Text
    {
        return Ok(planned);
    }
    let failed = |e: &dyn std::fmt::Display| {
        Halt::failed(
            Stage::Script,
            format!("measuring the pace of voice `{}`: {e}", spec.voice_name),
        )
    };
    let artifacts = ArtifactStore::at(job.artifacts_dir());
    let key = pace_key(&spec.voice, services.versions());
    if let Lookup::Hit(hit) = artifacts
        .get(PACE_ENTRY, &key)
        .await
        .map_err(|e| failed(&e))?
    {
        return hit.output().map_err(|e| failed(&e));
    }
    let voice = services.voice(&spec.voice).map_err(|e| failed(&e))?;
    let work = artifacts
        .workdir(PACE_ENTRY, &key)
        .await
        .map_err(|e| failed(&e))?;
    let measured = match voice.measure_pace(&work).await {
        Ok(Some(pace)) => pace,
        Ok(None) => planned,
        Err(e) => {
            // A work folder left behind is swept by the next run; the failure is what counts.
            tokio::fs::remove_dir_all(&work).await.ok();
            return Err(failed(&e));
        }
    };
    let value = json!(measured);
    let committed = async {
        super::write_json(&work.join(PACE_FILE), &value)
            .await
            .map_err(|e: ProviderError| e.to_string())?;
        artifacts
            .commit(PACE_ENTRY, &key, &work, PACE_FILE, &value, None)
            .await
            .map_err(|e| e.to_string())
    };
    committed.await.map_err(|e| failed(&e))?;
    Ok(measured)
}

/// The cached script of an entry.
pub fn output(hit: &Hit) -> Result<Script, Halt> {
    hit.output()
        .map_err(|e| Halt::failed(Stage::Script, e.to_string()))
}
