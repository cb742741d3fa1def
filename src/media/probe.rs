//! What a media file contains (ffprobe), whether it meets TikTok's upload limits, and
//! whether it decodes to the end.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::tools::{media_url, run};
use super::{MediaError, Tools};

/// TikTok's hard cap on an uploaded video, whatever the recipe allows.
pub const TIKTOK_MAX_SECONDS: f64 = 600.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaInfo {
    /// Seconds; 0 when the file does not say.
    pub duration: f64,
    pub size_bytes: u64,
    pub video: Option<VideoStream>,
    pub audio: Option<AudioStream>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoStream {
    pub codec: String,
    pub profile: Option<String>,
    pub width: u32,
    pub height: u32,
    /// Average frame rate; 0 when unknown.
    pub fps: f64,
    pub pix_fmt: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioStream {
    pub codec: String,
    pub sample_rate: u32,
    pub channels: u32,
}

/// What a rendered video must satisfy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub width: u32,
    pub height: u32,
    pub min_fps: f64,
    pub max_fps: f64,
    /// The video must be longer than this (and longer than 0).
    pub min_seconds: f64,
    pub max_seconds: f64,
}

impl Limits {
    /// A 1080×1920 upload of at most `max_seconds` (and under TikTok's 600 s cap).
    pub fn tiktok(max_seconds: f64) -> Self {
        Self {
            width: 1080,
            height: 1920,
            min_fps: 23.0,
            max_fps: 60.0,
            min_seconds: 0.0,
            max_seconds,
        }
    }
}

/// Reads the container and stream headers. A file ffprobe cannot read, or one with
/// neither audio nor video, is [`MediaError::Corrupt`].
pub async fn probe(tools: &Tools, path: &Path) -> Result<MediaInfo, MediaError> {
    let output = run(
        &tools.ffprobe,
        [
            "-v".into(),
            "error".into(),
            "-print_format".into(),
            "json".into(),
            "-show_format".into(),
            "-show_streams".into(),
            media_url(path),
        ],
    )
    .await
    .map_err(|error| corrupt(path, error))?;
    parse(&output.stdout).map_err(|reason| MediaError::Corrupt {
        path: path.to_path_buf(),
        reason,
    })
}

/// [`probe`], then a decode of the last second, which is where a truncated download or
/// an interrupted write shows: the headers of such a file often still read fine.
pub async fn verify_media(tools: &Tools, path: &Path) -> Result<MediaInfo, MediaError> {
    let info = probe(tools, path).await?;
    run(
        &tools.ffmpeg,
        [
            "-nostdin".into(),
            "-hide_banner".into(),
            "-v".into(),
            "error".into(),
            "-xerror".into(),
            "-sseof".into(),
            "-1".into(),
            "-i".into(),
            media_url(path),
            "-f".into(),
            "null".into(),
            "-".into(),
        ],
    )
    .await
    .map_err(|error| corrupt(path, error))?;
    Ok(info)
}

/// TikTok's upload limits: H.264 at 1080×1920, 23–60 fps, yuv420p, AAC audio, a
/// duration above 0, at most `max_seconds` and under 600 s. Returns every problem found.
pub fn check_tiktok(info: &MediaInfo, max_seconds: f64) -> Result<(), Vec<String>> {
    check(info, &Limits::tiktok(max_seconds))
}

/// [`check_tiktok`] with the frame size and duration bounds given.
pub fn check(info: &MediaInfo, limits: &Limits) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    match &info.video {
        None => problems.push("no video stream".to_string()),
        Some(video) => {
            if video.codec != "h264" {
                problems.push(format!("video codec is `{}`, not `h264`", video.codec));
            }
            if (video.width, video.height) != (limits.width, limits.height) {
                problems.push(format!(
                    "frame size is {}×{}, not {}×{}",
                    video.width, video.height, limits.width, limits.height
                ));
            }
            if !(limits.min_fps..=limits.max_fps).contains(&video.fps) {
                problems.push(format!(
                    "frame rate {:.2} is outside {}–{}",
                    video.fps, limits.min_fps, limits.max_fps
                ));
            }
            let pix_fmt = video.pix_fmt.as_deref().unwrap_or("unknown");
            if pix_fmt != "yuv420p" {
                problems.push(format!("pixel format is `{pix_fmt}`, not `yuv420p`"));
            }
        }
    }
    match &info.audio {
        None => problems.push("no audio stream".to_string()),
        Some(audio) if audio.codec != "aac" => {
            problems.push(format!("audio codec is `{}`, not `aac`", audio.codec));
        }
        Some(_) => {}
    }
    if info.duration <= 0.0 || info.duration <= limits.min_seconds {
        problems.push(format!(
            "duration {:.2} s is too short (needs more than {:.2} s)",
            info.duration, limits.min_seconds
        ));
    }
    if info.duration > limits.max_seconds {
        problems.push(format!(
            "duration {:.2} s is over the {:.2} s limit",
            info.duration, limits.max_seconds
        ));
    }
    if info.duration >= TIKTOK_MAX_SECONDS {
        problems.push(format!(
            "duration {:.2} s is not under TikTok's {TIKTOK_MAX_SECONDS} s upload limit",
            info.duration
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn corrupt(path: &Path, error: MediaError) -> MediaError {
    match error {
        MediaError::ToolFailed { stderr, .. } => MediaError::Corrupt {
            path: path.to_path_buf(),
            reason: if stderr.is_empty() {
                "the file could not be decoded".to_string()
            } else {
                stderr
            },
        },
        other => other,
    }
}

/// ffprobe's JSON, only the fields used. Numbers arrive as strings in some fields.
#[derive(Deserialize)]
struct Report {
    #[serde(default)]
    streams: Vec<Stream>,
    format: Option<Format>,
}

#[derive(Deserialize)]
struct Format {
    duration: Option<String>,
    size: Option<String>,
}

#[derive(Deserialize)]
struct Stream {
    codec_type: Option<String>,
    codec_name: Option<String>,
    profile: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    avg_frame_rate: Option<String>,
    r_frame_rate: Option<String>,
    pix_fmt: Option<String>,
    sample_rate: Option<String>,
    channels: Option<u32>,
    duration: Option<String>,
    #[serde(default)]
    disposition: Disposition,
}

#[derive(Deserialize, Default)]
struct Disposition {
    #[serde(default)]
    attached_pic: u8,
}

fn parse(json: &[u8]) -> Result<MediaInfo, String> {
    let report: Report = serde_json::from_slice(json)
        .map_err(|error| format!("unexpected ffprobe output: {error}"))?;
    let of_type = |kind: &str| {
        report
            .streams
            .iter()
            // Cover art shows up as a one-frame video stream; it is not the video.
            .find(|stream| {
                stream.codec_type.as_deref() == Some(kind) && stream.disposition.attached_pic == 0
            })
    };
    let video = of_type("video").map(|stream| VideoStream {
        codec: stream.codec_name.clone().unwrap_or_default(),
        profile: stream.profile.clone(),
        width: stream.width.unwrap_or(0),
        height: stream.height.unwrap_or(0),
        fps: [&stream.avg_frame_rate, &stream.r_frame_rate]
            .into_iter()
            .find_map(|rate| rate.as_deref().and_then(parse_rate))
            .unwrap_or(0.0),
        pix_fmt: stream.pix_fmt.clone(),
    });
    let audio = of_type("audio").map(|stream| AudioStream {
        codec: stream.codec_name.clone().unwrap_or_default(),
        sample_rate: stream
            .sample_rate
            .as_deref()
            .and_then(|rate| rate.parse().ok())
            .unwrap_or(0),
        channels: stream.channels.unwrap_or(0),
    });
    if video.is_none() && audio.is_none() {
        return Err("no audio or video stream".to_string());
    }
    let format = report.format.as_ref();
    let duration = format
        .and_then(|format| seconds(format.duration.as_deref()))
        .or_else(|| {
            report
                .streams
                .iter()
                .filter_map(|stream| seconds(stream.duration.as_deref()))
                .reduce(f64::max)
        })
        .unwrap_or(0.0);
    let size_bytes = format
        .and_then(|format| format.size.as_deref())
        .and_then(|size| size.parse().ok())
        .unwrap_or(0);
    Ok(MediaInfo {
        duration,
        size_bytes,
        video,
        audio,
    })
}

fn seconds(value: Option<&str>) -> Option<f64> {
    value?
        .parse()
        .ok()
        .filter(|seconds: &f64| seconds.is_finite())
}

/// `30000/1001` → 29.97; `0/0` (unknown) → `None`.
fn parse_rate(rate: &str) -> Option<f64> {
    let (num, den) = rate.split_once('/')?;
    let (num, den): (f64, f64) = (num.parse().ok()?, den.parse().ok()?);
    (num > 0.0 && den > 0.0).then(|| num / den)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::testing;

    fn good() -> MediaInfo {
        MediaInfo {
            duration: 30.0,
            size_bytes: 1,
            video: Some(VideoStream {
                codec: "h264".into(),
                profile: Some("High".into()),
                width: 1080,
                height: 1920,
                fps: 30.0,
                pix_fmt: Some("yuv420p".into()),
            }),
            audio: Some(AudioStream {
                codec: "aac".into(),
                sample_rate: 48000,
                channels: 2,
            }),
        }
    }

    #[test]
    fn a_conforming_video_passes() {
        assert_eq!(check_tiktok(&good(), 60.0), Ok(()));
    }

    #[test]
    fn every_broken_limit_is_reported() {
        let mut info = good();
        info.duration = 75.0;
        let video = info.video.as_mut().unwrap();
        video.codec = "hevc".into();
        video.width = 720;
        video.fps = 15.0;
        video.pix_fmt = Some("yuv444p".into());
        info.audio = None;
        let problems = check_tiktok(&info, 60.0).unwrap_err();
        assert_eq!(
            problems,
            [
                "video codec is `hevc`, not `h264`",
                "frame size is 720×1920, not 1080×1920",
                "frame rate 15.00 is outside 23–60",
                "pixel format is `yuv444p`, not `yuv420p`",
                "no audio stream",
                "duration 75.00 s is over the 60.00 s limit",
            ]
        );
    }

    #[test]
    fn duration_must_be_positive_and_under_the_upload_cap() {
        let mut info = good();
        info.duration = 0.0;
        assert!(check_tiktok(&info, 60.0).unwrap_err()[0].contains("too short"));
        info.duration = 600.0;
        let problems = check_tiktok(&info, 900.0).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("600 s upload limit"), "{problems:?}");
        info.duration = 20.0;
        info.audio.as_mut().unwrap().codec = "mp3".into();
        assert_eq!(
            check_tiktok(&info, 60.0).unwrap_err(),
            ["audio codec is `mp3`, not `aac`"]
        );
    }

    #[test]
    fn frame_rates_parse_as_fractions() {
        assert_eq!(parse_rate("30/1"), Some(30.0));
        assert!((parse_rate("30000/1001").unwrap() - 29.97).abs() < 0.01);
        assert_eq!(parse_rate("0/0"), None);
    }

    #[tokio::test]
    async fn probes_a_generated_clip() {
        let tools = testing::tools();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clip.mp4");
        testing::clip(&tools, "testsrc2=s=320x240:rate=25", 2.0, &path).await;
        let info = verify_media(&tools, &path).await.unwrap();
        let video = info.video.unwrap();
        assert_eq!(
            (video.codec.as_str(), video.width, video.height),
            ("h264", 320, 240)
        );
        assert!((video.fps - 25.0).abs() < 1e-9, "{}", video.fps);
        assert_eq!(video.pix_fmt.as_deref(), Some("yuv420p"));
        assert!(info.audio.is_none());
        assert!((info.duration - 2.0).abs() < 0.05, "{}", info.duration);
        assert_eq!(info.size_bytes, std::fs::metadata(&path).unwrap().len());
    }

    #[tokio::test]
    async fn a_truncated_file_fails_verification_and_names_the_file() {
        let tools = testing::tools();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clip.mp4");
        testing::clip(&tools, "testsrc2=s=320x240:rate=25", 2.0, &path).await;
        let bytes = std::fs::read(&path).unwrap();
        // The moov atom is at the front (faststart), so the headers still read.
        std::fs::write(&path, &bytes[..bytes.len() * 2 / 3]).unwrap();
        assert!(probe(&tools, &path).await.is_ok());
        let error = verify_media(&tools, &path).await.unwrap_err();
        assert!(matches!(error, MediaError::Corrupt { .. }), "{error:?}");
        assert!(error.to_string().contains("clip.mp4"), "{error}");
    }

    #[tokio::test]
    async fn a_file_that_is_not_media_is_corrupt() {
        let tools = testing::tools();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("-notes.mp4");
        std::fs::write(&path, "not a video").unwrap();
        let error = probe(&tools, &path).await.unwrap_err();
        assert!(
            matches!(&error, MediaError::Corrupt { path: p, .. } if p == &path),
            "{error:?}"
        );
    }
}
