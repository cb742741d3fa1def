//! The render: one ffmpeg process, one filter graph. Clips are filled to the frame,
//! cut to share the narration, joined, captioned; the narration (with music ducked under
//! it) is normalized for phone speakers; the result is H.264 + AAC ready for upload.

use std::ffi::OsString;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use super::probe::{Limits, MediaInfo, check, verify_media};
use super::tools::{media_url, run};
use super::{MediaError, Tools};

/// Integrated loudness and true peak the platforms normalize speech to.
const TARGET_LUFS: f64 = -14.0;
const TARGET_TRUE_PEAK: f64 = -1.5;
/// Music sits about 10 dB under the voice before ducking pulls it further down.
const MUSIC_GAIN: f64 = 0.3;
const AUDIO_RATE: u32 = 48_000;
const AUDIO_BITRATE: &str = "160k";

#[derive(Debug, Clone, PartialEq)]
pub struct RenderSpec {
    /// Shown in order, each for an equal share of the narration; a clip shorter than its
    /// share loops.
    pub clips: Vec<PathBuf>,
    pub narration: PathBuf,
    /// The video's length.
    pub narration_seconds: f64,
    /// An ASS script to burn in.
    pub captions: Option<PathBuf>,
    /// Looped under the narration and ducked while the voice speaks.
    pub music: Option<PathBuf>,
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
            narration,
            narration_seconds,
            captions: None,
            music: None,
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
        if !(1..=120).contains(&self.fps) {
            return invalid(format!("frame rate {} is outside 1–120", self.fps));
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

/// Renders `spec` into a temporary file beside `spec.out`, verifies it decodes and meets
/// the limits, then renames it into place. A failure, or dropping the future (which
/// kills ffmpeg), never leaves a file at `spec.out`.
pub async fn render(tools: &Tools, spec: &RenderSpec) -> Result<MediaInfo, MediaError> {
    spec.validate()?;
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
    run(&tools.ffmpeg, args(spec, temp.path())).await?;
    let info = verify_media(tools, temp.path()).await?;
    check(&info, &spec.limits()).map_err(|problems| MediaError::Limits {
        path: spec.out.clone(),
        problems,
    })?;
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
    let mut args: Vec<OsString> = [
        "-nostdin",
        "-hide_banner",
        "-nostats",
        "-loglevel",
        "error",
        "-y",
    ]
    .map(OsString::from)
    .to_vec();
    for (clip, _) in &used {
        // Looping every clip costs nothing when it is long enough: `trim` ends it.
        args.extend([
            "-stream_loop".into(),
            "-1".into(),
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

/// Frames per clip: the narration's frame count split as evenly as whole frames allow,
/// so the joined video is exactly as long as the narration.
fn frame_shares(spec: &RenderSpec) -> Vec<u64> {
    let total = (spec.narration_seconds * f64::from(spec.fps) - 1e-6)
        .ceil()
        .max(1.0) as u64;
    let count = spec.clips.len() as u64;
    (0..count)
        .map(|i| total / count + u64::from(i < total % count))
        .collect()
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
    if let Some(captions) = spec.captions.as_deref().and_then(Path::to_str) {
        let _ = write!(graph, ",ass=filename={}", filter_value(captions));
    }
    graph.push_str(",format=yuv420p[vout];");

    let narration = clips.len();
    let format =
        format!("aformat=sample_fmts=fltp:sample_rates={AUDIO_RATE}:channel_layouts=stereo");
    let normalize = format!(
        "loudnorm=I={TARGET_LUFS}:TP={TARGET_TRUE_PEAK}:LRA=11,aresample={AUDIO_RATE}[aout]"
    );
    // `apad` covers a narration a few samples shorter than its stated length; `-t` cuts.
    if spec.music.is_some() {
        let music = narration + 1;
        let _ = write!(
            graph,
            "[{narration}:a]{format},apad,asplit=2[voice][key];\
             [{music}:a]{format},volume={MUSIC_GAIN}[bed];\
             [bed][key]sidechaincompress=threshold=0.02:ratio=10:attack=15:release=350[ducked];\
             [voice][ducked]amix=inputs=2:duration=first:dropout_transition=0:normalize=0,{normalize}"
        );
    } else {
        let _ = write!(graph, "[{narration}:a]{format},apad,{normalize}");
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
        let graph = &args[args.iter().position(|a| a == "-filter_complex").unwrap() + 1];
        assert!(graph.contains("[0:v]fps=30,setpts=PTS-STARTPTS,trim=end_frame=45,scale=1080:1920:force_original_aspect_ratio=increase,crop=1080:1920,setsar=1[v0]"), "{graph}");
        assert!(graph.contains("[v0][v1]concat=n=2:v=1:a=0,ass=filename=/tmp/job 1/captions.ass,format=yuv420p[vout]"), "{graph}");
        assert!(
            graph.contains("[3:a]"),
            "music is the fourth input: {graph}"
        );
        assert!(graph.contains("sidechaincompress"), "{graph}");
        assert!(graph.contains("loudnorm=I=-14:TP=-1.5"), "{graph}");
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
            (lufs - TARGET_LUFS).abs() <= 2.0,
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
