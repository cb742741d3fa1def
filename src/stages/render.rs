//! Render: one ffmpeg process per video; the output is checked before it counts.

use std::path::PathBuf;

use serde_json::json;

use super::Stage;
use super::footage::Footage;
use crate::engine::{Built, Halt, JobRun};
use crate::expand::JobSpec;
use crate::keys::{Inputs as KeyInputs, ToolVersions};
use crate::media::{GateSpec, RenderSpec};
use crate::providers::{Narration, ProviderError, Script, WordTiming};

/// 2: clips cut on the scenes' starts in the narration (the plan is in the output), the
/// narration's measured loudness applied as a gain, and the quality gates.
pub const VERSION: u32 = 2;
pub const FILE: &str = "video.mp4";

/// The least bit rate a render is budgeted for; larger frames get more.
const MIN_BITS_PER_SECOND: f64 = 10_000_000.0;

/// Room beyond the video itself: ffmpeg's own files, the manifest, and the store's
/// records of the stages after it.
const MARGIN_BYTES: u64 = 8 << 20;

/// A generous estimate of what a render writes: at least 10 Mbit/s (a tenth of a bit per
/// pixel and frame for larger frames) for the narration's length, plus a margin.
pub fn expected_bytes(spec: &JobSpec, seconds: f64) -> u64 {
    let (w, h) = spec
        .video
        .size
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse::<f64>().ok()?, h.parse::<f64>().ok()?)))
        .unwrap_or((1080.0, 1920.0));
    let bits = (w * h * f64::from(spec.video.fps) / 10.0).max(MIN_BITS_PER_SECOND);
    (bits / 8.0 * seconds.max(1.0)).ceil() as u64 + MARGIN_BYTES
}

/// The video settings, the inputs by their keys, the music by its digest, and the
/// ffmpeg that renders.
pub fn key(
    spec: &JobSpec,
    footage_key: &str,
    voice_key: &str,
    captions_key: &str,
    music: Option<&str>,
    versions: &ToolVersions,
) -> String {
    inputs(spec, footage_key, voice_key, captions_key, music, versions).key()
}

/// What [`key`] hashes, by name.
pub fn inputs(
    spec: &JobSpec,
    footage_key: &str,
    voice_key: &str,
    captions_key: &str,
    music: Option<&str>,
    versions: &ToolVersions,
) -> KeyInputs {
    KeyInputs::new(Stage::Render, VERSION)
        .part("video", json!(spec.video))
        .part("footage_key", json!(footage_key))
        .part("voice_key", json!(voice_key))
        .part("captions_key", json!(captions_key))
        .part("music", json!(music))
        .part("tools", json!({ "ffmpeg": versions.ffmpeg }))
}

/// When each spoken line starts in the narration, in seconds; the first at 0. The
/// words of the timings are the lines' words in order (what every voice returns); when
/// their count does not match, the lines share the narration by their word counts.
pub fn scene_starts(lines: &[&str], words: &[WordTiming], duration: f64) -> Vec<f64> {
    let counts: Vec<usize> = lines.iter().map(|l| l.split_whitespace().count()).collect();
    let total: usize = counts.iter().sum();
    let mut starts = Vec::with_capacity(lines.len());
    let mut before = 0;
    for (i, count) in counts.iter().enumerate() {
        starts.push(if i == 0 {
            0.0
        } else if words.len() == total {
            words.get(before).map_or(duration, |w| w.start)
        } else {
            duration * before as f64 / total.max(1) as f64
        });
        before += count;
    }
    starts
}

/// Where the clips change: for each clip but the first, the start of the scene it
/// opens. Empty when the footage has no scenes (equal shares).
pub fn cuts(footage: &Footage, script: &Script, narration: &Narration) -> Vec<f64> {
    if footage.scenes.len() != footage.clips.len() || footage.clips.len() < 2 {
        return Vec::new();
    }
    let starts = scene_starts(&script.spoken(), &narration.words, narration.duration);
    footage.scenes[1..]
        .iter()
        .map(|&scene| starts.get(scene).copied().unwrap_or(narration.duration))
        .collect()
}

/// What a render stage gets from the stages before it.
pub struct Inputs<'a> {
    pub footage: &'a Footage,
    pub footage_key: &'a str,
    pub script: &'a Script,
    pub narration: &'a Narration,
    pub voice_key: &'a str,
    pub captions: Option<PathBuf>,
    pub captions_key: &'a str,
}

/// The rendered video, its key and when it expires.
pub async fn run(job: &mut JobRun<'_>, inputs: Inputs<'_>) -> Result<(PathBuf, String, i64), Halt> {
    let spec = job.spec();
    let services = job.services();
    let music = match &spec.video.music {
        Some(m) => Some(
            services
                .digests()
                .file(&job.recipe_dir().join(m))
                .await
                .map_err(|e| Halt::failed(Stage::Render, e))?,
        ),
        None => None,
    };
    let key = key(
        spec,
        inputs.footage_key,
        inputs.voice_key,
        inputs.captions_key,
        music.as_deref(),
        services.versions(),
    );
    let expires = crate::clock::now() + i64::from(spec.publish.retention_days) * 86_400;
    let narration = inputs.narration;
    if narration.duration > f64::from(spec.video.max_seconds) {
        return Err(Halt::failed(
            Stage::Render,
            format!(
                "the narration is {:.1} s but `video.max_seconds` is {}; shorten the script (`script.seconds`)",
                narration.duration, spec.video.max_seconds
            ),
        ));
    }
    let dir = job.recipe_dir();
    let store_dir = job.artifacts_dir();
    let needed = expected_bytes(spec, narration.duration);
    let clips = &inputs.footage.clips;
    let captions = inputs.captions.clone();
    let cuts = cuts(inputs.footage, inputs.script, narration);
    let hit = job
        .cached(Stage::Render, &key, Some(expires), |work| {
            let captions = captions.clone();
            let cuts = cuts.clone();
            async move {
                // A render that cannot fit fails now, named, not as a short write of
                // ffmpeg's that leaves the disk full.
                let free = crate::disk::free_bytes(&work)
                    .map_err(|e| ProviderError::io("render", &work, &e))?;
                if free < needed {
                    return Err(ProviderError::no_space(
                        store_dir,
                        format!(
                            "the render needs about {} and {} are free",
                            crate::disk::megabytes(needed),
                            crate::disk::megabytes(free)
                        ),
                    ));
                }
                let out = work.join(FILE);
                let mut r = RenderSpec::new(
                    clips.iter().map(|c| c.path.clone()).collect(),
                    narration.audio.clone(),
                    narration.duration,
                    out,
                );
                r.cuts = cuts;
                r.gates = Some(GateSpec {
                    stills: Vec::new(),
                    captions: captions.clone().map(|path| {
                        let words = narration.words.iter().map(|w| w.word.clone()).collect();
                        (path, words)
                    }),
                    target_lufs: crate::media::TARGET_LUFS,
                    seconds: narration.duration,
                    max_seconds: f64::from(spec.video.max_seconds)
                        .min(crate::media::TIKTOK_MAX_SECONDS),
                    fps: spec.video.fps,
                });
                r.captions = captions;
                r.music = spec.video.music.as_ref().map(|m| dir.join(m));
                r.fps = spec.video.fps;
                // The frame the spec asks for: a recipe's is always 1080x1920, a preview's
                // smaller.
                if let Some((w, h)) = spec
                    .video
                    .size
                    .split_once('x')
                    .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
                {
                    (r.width, r.height) = (w, h);
                }
                // The plan: on which frame each clip starts, and for which scene.
                let fps = f64::from(r.fps);
                let mut frame = 0;
                let plan: Vec<serde_json::Value> = crate::media::frame_shares(&r)
                    .into_iter()
                    .zip(clips)
                    .enumerate()
                    .map(|(i, (frames, clip))| {
                        let entry = json!({
                            "clip": clip.source_id,
                            "scene": inputs.footage.scenes.get(i),
                            "frame": frame,
                            "at": frame as f64 / fps,
                        });
                        frame += frames;
                        entry
                    })
                    .collect();
                services.renderer().render(&r).await?;
                Ok::<_, ProviderError>(Built {
                    main: FILE.to_owned(),
                    output: json!({ "file": FILE, "seconds": narration.duration, "clips": plan }),
                    cost: None,
                })
            }
        })
        .await?;
    Ok((hit.path(FILE), key, expires))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Clip;

    fn words(list: &[(&str, f64)]) -> Vec<WordTiming> {
        list.iter()
            .map(|&(word, start)| WordTiming {
                word: word.to_owned(),
                start,
                end: start + 0.2,
            })
            .collect()
    }

    #[test]
    fn scenes_start_where_their_first_word_is_spoken() {
        let lines = ["Owls turn heads.", "They see", "Follow."];
        let timed = words(&[
            ("Owls", 0.1),
            ("turn", 0.4),
            ("heads.", 0.7),
            ("They", 1.6),
            ("see", 1.9),
            ("Follow.", 2.8),
        ]);
        assert_eq!(scene_starts(&lines, &timed, 3.2), [0.0, 1.6, 2.8]);
        // Timings that do not match the lines' words: shares by word count.
        let starts = scene_starts(&lines, &timed[..4], 3.0);
        assert_eq!(starts, [0.0, 1.5, 2.5]);
    }

    #[test]
    fn clips_are_cut_at_the_start_of_the_scene_they_open() {
        let clip = |id: &str| Clip {
            path: format!("/{id}.mp4").into(),
            source_id: id.to_owned(),
            duration: 5.0,
            credit: None,
        };
        let script = Script {
            hook: "One two.".into(),
            sentences: vec!["Three.".into(), "Four five.".into()],
            cta: "Six.".into(),
            title: String::new(),
            caption: String::new(),
            hashtags: Vec::new(),
            visuals: Vec::new(),
            usage: None,
        };
        let narration = Narration {
            audio: "/n.wav".into(),
            duration: 4.0,
            words: words(&[
                ("One", 0.0),
                ("two.", 0.3),
                ("Three.", 1.0),
                ("Four", 2.0),
                ("five.", 2.4),
                ("Six.", 3.5),
            ]),
            characters: 0,
        };
        // The third scene had no clip of its own: the second clip runs on through it.
        let footage = Footage {
            clips: vec![clip("a"), clip("b"), clip("d")],
            scenes: vec![0, 1, 3],
        };
        assert_eq!(cuts(&footage, &script, &narration), [1.0, 3.5]);
        let even = Footage {
            clips: footage.clips.clone(),
            scenes: Vec::new(),
        };
        assert!(cuts(&even, &script, &narration).is_empty());
    }
}
