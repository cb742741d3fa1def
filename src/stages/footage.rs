//! Footage: clips from stock (Pexels), a local folder, or generated with ffmpeg. Per
//! scene by default: a clip for each spoken line, searched with that line's visual query
//! (one search per distinct query), none shown twice in a job. Keyed on the scenes'
//! queries and lengths, not on the voice, so changing a voice reuses it.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Stage;
use crate::engine::{Built, Halt, JobRun};
use crate::expand::JobSpec;
use crate::keys::{Inputs, ToolVersions, stage_key};
use crate::providers::{Clip, FootageRequest, FootageSource, ProviderError, Script};
use crate::recipe::{FootagePer, FootageProvider};

/// 2: footage per scene, and the manifest says which scene each clip starts.
pub const VERSION: u32 = 2;
const FILE: &str = "clips.json";

/// A clip asked of a source lasts at least this long, however short its scene.
const MIN_CLIP_SECONDS: f64 = 2.0;

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

/// One scene as the footage sees it: what to search for (stock only: a folder or a
/// generator does not search) and how many words it says, which sizes its clip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScenePlan {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    pub words: usize,
}

/// The scenes of `script` for `spec`'s footage; empty when the footage is chosen per
/// video. A line without a visual query searches the recipe's `footage.query` (or the
/// topic).
pub fn scenes(spec: &JobSpec, script: &Script) -> Vec<ScenePlan> {
    if spec.footage.per == FootagePer::Video {
        return Vec::new();
    }
    let fallback = spec
        .footage
        .query
        .clone()
        .unwrap_or_else(|| spec.topic.clone());
    script
        .scenes()
        .iter()
        .map(|scene| ScenePlan {
            query: (spec.footage.provider == FootageProvider::Pexels).then(|| {
                scene
                    .show
                    .map(|q| q.trim().to_owned())
                    .unwrap_or_else(|| fallback.clone())
            }),
            words: scene.say.split_whitespace().count(),
        })
        .collect()
}

/// The footage settings, the topic, the job's variant, the length and the scenes (their
/// queries and word counts); a local folder by its contents (`folder`: names, sizes,
/// digests), generated footage by the ffmpeg that makes it.
pub fn key(
    spec: &JobSpec,
    scenes: &[ScenePlan],
    folder: Option<&str>,
    versions: &ToolVersions,
) -> String {
    inputs(spec, scenes, folder, versions).key()
}

/// What [`key`] hashes, by name.
pub fn inputs(
    spec: &JobSpec,
    scenes: &[ScenePlan],
    folder: Option<&str>,
    versions: &ToolVersions,
) -> Inputs {
    let inputs = Inputs::new(Stage::Footage, VERSION)
        .part("footage", json!(spec.footage))
        .part("topic", json!(spec.topic))
        .part("variant", json!(variant(spec)))
        .part("seconds", json!(spec.script.seconds))
        .part("scenes", json!(scenes));
    match spec.footage.provider {
        FootageProvider::Local => inputs.part("folder", json!({ "folder": folder })),
        FootageProvider::Generated => inputs.part("tools", json!({ "ffmpeg": versions.ffmpeg })),
        FootageProvider::Pexels => inputs,
    }
}

/// The key `plan` predicts for a paid footage stage, from the cached script when there
/// is one (its scenes key the footage); paid footage does not depend on tool versions.
pub fn planned_key(spec: &JobSpec, script: Option<&Script>) -> String {
    let scenes = script.map(|s| scenes(spec, s)).unwrap_or_default();
    key(spec, &scenes, None, &ToolVersions::default())
}

/// What the footage stage made: the clips in the order they are shown and, per clip,
/// the scene it starts at. Without scenes (`per: video`) the clips share the video
/// evenly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Footage {
    pub clips: Vec<Clip>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scenes: Vec<usize>,
}

/// The footage and the key it was made under.
pub async fn run(job: &mut JobRun<'_>, script: &Script) -> Result<(Footage, String), Halt> {
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
    let plan = scenes(spec, script);
    let key = key(spec, &plan, folder.as_deref(), services.versions());
    let used = services.used_clips();
    let hit = job
        .cached(Stage::Footage, &key, None, |work| {
            let plan = plan.clone();
            async move {
                let source = services.footage_source(&spec.footage, dir)?;
                let avoid = used.map(|u| u.of(&spec.recipe)).unwrap_or_default();
                let footage = if plan.is_empty() {
                    let clips = spec.footage.clips.max(1);
                    let request = FootageRequest {
                        query: spec
                            .footage
                            .query
                            .clone()
                            .unwrap_or_else(|| spec.topic.clone()),
                        clips,
                        min_clip_seconds: (f64::from(spec.script.seconds) / f64::from(clips))
                            .max(MIN_CLIP_SECONDS),
                        avoid,
                        variant: variant(spec),
                    };
                    Footage {
                        clips: source.fetch(&request, &work).await?,
                        scenes: Vec::new(),
                    }
                } else {
                    let seconds = f64::from(spec.script.seconds);
                    fetch_scenes(
                        source.as_ref(),
                        &plan,
                        seconds,
                        variant(spec),
                        &avoid,
                        &work,
                    )
                    .await?
                };
                let manifest = json!(footage);
                super::write_json(&work.join(FILE), &manifest).await?;
                Ok(Built {
                    main: FILE.to_owned(),
                    output: manifest,
                    cost: None,
                })
            }
        })
        .await?;
    let mut footage: Footage = hit
        .output()
        .map_err(|e| Halt::failed(Stage::Footage, e.to_string()))?;
    for clip in &mut footage.clips {
        clip.path = hit.path(&clip.path);
    }
    if let Some(used) = used {
        used.add(
            &spec.recipe,
            footage.clips.iter().map(|c| c.source_id.clone()),
        );
    }
    Ok((footage, key))
}

/// Fetches a clip per scene: one request per distinct query (in the order the queries
/// first appear) for as many clips as scenes use it, each into its own folder. A clip
/// already shown earlier in the job is never shown again: its scene keeps the clip
/// before it running. Clips used elsewhere in the batch (`avoid`) are picked only when
/// the results have nothing else.
pub async fn fetch_scenes(
    source: &dyn FootageSource,
    plan: &[ScenePlan],
    seconds: f64,
    variant: u64,
    avoid: &[String],
    dir: &Path,
) -> Result<Footage, ProviderError> {
    let total_words = plan.iter().map(|s| s.words.max(1)).sum::<usize>().max(1);
    let scene_seconds =
        |scene: &ScenePlan| seconds * scene.words.max(1) as f64 / total_words as f64;
    // Distinct queries in order of first use, each with the scenes that use it.
    let mut groups: Vec<(Option<&str>, Vec<usize>)> = Vec::new();
    for (i, scene) in plan.iter().enumerate() {
        let query = scene.query.as_deref();
        match groups.iter_mut().find(|(q, _)| *q == query) {
            Some((_, members)) => members.push(i),
            None => groups.push((query, vec![i])),
        }
    }
    let mut per_scene: Vec<Option<Clip>> = vec![None; plan.len()];
    let mut shown: Vec<String> = Vec::new();
    for (n, (query, members)) in groups.iter().enumerate() {
        let longest = members
            .iter()
            .map(|&i| scene_seconds(&plan[i]))
            .fold(0.0, f64::max);
        let request = FootageRequest {
            query: query.unwrap_or_default().to_owned(),
            clips: u32::try_from(members.len()).unwrap_or(u32::MAX),
            min_clip_seconds: longest.max(MIN_CLIP_SECONDS),
            avoid: shown.iter().chain(avoid).cloned().collect(),
            variant: variant.wrapping_add(n as u64),
        };
        let folder = dir.join(format!("q{n:02}"));
        tokio::fs::create_dir_all(&folder)
            .await
            .map_err(|e| ProviderError::io("footage", &folder, &e))?;
        let clips = source.fetch(&request, &folder).await?;
        let mut clips = clips.into_iter();
        for &scene in members {
            // Fewer clips than scenes: the scenes left keep the clip before them.
            let Some(clip) = clips.next() else { break };
            if shown.contains(&clip.source_id) {
                continue;
            }
            shown.push(clip.source_id.clone());
            per_scene[scene] = Some(clip);
        }
    }
    let mut footage = Footage {
        clips: Vec::new(),
        scenes: Vec::new(),
    };
    for (scene, clip) in per_scene.into_iter().enumerate() {
        if let Some(clip) = clip {
            footage.clips.push(clip);
            footage.scenes.push(scene);
        }
    }
    if footage.clips.is_empty() {
        return Err(ProviderError::permanent(
            "footage",
            "no clip was found for any scene",
        ));
    }
    // The first clip opens the video, whichever scene it was found for.
    footage.scenes[0] = 0;
    Ok(footage)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;

    /// Answers each request with clips named after its query, repeating `shared` (a clip
    /// id every query finds) first; records the requests.
    #[derive(Default)]
    struct Stock {
        requests: Mutex<Vec<FootageRequest>>,
        shared: Option<String>,
    }

    #[async_trait]
    impl FootageSource for Stock {
        async fn fetch(
            &self,
            request: &FootageRequest,
            dir: &Path,
        ) -> Result<Vec<Clip>, ProviderError> {
            self.requests.lock().unwrap().push(request.clone());
            let mut ids: Vec<String> = self.shared.iter().cloned().collect();
            ids.extend((0..request.clips).map(|i| format!("{}#{i}", request.query)));
            // Like the real sources: fresh clips first, avoided ones only to make up.
            let (fresh, used): (Vec<String>, Vec<String>) =
                ids.into_iter().partition(|id| !request.avoid.contains(id));
            Ok(fresh
                .into_iter()
                .chain(used)
                .take(request.clips as usize)
                .map(|id| Clip {
                    path: dir.join(format!("{id}.mp4")),
                    source_id: id,
                    duration: 10.0,
                    credit: None,
                })
                .collect())
        }
    }

    fn spec(footage: &str) -> JobSpec {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.yaml");
        std::fs::write(
            &path,
            format!(
                "version: 1\nname: r\nvoices:\n  v: {{ provider: espeak }}\ntemplates:\n  t:\n    \
                 script: {{ provider: offline, seconds: 10 }}\n    footage: {footage}\n    title: x\n\
                 batch:\n  template: t\n  matrix: {{ topic: [Owls], voice: [v] }}\n"
            ),
        )
        .unwrap();
        let (recipes, diagnostics) = crate::cli::load_all(&[path]);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        recipes[0].jobs[0].spec.clone()
    }

    fn script(visuals: &[&str]) -> Script {
        Script {
            hook: "Owls turn heads.".into(),
            sentences: vec!["They see at night.".into()],
            cta: "Follow.".into(),
            title: String::new(),
            caption: String::new(),
            hashtags: Vec::new(),
            visuals: visuals.iter().map(|v| (*v).to_owned()).collect(),
            usage: None,
        }
    }

    #[test]
    fn scenes_search_their_visuals_or_the_recipe_query_and_per_video_has_none() {
        let pexels = spec("{ provider: pexels, query: \"night birds\" }");
        let scenes = scenes(&pexels, &script(&["owl head turning", " ", "owl at night"]));
        let queries: Vec<Option<&str>> = scenes.iter().map(|s| s.query.as_deref()).collect();
        assert_eq!(
            queries,
            [
                Some("owl head turning"),
                Some("night birds"),
                Some("owl at night")
            ]
        );
        assert_eq!(
            scenes.iter().map(|s| s.words).collect::<Vec<_>>(),
            [3, 4, 1]
        );
        // The queries key the footage: another visual is other footage.
        let other = super::scenes(&pexels, &script(&["owl head turning", "moon", "owl"]));
        let v = ToolVersions::default();
        assert_ne!(
            key(&pexels, &scenes, None, &v),
            key(&pexels, &other, None, &v)
        );

        let per_video = spec("{ provider: pexels, query: birds, per: video, clips: 2 }");
        assert!(super::scenes(&per_video, &script(&["a", "b", "c"])).is_empty());
        // A generator does not search: its scenes have no query, so visuals do not key it.
        let generated = spec("{ provider: generated }");
        assert!(
            super::scenes(&generated, &script(&["a", "b", "c"]))
                .iter()
                .all(|s| s.query.is_none())
        );
    }

    fn plan(queries: &[&str]) -> Vec<ScenePlan> {
        queries
            .iter()
            .map(|q| ScenePlan {
                query: Some((*q).to_owned()),
                words: 4,
            })
            .collect()
    }

    #[tokio::test]
    async fn one_search_per_distinct_query_and_a_clip_per_scene() {
        let stock = Stock::default();
        let dir = tempfile::tempdir().unwrap();
        let footage = fetch_scenes(
            &stock,
            &plan(&["pasta water", "knife", "pasta water", "plate"]),
            16.0,
            7,
            &[],
            dir.path(),
        )
        .await
        .unwrap();
        let requests = stock.requests.lock().unwrap();
        let asked: Vec<(&str, u32)> = requests
            .iter()
            .map(|r| (r.query.as_str(), r.clips))
            .collect();
        assert_eq!(asked, [("pasta water", 2), ("knife", 1), ("plate", 1)]);
        // Four scenes of four words in 16 s: 4 s each.
        assert!(
            requests
                .iter()
                .all(|r| (r.min_clip_seconds - 4.0).abs() < 1e-9)
        );
        let ids: Vec<&str> = footage.clips.iter().map(|c| c.source_id.as_str()).collect();
        assert_eq!(
            ids,
            ["pasta water#0", "knife#0", "pasta water#1", "plate#0"]
        );
        assert_eq!(footage.scenes, [0, 1, 2, 3]);
        assert!(footage.clips[0].path.starts_with(dir.path().join("q00")));
        assert!(footage.clips[1].path.starts_with(dir.path().join("q01")));
    }

    #[tokio::test]
    async fn a_clip_is_never_shown_twice_in_a_job() {
        // Every query finds the same clip first: the second and third scenes must not
        // show it again.
        let stock = Stock {
            shared: Some("pexels:1".into()),
            ..Stock::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let footage = fetch_scenes(&stock, &plan(&["a", "b", "c"]), 9.0, 0, &[], dir.path())
            .await
            .unwrap();
        let ids: Vec<&str> = footage.clips.iter().map(|c| c.source_id.as_str()).collect();
        assert_eq!(ids, ["pexels:1", "b#0", "c#0"]);
        let requests = stock.requests.lock().unwrap();
        assert_eq!(requests[1].avoid, ["pexels:1"]);
        assert_eq!(requests[2].avoid, ["pexels:1", "b#0"]);
    }

    #[tokio::test]
    async fn a_scene_without_a_fresh_clip_keeps_the_clip_before_it() {
        struct One;
        #[async_trait]
        impl FootageSource for One {
            async fn fetch(
                &self,
                _: &FootageRequest,
                dir: &Path,
            ) -> Result<Vec<Clip>, ProviderError> {
                Ok(vec![Clip {
                    path: dir.join("only.mp4"),
                    source_id: "local:only.mp4".into(),
                    duration: 3.0,
                    credit: None,
                }])
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let footage = fetch_scenes(&One, &plan(&["a", "b", "c"]), 9.0, 0, &[], dir.path())
            .await
            .unwrap();
        assert_eq!(footage.clips.len(), 1);
        assert_eq!(footage.scenes, [0]);
    }

    #[tokio::test]
    async fn clips_used_elsewhere_in_the_batch_come_last() {
        let stock = Stock {
            shared: Some("pexels:9".into()),
            ..Stock::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let footage = fetch_scenes(
            &stock,
            &plan(&["a"]),
            3.0,
            0,
            &["pexels:9".to_owned()],
            dir.path(),
        )
        .await
        .unwrap();
        assert_eq!(footage.clips[0].source_id, "a#0");
    }
}
