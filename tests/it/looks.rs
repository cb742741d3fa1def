//! Caption presets on screen: a frame of each preset, rendered over a plain background,
//! is saved as a screenshot and its caption pixels' bounding box must lie inside TikTok's
//! safe area (clear of the top tabs, the right-hand buttons and the description).

use std::path::Path;
use std::process::Command;

use tiktok_factory::media::{self, RenderSpec, SAFE_AREA, Tools};
use tiktok_factory::providers::WordTiming;
use tiktok_factory::recipe::{CaptionStyleName, CaptionsDef, Highlight};
use tiktok_factory::stages::captions;

/// The background colour, away from every caption colour and outline.
const BACKGROUND: [u8; 3] = [0x20, 0x60, 0x40];

fn ffmpeg(args: &[&str]) {
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "ffmpeg {args:?}");
}

/// The widest words the presets show at once, so wrapping and the pop are exercised.
fn words() -> Vec<WordTiming> {
    ["Extraordinary", "WONDERFUL", "neutron", "stars."]
        .iter()
        .enumerate()
        .map(|(i, word)| WordTiming {
            word: (*word).to_owned(),
            start: i as f64 * 0.25,
            end: i as f64 * 0.25 + 0.25,
        })
        .collect()
}

/// Bounding box (left, top, right, bottom; exclusive) of the pixels that differ from
/// the background in an RGB frame.
fn caption_box(rgb: &[u8], width: u32) -> Option<(u32, u32, u32, u32)> {
    let mut found: Option<(u32, u32, u32, u32)> = None;
    for (i, pixel) in rgb.chunks_exact(3).enumerate() {
        let differs = pixel
            .iter()
            .zip(BACKGROUND)
            .any(|(a, b)| a.abs_diff(b) > 48);
        if differs {
            let (x, y) = (i as u32 % width, i as u32 / width);
            found = Some(match found {
                None => (x, y, x + 1, y + 1),
                Some((left, top, right, bottom)) => {
                    (left.min(x), top.min(y), right.max(x + 1), bottom.max(y + 1))
                }
            });
        }
    }
    found
}

async fn screenshot(tools: &Tools, dir: &Path, style: CaptionStyleName, at: f64) -> Vec<u8> {
    let name = format!("{style:?}").to_lowercase();
    let def = CaptionsDef {
        style,
        max_words: 3,
        highlight: Highlight::Word,
    };
    let ass = dir.join(format!("{name}.ass"));
    std::fs::write(&ass, captions::ass(&def, &words())).unwrap();
    let background = dir.join("background.mp4");
    if !background.exists() {
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "color=c=0x206040:size=1080x1920:rate=30:duration=2",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            background.to_str().unwrap(),
        ]);
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "sine=f=300:r=48000:d=1.2",
            dir.join("voice.wav").to_str().unwrap(),
        ]);
    }
    let video = dir.join(format!("{name}.mp4"));
    let mut spec = RenderSpec::new(vec![background], dir.join("voice.wav"), 1.2, video.clone());
    spec.captions = Some(ass);
    spec.preset = "ultrafast".into();
    media::render(tools, &spec).await.unwrap();
    // The screenshot a person would look at, and the raw pixels measured.
    let png = dir.join(format!("{name}.png"));
    ffmpeg(&[
        "-ss",
        &at.to_string(),
        "-i",
        video.to_str().unwrap(),
        "-frames:v",
        "1",
        png.to_str().unwrap(),
    ]);
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&png)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout.len(), 1080 * 1920 * 3);
    out.stdout
}

#[tokio::test]
async fn every_caption_preset_stays_inside_the_safe_area() {
    let tools = Tools::detect().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for style in [
        CaptionStyleName::BoldCenter,
        CaptionStyleName::BoldLower,
        CaptionStyleName::Pop,
        CaptionStyleName::Clean,
    ] {
        // Early in a word, while the pop is at its largest, and late in the group.
        for at in [0.27, 0.6] {
            let rgb = screenshot(&tools, dir.path(), style, at).await;
            let (left, top, right, bottom) =
                caption_box(&rgb, 1080).unwrap_or_else(|| panic!("{style:?}: no caption seen"));
            assert!(
                left >= SAFE_AREA.left
                    && top >= SAFE_AREA.top
                    && right <= SAFE_AREA.right
                    && bottom <= SAFE_AREA.bottom,
                "{style:?} at {at} s: captions at x {left}–{right}, y {top}–{bottom}, \
                 outside the safe area {SAFE_AREA:?}"
            );
            // Something real was measured: a caption is wider than a word's letter.
            assert!(right - left > 200 && bottom - top > 40, "{style:?}");
        }
    }
}
