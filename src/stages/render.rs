//! Render: one ffmpeg process per video; the output is checked before it counts.

use std::path::{Path, PathBuf};

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
/// 3: the loudness comes from the voice stage; each clip is entered past its first
/// second where it has room (input seeking); a cover frame beside the video.
pub const VERSION: u32 = 3;
pub const FILE: &str = "video.mp4";
/// The cover, a frame of the hook, beside the video in the render's artifact.
pub const COVER: &str = "cover.jpg";

/// How much of a clip's beginning is skipped when the clip is long enough: stock clips
/// often open on a fade-in, a shaky start or a title.
pub const SKIP_SECONDS: f64 = 1.0;

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
    let inputs = KeyInputs::new(Stage::Render, VERSION)
        .part("video", json!(spec.video))
        .part("footage_key", json!(footage_key))
        .part("voice_key", json!(voice_key))
        .part("captions_key", json!(captions_key))
        .part("music", json!(music))
        .part("tools", json!({ "ffmpeg": versions.ffmpeg }));
    // Only a job with a `music` setting has the part, so recipes using `video.music`
    // keep their keys; the chosen file is in `music` (its digest).
    let inputs = match &spec.music {
        Some(def) => inputs.part("music_def", json!(def)),
        None => inputs,
    };
    // Only a job with a hook has the part, so the others keep their keys.
    match &spec.hook {
        Some(hook) => inputs.part(
            "hook",
            json!({
                "look": HOOK_LOOK,
                "text": hook.text,
                "seconds": hook.seconds,
                "font": hook_font(spec),
                "font_file": versions.font,
            }),
        ),
        None => inputs,
    }
}

/// What a folder's music files are named: the formats ffmpeg reads that music comes in.
const MUSIC_EXTENSIONS: [&str; 7] = ["mp3", "m4a", "aac", "wav", "ogg", "opus", "flac"];

/// The music a job is rendered with.
#[derive(Debug, Clone, PartialEq)]
pub struct Music {
    /// As the recipe would name it, relative to its directory (`music/b.mp3`).
    pub name: String,
    pub path: PathBuf,
    pub volume: f64,
}

/// Whether the job has music at all (before any folder is read).
pub fn has_music(spec: &JobSpec) -> bool {
    spec.music.is_some() || spec.video.music.is_some()
}

/// The job's music: the template's `music` file, or one file of its folder picked by
/// the job's id, or `video.music`. `Err` says why a folder has nothing to pick.
pub fn music(spec: &JobSpec, job_id: &str, recipe_dir: &Path) -> Result<Option<Music>, String> {
    let volume = spec
        .music
        .as_ref()
        .map_or_else(crate::recipe::default_music_volume, |m| m.volume);
    let file = |name: &str| Music {
        name: name.to_owned(),
        path: recipe_dir.join(name),
        volume,
    };
    let Some(def) = &spec.music else {
        return Ok(spec.video.music.as_deref().map(file));
    };
    if let Some(name) = &def.file {
        return Ok(Some(file(name)));
    }
    let Some(dir) = &def.dir else {
        return Ok(None);
    };
    let files = music_files(&recipe_dir.join(dir))
        .map_err(|e| format!("cannot read the music folder `{dir}`: {e}"))?;
    if files.is_empty() {
        return Err(format!(
            "the music folder `{dir}` holds no music files ({})",
            MUSIC_EXTENSIONS
                .iter()
                .map(|e| format!(".{e}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let chosen = &files[pick(job_id, files.len())];
    Ok(Some(file(&format!(
        "{}/{chosen}",
        dir.trim_end_matches('/')
    ))))
}

/// The music files directly in `dir` (hidden files skipped), sorted by name.
pub fn music_files(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let music = Path::new(&name)
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| MUSIC_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        if music && !name.starts_with('.') && entry.path().is_file() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Which of `count` files a job plays: its id hashed, so the pick is the same on every
/// machine and every run, and spread evenly over a batch.
pub fn pick(job_id: &str, count: usize) -> usize {
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(format!("tiktok-factory/music/{job_id}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    (u64::from_be_bytes(first) % count.max(1) as u64) as usize
}

/// The hook title's look (`media::hook_ass`): change it when the hook is drawn
/// differently, so that only videos with a hook render again.
const HOOK_LOOK: u32 = 1;
const HOOK_FILE: &str = "hook.ass";

/// The hook is set in the captions' font.
fn hook_font(spec: &JobSpec) -> String {
    super::captions::style(&spec.captions).font
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

/// Where each clip is entered, in seconds: past its first [`SKIP_SECONDS`] when it has
/// room for its share (`frames`, at `fps`) after them, past what it can spare when it
/// has less, and at its beginning when it is shorter than its share (it loops) or its
/// length is unknown (0). Rounded to the millisecond the command line carries.
pub fn clip_starts(durations: &[f64], frames: &[u64], fps: u32) -> Vec<f64> {
    durations
        .iter()
        .zip(frames)
        .map(|(&duration, &frames)| {
            // The share, and the two frames the input is read past it.
            let share = (frames + 2) as f64 / f64::from(fps);
            let spare = if duration.is_finite() {
                duration - share
            } else {
                0.0
            };
            (spare.clamp(0.0, SKIP_SECONDS) * 1000.0).floor() / 1000.0
        })
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
    let chosen =
        music(spec, &job.id(), job.recipe_dir()).map_err(|e| Halt::failed(Stage::Render, e))?;
    let music = match &chosen {
        Some(m) => Some(
            services
                .digests()
                .file(&m.path)
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
    let Some(lufs) = narration.lufs else {
        return Err(Halt::failed(
            Stage::Render,
            "the narration carries no loudness measurement (`lufs`); the voice stage records one",
        ));
    };
    let store_dir = job.artifacts_dir();
    let needed = expected_bytes(spec, narration.duration);
    let clips = &inputs.footage.clips;
    let captions = inputs.captions.clone();
    let cuts = cuts(inputs.footage, inputs.script, narration);
    let hit = job
        .cached(Stage::Render, &key, Some(expires), |work| {
            let captions = captions.clone();
            let chosen = chosen.clone();
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
                r.narration_lufs = Some(lufs);
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
                if let Some(m) = &chosen {
                    r.music = Some(m.path.clone());
                    r.music_volume = m.volume;
                }
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
                // After the size: the hook is laid out for the frame.
                if let Some(hook) = spec.hook.as_ref().filter(|h| !h.text.is_empty()) {
                    let path = work.join(HOOK_FILE);
                    let (w, h) = (r.width, r.height);
                    let script =
                        crate::media::hook_ass(&hook.text, hook.seconds, &hook_font(spec), w, h);
                    tokio::fs::write(&path, script)
                        .await
                        .map_err(|e| ProviderError::io("render", &path, &e))?;
                    r.hook = Some(path);
                }
                let shares = crate::media::frame_shares(&r);
                let durations: Vec<f64> = clips.iter().map(|c| c.duration).collect();
                r.starts = clip_starts(&durations, &shares, r.fps);
                // The plan: on which frame each clip starts, for which scene, and from
                // where in the clip.
                let fps = f64::from(r.fps);
                let mut frame = 0;
                let plan: Vec<serde_json::Value> = shares
                    .into_iter()
                    .zip(clips)
                    .zip(&r.starts)
                    .enumerate()
                    .map(|(i, ((frames, clip), from))| {
                        let entry = json!({
                            "clip": clip.source_id,
                            "scene": inputs.footage.scenes.get(i),
                            "frame": frame,
                            "at": frame as f64 / fps,
                            "from": from,
                        });
                        frame += frames;
                        entry
                    })
                    .collect();
                let renderer = services.renderer();
                renderer.render(&r).await?;
                renderer
                    .cover(&r.out, crate::media::COVER_SECONDS, &work.join(COVER))
                    .await?;
                let mut output = json!({
                    "file": FILE,
                    "cover": COVER,
                    "seconds": narration.duration,
                    "clips": plan,
                });
                if let Some(m) = &chosen {
                    output["music"] = json!(m.name);
                }
                Ok::<_, ProviderError>(Built {
                    main: FILE.to_owned(),
                    output,
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

    fn spec_with(template_extra: &str) -> JobSpec {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.yaml");
        std::fs::write(
            &path,
            format!(
                "version: 1\nname: h\nvoices:\n  v: {{ provider: espeak, voice: en-us }}\ntemplates:\n  t:\n    script: {{ provider: offline }}\n    title: \"{{{{ topic }}}}: the quick tip\"\n{template_extra}batch:\n  template: t\n  matrix: {{ topic: [Owls], voice: [v] }}\n"
            ),
        )
        .unwrap();
        let (recipes, diags) = crate::cli::load_all(&[path]);
        assert!(diags.is_empty(), "{diags:?}");
        recipes[0].jobs[0].spec.clone()
    }

    #[test]
    fn the_hook_is_rendered_from_the_title_and_keys_only_the_jobs_that_have_one() {
        let plain = spec_with("");
        let hooked = spec_with("    hook: { text: \"{{ title | upper }} ({{ seconds }} s)\" }\n");
        let hook = hooked.hook.as_ref().unwrap();
        assert_eq!(hook.text, "OWLS: THE QUICK TIP (30 s)");
        assert!((hook.seconds - 2.5).abs() < f64::EPSILON);
        let versions = ToolVersions::default();
        let key_of =
            |spec: &JobSpec, versions: &ToolVersions| key(spec, "f", "v", "c", None, versions);
        // Without a hook, the inputs are what they were: no `hook` part at all.
        let names: Vec<String> = inputs(&plain, "f", "v", "c", None, &versions)
            .parts
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert!(!names.iter().any(|n| n == "hook"), "{names:?}");
        assert_ne!(key_of(&plain, &versions), key_of(&hooked, &versions));
        let longer = spec_with("    hook: { text: \"{{ title }}\", seconds: 3 }\n");
        let shorter = spec_with("    hook: { text: \"{{ title }}\", seconds: 2 }\n");
        assert_ne!(key_of(&longer, &versions), key_of(&shorter, &versions));
        // The font the hook is drawn in is part of its key, not of the others'.
        let other_font = ToolVersions {
            font: "DejaVuSans-Bold.ttf 1".into(),
            ..ToolVersions::default()
        };
        assert_ne!(key_of(&hooked, &versions), key_of(&hooked, &other_font));
        assert_eq!(key_of(&plain, &versions), key_of(&plain, &other_font));
    }

    #[test]
    fn the_music_is_the_file_the_folders_pick_or_the_shorthand() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("music")).unwrap();
        for name in ["b.mp3", "a.MP3", ".c.mp3", "cover.jpg"] {
            std::fs::write(dir.path().join("music").join(name), "x").unwrap();
        }
        std::fs::create_dir(dir.path().join("music/sub.mp3")).unwrap();
        assert_eq!(
            music_files(&dir.path().join("music")).unwrap(),
            ["a.MP3", "b.mp3"]
        );
        let mut spec = spec_with("");
        assert!(!has_music(&spec));
        assert_eq!(music(&spec, "id", dir.path()), Ok(None));
        spec.video.music = Some("lofi.mp3".into());
        let shorthand = music(&spec, "id", dir.path()).unwrap().unwrap();
        assert_eq!(shorthand.name, "lofi.mp3");
        assert_eq!(shorthand.path, dir.path().join("lofi.mp3"));
        assert!((shorthand.volume - 0.3).abs() < 1e-9);
        spec.video.music = None;
        spec.music = Some(crate::recipe::MusicDef {
            file: None,
            dir: Some("music/".into()),
            volume: 0.15,
        });
        assert!(has_music(&spec));
        for id in ["0000000000000001", "fedcba9876543210", "3f2a9c1b7d04e5f6"] {
            let chosen = music(&spec, id, dir.path()).unwrap().unwrap();
            let expected = ["music/a.MP3", "music/b.mp3"][pick(id, 2)];
            assert_eq!(chosen.name, expected);
            assert_eq!(chosen.path, dir.path().join(expected));
            assert!((chosen.volume - 0.15).abs() < 1e-9);
        }
        // The folder is in the key through `music_def`; the shorthand adds no part.
        let names = |spec: &JobSpec| -> Vec<String> {
            inputs(
                spec,
                "f",
                "v",
                "c",
                Some("digest"),
                &ToolVersions::default(),
            )
            .parts
            .into_iter()
            .map(|(name, _)| name)
            .collect()
        };
        assert!(names(&spec).contains(&"music_def".to_owned()));
        spec.music = None;
        spec.video.music = Some("lofi.mp3".into());
        assert!(!names(&spec).contains(&"music_def".to_owned()));
        std::fs::remove_file(dir.path().join("music/a.MP3")).unwrap();
        std::fs::remove_file(dir.path().join("music/b.mp3")).unwrap();
        spec.video.music = None;
        spec.music = Some(crate::recipe::MusicDef {
            file: None,
            dir: Some("music".into()),
            volume: 0.3,
        });
        let error = music(&spec, "id", dir.path()).unwrap_err();
        assert!(
            error.starts_with("the music folder `music` holds no music files"),
            "{error}"
        );
    }

    #[test]
    fn clips_are_entered_past_their_first_second_where_they_have_room() {
        // 30 fps: a share of 58 frames reads 60, two seconds.
        assert_eq!(
            clip_starts(&[10.0, 2.5, 1.5, 0.0, f64::NAN], &[58; 5], 30),
            [1.0, 0.5, 0.0, 0.0, 0.0]
        );
        // Deterministic, and never past what the clip can spare.
        assert_eq!(clip_starts(&[2.7], &[58], 30), [0.7]);
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
            lufs: None,
        };
        // The third scene had no clip of its own: the second clip runs on through it.
        let footage = Footage {
            clips: vec![clip("a"), clip("b"), clip("d")],
            scenes: vec![0, 1, 3],
            ..Footage::default()
        };
        assert_eq!(cuts(&footage, &script, &narration), [1.0, 3.5]);
        let even = Footage {
            clips: footage.clips.clone(),
            ..Footage::default()
        };
        assert!(cuts(&even, &script, &narration).is_empty());
    }
}
