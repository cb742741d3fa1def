//! Voice: the narration and its word timings (ElevenLabs or espeak-ng). Paid when the
//! voice is ElevenLabs: keyed by the voice settings and the exact words spoken.

use serde_json::json;

use super::Stage;
use crate::engine::{Built, Halt, JobRun};
use crate::expand::JobSpec;
use crate::keys::{Inputs, ToolVersions};
use crate::providers::{Narration, Script, VoiceRequest};
use crate::recipe::VoiceProvider;

pub const VERSION: u32 = 1;

/// The voice settings and the lines it speaks; espeak-ng by its version too.
pub fn key(spec: &JobSpec, spoken: &[&str], versions: &ToolVersions) -> String {
    inputs(spec, spoken, versions).key()
}

/// What [`key`] hashes, by name.
pub fn inputs(spec: &JobSpec, spoken: &[&str], versions: &ToolVersions) -> Inputs {
    let inputs = Inputs::new(Stage::Voice, VERSION)
        .part("voice", json!(spec.voice))
        .part("spoken", json!(spoken));
    if spec.voice.provider == VoiceProvider::Espeak {
        inputs.part("tools", json!({ "espeak": versions.espeak }))
    } else {
        inputs
    }
}

/// The narration and the key it was made under.
pub async fn run(job: &mut JobRun<'_>, script: &Script) -> Result<(Narration, String), Halt> {
    let spec = job.spec();
    let services = job.services();
    let key = key(spec, &script.spoken(), services.versions());
    let hit = job
        .cached(Stage::Voice, &key, None, |work| async move {
            let voice = services.voice(&spec.voice)?;
            let request = VoiceRequest {
                lines: script.spoken().into_iter().map(str::to_owned).collect(),
            };
            let narration = voice.speak(&request, &work).await?;
            let main = narration
                .audio
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            Ok(Built {
                main,
                output: json!(narration),
                cost: None,
            })
        })
        .await?;
    let mut narration: Narration = hit
        .output()
        .map_err(|e| Halt::failed(Stage::Voice, e.to_string()))?;
    narration.audio = hit.path(&narration.audio);
    Ok((narration, key))
}
