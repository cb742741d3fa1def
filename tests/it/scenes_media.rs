//! Footage per scene: each scene's search uses that scene's query (the real Pexels client
//! against the fake), one search per distinct query across a batch, no clip shown twice
//! in a job, and the render's clip changes on the scenes' starts in the narration (read
//! back from the video with ffmpeg's `scdet` and from the render plan).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tiktok_factory::providers::pexels::{Pexels, PexelsOptions};
use tiktok_factory::providers::{MemoryBudgets, Narration, Script, Timeouts};
use tiktok_factory::secret::Secret;
use tiktok_factory::stages::footage::{ScenePlan, fetch_scenes};
use tiktok_factory::stages::render::scene_starts;

use crate::fakes::pexels::{self, KEY};
use crate::support::{Factory, write};

fn pexels_client(base_url: &str) -> Pexels {
    let options = PexelsOptions {
        base_url: base_url.to_owned(),
        timeouts: Timeouts {
            connect: Duration::from_secs(2),
            request: Duration::from_secs(5),
        },
        download_timeout: Duration::from_secs(5),
        per_page: 15,
        max_rate_wait: Duration::from_secs(1),
    };
    Pexels::new(Secret::new(KEY), options)
        .unwrap()
        .with_budgets(Arc::new(MemoryBudgets::new()))
        .sharing_searches()
}

fn plan(queries: &[&str]) -> Vec<ScenePlan> {
    queries
        .iter()
        .map(|q| ScenePlan {
            query: Some((*q).to_owned()),
            words: 5,
        })
        .collect()
}

#[tokio::test]
async fn each_scene_searches_its_own_query_once_per_batch() {
    let fake = pexels::start().await;
    let client = pexels_client(&fake.base_url);
    let scenes = plan(&[
        "close-up of boiling pasta water",
        "chef slicing garlic",
        "close-up of boiling pasta water",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let first = fetch_scenes(&client, &scenes, 12.0, 1, &[], dir.path())
        .await
        .unwrap();
    let searches: Vec<String> = fake
        .seen()
        .iter()
        .filter(|s| s.path.starts_with("/videos/search"))
        .filter_map(|s| s.query_param("query"))
        .collect();
    // Page 1 of each distinct query, in scene order (the fake offers too few clips on
    // page 1 for two scenes, so the repeated query also reads page 2).
    let distinct: Vec<&str> = {
        let mut seen: Vec<&str> = Vec::new();
        for q in &searches {
            if !seen.contains(&q.as_str()) {
                seen.push(q);
            }
        }
        seen
    };
    assert_eq!(
        distinct,
        ["close-up of boiling pasta water", "chef slicing garlic"]
    );
    // Every scene has its own clip: none is shown twice in the job.
    let ids: Vec<&str> = first.clips.iter().map(|c| c.source_id.as_str()).collect();
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "{ids:?}");
    assert_eq!(first.scenes, [0, 1, 2], "{ids:?}");

    // A second job of the batch with the same queries searches nothing again, and picks
    // other clips where the results allow.
    let before = searches.len();
    let other = tempfile::tempdir().unwrap();
    let second = fetch_scenes(
        &client,
        &plan(&["chef slicing garlic"]),
        4.0,
        2,
        &ids.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
        other.path(),
    )
    .await
    .unwrap();
    let after = fake
        .seen()
        .iter()
        .filter(|s| s.path.starts_with("/videos/search"))
        .count();
    assert_eq!(after, before, "the repeated query was searched again");
    assert!(
        !ids.contains(&second.clips[0].source_id.as_str()),
        "{:?} was used by the first job while others were free",
        second.clips[0].source_id
    );
}

/// A grainy solid-colour portrait clip, so every cut between two clips is a clear scene change.
fn colour_clip(path: &Path, colour: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        // Grain keeps the picture moving, as filmed footage does (a still frame would
        // fail the frozen gate).
        .arg(format!(
            "color=c={colour}:size=270x480:rate=30:duration=3,noise=alls=12:allf=t"
        ))
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

/// The times ffmpeg's scene detector finds a cut at.
fn scdet_cuts(video: &Path) -> Vec<f64> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(video)
        .args([
            "-vf",
            "scdet=threshold=20,metadata=print:key=lavfi.scd.time:file=-",
            "-an",
            "-f",
            "null",
            "-",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("lavfi.scd.time="))
        .map(|t| t.trim().parse().unwrap())
        .collect()
}

/// The output of the one entry of `stage` in the artifact store.
fn output(cache: &Path, stage: &str) -> Value {
    let entries: Vec<PathBuf> = std::fs::read_dir(cache.join(stage))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("manifest.json").is_file())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(entries[0].join("manifest.json")).unwrap()).unwrap();
    manifest["output"].clone()
}

#[test]
fn clips_change_on_the_scene_starts_of_the_narration() {
    let dir = tempfile::tempdir().unwrap();
    for (i, colour) in [
        "red", "lime", "blue", "yellow", "magenta", "cyan", "white", "orange",
    ]
    .iter()
    .enumerate()
    {
        colour_clip(&dir.path().join(format!("clips/{i}.mp4")), colour);
    }
    write(
        dir.path(),
        "scenes.yaml",
        r"version: 1
name: scenes
voices:
  n: { provider: espeak, voice: en-us, rate: 220 }
templates:
  t:
    script: { provider: offline, seconds: 10 }
    footage: { provider: local, dir: clips }
    captions: { style: none }
    video: { max_seconds: 30 }
    title: x
batch:
  template: t
  matrix: { topic: [Owls], voice: [n] }
",
    );
    let out = Factory::new()
        .args([
            "--state-dir",
            "state",
            "--cache-dir",
            "cache",
            "run",
            "scenes.yaml",
        ])
        .current_dir(dir.path())
        .env("CI", "1")
        .run();
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let cache = dir.path().join("cache");
    let script: Script = serde_json::from_value(output(&cache, "script")).unwrap();
    let narration: Narration = serde_json::from_value(output(&cache, "voice")).unwrap();
    let spoken = script.spoken();
    assert!(spoken.len() >= 3, "{spoken:?}");
    let starts = scene_starts(&spoken, &narration.words, narration.duration);

    // The render plan: a clip per scene, each starting on the frame nearest its scene.
    let render = output(&cache, "render");
    let plan = render["clips"].as_array().unwrap();
    assert_eq!(plan.len(), spoken.len(), "{render}");
    let frame = 1.0 / 30.0;
    for (entry, start) in plan.iter().zip(&starts) {
        let at = entry["at"].as_f64().unwrap();
        assert!(
            (at - start).abs() <= frame / 2.0 + 1e-9,
            "{entry} vs {start}"
        );
    }

    // The video itself: the detector finds exactly the cuts, within a frame of each
    // scene start.
    let video = cache
        .join("render")
        .read_dir()
        .unwrap()
        .map(|e| e.unwrap().path().join("video.mp4"))
        .find(|p| p.is_file())
        .unwrap();
    let cuts = scdet_cuts(&video);
    assert_eq!(cuts.len(), starts.len() - 1, "{cuts:?} vs {starts:?}");
    for (cut, start) in cuts.iter().zip(&starts[1..]) {
        assert!(
            (cut - start).abs() <= frame + 1e-6,
            "cut at {cut}, scene at {start}"
        );
    }
}
