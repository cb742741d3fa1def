//! Voice: the narration and its word timings (ElevenLabs or espeak-ng). Paid when the
//! voice is ElevenLabs: keyed by the voice settings and the exact words spoken.

use serde_json::json;

use super::Stage;
use crate::engine::{Built, Halt, JobRun};
use crate::expand::JobSpec;
use crate::keys::{Inputs, ToolVersions};
use crate::providers::{Narration, Script, VoiceRequest};
use crate::recipe::{ScriptProvider, VoiceProvider};

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
    if let Some(problem) = too_long(spec, script, narration.duration) {
        return Err(Halt::failed(Stage::Voice, problem));
    }
    Ok((narration, key))
}

/// Why a narration of `seconds` cannot make a video of this job, naming what would fix
/// it: the words, the voice's pace, or the limit. Checked right after the narration,
/// before anything is rendered (the narration itself stays cached).
pub fn too_long(spec: &JobSpec, script: &Script, seconds: f64) -> Option<String> {
    let max = f64::from(spec.video.max_seconds);
    if seconds <= max {
        return None;
    }
    let words: usize = script
        .spoken()
        .iter()
        .map(|line| line.split_whitespace().count())
        .sum();
    let pace = words as f64 / seconds.max(0.1);
    let fits = (max * pace).floor();
    let words_lever = if spec.script.provider == ScriptProvider::Text {
        format!(
            "shorten the narration (`script.text` or the row's `script` column) to about {fits} words"
        )
    } else {
        format!(
            "ask for fewer words (`script.seconds` is {}; about {fits} words fit)",
            spec.script.seconds
        )
    };
    let pace_lever = match spec.voice.provider {
        VoiceProvider::Espeak => format!(
            "speak faster (voice `{}`: `rate` is {} words a minute)",
            spec.voice_name,
            spec.voice
                .rate
                .unwrap_or(crate::stages::script::ESPEAK_RATE)
        ),
        VoiceProvider::Elevenlabs => format!(
            "speak faster (voice `{}`: `speed` is {}, at most 1.2)",
            spec.voice_name,
            spec.voice.speed.unwrap_or(1.0)
        ),
    };
    Some(format!(
        "the narration is {seconds:.1} s but `video.max_seconds` is {}: {words} words at {pace:.2} words a second; \
         {words_lever}, {pace_lever}, or raise `video.max_seconds`",
        spec.video.max_seconds
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(voice: &str) -> JobSpec {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("long.yaml");
        std::fs::write(
            &path,
            format!(
                "version: 1\nname: long\nvoices:\n  slow: {{ provider: espeak, voice: en-us, rate: 90 }}\n  eleven: {{ provider: elevenlabs, voice_id: abc, speed: 0.8 }}\ntemplates:\n  t:\n    script: {{ provider: offline, seconds: 8 }}\n    video: {{ max_seconds: 20 }}\n    title: \"{{{{ topic }}}}\"\nbatch:\n  template: t\n  matrix: {{ topic: [Owls], voice: [{voice}] }}\n"
            ),
        )
        .unwrap();
        crate::cli::load_all(&[path]).0[0].jobs[0].spec.clone()
    }

    fn script(words: usize) -> Script {
        Script {
            hook: "Owls turn heads.".into(),
            sentences: vec!["word ".repeat(words - 4)],
            cta: "Follow.".into(),
            title: "Owls".into(),
            caption: String::new(),
            hashtags: Vec::new(),
            visuals: Vec::new(),
            usage: None,
        }
    }

    /// The regression behind "`seconds: 8` with `max_seconds: 20` failed with a hint to
    /// shorten `script.seconds`, which already was 8": the message names the words, the
    /// voice's pace and the limit, with the numbers that matter.
    #[test]
    fn a_narration_past_the_limit_names_the_real_levers() {
        let problem = too_long(&spec("slow"), &script(40), 25.0).unwrap();
        assert_eq!(
            problem,
            "the narration is 25.0 s but `video.max_seconds` is 20: 40 words at 1.60 words a second; \
             ask for fewer words (`script.seconds` is 8; about 32 words fit), \
             speak faster (voice `slow`: `rate` is 90 words a minute), or raise `video.max_seconds`"
        );
        let problem = too_long(&spec("eleven"), &script(40), 21.0).unwrap();
        assert!(
            problem.contains("voice `eleven`: `speed` is 0.8, at most 1.2"),
            "{problem}"
        );
        assert_eq!(too_long(&spec("slow"), &script(40), 20.0), None);
    }
}
