//! Footage: clips from stock (Pexels), a local folder, or generated with ffmpeg. Not
//! keyed on the voice, so changing a voice reuses it.

use serde_json::json;

use super::Stage;
use crate::engine::{Built, Halt, JobRun};
use crate::expand::JobSpec;
use crate::keys::{Inputs, ToolVersions, stage_key};
use crate::providers::{Clip, FootageRequest};
use crate::recipe::FootageProvider;

pub const VERSION: u32 = 1;
const FILE: &str = "clips.json";

/// The variant that picks different footage for different jobs of one batch.
pub fn variant(spec: &JobSpec) -> u64 {
    u64::from_str_radix(
        &stage_key(
            "variant",
            1,
            &[&json!([&spec.recipe, &spec.topic, &spec.template])],
        )[..12],
        16,
    )
    .unwrap_or(0)
}

/// The footage settings, the topic, the job's variant and the length; a local folder
/// by its contents (`folder`: names, sizes, digests), generated footage by the ffmpeg
/// that makes it.
pub fn key(spec: &JobSpec, folder: Option<&str>, versions: &ToolVersions) -> String {
    inputs(spec, folder, versions).key()
}

/// What [`key`] hashes, by name.
pub fn inputs(spec: &JobSpec, folder: Option<&str>, versions: &ToolVersions) -> Inputs {
    let inputs = Inputs::new(Stage::Footage, VERSION)
        .part("footage", json!(spec.footage))
        .part("topic", json!(spec.topic))
        .part("variant", json!(variant(spec)))
        .part("seconds", json!(spec.script.seconds));
    match spec.footage.provider {
        FootageProvider::Local => inputs.part("folder", json!({ "folder": folder })),
        FootageProvider::Generated => inputs.part("tools", json!({ "ffmpeg": versions.ffmpeg })),
        FootageProvider::Pexels => inputs,
    }
}

/// The clips and the key they were made under.
pub async fn run(job: &mut JobRun<'_>) -> Result<(Vec<Clip>, String), Halt> {
    let spec = job.spec();
    let services = job.services();
    let dir = job.recipe_dir();
    let folder = match spec.footage.provider {
        FootageProvider::Local => Some(
            services
                .digests()
                .folder(&dir.join(spec.footage.dir.as_deref().unwrap_or(".")))
                .await
                .map_err(|e| Halt::failed(Stage::Footage, e))?,
        ),
        _ => None,
    };
    let key = key(spec, folder.as_deref(), services.versions());
    let hit = job
        .cached(Stage::Footage, &key, None, |work| async move {
            let source = services.footage_source(&spec.footage, dir)?;
            let clips = spec.footage.clips.max(1);
            let request = FootageRequest {
                query: spec
                    .footage
                    .query
                    .clone()
                    .unwrap_or_else(|| spec.topic.clone()),
                clips,
                min_clip_seconds: (f64::from(spec.script.seconds) / f64::from(clips)).max(2.0),
                avoid: Vec::new(),
                variant: variant(spec),
            };
            let clips = source.fetch(&request, &work).await?;
            let manifest = json!(clips);
            super::write_json(&work.join(FILE), &manifest).await?;
            Ok(Built {
                main: FILE.to_owned(),
                output: manifest,
                cost: None,
            })
        })
        .await?;
    let mut clips: Vec<Clip> = hit
        .output()
        .map_err(|e| Halt::failed(Stage::Footage, e.to_string()))?;
    for clip in &mut clips {
        clip.path = hit.path(&clip.path);
    }
    Ok((clips, key))
}
