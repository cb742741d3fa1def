//! Voices checked before spending: an espeak voice espeak-ng does not have is refused at
//! `validate` with a did-you-mean, never spoken as another voice; an ElevenLabs voice id
//! the service does not know is reported by `doctor` at its recipe line.

use crate::pipeline_real::{Fakes, run};
use crate::support::{Factory, write};

const MISSPELT: &str = "version: 1
name: voices
voices:
  us: { provider: espeak, voice: en-usa }
  gb: { provider: espeak, voice: en-gb+f3 }
templates:
  t:
    script: { provider: offline, seconds: 3 }
    footage: { provider: generated, clips: 1 }
    title: facts
batch:
  template: t
  matrix: { topic: [Owls], voice: [us, gb] }
";

#[test]
fn a_misspelt_espeak_voice_is_refused_at_its_line_with_a_did_you_mean() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "voices.yaml", MISSPELT);
    for command in ["validate", "run"] {
        let out = Factory::new()
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args([command, "voices.yaml"])
            .current_dir(dir.path())
            .run();
        assert_eq!(out.code, 2, "{command}: {}\n{}", out.stdout, out.stderr);
        assert!(
            out.stderr.contains(
                "error[unknown-voice]: voices.yaml:4:34: espeak-ng has no voice `en-usa` (voice `us`)"
            ),
            "{command}: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains("did you mean `en-us`?"),
            "{}",
            out.stderr
        );
        // The variant voice beside it is fine: one mistake, one error.
        assert_eq!(out.stderr.matches("error[").count(), 1, "{}", out.stderr);
    }
    assert!(
        !dir.path().join("state").join("drafts").exists(),
        "nothing was made"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_an_unknown_elevenlabs_voice_id_at_its_recipe_line() {
    let fakes = Fakes::start().await;
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "eleven.yaml",
        "version: 1\nname: eleven\nvoices:\n  known: { provider: elevenlabs, voice_id: 21m00Tcm4TlvDq8ikWAM }\n  typo: { provider: elevenlabs, voice_id: 21m00Tcm4TlvDq8ikWAN }\ntemplates:\n  t:\n    script: { provider: offline, seconds: 3 }\n    footage: { provider: generated, clips: 1 }\n    title: facts\nbatch:\n  template: t\n  matrix: { topic: [Owls], voice: [known, typo] }\n",
    );
    let out = run(fakes
        .factory(&tmp.path().join("state"), tmp.path())
        .args(["doctor", "eleven.yaml"]))
    .await;
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("eleven.yaml:5:43: voice `typo` of recipe `eleven` names ElevenLabs voice id `21m00Tcm4TlvDq8ikWAN`, which does not exist"),
        "{text}"
    );
    assert!(!text.contains("`known`"), "the known voice passes: {text}");
    let looked_up: Vec<String> = fakes
        .elevenlabs
        .seen()
        .into_iter()
        .map(|s| s.path)
        .filter(|p| p.starts_with("/v1/voices/"))
        .collect();
    assert_eq!(looked_up.len(), 2, "each voice id once: {looked_up:?}");
    assert!(
        fakes
            .elevenlabs
            .seen()
            .iter()
            .all(|s| !s.path.contains("text-to-speech")),
        "nothing was spoken"
    );
}

#[test]
fn a_voice_per_language_is_checked_too_and_chosen_by_the_language_var() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = "version: 1
name: languages
voices:
  narrator:
    provider: espeak
    voice: en-us
    language: en
    languages:
      fr: { voice: fr-frr }
templates:
  t:
    script: { provider: offline, seconds: 3 }
    footage: { provider: generated, clips: 1 }
    title: facts
batch:
  template: t
  matrix:
    topic: [Owls]
    voice: [narrator]
    include: [{ topic: Hiboux, voice: narrator, vars: { language: fr } }]
";
    write(dir.path(), "languages.yaml", recipe);
    let validate = || {
        Factory::new()
            .args(["validate", "languages.yaml"])
            .current_dir(dir.path())
            .run()
    };
    let out = validate();
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("languages.yaml:9:20: espeak-ng has no voice `fr-frr` (voice `narrator`)"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("did you mean `fr-fr`?"),
        "{}",
        out.stderr
    );

    write(
        dir.path(),
        "languages.yaml",
        &recipe.replace("fr-frr", "fr-fr"),
    );
    assert_eq!(validate().code, 0);
    let shown = Factory::new()
        .args(["--json", "plan", "languages.yaml"])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .current_dir(dir.path())
        .run();
    assert_eq!(shown.code, 0, "{}", shown.stderr);

    // A language the voice does not speak is refused, never spoken by another voice.
    write(
        dir.path(),
        "languages.yaml",
        &recipe
            .replace("fr-frr", "fr-fr")
            .replace("language: fr }", "language: de }"),
    );
    let out = validate();
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "voice `narrator` has no voice for language `de` (topic `Hiboux`); it speaks `en`, `fr`"
        ),
        "{}",
        out.stderr
    );
}
