//! Footage: clips from stock (Pexels), a local folder, or generated with ffmpeg, or
//! stills drawn per scene (`provider: image`). Per scene by default: a clip for each
//! spoken line, searched with that line's visual query (one search per distinct query),
//! none shown twice in a job; with `fallback: image`, a scene the source has no clip for
//! gets a still, and the run says so. Keyed on the scenes' queries and lengths, not on
//! the voice, so changing a voice reuses it.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Stage;
use crate::engine::{Built, Halt, JobRun};
use crate::expand::JobSpec;
use crate::keys::{Inputs, ToolVersions, stage_key};
use crate::providers::images::{self, ImageMaker, ImageRequest};
use crate::providers::{Clip, FootageRequest, FootageSource, ProviderError, Script};
use crate::recipe::{FootageFallback, FootagePer, FootageProvider};

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

/// One scene as the footage sees it: what to search for or draw (stock, stills and a
/// fallback to stills only: a folder or a generator does not search) and how many words
/// it says, which sizes its clip.
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
            query: uses_queries(spec).then(|| {
                scene
                    .show
                    .map(|q| q.trim().to_owned())
                    .unwrap_or_else(|| fallback.clone())
            }),
            words: scene.say.split_whitespace().count(),
        })
        .collect()
}

/// Whether the scenes' visual queries pick the footage: stock searches them, stills
/// draw them.
fn uses_queries(spec: &JobSpec) -> bool {
    matches!(
        spec.footage.provider,
        FootageProvider::Pexels | FootageProvider::Image
    ) || spec.footage.fallback.is_some()
}

/// Whether the job may show stills: `provider: image`, or `fallback: image`.
fn draws_stills(spec: &JobSpec) -> bool {
    spec.footage.provider == FootageProvider::Image
        || spec.footage.fallback == Some(FootageFallback::Image)
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
    let inputs = match spec.footage.provider {
        FootageProvider::Local => inputs.part("folder", json!({ "folder": folder })),
        FootageProvider::Generated => inputs.part("tools", json!({ "ffmpeg": versions.ffmpeg })),
        FootageProvider::Pexels | FootageProvider::Image => inputs,
    };
    if !draws_stills(spec) {
        return inputs;
    }
    // Stills by what draws them and how they are asked for; the offline ones by the
    // ffmpeg that draws them.
    let model = images::model_name(spec.footage.model.as_deref());
    let ffmpeg = images::is_offline(spec.footage.model.as_deref()).then_some(&versions.ffmpeg);
    inputs.part(
        "stills",
        json!({ "model": model, "aspect": images::ASPECT, "version": images::VERSION, "ffmpeg": ffmpeg }),
    )
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Footage {
    pub clips: Vec<Clip>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scenes: Vec<usize>,
    /// Scenes the source had no usable clip for, which show a still instead
    /// (`fallback: image`), with what was searched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<Fallback>,
    /// What the stills cost (paid image models), in the provider's credits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
}

/// A scene that shows a still because its source had no clip for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fallback {
    /// The scene, counted from 0.
    pub scene: usize,
    pub query: String,
    /// The still's source id.
    pub still: String,
}

impl Fallback {
    /// The line the run shows for it: scenes are counted from 1 there.
    pub fn message(&self) -> String {
        format!(
            "scene {}: no stock clip for “{}”, using a generated image",
            self.scene + 1,
            self.query
        )
    }
}

/// What draws a job's stills, and with which model.
pub struct Stills<'a> {
    pub maker: &'a dyn ImageMaker,
    pub model: Option<&'a str>,
    /// Stills drawn before, found instead of drawn (and paid for) again.
    pub drawn: &'a Drawn,
}

/// Stills already in the artifact store's footage entries, by source id (which digests
/// model, prompt, aspect and seed): a scene whose still was drawn for an earlier
/// version of the job links it rather than drawing it again. Best effort: a still not
/// found, or not linkable, is drawn.
#[derive(Debug, Default)]
pub struct Drawn(std::collections::HashMap<String, std::path::PathBuf>);

impl Drawn {
    /// Reads the footage entries under the artifact store's `root`.
    pub fn scan(root: &Path) -> Self {
        let mut found = std::collections::HashMap::new();
        let Ok(entries) = std::fs::read_dir(root.join(Stage::Footage.as_str())) else {
            return Self(found);
        };
        for entry in entries.flatten() {
            let dir = entry.path();
            let Ok(bytes) = std::fs::read(dir.join("manifest.json")) else {
                continue;
            };
            let Ok(manifest) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                continue;
            };
            let Ok(footage) = serde_json::from_value::<Footage>(manifest["output"].clone()) else {
                continue;
            };
            for clip in footage.clips {
                if clip.source_id.starts_with("image:") {
                    found
                        .entry(clip.source_id)
                        .or_insert_with(|| dir.join(&clip.path));
                }
            }
        }
        Self(found)
    }
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
    let store_dir = job.artifacts_dir();
    let hit = job
        .cached(Stage::Footage, &key, None, |work| {
            let plan = plan.clone();
            async move {
                let source = match spec.footage.provider {
                    FootageProvider::Image => None,
                    _ => Some(services.footage_source(&spec.footage, dir)?),
                };
                let maker = if draws_stills(spec) {
                    Some(services.image_maker(&spec.footage)?)
                } else {
                    None
                };
                let drawn = match &maker {
                    Some(_) => {
                        let root = store_dir.to_owned();
                        tokio::task::spawn_blocking(move || Drawn::scan(&root))
                            .await
                            .unwrap_or_default()
                    }
                    None => Drawn::default(),
                };
                let stills = maker.as_deref().map(|maker| Stills {
                    maker,
                    model: spec.footage.model.as_deref(),
                    drawn: &drawn,
                });
                let avoid = used.map(|u| u.of(&spec.recipe)).unwrap_or_default();
                let footage = if let (None, Some(stills), true) =
                    (&source, &stills, plan.is_empty())
                {
                    // Stills for the whole video: `clips` of the one query.
                    let query = spec
                        .footage
                        .query
                        .clone()
                        .unwrap_or_else(|| spec.topic.clone());
                    let mut footage = Footage {
                        clips: Vec::new(),
                        scenes: Vec::new(),
                        fallbacks: Vec::new(),
                        cost: None,
                    };
                    for n in 0..spec.footage.clips.max(1) {
                        let seed = variant(spec).wrapping_add(u64::from(n));
                        let (clip, cost) = draw(stills, &query, seed, &work, n as usize).await?;
                        footage.clips.push(clip);
                        footage.cost = add_cost(footage.cost, cost);
                    }
                    footage
                } else if plan.is_empty() {
                    let Some(source) = &source else {
                        return Err(ProviderError::permanent("footage", "no footage source"));
                    };
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
                        fallbacks: Vec::new(),
                        cost: None,
                    }
                } else {
                    let seconds = f64::from(spec.script.seconds);
                    fetch_scenes_with(
                        source.as_deref(),
                        stills.as_ref(),
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
                    cost: footage.cost,
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
    // Never silent: every run that shows a fallback still says where and why.
    let short: String = job.id().chars().take(8).collect();
    for fallback in &footage.fallbacks {
        job.note(format!("{} {short}: {}", spec.recipe, fallback.message()));
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
    fetch_scenes_with(Some(source), None, plan, seconds, variant, avoid, dir).await
}

/// One still of `query` into `dir/s<scene>`, as a clip, and what it cost.
async fn draw(
    stills: &Stills<'_>,
    query: &str,
    seed: u64,
    dir: &Path,
    scene: usize,
) -> Result<(Clip, Option<f64>), ProviderError> {
    let folder = dir.join(format!("s{scene:02}"));
    tokio::fs::create_dir_all(&folder)
        .await
        .map_err(|e| ProviderError::io("footage", &folder, &e))?;
    let request = ImageRequest::new(stills.model, query, seed);
    let id = images::source_id(&request);
    if let Some(found) = stills.drawn.0.get(&id) {
        let extension = found.extension().unwrap_or_default().to_string_lossy();
        let path = folder.join(format!("image.{extension}"));
        let linked = tokio::fs::hard_link(found, &path).await.is_ok()
            || tokio::fs::copy(found, &path).await.is_ok();
        if linked {
            let still = images::Still {
                path,
                source_id: id,
                usage: None,
            };
            return Ok((images::still_clip(still), None));
        }
    }
    let still = stills.maker.draw(&request, &folder, "image").await?;
    let cost = still.usage.as_ref().and_then(|u| u.cost);
    Ok((images::still_clip(still), cost))
}

/// How many scenes before `scene` have its query: two scenes of one query get two
/// stills, and a scene keeps its still when scenes of other queries come and go.
fn nth(plan: &[ScenePlan], scene: usize) -> u64 {
    plan[..scene]
        .iter()
        .filter(|s| s.query == plan[scene].query)
        .count() as u64
}

fn add_cost(total: Option<f64>, cost: Option<f64>) -> Option<f64> {
    match (total, cost) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
    }
}

/// [`fetch_scenes`] with stills: without a `source`, every scene gets a still of its
/// query; with one, a scene it has no fresh clip for gets a still instead of keeping
/// the clip before it, and is listed in [`Footage::fallbacks`]. A search that finds
/// nothing is then no error.
pub async fn fetch_scenes_with(
    source: Option<&dyn FootageSource>,
    stills: Option<&Stills<'_>>,
    plan: &[ScenePlan],
    seconds: f64,
    variant: u64,
    avoid: &[String],
    dir: &Path,
) -> Result<Footage, ProviderError> {
    let Some(source) = source else {
        let Some(stills) = stills else {
            return Err(ProviderError::permanent(
                "footage",
                "no footage source and no stills",
            ));
        };
        let mut footage = Footage {
            clips: Vec::new(),
            scenes: Vec::new(),
            fallbacks: Vec::new(),
            cost: None,
        };
        for (i, scene) in plan.iter().enumerate() {
            let query = scene.query.as_deref().unwrap_or_default();
            let seed = variant.wrapping_add(nth(plan, i));
            let (clip, cost) = draw(stills, query, seed, dir, i).await?;
            footage.clips.push(clip);
            footage.scenes.push(i);
            footage.cost = add_cost(footage.cost, cost);
        }
        if footage.clips.is_empty() {
            return Err(ProviderError::permanent(
                "footage",
                "the script has no scenes",
            ));
        }
        return Ok(footage);
    };
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
        let clips = if stills.is_some() {
            source.find(&request, &folder).await?
        } else {
            source.fetch(&request, &folder).await?
        };
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
        fallbacks: Vec::new(),
        cost: None,
    };
    for (scene, clip) in per_scene.into_iter().enumerate() {
        if let Some(clip) = clip {
            footage.clips.push(clip);
            footage.scenes.push(scene);
        } else if let Some(stills) = stills {
            let query = plan[scene].query.as_deref().unwrap_or_default();
            let seed = variant.wrapping_add(nth(plan, scene));
            let (clip, cost) = draw(stills, query, seed, dir, scene).await?;
            footage.fallbacks.push(Fallback {
                scene,
                query: query.to_owned(),
                still: clip.source_id.clone(),
            });
            footage.clips.push(clip);
            footage.scenes.push(scene);
            footage.cost = add_cost(footage.cost, cost);
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

/// The one job of a recipe whose footage is `footage` and whose offline script asks for
/// `seconds`: for tests of what footage a job needs.
#[cfg(test)]
pub(crate) fn spec_with_footage(footage: &str, seconds: u32) -> JobSpec {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.yaml");
    std::fs::write(
        &path,
        format!(
            "version: 1\nname: r\nvoices:\n  v: {{ provider: espeak }}\ntemplates:\n  t:\n    \
             script: {{ provider: offline, seconds: {seconds} }}\n    footage: {footage}\n    title: x\n\
             batch:\n  template: t\n  matrix: {{ topic: [Owls], voice: [v] }}\n"
        ),
    )
    .unwrap();
    let (recipes, diagnostics) = crate::cli::load_all(&[path]);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    recipes[0].jobs[0].spec.clone()
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
        super::spec_with_footage(footage, 10)
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

    /// Draws a still named after its query and counts what it was asked.
    #[derive(Default)]
    struct Painter(Mutex<Vec<ImageRequest>>);

    #[async_trait]
    impl ImageMaker for Painter {
        async fn draw(
            &self,
            request: &ImageRequest,
            dir: &Path,
            stem: &str,
        ) -> Result<images::Still, ProviderError> {
            self.0.lock().unwrap().push(request.clone());
            Ok(images::Still {
                path: dir.join(format!("{stem}.png")),
                source_id: format!("image:{}", request.subject),
                usage: Some(crate::providers::Usage {
                    model: request.model.clone(),
                    cost: Some(0.04),
                    ..crate::providers::Usage::default()
                }),
            })
        }
    }

    /// Finds nothing for a query containing `nothing` (answering `find` with no clips,
    /// `fetch` with the error a stock search gives).
    struct Sparse(Stock);

    #[async_trait]
    impl FootageSource for Sparse {
        async fn fetch(
            &self,
            request: &FootageRequest,
            dir: &Path,
        ) -> Result<Vec<Clip>, ProviderError> {
            let clips = self.find(request, dir).await?;
            if clips.is_empty() {
                return Err(ProviderError::permanent("stock", "nothing found"));
            }
            Ok(clips)
        }

        async fn find(
            &self,
            request: &FootageRequest,
            dir: &Path,
        ) -> Result<Vec<Clip>, ProviderError> {
            if request.query.contains("nothing") {
                return Ok(Vec::new());
            }
            self.0.fetch(request, dir).await
        }
    }

    #[tokio::test]
    async fn a_scene_with_no_stock_clip_gets_a_still_and_says_so() {
        let stock = Sparse(Stock::default());
        let painter = Painter::default();
        let drawn = Drawn::default();
        let stills = Stills {
            maker: &painter,
            model: Some("google/gemini-2.5-flash-image"),
            drawn: &drawn,
        };
        let dir = tempfile::tempdir().unwrap();
        let queries = plan(&["owl", "nothing like it", "moon"]);
        let footage = fetch_scenes_with(
            Some(&stock),
            Some(&stills),
            &queries,
            9.0,
            0,
            &[],
            dir.path(),
        )
        .await
        .unwrap();
        let ids: Vec<&str> = footage.clips.iter().map(|c| c.source_id.as_str()).collect();
        assert_eq!(ids, ["owl#0", "image:nothing like it", "moon#0"]);
        assert_eq!(footage.scenes, [0, 1, 2]);
        assert_eq!(
            footage.fallbacks,
            [Fallback {
                scene: 1,
                query: "nothing like it".into(),
                still: "image:nothing like it".into(),
            }]
        );
        assert_eq!(
            footage.fallbacks[0].message(),
            "scene 2: no stock clip for “nothing like it”, using a generated image"
        );
        assert_eq!(footage.cost, Some(0.04));
        assert!(footage.clips[1].path.starts_with(dir.path().join("s01")));
        let asked = painter.0.lock().unwrap().clone();
        assert_eq!(asked.len(), 1);
        assert_eq!(asked[0].model, "google/gemini-2.5-flash-image");
        assert_eq!(asked[0].aspect, "9:16");

        // Without the fallback, the empty search fails the job as before.
        let error = fetch_scenes(&stock, &queries, 9.0, 0, &[], dir.path())
            .await
            .unwrap_err();
        assert!(error.to_string().contains("nothing found"), "{error}");
    }

    #[tokio::test]
    async fn image_footage_draws_a_still_per_scene() {
        let painter = Painter::default();
        let drawn = Drawn::default();
        let stills = Stills {
            maker: &painter,
            model: None,
            drawn: &drawn,
        };
        let dir = tempfile::tempdir().unwrap();
        let footage = fetch_scenes_with(
            None,
            Some(&stills),
            &plan(&["owl", "owl", "moon"]),
            9.0,
            5,
            &[],
            dir.path(),
        )
        .await
        .unwrap();
        assert_eq!(footage.scenes, [0, 1, 2]);
        assert!(footage.fallbacks.is_empty(), "stills are the footage here");
        let asked = painter.0.lock().unwrap();
        let seeds: Vec<u64> = asked.iter().map(|r| r.seed).collect();
        // Two scenes of one query still get two different stills.
        assert_eq!(seeds, [5, 6, 5]);
        assert!(asked.iter().all(|r| r.model == "offline"));
    }

    #[tokio::test]
    async fn a_still_drawn_for_an_earlier_version_is_linked_not_drawn_again() {
        // An earlier footage entry in the store holds the still of scene `owl`.
        let root = tempfile::tempdir().unwrap();
        let entry = root.path().join("footage/0123abcd");
        std::fs::create_dir_all(entry.join("s00")).unwrap();
        std::fs::write(entry.join("s00/image.png"), "earlier still").unwrap();
        let model = Some("google/gemini-2.5-flash-image");
        let earlier = images::source_id(&ImageRequest::new(model, "owl", 9));
        let manifest = json!({ "output": {
            "clips": [{ "path": "s00/image.png", "source_id": earlier, "duration": 0.0, "credit": null }],
            "scenes": [0],
        }});
        std::fs::write(entry.join("manifest.json"), manifest.to_string()).unwrap();

        let drawn = Drawn::scan(root.path());
        let painter = Painter::default();
        let stills = Stills {
            maker: &painter,
            model,
            drawn: &drawn,
        };
        let dir = tempfile::tempdir().unwrap();
        // A scene was added before `owl`: it keeps its still all the same.
        let footage = fetch_scenes_with(
            None,
            Some(&stills),
            &plan(&["moon", "owl"]),
            6.0,
            9,
            &[],
            dir.path(),
        )
        .await
        .unwrap();
        let asked = painter.0.lock().unwrap().clone();
        assert_eq!(asked.len(), 1, "{asked:?}");
        assert_eq!(asked[0].subject, "moon");
        assert_eq!(footage.clips[1].source_id, earlier);
        assert_eq!(
            std::fs::read_to_string(&footage.clips[1].path).unwrap(),
            "earlier still"
        );
        assert!(footage.clips[1].path.starts_with(dir.path()));
        // Only the still drawn now is paid for.
        assert_eq!(footage.cost, Some(0.04));
    }

    #[test]
    fn stills_key_the_footage_only_where_a_recipe_asks_for_them() {
        let v = ToolVersions::default();
        let owls = script(&["owl head turning", "moon", "owl"]);
        let pexels = spec("{ provider: pexels, query: birds }");
        let fallback = spec("{ provider: pexels, query: birds, fallback: image }");
        let plan = scenes(&pexels, &owls);
        assert_eq!(plan, scenes(&fallback, &owls));
        // A fallback changes what the footage may be; the plain recipe keeps its key.
        assert!(!inputs(&pexels, &plan, None, &v).key().is_empty());
        assert_ne!(
            key(&pexels, &plan, None, &v),
            key(&fallback, &plan, None, &v)
        );
        let offline = spec("{ provider: image }");
        let paid = spec("{ provider: image, model: google/gemini-2.5-flash-image }");
        let image_plan = scenes(&offline, &owls);
        assert!(image_plan.iter().all(|s| s.query.is_some()));
        assert_ne!(
            key(&offline, &image_plan, None, &v),
            key(&paid, &image_plan, None, &v)
        );
        // Local footage with a fallback searches nothing, but its stills draw the queries.
        let local = spec("{ provider: local, dir: . , fallback: image }");
        assert!(scenes(&local, &owls).iter().all(|s| s.query.is_some()));
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
