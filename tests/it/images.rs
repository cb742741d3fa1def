//! Stills as footage, through the real binary: `provider: image` drawn offline and by
//! an image model (the fake OpenRouter), `fallback: image` when the fake Pexels has no
//! clip for a scene, and pictures in a local folder. Every still moves in the render.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use tiktok_factory::providers::ProviderError;
use tiktok_factory::providers::images::{ImageMaker, ImageRequest};

use crate::fakes::{self, openrouter::Scenario};
use crate::support::{Factory, Output, write};

/// A recipe of two scenes (a long first line and a short call to action) whose footage
/// is `footage`.
fn recipe(footage: &str, text: &str) -> String {
    format!(
        r#"version: 1
name: stills
voices:
  n: {{ provider: espeak, voice: en-us, rate: 190 }}
templates:
  t:
    script: {{ provider: text, text: "{text}", seconds: 6 }}
    footage: {footage}
    captions: {{ style: none }}
    title: x
batch:
  template: t
  matrix: {{ topic: [Owls], voice: [n] }}
"#
    )
}

const TWO_SCENES: &str = "Owls can turn their heads almost all the way around. Follow for more.";

fn factory(dir: &Path) -> Factory {
    Factory::new()
        .args(["--state-dir", "state", "--cache-dir", "cache"])
        .current_dir(dir)
        .env("CI", "1")
}

async fn run(factory: Factory) -> Output {
    tokio::task::spawn_blocking(move || factory.run())
        .await
        .expect("the run finished")
}

/// The output of the one entry of `stage` in the artifact store, and its folder.
fn output(cache: &Path, stage: &str) -> (Value, PathBuf) {
    let entries: Vec<PathBuf> = std::fs::read_dir(cache.join(stage))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("manifest.json").is_file())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(entries[0].join("manifest.json")).unwrap()).unwrap();
    (manifest["output"].clone(), entries[0].clone())
}

/// One frame at `at` seconds, 54×96 RGB.
fn frame(video: &Path, at: f64) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-ss", &at.to_string(), "-i"])
        .arg(video)
        .args([
            "-frames:v",
            "1",
            "-vf",
            "scale=54:96",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout.len(), 54 * 96 * 3);
    out.stdout
}

fn differing(a: &[u8], b: &[u8]) -> usize {
    a.chunks_exact(3)
        .zip(b.chunks_exact(3))
        .filter(|(x, y)| x.iter().zip(*y).any(|(p, q)| p.abs_diff(*q) > 24))
        .count()
}

/// Width and height of a picture or video.
fn size(path: &Path) -> (u64, u64) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=width,height", "-of", "json"])
        .arg(path)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &v["streams"][0];
    (s["width"].as_u64().unwrap(), s["height"].as_u64().unwrap())
}

/// The rendered video and the render plan's clip ids.
fn rendered(cache: &Path) -> (PathBuf, Vec<String>) {
    let (plan, entry) = output(cache, "render");
    let ids = plan["clips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["clip"].as_str().unwrap().to_owned())
        .collect();
    (entry.join("video.mp4"), ids)
}

#[tokio::test]
async fn offline_stills_move_through_the_first_scene() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "stills.yaml",
        &recipe("{ provider: image }", TWO_SCENES),
    );
    let out = run(factory(dir.path()).arg("run").arg("stills.yaml")).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let cache = dir.path().join("cache");
    let (video, ids) = rendered(&cache);
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(
        ids.iter().all(|id| id.starts_with("image:offline:")),
        "{ids:?}"
    );
    let (footage, entry) = output(&cache, "footage");
    for clip in footage["clips"].as_array().unwrap() {
        let path = entry.join(clip["path"].as_str().unwrap());
        assert_eq!(size(&path), (1080, 1920), "{}", path.display());
    }
    // The first scene lasts seconds: the still is not the same picture at its start and
    // near its end (and the frozen gate, which ran, did not fail it).
    let start = frame(&video, 0.2);
    let later = frame(&video, 2.2);
    let changed = differing(&start, &later);
    assert!(changed > 54 * 96 / 100, "only {changed} pixels differ");
}

#[tokio::test]
async fn an_image_model_draws_9_16_stills_and_a_text_answer_is_a_named_error() {
    let openrouter = fakes::openrouter::start().await;
    let dir = tempfile::tempdir().unwrap();
    let model = "{ provider: image, model: google/gemini-2.5-flash-image }";
    write(dir.path(), "stills.yaml", &recipe(model, TWO_SCENES));
    let paid = |f: Factory| {
        f.env("OPENROUTER_BASE_URL", &openrouter.base_url)
            .env("OPENROUTER_API_KEY", fakes::openrouter::KEY)
    };
    // A rate limit first: the engine waits as told and asks again.
    openrouter.push(Scenario::Error {
        status: 429,
        metadata: serde_json::json!({ "error_type": "rate_limit_exceeded" }),
        retry_after: Some("1".into()),
    });
    let out = run(paid(factory(dir.path())).arg("run").arg("stills.yaml")).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let asked: Vec<Value> = openrouter
        .seen()
        .iter()
        .filter(|s| s.path == "/api/v1/chat/completions")
        .map(|s| serde_json::from_slice(&s.body).unwrap())
        .collect();
    assert_eq!(asked.len(), 3, "two stills and the retry of the first");
    for body in &asked {
        assert_eq!(body["model"], "google/gemini-2.5-flash-image");
        assert_eq!(body["image_config"]["aspect_ratio"], "9:16");
        assert_eq!(body["modalities"], serde_json::json!(["image", "text"]));
    }
    let prompts: Vec<&str> = asked
        .iter()
        .map(|b| b["messages"][0]["content"].as_str().unwrap())
        .collect();
    assert_ne!(
        prompts[1], prompts[2],
        "each scene asks for its own picture"
    );
    let cache = dir.path().join("cache");
    let (footage, entry) = output(&cache, "footage");
    let clips = footage["clips"].as_array().unwrap();
    assert_eq!(clips.len(), 2);
    for clip in clips {
        let path = entry.join(clip["path"].as_str().unwrap());
        assert_eq!(path.extension().unwrap(), "png");
        // The fake honours the aspect ratio: 9:16.
        assert_eq!(size(&path), (90, 160));
        assert!(
            clip["source_id"]
                .as_str()
                .unwrap()
                .starts_with("image:google/gemini-2.5-flash-image:")
        );
    }
    assert!(
        (footage["cost"].as_f64().unwrap() - 2.0 * 0.0387).abs() < 1e-9,
        "{footage}"
    );
    let (video, _) = rendered(&cache);
    assert_eq!(size(&video), (1080, 1920));

    // A changed last line redraws its own still only: the first scene's is found in the
    // store and linked, not asked for (and paid) again.
    write(
        dir.path(),
        "stills.yaml",
        &recipe(
            model,
            "Owls can turn their heads almost all the way around. Listen for forest birds tonight.",
        ),
    );
    let out = run(paid(factory(dir.path())).arg("run").arg("stills.yaml")).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let images = openrouter
        .seen()
        .iter()
        .filter(|s| s.path == "/api/v1/chat/completions")
        .count();
    assert_eq!(images, 4, "one more picture, for the changed line");

    // A model that answers in words only fails the footage, named, and nothing renders.
    let other = tempfile::tempdir().unwrap();
    write(other.path(), "stills.yaml", &recipe(model, TWO_SCENES));
    openrouter.push(Scenario::TextOnly);
    let out = run(paid(factory(other.path())).arg("run").arg("stills.yaml")).await;
    assert_ne!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("answered without an image"), "{all}");
    assert!(all.contains("footage"), "{all}");
    assert!(!other.path().join("cache/render").exists());
}

#[tokio::test]
async fn a_scene_pexels_has_no_clip_for_gets_a_still_and_the_run_says_so() {
    let pexels = fakes::pexels::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The fake finds nothing for the second line's query (it has `xyzzy` in it).
    let text = "Owls hunt mice in the dark forest. The xyzzy cave hides old owls. Follow for more.";
    write(
        dir.path(),
        "stills.yaml",
        &recipe(
            "{ provider: pexels, query: \"{{ topic }}\", fallback: image }",
            text,
        ),
    );
    let out = run(factory(dir.path())
        .env("PEXELS_BASE_URL", &pexels.base_url)
        .env("PEXELS_API_KEY", fakes::pexels::KEY)
        .args(["--json", "run", "stills.yaml"]))
    .await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let searched: Vec<String> = pexels
        .seen()
        .iter()
        .filter(|s| s.path.starts_with("/videos/search"))
        .filter_map(|s| s.query_param("query"))
        .collect();
    let empty = searched
        .iter()
        .find(|q| q.contains("xyzzy"))
        .unwrap_or_else(|| panic!("{searched:?}"))
        .clone();
    // The JSON lines name the scene and its query.
    let notes: Vec<Value> = out
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == "note")
        .collect();
    let expected = format!("scene 2: no stock clip for “{empty}”, using a generated image");
    assert!(
        notes
            .iter()
            .any(|n| n["text"].as_str().unwrap().ends_with(&expected)),
        "{notes:?}\n{}",
        out.stdout
    );
    // The store keeps it: the footage lists the fallback, the render shows the still.
    let cache = dir.path().join("cache");
    let (footage, _) = output(&cache, "footage");
    assert_eq!(footage["fallbacks"][0]["scene"], 1, "{footage}");
    assert_eq!(footage["fallbacks"][0]["query"], empty.as_str());
    let (_, ids) = rendered(&cache);
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(ids[0].starts_with("pexels:"), "{ids:?}");
    assert!(ids[1].starts_with("image:offline:"), "{ids:?}");
    assert!(ids[2].starts_with("pexels:"), "{ids:?}");
}

#[tokio::test]
async fn pictures_in_a_local_folder_are_footage_beside_videos() {
    let dir = tempfile::tempdir().unwrap();
    let clips = dir.path().join("clips");
    std::fs::create_dir(&clips).unwrap();
    let make = |args: &[&str], name: &str| {
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
            .args(args)
            .arg(clips.join(name))
            .status()
            .unwrap();
        assert!(status.success());
    };
    make(&["testsrc2=s=300x400", "-frames:v", "1"], "a.png");
    make(&["testsrc2=s=270x480:rate=30:duration=4"], "b.mp4");
    write(
        dir.path(),
        "stills.yaml",
        &recipe("{ provider: local, dir: clips }", TWO_SCENES),
    );
    let out = run(factory(dir.path()).arg("run").arg("stills.yaml")).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let cache = dir.path().join("cache");
    let (video, mut ids) = rendered(&cache);
    ids.sort();
    assert_eq!(ids, ["local:a.png", "local:b.mp4"]);
    // The picture moves through its scene, whichever scene the job's variant gave it.
    let (plan, _) = output(&cache, "render");
    let plan = plan["clips"].as_array().unwrap().clone();
    let seconds = output(&cache, "voice").0["duration"].as_f64().unwrap();
    let at = |i: usize| plan.get(i).map_or(seconds, |c| c["at"].as_f64().unwrap());
    let still = plan
        .iter()
        .position(|c| c["clip"] == "local:a.png")
        .unwrap();
    let (start, end) = (at(still), at(still + 1));
    assert!(end - start > 0.5, "{plan:?}");
    let changed = differing(&frame(&video, start + 0.1), &frame(&video, end - 0.15));
    assert!(changed > 54 * 96 / 100, "only {changed} pixels differ");
}

#[test]
fn plan_prices_the_stills_of_an_image_model_and_not_the_offline_ones() {
    let dir = tempfile::tempdir().unwrap();
    let model = "{ provider: image, model: google/gemini-2.5-flash-image }";
    write(dir.path(), "paid.yaml", &recipe(model, TWO_SCENES));
    write(
        dir.path(),
        "free.yaml",
        &recipe("{ provider: image }", TWO_SCENES).replace("name: stills", "name: free"),
    );
    let out = factory(dir.path()).args(["plan", "paid.yaml"]).run();
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    // Two scenes would be known from a written script; before it, the length sizes
    // the estimate: 6 s is 15 words, three lines at least.
    assert!(out.stdout.contains(", 3 images"), "{}", out.stdout);
    assert!(out.stdout.contains("~$0.1170"), "{}", out.stdout);
    let out = factory(dir.path())
        .args(["--json", "plan", "paid.yaml"])
        .run();
    assert!(out.stdout.contains("\"images\": 3"), "{}", out.stdout);
    let out = factory(dir.path()).args(["plan", "free.yaml"]).run();
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(!out.stdout.contains("images"), "{}", out.stdout);
    assert!(!out.stdout.contains("spend"), "{}", out.stdout);
}

#[test]
fn an_image_model_without_a_key_stops_the_run_before_anything_is_drawn() {
    let dir = tempfile::tempdir().unwrap();
    let model = "{ provider: image, model: google/gemini-2.5-flash-image }";
    write(dir.path(), "stills.yaml", &recipe(model, TWO_SCENES));
    let out = factory(dir.path()).args(["run", "stills.yaml"]).run();
    assert_ne!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("OPENROUTER_API_KEY"), "{all}");
    assert!(!dir.path().join("cache/footage").exists(), "{all}");
}

#[tokio::test]
async fn the_image_client_reads_the_fakes_answers_and_classes_its_errors() {
    let fake = fakes::openrouter::start().await;
    let client = crate::providers_openrouter::client_with_key(&fake, fakes::openrouter::KEY);
    let dir = tempfile::tempdir().unwrap();
    let request = ImageRequest::new(Some("google/gemini-2.5-flash-image"), "owl at night", 1);
    let still = client.draw(&request, dir.path(), "a").await.unwrap();
    assert_eq!(still.path, dir.path().join("a.png"));
    assert_eq!(size(&still.path), (90, 160));
    let usage = still.usage.unwrap();
    assert_eq!(usage.model, "google/gemini-2.5-flash-image");
    assert_eq!(usage.cost, Some(0.0387));

    fake.push(Scenario::TextOnly);
    let error = client.draw(&request, dir.path(), "b").await.unwrap_err();
    assert!(
        matches!(error, ProviderError::Permanent { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("answered without an image"),
        "{error}"
    );

    fake.push(Scenario::ErrorIn200 { code: 502 });
    let error = client.draw(&request, dir.path(), "c").await.unwrap_err();
    assert!(error.is_retryable(), "{error:?}");

    fake.push(Scenario::status(402));
    let error = client.draw(&request, dir.path(), "d").await.unwrap_err();
    assert!(
        matches!(error, ProviderError::Permanent { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("credits"), "{error}");

    fake.push(Scenario::Error {
        status: 429,
        metadata: serde_json::json!({}),
        retry_after: Some("7".into()),
    });
    let error = client.draw(&request, dir.path(), "e").await.unwrap_err();
    assert!(
        matches!(error, ProviderError::Retryable { retry_after: Some(wait), .. } if wait.as_secs() == 7),
        "{error:?}"
    );
    // Only the first answer left a file.
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(files.len(), 1);
}
