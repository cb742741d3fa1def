//! Render: one ffmpeg process per video; the output is checked before it counts.

use std::path::PathBuf;

use serde_json::json;

use super::Stage;
use crate::engine::{Built, Halt, JobRun};
use crate::expand::JobSpec;
use crate::keys::{Inputs as KeyInputs, ToolVersions};
use crate::media::RenderSpec;
use crate::providers::{Clip, Narration, ProviderError};

pub const VERSION: u32 = 1;
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

/// What a render stage gets from the stages before it.
pub struct Inputs<'a> {
    pub clips: &'a [Clip],
    pub footage_key: &'a str,
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
    let (clips, captions) = (inputs.clips, inputs.captions.clone());
    let hit = job
        .cached(Stage::Render, &key, Some(expires), |work| {
            let captions = captions.clone();
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
                services.renderer().render(&r).await?;
                Ok::<_, ProviderError>(Built {
                    main: FILE.to_owned(),
                    output: json!({ "file": FILE, "seconds": narration.duration }),
                    cost: None,
                })
            }
        })
        .await?;
    Ok((hit.path(FILE), key, expires))
}
