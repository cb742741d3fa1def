//! The render: one ffmpeg process, one filter graph. Clips are filled to the frame,
//! cut to share the narration, joined, captioned; the narration (with music ducked under
//! it) is normalized for phone speakers; the result is H.264 + AAC ready for upload.

use std::ffi::OsString;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use super::gates::{GateSpec, analyze, judge};
use super::probe::{Limits, MediaInfo, check, verify_media};
use super::tools::{media_url, run};
use super::{MediaError, Tools};

/// Integrated loudness the platforms normalize speech to, and the peak level the
/// limiter holds the voice under.
pub const TARGET_LUFS: f64 = -14.0;
const PEAK_LIMIT: f64 = 0.84;
/// The most gain a narration is given: one that needs more is near silence, and the
/// loudness gate says so rather than the render amplifying noise.
const MAX_GAIN_DB: f64 = 30.0;
/// Music sits about 10 dB under the voice before ducking pulls it further down.
const MUSIC_GAIN: f64 = 0.3;
const MUSIC_FADE_SECONDS: f64 = 2.0;
const AUDIO_RATE: u32 = 48_000;
const AUDIO_BITRATE: &str = "160k";

#[derive(Debug, Clone, PartialEq)]
pub struct RenderSpec {
    /// Shown in order, each for an equal share of the narration unless `cuts` says
    /// otherwise; a clip shorter than its share loops.
    pub clips: Vec<PathBuf>,
    /// When each clip after the first starts, in seconds (the scenes' starts in the
    /// narration): one per clip but the first, rounded to the nearest frame. Empty for
    /// equal shares.
    pub cuts: Vec<f64>,
    pub narration: PathBuf,
    /// The video's length.
    pub narration_seconds: f64,
    /// An ASS script to burn in.
    pub captions: Option<PathBuf>,
    /// The narration's integrated loudness (LUFS), measured once; the render applies the
    /// gain that brings it to the target. Measured by the render when `None`.
    pub narration_lufs: Option<f64>,
    /// Looped under the narration and ducked while the voice speaks.
    pub music: Option<PathBuf>,
    /// The quality gates the output must pass before it counts; `None` renders without
    /// them.
    pub gates: Option<GateSpec>,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// The x264 preset.
    pub preset: String,
    pub crf: u8,
    pub out: PathBuf,
}

impl RenderSpec {
    /// A 1080×1920, 30 fps render with no captions and no music.
    pub fn new(
        clips: Vec<PathBuf>,
        narration: PathBuf,
        narration_seconds: f64,
        out: PathBuf,
    ) -> Self {
        Self {
            clips,
            cuts: Vec::new(),
            narration,
            narration_seconds,
            captions: None,
            narration_lufs: None,
            music: None,
            gates: None,
            width: 1080,
            height: 1920,
            fps: 30,
            preset: "veryfast".to_string(),
            crf: 21,
            out,
        }
    }

    fn validate(&self) -> Result<(), MediaError> {
        let invalid = |message: String| Err(MediaError::Invalid(message));
        if self.clips.is_empty() {
            return invalid("a render needs at least one clip".into());
        }
        if !self.cuts.is_empty() && self.cuts.len() + 1 != self.clips.len() {
            return invalid(format!(
                "{} cuts for {} clips; a cut starts every clip but the first",
                self.cuts.len(),
                self.clips.len()
            ));
        }
        if self.cuts.iter().any(|c| !c.is_finite()) {
            return invalid("a cut time is not a number".into());
        }
        if !(self.narration_seconds > 0.0 && self.narration_seconds.is_finite()) {
            return invalid(format!(
                "narration length {} s is not positive",
                self.narration_seconds
            ));
        }
        // yuv420p halves the chroma planes, so odd sizes cannot be encoded.
        if self.width == 0 || self.height == 0 || self.width % 2 == 1 || self.height % 2 == 1 {
            return invalid(format!(
                "frame size {}×{} must be even and non-zero",
                self.width, self.height
            ));
        }
        if !(23..=60).contains(&self.fps) {
            return invalid(format!("frame rate {} is outside TikTok's 23–60", self.fps));
        }
        if self.crf > 51 {
            return invalid(format!("crf {} is over 51", self.crf));
        }
        if self.preset.is_empty() || !self.preset.chars().all(|c| c.is_ascii_alphanumeric()) {
            return invalid(format!("`{}` is not an x264 preset", self.preset));
        }
        if let Some(captions) = &self.captions
            && captions.to_str().is_none()
        {
            return invalid(format!(
                "captions path `{}` is not UTF-8",
                captions.display()
            ));
        }
        Ok(())
    }

    /// What the output must satisfy: the spec's frame, TikTok's frame rates and codecs,
    /// and the narration's length to within a frame (plus the encoder's audio padding).
    fn limits(&self) -> Limits {
        let slack = 1.0 / f64::from(self.fps) + 0.1;
        Limits {
            width: self.width,
            height: self.height,
            min_fps: 23.0,
            max_fps: 60.0,
            min_seconds: self.narration_seconds - slack,
            max_seconds: self.narration_seconds + slack,
        }
    }
}

/// The ffmpeg arguments that render `spec` to `spec.out`.
pub fn render_args(spec: &RenderSpec) -> Vec<OsString> {
    args(spec, &spec.out)
}

/// Renders `spec` into a temporary file beside `spec.out`, verifies it decodes, meets
/// the limits and passes the gates, then renames it into place. A failure, or dropping
/// the future (which kills ffmpeg), never leaves a file at `spec.out`.
pub async fn render(tools: &Tools, spec: &RenderSpec) -> Result<MediaInfo, MediaError> {
    spec.validate()?;
    let mut measured;
    let spec = if spec.narration_lufs.is_none() {
        measured = spec.clone();
        measured.narration_lufs = Some(super::integrated_lufs(tools, &spec.narration).await?);
        &measured
    } else {
        spec
    };
    let dir = match spec.out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let io_error = |source| MediaError::Io {
        path: spec.out.clone(),
        source,
    };
    let temp = tempfile::Builder::new()
        .prefix(".render-")
        .suffix(".mp4")
        .tempfile_in(dir)
        .map_err(io_error)?;
    let rendered = run(&tools.ffmpeg, args(spec, temp.path())).await?;
    let info = verify_media(tools, temp.path()).await?;
    check(&info, &spec.limits()).map_err(|problems| MediaError::Limits {
        path: spec.out.clone(),
        problems,
    })?;
    if let Some(gates) = &spec.gates {
        let log = String::from_utf8_lossy(&rendered.stderr);
        let analysis = analyze(tools, temp.path(), &log, info.duration).await?;
        let captions =
            match &gates.captions {
                Some((path, _)) => {
                    Some(tokio::fs::read_to_string(path).await.map_err(|source| {
                        MediaError::Io {
                            path: path.clone(),
                            source,
                        }
                    })?)
                }
                None => None,
            };
        let failed = judge(&analysis, gates, captions.as_deref());
        if !failed.is_empty() {
            return Err(MediaError::Gates(failed));
        }
    }
    temp.persist(&spec.out)
        .map_err(|error| io_error(error.error))?;
    Ok(info)
}

fn args(spec: &RenderSpec, output: &Path) -> Vec<OsString> {
    let frames = frame_shares(spec);
    let used: Vec<(&PathBuf, u64)> = spec
        .clips
        .iter()
        .zip(frames)
        .filter(|(_, frames)| *frames > 0)
        .collect();
    // The picture detectors log at `info`.
    let level = if spec.gates.is_some() {
        "info"
    } else {
        "error"
    };
    let mut args: Vec<OsString> = [
        "-nostdin",
        "-hide_banner",
        "-nostats",
        "-loglevel",
        level,
        "-y",
    ]
    .map(OsString::from)
    .to_vec();
    for (clip, frames) in &used {
        // Looping every clip costs nothing when it is long enough; `-t` on the input
        // stops the demuxer a couple of frames past its share (`trim` cuts exactly), so
        // no clip is read beyond what is shown.
        let seconds = (*frames + 2) as f64 / f64::from(spec.fps);
        args.extend([
            "-stream_loop".into(),
            "-1".into(),
            "-t".into(),
            format!("{seconds:.3}").into(),
            "-i".into(),
            media_url(clip),
        ]);
    }
    args.extend(["-i".into(), media_url(&spec.narration)]);
    if let Some(music) = &spec.music {
        args.extend([
            "-stream_loop".into(),
            "-1".into(),
            "-i".into(),
            media_url(music),
        ]);
    }
    args.extend(["-filter_complex".into(), filter_graph(spec, &used).into()]);
    let fps = spec.fps.to_string();
    args.extend(
        [
            "-map",
            "[vout]",
            "-map",
            "[aout]",
            "-c:v",
            "libx264",
            "-preset",
            &spec.preset,
            "-crf",
            &spec.crf.to_string(),
            "-profile:v",
            "high",
            "-pix_fmt",
            "yuv420p",
            "-r",
            &fps,
            "-c:a",
            "aac",
            "-b:a",
            AUDIO_BITRATE,
            "-ar",
            &AUDIO_RATE.to_string(),
            "-ac",
            "2",
            "-movflags",
            "+faststart",
            "-t",
            &format!("{:.3}", spec.narration_seconds),
            "-f",
            "mp4",
        ]
        .map(OsString::from),
    );
    args.push(media_url(output));
    args
}

/// Frames per clip, adding up to the narration's frame count so the joined video is
/// exactly as long as the narration: split at the cuts (each on its nearest frame), or
/// as evenly as whole frames allow when there are none.
pub fn frame_shares(spec: &RenderSpec) -> Vec<u64> {
    let fps = f64::from(spec.fps);
    let total = (spec.narration_seconds * fps - 1e-6).ceil().max(1.0) as u64;
    let count = spec.clips.len() as u64;
    if spec.cuts.is_empty() || spec.cuts.len() as u64 + 1 != count {
        return (0..count)
            .map(|i| total / count + u64::from(i < total % count))
            .collect();
    }
    let mut shares = Vec::with_capacity(spec.clips.len());
    let mut start = 0;
    for cut in &spec.cuts {
        let frame = ((cut * fps).round().max(0.0) as u64).clamp(start, total);
        shares.push(frame - start);
        start = frame;
    }
    shares.push(total - start);
    shares
}

fn filter_graph(spec: &RenderSpec, clips: &[(&PathBuf, u64)]) -> String {
    let (w, h, fps) = (spec.width, spec.height, spec.fps);
    let mut graph = String::new();
    for (i, (_, frames)) in clips.iter().enumerate() {
        // Frame rate first, so frames that would be dropped are never scaled; fill the
        // frame and crop the overflow, never letterbox.
        let _ = write!(
            graph,
            "[{i}:v]fps={fps},setpts=PTS-STARTPTS,trim=end_frame={frames},\
             scale={w}:{h}:force_original_aspect_ratio=increase,crop={w}:{h},setsar=1[v{i}];"
        );
    }
    for i in 0..clips.len() {
        let _ = write!(graph, "[v{i}]");
    }
    let _ = write!(graph, "concat=n={}:v=1:a=0", clips.len());
    if spec.gates.is_some() {
        let _ = write!(
            graph,
            ",split=2[pic][watch];[watch]{};[pic]null",
            super::gates::picture_detectors()
        );
    }
    if let Some(captions) = spec.captions.as_deref().and_then(Path::to_str) {
        let _ = write!(graph, ",ass=filename={}", filter_value(captions));
    }
    graph.push_str(",format=yuv420p[vout];");

    let narration = clips.len();
    let format =
        format!("aformat=sample_fmts=fltp:sample_rates={AUDIO_RATE}:channel_layouts=stereo");
    // The gain that brings the measured narration to the target, applied linearly to the
    // voice (so the ducking hears the voice as it will sound), and a limiter without its
    // auto-levelling that only catches the peaks.
    let gain = spec
        .narration_lufs
        .filter(|lufs| lufs.is_finite())
        .map_or(0.0, |lufs| (TARGET_LUFS - lufs).min(MAX_GAIN_DB));
    let voice = format!("[{narration}:a]{format},apad,volume={gain:.2}dB");
    let finish = format!(
        "alimiter=limit={PEAK_LIMIT}:attack=5:release=50:level=disabled,aresample={AUDIO_RATE}[aout]"
    );
    // `apad` covers a narration a few samples shorter than its stated length; `-t` cuts.
    if spec.music.is_some() {
        let music = narration + 1;
        // The bed fades out over the last two seconds (or the last third of a short video).
        let fade = MUSIC_FADE_SECONDS.min(spec.narration_seconds / 3.0);
        let fade_at = spec.narration_seconds - fade;
        let _ = write!(
            graph,
            "{voice},asplit=2[voice][key];\
             [{music}:a]{format},volume={MUSIC_GAIN},afade=t=out:st={fade_at:.3}:d={fade:.3}[bed];\
             [bed][key]sidechaincompress=threshold=0.02:ratio=10:attack=15:release=350[ducked];\
             [voice][ducked]amix=inputs=2:duration=first:dropout_transition=0:normalize=0,{finish}"
        );
    } else {
        let _ = write!(graph, "{voice},{finish}");
    }
    graph
}

/// Quotes a value for a filter option inside a filter graph: once for the option
/// parser (`\ ' :`), then once more for the graph parser (`\ ' [ ] , ;`), as the
/// ffmpeg-filters manual describes under "Notes on filtergraph escaping".
fn filter_value(value: &str) -> String {
    let escape = |text: &str, special: &[char]| {
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            if special.contains(&c) {
                out.push('\\');
            }
            out.push(c);
        }
        out
    };
    escape(
        &escape(value, &['\\', '\'', ':']),
        &['\\', '\'', '[', ']', ',', ';'],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::captions::{CaptionStyle, ass};
    use crate::media::probe::probe;
    use crate::media::{integrated_lufs, testing};
    use crate::providers::WordTiming;

    fn spec(clips: usize, seconds: f64) -> RenderSpec {
        RenderSpec::new(
            (0..clips)
                .map(|i| PathBuf::from(format!("/in/clip{i}.mp4")))
                .collect(),
            "/in/voice.wav".into(),
            seconds,
            "/out/video.mp4".into(),
        )
    }

    #[test]
    fn frames_split_evenly_and_add_up_to_the_narration() {
        let shares = frame_shares(&spec(3, 10.0));
        assert_eq!(shares, [100, 100, 100]);
        let shares = frame_shares(&spec(4, 3.55));
        assert_eq!(shares, [27, 27, 27, 26]);
        assert_eq!(shares.iter().sum::<u64>(), 107);
    }

    #[test]
    fn cuts_land_on_their_nearest_frame_and_shares_add_up() {
        let mut cut = spec(3, 10.0);
        cut.cuts = vec![2.51, 7.0];
        // 2.51 s is frame 75.3, so the second clip starts on frame 75.
        assert_eq!(frame_shares(&cut), [75, 135, 90]);
        // Out of order or past the end: clamped, never negative, still adding up.
        cut.cuts = vec![8.0, 4.0];
        assert_eq!(frame_shares(&cut), [240, 0, 60]);
        cut.cuts = vec![1.0];
        assert!(
            cut.validate()
                .unwrap_err()
                .to_string()
                .contains("1 cuts for 3 clips")
        );
    }

    #[test]
    fn one_invocation_with_one_graph() {
        let mut spec = spec(2, 3.0);
        spec.captions = Some("/tmp/job 1/captions.ass".into());
        spec.music = Some("/in/music.mp3".into());
        let args: Vec<String> = render_args(&spec)
            .into_iter()
            .map(|arg| arg.into_string().unwrap())
            .collect();
        assert_eq!(args.iter().filter(|a| *a == "-filter_complex").count(), 1);
        assert_eq!(args.iter().filter(|a| *a == "-stream_loop").count(), 3);
        // Each clip is read only for its share: 45 frames and two more at 30 fps.
        let joined = args.join(" ");
        assert!(
            joined.contains("-stream_loop -1 -t 1.567 -i file:/in/clip0.mp4"),
            "{joined}"
        );
        let graph = &args[args.iter().position(|a| a == "-filter_complex").unwrap() + 1];
        assert!(graph.contains("[0:v]fps=30,setpts=PTS-STARTPTS,trim=end_frame=45,scale=1080:1920:force_original_aspect_ratio=increase,crop=1080:1920,setsar=1[v0]"), "{graph}");
        assert!(graph.contains("[v0][v1]concat=n=2:v=1:a=0,ass=filename=/tmp/job 1/captions.ass,format=yuv420p[vout]"), "{graph}");
        assert!(
            graph.contains("[3:a]"),
            "music is the fourth input: {graph}"
        );
        assert!(graph.contains("sidechaincompress"), "{graph}");
        // Three seconds of video: the music fades over the last second.
        assert!(
            graph.contains("afade=t=out:st=2.000:d=1.000[bed]"),
            "{graph}"
        );
        // No loudnorm: the measured narration gets a linear gain, then a peak limiter.
        assert!(!graph.contains("loudnorm"), "{graph}");
        assert!(graph.contains("volume=0.00dB,asplit=2"), "{graph}");
        assert!(graph.contains("alimiter=limit=0.84"), "{graph}");
        let joined = args.join(" ");
        for expected in [
            "-c:v libx264 -preset veryfast -crf 21 -profile:v high -pix_fmt yuv420p",
            "-c:a aac",
            "-ar 48000 -ac 2",
            "-movflags +faststart",
            "-t 3.000",
        ] {
            assert!(joined.contains(expected), "{expected} in {joined}");
        }
        assert_eq!(args.last().unwrap(), "file:/out/video.mp4");
    }

    #[test]
    fn filter_values_are_escaped_for_both_parsers() {
        assert_eq!(filter_value("/a/b.ass"), "/a/b.ass");
        assert_eq!(filter_value("C:\\x"), "C\\\\:\\\\\\\\x");
        assert_eq!(filter_value("it's"), "it\\\\\\'s");
        assert_eq!(filter_value("a,b[c];d"), "a\\,b\\[c\\]\\;d");
    }

    #[test]
    fn invalid_specs_are_refused_before_running() {
        let mut bad = spec(0, 3.0);
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("at least one clip")
        );
        bad = spec(1, 0.0);
        assert!(bad.validate().is_err());
        bad = spec(1, 3.0);
        bad.width = 1081;
        assert!(bad.validate().unwrap_err().to_string().contains("even"));
        bad = spec(1, 3.0);
        bad.fps = 15;
        assert!(bad.validate().unwrap_err().to_string().contains("23–60"));
        bad = spec(1, 3.0);
        bad.preset = "fast -x".into();
        assert!(bad.validate().is_err());
        assert!(spec(1, 3.0).validate().is_ok());
    }

    /// Two short clips of different shapes and rates, a narration-like tone, and captions.
    async fn inputs(tools: &Tools, dir: &Path) -> (Vec<PathBuf>, PathBuf) {
        let clips = vec![dir.join("a.mp4"), dir.join("b.mp4")];
        // Landscape and too short (it must loop), then portrait at another rate.
        testing::clip(tools, "testsrc2=s=320x180:rate=25", 1.0, &clips[0]).await;
        testing::clip(
            tools,
            "mandelbrot=s=270x480:rate=30:maxiter=100",
            2.0,
            &clips[1],
        )
        .await;
        let narration = dir.join("voice.wav");
        // A warbling tone well below the target loudness, so normalization has work to do.
        testing::audio(
            tools,
            "aevalsrc='0.05*sin(2*PI*220*t)*(1+0.5*sin(2*PI*3*t))':s=44100",
            3.0,
            &narration,
        )
        .await;
        (clips, narration)
    }

    #[tokio::test]
    async fn renders_a_conforming_normalized_video_with_visible_captions() {
        let tools = testing::tools();
        // Quotes, colons, commas and brackets in the path exercise the filter escaping.
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("it's: a, [test]; dir");
        std::fs::create_dir(&dir).unwrap();
        let (clips, narration) = inputs(&tools, &dir).await;
        let words: Vec<WordTiming> = ["BIG", "CAPTION", "HERE"]
            .iter()
            .enumerate()
            .map(|(i, word)| WordTiming {
                word: word.to_string(),
                start: i as f64 * 0.2,
                end: 3.0 - f64::from(2 - i as u32) * 0.1,
            })
            .collect();
        let captions = dir.join("captions.ass");
        std::fs::write(&captions, ass(&words, &CaptionStyle::default(), 1080, 1920)).unwrap();

        let mut plain = RenderSpec::new(clips, narration, 3.0, dir.join("plain.mp4"));
        let mut captioned = plain.clone();
        captioned.captions = Some(captions);
        captioned.out = dir.join("captioned.mp4");
        // The captioned render uses the default preset, which yields High profile; the
        // other only serves the frame comparison.
        plain.preset = "ultrafast".into();

        let info = render(&tools, &captioned).await.unwrap();
        assert_eq!(info, probe(&tools, &captioned.out).await.unwrap());
        let video = info.video.as_ref().unwrap();
        assert_eq!((video.width, video.height, video.fps), (1080, 1920, 30.0));
        assert_eq!(video.codec, "h264");
        assert_eq!(video.profile.as_deref(), Some("High"));
        let audio = info.audio.as_ref().unwrap();
        assert_eq!(
            (audio.codec.as_str(), audio.sample_rate, audio.channels),
            ("aac", 48000, 2)
        );
        assert!((info.duration - 3.0).abs() < 0.1, "{}", info.duration);
        assert_eq!(crate::media::check_tiktok(&info, 60.0), Ok(()));

        let lufs = integrated_lufs(&tools, &captioned.out).await.unwrap();
        assert!(
            (lufs - TARGET_LUFS).abs() <= 1.0,
            "integrated loudness {lufs}"
        );

        render(&tools, &plain).await.unwrap();
        let with = testing::frame(&tools, &captioned.out, 1.5, 270, 480).await;
        let without = testing::frame(&tools, &plain.out, 1.5, 270, 480).await;
        let changed = testing::differing_pixels(&with, &without);
        // The three words cover a few percent of the frame; encoding noise alone stays
        // far below that.
        assert!(changed > 270 * 480 / 100, "only {changed} pixels differ");

        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.starts_with(".render-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[tokio::test]
    async fn a_word_left_out_of_the_captions_and_a_video_over_its_limit_fail_their_gates() {
        let tools = testing::tools();
        let dir = tempfile::tempdir().unwrap();
        let (clips, narration) = inputs(&tools, dir.path()).await;
        let spoken: Vec<String> = ["Big", "caption", "here"].map(String::from).to_vec();
        // The caption file shows two of the three words.
        let shown: Vec<WordTiming> = [("Big", 0.2), ("here", 1.6)]
            .iter()
            .map(|&(word, start)| WordTiming {
                word: word.to_owned(),
                start,
                end: start + 0.8,
            })
            .collect();
        let captions = dir.path().join("captions.ass");
        std::fs::write(&captions, ass(&shown, &CaptionStyle::default(), 540, 960)).unwrap();
        let mut spec = RenderSpec::new(clips, narration, 2.5, dir.path().join("out.mp4"));
        (spec.width, spec.height, spec.preset) = (540, 960, "ultrafast".into());
        spec.captions = Some(captions.clone());
        spec.gates = Some(GateSpec {
            stills: Vec::new(),
            captions: Some((captions, spoken)),
            target_lufs: TARGET_LUFS,
            seconds: 2.5,
            max_seconds: 2.0,
            fps: 30,
        });
        let error = render(&tools, &spec).await.unwrap_err();
        let MediaError::Gates(failed) = &error else {
            panic!("{error:?}");
        };
        let names: Vec<&str> = failed.iter().map(|f| f.gate.as_str()).collect();
        assert_eq!(names, ["captions", "duration"], "{error}");
        assert!(
            error.to_string().contains("spoken word 2 (`caption`)"),
            "{error}"
        );
        assert!(
            !spec.out.exists(),
            "a render that failed a gate is not kept"
        );
    }

    #[tokio::test]
    async fn music_is_mixed_under_the_voice() {
        let tools = testing::tools();
        let dir = tempfile::tempdir().unwrap();
        let (clips, narration) = inputs(&tools, dir.path()).await;
        let music = dir.path().join("music.wav");
        testing::audio(&tools, "sine=f=660:r=44100", 1.0, &music).await;
        let mut spec = RenderSpec::new(clips, narration, 2.5, dir.path().join("out.mp4"));
        spec.music = Some(music);
        spec.width = 540;
        spec.height = 960;
        spec.preset = "ultrafast".into();
        let info = render(&tools, &spec).await.unwrap();
        assert!((info.duration - 2.5).abs() < 0.1, "{}", info.duration);
        assert_eq!(info.video.unwrap().width, 540);
    }

    #[tokio::test]
    async fn a_cancelled_render_leaves_nothing_behind() {
        let tools = testing::tools();
        let dir = tempfile::tempdir().unwrap();
        let (clips, narration) = inputs(&tools, dir.path()).await;
        let out = dir.path().join("out.mp4");
        let spec = RenderSpec::new(clips, narration, 3.0, out.clone());
        // A 1080×1920 render takes seconds; dropping it early kills ffmpeg mid-write.
        let cancelled =
            tokio::time::timeout(std::time::Duration::from_millis(300), render(&tools, &spec))
                .await;
        assert!(
            cancelled.is_err(),
            "the render finished before it could be cancelled"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 3, "only the inputs remain: {names:?}");
    }

    #[tokio::test]
    async fn a_failed_render_leaves_nothing_at_the_output() {
        let tools = testing::tools();
        let dir = tempfile::tempdir().unwrap();
        let (mut clips, narration) = inputs(&tools, dir.path()).await;
        let broken = dir.path().join("broken.mp4");
        std::fs::write(&broken, "not a video").unwrap();
        clips.push(broken);
        let out = dir.path().join("out.mp4");
        let error = render(&tools, &RenderSpec::new(clips, narration, 2.0, out.clone()))
            .await
            .unwrap_err();
        assert!(matches!(error, MediaError::ToolFailed { .. }), "{error:?}");
        assert!(error.to_string().contains("broken.mp4"), "{error}");
        assert!(!out.exists());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 4, "only the inputs remain: {names:?}");
    }
}
