//! Footage without a stock service: clips from a local folder, or patterns generated
//! with ffmpeg's lavfi sources.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{Sequence, permanent};
use crate::media::still::{STILL_EXTENSIONS, is_still};
use crate::media::{Tools, media_url, run, verify_media};
use crate::providers::{Clip, FootageRequest, FootageSource, ProviderError};

const LOCAL: &str = "local footage";
const GENERATED: &str = "generated footage";

const VIDEO_EXTENSIONS: &[&str] = &["mp4", "m4v", "mov", "webm", "mkv"];

/// Clips from a folder of video files and pictures (shown as stills, moved by the
/// render). Each job starts at a different file (by its
/// variant) and skips files already used elsewhere in the batch while others remain.
/// A folder with fewer files than asked for gives all of them.
#[derive(Debug, Clone)]
pub struct LocalFootage {
    pub tools: Tools,
    pub dir: PathBuf,
}

impl LocalFootage {
    pub fn new(tools: Tools, dir: impl Into<PathBuf>) -> Self {
        Self {
            tools,
            dir: dir.into(),
        }
    }

    /// The folder's video files and pictures, sorted by name.
    async fn files(&self) -> Result<Vec<PathBuf>, ProviderError> {
        let unreadable = |error: std::io::Error| {
            ProviderError::permanent(
                LOCAL,
                format!("cannot read `{}`: {error}", self.dir.display()),
            )
        };
        let mut entries = tokio::fs::read_dir(&self.dir).await.map_err(unreadable)?;
        let mut files = Vec::new();
        while let Some(entry) = entries.next_entry().await.map_err(unreadable)? {
            let path = entry.path();
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            let video = path
                .extension()
                .and_then(|ext| ext.to_str())
                .is_some_and(|ext| VIDEO_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()))
                || is_still(&path);
            if video && !hidden && entry.file_type().await.map_err(unreadable)?.is_file() {
                files.push(path);
            }
        }
        files.sort();
        if files.is_empty() {
            return Err(ProviderError::permanent(
                LOCAL,
                format!(
                    "no video files ({}) or pictures ({}) in `{}`",
                    VIDEO_EXTENSIONS.join(", "),
                    STILL_EXTENSIONS.join(", "),
                    self.dir.display()
                ),
            ));
        }
        Ok(files)
    }
}

#[async_trait]
impl FootageSource for LocalFootage {
    async fn fetch(
        &self,
        request: &FootageRequest,
        dir: &Path,
    ) -> Result<Vec<Clip>, ProviderError> {
        let files = self.files().await?;
        let mut clips = Vec::new();
        for (n, file) in choose(&files, request).into_iter().enumerate() {
            let info = verify_media(&self.tools, file)
                .await
                .map_err(permanent(LOCAL))?;
            if info.video.is_none() {
                return Err(ProviderError::permanent(
                    LOCAL,
                    format!("`{}` has no video stream", file.display()),
                ));
            }
            let name = file.file_name().unwrap_or_default().to_string_lossy();
            let dest = dir.join(format!("{n:02}-{name}"));
            link_or_copy(file, &dest).await?;
            clips.push(Clip {
                path: dest,
                source_id: source_id(file),
                // A picture lasts as long as its scene.
                duration: if is_still(file) { 0.0 } else { info.duration },
                credit: None,
            });
        }
        Ok(clips)
    }
}

fn source_id(file: &Path) -> String {
    format!(
        "local:{}",
        file.file_name().unwrap_or_default().to_string_lossy()
    )
}

/// Rotates the sorted files by the job's variant, then puts files used elsewhere last.
fn choose<'a>(files: &'a [PathBuf], request: &FootageRequest) -> Vec<&'a PathBuf> {
    let start = (request.variant % files.len() as u64) as usize;
    let rotated = files[start..].iter().chain(&files[..start]);
    let (fresh, used): (Vec<&PathBuf>, Vec<&PathBuf>) =
        rotated.partition(|file| !request.avoid.contains(&source_id(file)));
    fresh
        .into_iter()
        .chain(used)
        .take(request.clips as usize)
        .collect()
}

/// A hard link costs no space; across file systems it fails, and a copy does instead.
async fn link_or_copy(from: &Path, to: &Path) -> Result<(), ProviderError> {
    if tokio::fs::hard_link(from, to).await.is_ok() {
        return Ok(());
    }
    tokio::fs::copy(from, to).await.map(drop).map_err(|error| {
        ProviderError::permanent(
            LOCAL,
            format!(
                "cannot copy `{}` to `{}`: {error}",
                from.display(),
                to.display()
            ),
        )
    })
}

/// Abstract moving patterns made by ffmpeg: fractal zooms, cellular automata, colour
/// gradients, plasma. The job's variant picks the patterns, their parameters and a hue,
/// so every job's footage looks different while the same job always gets the same clips.
/// They are rendered small, since the render scales them up anyway.
#[derive(Debug, Clone)]
pub struct GeneratedFootage {
    pub tools: Tools,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

impl GeneratedFootage {
    /// 540×960 at 30 fps: a quarter of the final frame's pixels.
    pub fn new(tools: Tools) -> Self {
        Self {
            tools,
            width: 540,
            height: 960,
            fps: 30,
        }
    }

    /// The lavfi graph for each clip, and its source id.
    fn plan(&self, request: &FootageRequest) -> Vec<Planned> {
        let first = Sequence::new(request.variant).next();
        (0..u64::from(request.clips))
            .map(|n| {
                // Neighbouring clips of one job use different patterns.
                let pattern = &PATTERNS[((first.wrapping_add(n)) % PATTERNS.len() as u64) as usize];
                let mut seq = Sequence::new(first ^ n.wrapping_mul(0x2545_F491_4F6C_DD1D));
                // Redraw when the batch already has this exact clip; a few tries are plenty.
                let mut planned = self.draw(pattern, &mut seq);
                for _ in 0..8 {
                    if !request.avoid.contains(&planned.source_id) {
                        break;
                    }
                    planned = self.draw(pattern, &mut seq);
                }
                planned
            })
            .collect()
    }

    fn draw(&self, pattern: &Pattern, seq: &mut Sequence) -> Planned {
        let seed = seq.next() as u32;
        let mut params = Sequence::new(u64::from(seed));
        let source = (pattern.source)(&mut params, self.width, self.height, self.fps);
        let hue = params.below(360);
        Planned {
            graph: format!("{source},hue=h={hue},format=yuv420p"),
            source_id: format!("generated:{}-{seed}", pattern.name),
        }
    }
}

struct Planned {
    graph: String,
    source_id: String,
}

/// The longest clip generated. The render loops a clip shorter than its share, so a long
/// video costs at most `clips` × this, never one clip rendered for the whole narration
/// (600 s of fractal took over 12 minutes).
const LONGEST_CLIP_SECONDS: f64 = 30.0;

/// One clip to render: where, what it is, and the ffmpeg arguments that make it.
struct Command {
    path: PathBuf,
    source_id: String,
    args: Vec<OsString>,
}

impl GeneratedFootage {
    /// How long each clip is: its share of the narration, at least a second and at most
    /// [`LONGEST_CLIP_SECONDS`], in whole frames.
    fn clip_seconds(&self, request: &FootageRequest) -> f64 {
        let fps = f64::from(self.fps);
        let share = if request.min_clip_seconds.is_finite() {
            request.min_clip_seconds
        } else {
            LONGEST_CLIP_SECONDS
        };
        (share.clamp(1.0, LONGEST_CLIP_SECONDS) * fps).ceil() / fps
    }

    fn commands(&self, request: &FootageRequest, dir: &Path) -> Vec<Command> {
        let seconds = self.clip_seconds(request);
        self.plan(request)
            .into_iter()
            .enumerate()
            .map(|(n, planned)| {
                let path = dir.join(format!("generated-{n:02}.mp4"));
                let args: Vec<OsString> = vec![
                    "-nostdin".into(),
                    "-hide_banner".into(),
                    "-v".into(),
                    "error".into(),
                    "-f".into(),
                    "lavfi".into(),
                    "-i".into(),
                    planned.graph.into(),
                    "-t".into(),
                    format!("{seconds:.3}").into(),
                    "-c:v".into(),
                    "libx264".into(),
                    "-preset".into(),
                    "veryfast".into(),
                    "-crf".into(),
                    "23".into(),
                    "-an".into(),
                    "-movflags".into(),
                    "+faststart".into(),
                    "-y".into(),
                    media_url(&path),
                ];
                Command {
                    path,
                    source_id: planned.source_id,
                    args,
                }
            })
            .collect()
    }
}

#[async_trait]
impl FootageSource for GeneratedFootage {
    async fn fetch(
        &self,
        request: &FootageRequest,
        dir: &Path,
    ) -> Result<Vec<Clip>, ProviderError> {
        let mut clips = Vec::new();
        for command in self.commands(request, dir) {
            run(&self.tools.ffmpeg, command.args)
                .await
                .map_err(permanent(GENERATED))?;
            let info = verify_media(&self.tools, &command.path)
                .await
                .map_err(permanent(GENERATED))?;
            clips.push(Clip {
                path: command.path,
                source_id: command.source_id,
                duration: info.duration,
                credit: None,
            });
        }
        Ok(clips)
    }
}

struct Pattern {
    name: &'static str,
    /// The lavfi source for a `width`×`height` clip at `fps`, parameters drawn from the
    /// sequence.
    source: fn(&mut Sequence, u32, u32, u32) -> String,
}

const PATTERNS: &[Pattern] = &[
    Pattern {
        name: "mandelbrot",
        source: mandelbrot,
    },
    Pattern {
        name: "life",
        source: life,
    },
    Pattern {
        name: "gradients",
        source: gradients,
    },
    Pattern {
        name: "cellauto",
        source: cellauto,
    },
    Pattern {
        name: "plasma",
        source: plasma,
    },
    Pattern {
        name: "testsrc2",
        source: testsrc2,
    },
];

fn colour(seq: &mut Sequence) -> String {
    format!("0x{:06X}", seq.next() & 0xFF_FFFF)
}

/// A zoom into one of a few points on the set's edge, where the detail is.
fn mandelbrot(seq: &mut Sequence, w: u32, h: u32, fps: u32) -> String {
    const POINTS: [(f64, f64); 4] = [
        (-0.743_644, -0.131_826),
        (-0.775_684, 0.136_467),
        (-1.768_779, -0.001_739),
        (-0.101_096, 0.956_286),
    ];
    let (x, y) = POINTS[seq.below(POINTS.len())];
    let start = seq.between(0.5, 2.0);
    format!(
        "mandelbrot=s={w}x{h}:rate={fps}:maxiter=300:start_x={x}:start_y={y}:\
         start_scale={start}:end_scale=0.01:end_pts={}",
        fps * 40
    )
}

/// Game of life on a coarse grid, scaled up with hard pixel edges.
fn life(seq: &mut Sequence, w: u32, h: u32, fps: u32) -> String {
    format!(
        "life=s={}x{}:rate={fps}:mold=12:ratio={}:seed={}:life_color={}:death_color={}:\
         mold_color={},scale={w}:{h}:flags=neighbor",
        w / 6,
        h / 6,
        seq.between(0.15, 0.5),
        seq.next() as u32,
        colour(seq),
        colour(seq),
        colour(seq),
    )
}

fn gradients(seq: &mut Sequence, w: u32, h: u32, fps: u32) -> String {
    format!(
        "gradients=s={w}x{h}:rate={fps}:n={}:seed={}:speed={}:type={}",
        2 + seq.below(4),
        seq.next() as u32,
        seq.between(0.01, 0.05),
        seq.below(4),
    )
}

/// An elementary automaton scrolling down, black and white recoloured to two colours.
fn cellauto(seq: &mut Sequence, w: u32, h: u32, fps: u32) -> String {
    const RULES: [u32; 6] = [18, 30, 45, 90, 110, 150];
    let [on, off] = [seq.next(), seq.next()].map(|c| c & 0xFF_FFFF);
    let channel = |shift: u32| {
        format!(
            "if(gt(val\\,127)\\,{}\\,{})",
            (on >> shift) & 0xFF,
            (off >> shift) & 0xFF
        )
    };
    format!(
        "cellauto=s={}x{}:rate={fps}:rule={}:seed={}:start_full=1,scale={w}:{h}:flags=neighbor,\
         format=rgb24,lutrgb=r={}:g={}:b={}",
        w / 4,
        h / 4,
        RULES[seq.below(RULES.len())],
        seq.next() as u32,
        channel(16),
        channel(8),
        channel(0),
    )
}

/// Interfering sine waves, computed on a small grid (the expression is evaluated per
/// pixel) and smoothly scaled up.
fn plasma(seq: &mut Sequence, w: u32, h: u32, fps: u32) -> String {
    let mut wave = |axis: &str| {
        format!(
            "128+127*sin({axis}/{}+T*{})",
            seq.between(8.0, 40.0),
            seq.between(0.5, 3.0)
        )
    };
    format!(
        "nullsrc=s={}x{}:rate={fps},format=gbrp,geq=r='{}':g='{}':b='{}',scale={w}:{h}",
        w / 3,
        h / 3,
        wave("X"),
        wave("Y"),
        wave("(X+Y)")
    )
}

fn testsrc2(_: &mut Sequence, w: u32, h: u32, fps: u32) -> String {
    format!("testsrc2=s={w}x{h}:rate={fps}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::testing;

    fn request(clips: u32, variant: u64) -> FootageRequest {
        FootageRequest {
            query: "anything".into(),
            clips,
            min_clip_seconds: 1.0,
            avoid: Vec::new(),
            variant,
        }
    }

    /// The `-t` of each ffmpeg command for a request whose share per clip is `share`.
    fn generated_lengths(clips: u32, share: f64) -> Vec<f64> {
        let footage = GeneratedFootage::new(testing::tools());
        let request = FootageRequest {
            min_clip_seconds: share,
            ..request(clips, 3)
        };
        footage
            .commands(&request, Path::new("/work"))
            .iter()
            .map(|command| {
                let at = command.args.iter().position(|a| a == "-t").unwrap();
                command.args[at + 1].to_str().unwrap().parse().unwrap()
            })
            .collect()
    }

    #[test]
    fn generated_footage_is_rendered_for_the_whole_length_per_clip() {
        // `seconds: 600`: the footage stage asks for the share per clip, 600 / clips.
        for clips in [4, 2, 1] {
            let lengths = generated_lengths(clips, 600.0 / f64::from(clips));
            assert_eq!(lengths.len(), clips as usize);
            for length in &lengths {
                assert!(*length <= 150.0, "{clips} clips: {lengths:?}");
                assert!(*length >= 1.0, "{clips} clips: {lengths:?}");
            }
            assert!(lengths.iter().sum::<f64>() <= 4.0 * 150.0, "{lengths:?}");
        }
        // A short share is met exactly, in whole frames, and never under a second.
        assert_eq!(generated_lengths(3, 5.0), vec![5.0; 3]);
        assert_eq!(generated_lengths(1, 0.2), vec![1.0]);
        assert_eq!(generated_lengths(1, 2.51), vec![2.533]);
    }

    #[test]
    fn the_plan_depends_only_on_the_variant() {
        let footage = GeneratedFootage::new(testing::tools());
        let ids = |request: &FootageRequest| -> Vec<String> {
            footage
                .plan(request)
                .into_iter()
                .map(|p| p.source_id)
                .collect()
        };
        let first = ids(&request(4, 1));
        assert_eq!(first, ids(&request(4, 1)));
        assert_ne!(first, ids(&request(4, 2)));
        // Four clips of one job come from four different patterns.
        let mut patterns: Vec<&str> = first
            .iter()
            .map(|id| id.rsplit_once('-').unwrap().0)
            .collect();
        patterns.dedup();
        assert_eq!(patterns.len(), 4, "{first:?}");
        let avoiding = FootageRequest {
            avoid: vec![first[0].clone()],
            ..request(4, 1)
        };
        let second = ids(&avoiding);
        assert_ne!(second[0], first[0]);
        assert_eq!(second[1..], first[1..]);
    }

    #[tokio::test]
    async fn every_pattern_renders() {
        let tools = testing::tools();
        let footage = GeneratedFootage {
            width: 180,
            height: 320,
            ..GeneratedFootage::new(tools.clone())
        };
        let dir = tempfile::tempdir().unwrap();
        let clips = footage
            .fetch(&request(PATTERNS.len() as u32, 5), dir.path())
            .await
            .unwrap();
        assert_eq!(clips.len(), PATTERNS.len());
        for clip in &clips {
            assert!(clip.path.starts_with(dir.path()));
            assert!((clip.duration - 1.0).abs() < 0.1, "{clip:?}");
            assert!(clip.credit.is_none());
            let info = crate::media::probe(&tools, &clip.path).await.unwrap();
            assert_eq!(info.video.unwrap().width, 180);
        }
    }

    #[tokio::test]
    async fn two_variants_look_different() {
        let tools = testing::tools();
        let footage = GeneratedFootage::new(tools.clone());
        let dir = tempfile::tempdir().unwrap();
        let (one, two) = (dir.path().join("one"), dir.path().join("two"));
        std::fs::create_dir(&one).unwrap();
        std::fs::create_dir(&two).unwrap();
        let a = footage.fetch(&request(1, 1), &one).await.unwrap();
        let b = footage.fetch(&request(1, 2), &two).await.unwrap();
        assert_ne!(a[0].source_id, b[0].source_id);
        let a = testing::frame(&tools, &a[0].path, 0.5, 54, 96).await;
        let b = testing::frame(&tools, &b[0].path, 0.5, 54, 96).await;
        let changed = testing::differing_pixels(&a, &b);
        assert!(changed > 54 * 96 / 4, "only {changed} pixels differ");
    }

    async fn folder(tools: &Tools, names: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for name in names {
            testing::clip(
                tools,
                "testsrc2=s=160x284:rate=25",
                1.0,
                &dir.path().join(name),
            )
            .await;
        }
        dir
    }

    #[tokio::test]
    async fn local_clips_rotate_by_variant_and_skip_used_ones() {
        let tools = testing::tools();
        let source = folder(&tools, &["b.mp4", "a.mp4", "c.MOV"]).await;
        std::fs::write(source.path().join("notes.txt"), "not a clip").unwrap();
        std::fs::write(source.path().join(".hidden.mp4"), "not a clip").unwrap();
        let footage = LocalFootage::new(tools, source.path());

        let out = tempfile::tempdir().unwrap();
        let clips = footage.fetch(&request(2, 1), out.path()).await.unwrap();
        let ids: Vec<&str> = clips.iter().map(|c| c.source_id.as_str()).collect();
        assert_eq!(ids, ["local:b.mp4", "local:c.MOV"]);
        assert_eq!(clips[0].path, out.path().join("00-b.mp4"));
        assert_eq!(
            std::fs::read(&clips[0].path).unwrap(),
            std::fs::read(source.path().join("b.mp4")).unwrap()
        );
        assert!((clips[1].duration - 1.0).abs() < 0.1);

        let out = tempfile::tempdir().unwrap();
        let avoiding = FootageRequest {
            avoid: vec!["local:b.mp4".into()],
            ..request(5, 1)
        };
        let clips = footage.fetch(&avoiding, out.path()).await.unwrap();
        let ids: Vec<&str> = clips.iter().map(|c| c.source_id.as_str()).collect();
        assert_eq!(ids, ["local:c.MOV", "local:a.mp4", "local:b.mp4"]);
    }

    #[tokio::test]
    async fn local_pictures_are_clips_beside_the_videos() {
        let tools = testing::tools();
        let source = folder(&tools, &["b.mp4"]).await;
        for name in ["a.png", "c.JPG", "d.webp"] {
            let path = source.path().join(name);
            run(
                &tools.ffmpeg,
                [
                    "-v",
                    "error",
                    "-f",
                    "lavfi",
                    "-i",
                    "testsrc2=s=90x160",
                    "-frames:v",
                    "1",
                    "-y",
                ]
                .map(OsString::from)
                .into_iter()
                .chain([media_url(&path)]),
            )
            .await
            .unwrap();
        }
        std::fs::write(source.path().join("e.gif"), "not taken").unwrap();
        let footage = LocalFootage::new(tools, source.path());
        let out = tempfile::tempdir().unwrap();
        let clips = footage.fetch(&request(5, 0), out.path()).await.unwrap();
        let ids: Vec<&str> = clips.iter().map(|c| c.source_id.as_str()).collect();
        assert_eq!(
            ids,
            ["local:a.png", "local:b.mp4", "local:c.JPG", "local:d.webp"]
        );
        assert_eq!(
            clips[0].duration, 0.0,
            "a picture lasts as long as its scene"
        );
        assert!(clips[1].duration > 0.5);
        assert!(crate::media::still::is_still(&clips[2].path));

        std::fs::write(source.path().join("f.png"), "not a picture").unwrap();
        let out = tempfile::tempdir().unwrap();
        let error = footage.fetch(&request(6, 0), out.path()).await.unwrap_err();
        assert!(error.to_string().contains("f.png"), "{error}");
    }

    #[tokio::test]
    async fn a_corrupt_local_clip_is_a_permanent_error_naming_it() {
        let tools = testing::tools();
        let source = folder(&tools, &["a.mp4"]).await;
        std::fs::write(source.path().join("b.mp4"), "definitely not a video").unwrap();
        let footage = LocalFootage::new(tools, source.path());
        let out = tempfile::tempdir().unwrap();
        let error = footage.fetch(&request(2, 0), out.path()).await.unwrap_err();
        assert!(
            matches!(&error, ProviderError::Permanent { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("b.mp4"), "{error}");
    }

    #[tokio::test]
    async fn an_empty_folder_is_a_permanent_error() {
        let source = tempfile::tempdir().unwrap();
        let footage = LocalFootage::new(testing::tools(), source.path());
        let out = tempfile::tempdir().unwrap();
        let error = footage.fetch(&request(1, 0), out.path()).await.unwrap_err();
        assert!(
            matches!(&error, ProviderError::Permanent { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("no video files"), "{error}");
        assert!(error.to_string().contains("or pictures (jpg"), "{error}");
    }
}
