//! The sample recipe run end to end by the real `factory` binary with the OpenRouter,
//! Pexels and ElevenLabs clients pointed at the fake servers through the base-URL
//! variables; compared with an offline run of the same recipe.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tiktok_factory::store::DB_FILE;

use crate::fakes::{self, Fake};
use crate::support::{Factory, Output, copy_samples, write};

/// The sample `space-facts` recipe with its template switched to the paid services: one
/// ElevenLabs voice beside the espeak narrator. A script is sized to its voice's pace, so
/// the two Black holes jobs get one script each.
pub(crate) const REAL_RECIPE: &str = r#"version: 1
name: space-facts
description: Short space facts from the real services.

vars:
  cta: Follow for more space facts.

voices:
  eleven: { provider: elevenlabs, voice_id: 21m00Tcm4TlvDq8ikWAM, model: eleven_multilingual_v2 }

templates:
  real:
    script:
      provider: openrouter
      model: openai/gpt-4o-mini
      prompt: "Three surprising facts about {{ topic }}."
      seconds: 20
    footage: { provider: pexels, query: "{{ topic }}", clips: 3 }
    captions: { style: bold-center, max_words: 3, highlight: word }
    video: { size: 1080x1920, fps: 30, max_seconds: 60 }
    title: "{{ topic }} — did you know?"
    hashtags: ["{{ topic | replace(' ', '') | lower }}", fyp, learnontiktok]

batch:
  template: real
  matrix:
    topic: [Black holes, Neutron stars]
    voice: [eleven, narrator]
    exclude:
      - { topic: Neutron stars, voice: narrator }
"#;

pub(crate) struct Fakes {
    pub(crate) openrouter: Fake<fakes::openrouter::Scenario>,
    pub(crate) pexels: Fake<fakes::pexels::Scenario>,
    pub(crate) elevenlabs: Fake<fakes::elevenlabs::Scenario>,
}

impl Fakes {
    pub(crate) async fn start() -> Self {
        Self {
            openrouter: fakes::openrouter::start().await,
            pexels: fakes::pexels::start().await,
            elevenlabs: fakes::elevenlabs::start().await,
        }
    }

    pub(crate) fn factory(&self, state: &Path, dir: &Path) -> Factory {
        Factory::new()
            .arg("--state-dir")
            .arg(state)
            .current_dir(dir)
            .env("CI", "1")
            .env("OPENROUTER_BASE_URL", &self.openrouter.base_url)
            .env("OPENROUTER_API_KEY", fakes::openrouter::KEY)
            .env("PEXELS_BASE_URL", &self.pexels.base_url)
            .env("PEXELS_API_KEY", fakes::pexels::KEY)
            .env("ELEVENLABS_BASE_URL", &self.elevenlabs.base_url)
            .env("ELEVENLABS_API_KEY", fakes::elevenlabs::KEY)
    }

    /// Requests each fake has seen: OpenRouter, Pexels, ElevenLabs.
    fn counts(&self) -> [usize; 3] {
        [
            self.openrouter.requests(),
            self.pexels.requests(),
            self.elevenlabs.requests(),
        ]
    }
}

/// The binary blocks; the fakes live on this runtime and must keep serving meanwhile.
pub(crate) async fn run(factory: Factory) -> Output {
    tokio::task::spawn_blocking(move || factory.run())
        .await
        .expect("the run finished")
}

/// The drafts a run delivered: per job id, the sidecar JSON (videos checked beside them).
fn drafts(state: &Path) -> Vec<(PathBuf, Value)> {
    let dir = state.join("drafts").join("space-facts");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("the drafts folder") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            let sidecar: Value =
                serde_json::from_slice(&std::fs::read(&path).expect("read the sidecar"))
                    .expect("the sidecar is JSON");
            let video = path.with_extension("mp4");
            assert!(video.is_file(), "no video beside `{}`", path.display());
            out.push((video, sidecar));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn keys_of(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect::<BTreeSet<_>>()
}

/// Codec, width and height of the first video stream.
fn probe(video: &Path) -> (String, u64, u64) {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=codec_name,width,height",
            "-of",
            "json",
        ])
        .arg(video)
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe failed on `{}`",
        video.display()
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("ffprobe JSON");
    let s = &v["streams"][0];
    (
        s["codec_name"].as_str().unwrap_or_default().to_owned(),
        s["width"].as_u64().unwrap_or_default(),
        s["height"].as_u64().unwrap_or_default(),
    )
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("read a folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn plan_spend(out: &Output) -> Value {
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.json()["recipes"][0]["spend"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_recipe_runs_on_the_real_clients_like_offline() {
    let fakes = Fakes::start().await;
    let tmp = tempfile::tempdir().expect("temp dir");

    // The offline run of the sample recipe, for the shape of its drafts.
    let offline_dir = tmp.path().join("offline");
    copy_samples(&offline_dir);
    let offline_state = offline_dir.join("state");
    let offline = run(fakes
        .factory(&offline_state, &offline_dir)
        .args(["run", "recipes/space-facts.yaml"]))
    .await;
    assert_eq!(offline.code, 0, "{}", offline.stderr);
    assert_eq!(fakes.counts(), [0, 0, 0], "an offline run calls no service");
    let offline_drafts = drafts(&offline_state);
    assert_eq!(offline_drafts.len(), 3);

    let dir = tmp.path().join("real");
    let recipes = copy_samples(&dir);
    write(&recipes, "space-facts.yaml", REAL_RECIPE);
    let state = dir.join("state");
    let mut outputs = Vec::new();

    // The plan predicts the spend: three scripts (one per topic and voice pace), two
    // footage searches, and the characters of two ElevenLabs narrations.
    let planned =
        run(fakes
            .factory(&state, &dir)
            .args(["--json", "plan", "recipes/space-facts.yaml"]))
        .await;
    let spend = plan_spend(&planned);
    assert_eq!(spend["estimate"], true);
    assert_eq!(spend["spend"]["llm_requests"], 3, "{spend}");
    assert_eq!(spend["spend"]["footage_searches"], 2, "{spend}");
    assert!(spend["spend"]["tts_characters"].as_u64().unwrap() > 0);
    assert!(spend["spend"]["llm_cost_usd"].as_f64().unwrap() > 0.0);
    assert_eq!(spend["saved"]["llm_requests"], 0);
    outputs.push(planned);

    let first = run(fakes
        .factory(&state, &dir)
        .args(["run", "recipes/space-facts.yaml"]))
    .await;
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    assert_eq!(
        fakes.openrouter.requests_to("/api/v1/chat/completions"),
        3,
        "one completion per distinct script"
    );
    let speech: Vec<_> = fakes
        .elevenlabs
        .seen()
        .into_iter()
        .filter(|s| s.path.ends_with("/with-timestamps"))
        .collect();
    // The fake writes the same script for every topic, so both ElevenLabs jobs speak the
    // same lines: one narration, shared through the cache.
    assert_eq!(speech.len(), 1, "one narration per distinct text and voice");
    assert_eq!(
        fakes.elevenlabs.requests_to("/v1/user/subscription"),
        1,
        "the character quota is checked once before the batch"
    );

    // Same drafts as offline: a video and a sidecar with the same keys per job.
    let real_drafts = drafts(&state);
    assert_eq!(real_drafts.len(), 3);
    let offline_keys = keys_of(&offline_drafts[0].1);
    for (video, sidecar) in &real_drafts {
        assert_eq!(keys_of(sidecar), offline_keys, "{sidecar}");
        let credits = sidecar["credits"].as_array().expect("credits");
        assert!(!credits.is_empty(), "Pexels footage is credited: {sidecar}");
        for c in credits {
            assert!(
                c["creator"].as_str().unwrap().starts_with("Creator "),
                "{c}"
            );
            assert!(
                c["url"]
                    .as_str()
                    .unwrap()
                    .starts_with("https://www.pexels.com/video/")
            );
        }
        assert_eq!(probe(video), ("h264".to_owned(), 1080, 1920));
    }

    // The store recorded what the scripts cost and the tokens they used.
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}?mode=ro",
        state.join(DB_FILE).display()
    ))
    .await
    .expect("open the store");
    let costs: Vec<(Option<f64>,)> =
        sqlx::query_as("SELECT cost FROM stages WHERE stage = 'script' AND status = 'done'")
            .fetch_all(&pool)
            .await
            .expect("script stages");
    assert_eq!(costs.len(), 3, "{costs:?}");
    for (cost,) in &costs {
        assert!((cost.expect("a cost") - 0.00042).abs() < 1e-9);
    }
    let metas: Vec<(String,)> = sqlx::query_as("SELECT meta FROM artifacts WHERE stage = 'script'")
        .fetch_all(&pool)
        .await
        .expect("script artifacts");
    assert_eq!(metas.len(), 3);
    for (meta,) in &metas {
        let meta: Value = serde_json::from_str(meta).expect("meta JSON");
        assert_eq!(meta["usage"]["prompt_tokens"], 120, "{meta}");
        assert_eq!(meta["usage"]["completion_tokens"], 95, "{meta}");
    }
    pool.close().await;
    outputs.push(first);

    // A rerun of the same recipe has nothing to do and calls nothing.
    let before = fakes.counts();
    let again = run(fakes
        .factory(&state, &dir)
        .args(["run", "recipes/space-facts.yaml"]))
    .await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(fakes.counts(), before, "a rerun makes no request at all");
    outputs.push(again);

    // A new title changes every job but none of the paid stages: the plan says the cache
    // saves all of it, and the run delivers new drafts without a single paid request.
    write(
        &recipes,
        "space-facts.yaml",
        &REAL_RECIPE.replace("— did you know?", "— the facts"),
    );
    let planned =
        run(fakes
            .factory(&state, &dir)
            .args(["--json", "plan", "recipes/space-facts.yaml"]))
        .await;
    let spend = plan_spend(&planned);
    assert_eq!(spend["spend"]["llm_requests"], 0, "{spend}");
    assert_eq!(spend["spend"]["tts_characters"], 0, "{spend}");
    assert_eq!(spend["spend"]["footage_searches"], 0, "{spend}");
    assert_eq!(spend["saved"]["llm_requests"], 3, "{spend}");
    assert_eq!(spend["saved"]["footage_searches"], 2, "{spend}");
    let spoken: u64 = speech
        .iter()
        .map(|s| {
            let body: Value = serde_json::from_slice(&s.body).expect("request JSON");
            body["text"].as_str().unwrap().chars().count() as u64
        })
        .sum();
    assert_eq!(
        spend["saved"]["tts_characters"], spoken,
        "the saved characters are those sent the first time"
    );
    outputs.push(planned);
    let edited = run(fakes
        .factory(&state, &dir)
        .args(["run", "recipes/space-facts.yaml"]))
    .await;
    assert_eq!(edited.code, 0, "{}", edited.stderr);
    assert_eq!(fakes.counts(), before, "cached stages make no request");
    assert_eq!(
        drafts(&state).len(),
        3,
        "the three new drafts replace the ones they supersede"
    );
    outputs.push(edited);

    // No key anywhere: not in what the runs printed, not in any file they left.
    let keys = [
        fakes::openrouter::KEY,
        fakes::pexels::KEY,
        fakes::elevenlabs::KEY,
    ];
    for out in &outputs {
        for key in keys {
            assert!(!out.stdout.contains(key), "a key in stdout");
            assert!(!out.stderr.contains(key), "a key in stderr");
        }
    }
    let all = files(&state);
    assert!(all.iter().any(|f| f.ends_with(DB_FILE)));
    for file in all {
        let bytes = std::fs::read(&file).expect("read a state file");
        for key in keys {
            assert!(!contains(&bytes, key), "a key in `{}`", file.display());
        }
    }
}
