//! Caption presets on screen: a frame of each preset, rendered over a plain background,
//! is saved as a screenshot and its caption pixels' bounding box must lie inside TikTok's
//! safe area (clear of the top tabs, the right-hand buttons and the description).

use std::path::Path;
use std::process::Command;

use tiktok_factory::media::{self, RenderSpec, SAFE_AREA, Tools};
use tiktok_factory::providers::WordTiming;
use tiktok_factory::recipe::{CaptionPlace, CaptionStyleName, CaptionsDef, Highlight};
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

async fn screenshot(tools: &Tools, dir: &Path, def: &CaptionsDef, at: f64) -> Vec<u8> {
    let name = format!("{:?}-{}", def.style, def.size.unwrap_or(0)).to_lowercase();
    let video = render(tools, dir, &name, Some(&captions::ass(def, &words())), None).await;
    frame(&video, at, &dir.join(format!("{name}.png")))
}

/// Two seconds of the plain background with the given ASS scripts burned in.
async fn render(
    tools: &Tools,
    dir: &Path,
    name: &str,
    captions: Option<&str>,
    hook: Option<&str>,
) -> std::path::PathBuf {
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
            "sine=f=300:r=48000:d=2",
            dir.join("voice.wav").to_str().unwrap(),
        ]);
    }
    let video = dir.join(format!("{name}.mp4"));
    let mut spec = RenderSpec::new(vec![background], dir.join("voice.wav"), 2.0, video.clone());
    let script = |suffix: &str, text: Option<&str>| {
        text.map(|text| {
            let path = dir.join(format!("{name}.{suffix}.ass"));
            std::fs::write(&path, text).unwrap();
            path
        })
    };
    spec.captions = script("captions", captions);
    spec.hook = script("hook", hook);
    spec.preset = "ultrafast".into();
    media::render(tools, &spec).await.unwrap();
    video
}

/// The frame at `at` seconds, saved as `png` (the screenshot a person would look at),
/// as raw RGB pixels (what is measured).
fn frame(video: &Path, at: f64, png: &Path) -> Vec<u8> {
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
        .arg(png)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout.len(), 1080 * 1920 * 3);
    out.stdout
}

/// Bounding box of the pixels where two frames differ clearly.
fn difference_box(first: &[u8], second: &[u8], width: u32) -> Option<(u32, u32, u32, u32)> {
    let mut found: Option<(u32, u32, u32, u32)> = None;
    for (i, (p, q)) in first
        .chunks_exact(3)
        .zip(second.chunks_exact(3))
        .enumerate()
    {
        if p.iter().zip(q).any(|(a, b)| a.abs_diff(*b) > 48) {
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
        let def = CaptionsDef {
            style,
            max_words: 3,
            highlight: Highlight::Word,
            ..CaptionsDef::default()
        };
        assert_inside_safe_area(&tools, dir.path(), &def).await;
    }
}

/// Checks a frame early in a word, while the pop is at its largest, and one late in the
/// group; returns the caption's height in the first.
async fn assert_inside_safe_area(tools: &Tools, dir: &Path, def: &CaptionsDef) -> u32 {
    let mut height = 0;
    for at in [0.27, 0.6] {
        let rgb = screenshot(tools, dir, def, at).await;
        let (left, top, right, bottom) =
            caption_box(&rgb, 1080).unwrap_or_else(|| panic!("{def:?}: no caption seen"));
        assert!(
            left >= SAFE_AREA.left
                && top >= SAFE_AREA.top
                && right <= SAFE_AREA.right
                && bottom <= SAFE_AREA.bottom,
            "{def:?} at {at} s: captions at x {left}–{right}, y {top}–{bottom}, \
             outside the safe area {SAFE_AREA:?}"
        );
        // Something real was measured: a caption is wider than a word's letter.
        assert!(right - left > 200 && bottom - top > 40, "{def:?}");
        if height == 0 {
            height = bottom - top;
        }
    }
    height
}

#[tokio::test]
async fn the_largest_caption_size_stays_inside_the_safe_area() {
    let tools = Tools::detect().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for position in [CaptionPlace::Center, CaptionPlace::Lower] {
        let largest = CaptionsDef {
            style: CaptionStyleName::BoldCenter,
            max_words: 3,
            highlight: Highlight::Word,
            size: Some(captions::MAX_SIZE),
            outline: Some(captions::MAX_OUTLINE),
            upper: Some(true),
            pop: Some(true),
            position: Some(position),
            color: Some("#FF80C0".into()),
            ..CaptionsDef::default()
        };
        let big = assert_inside_safe_area(&tools, dir.path(), &largest).await;
        let normal = CaptionsDef {
            size: None,
            outline: None,
            ..largest.clone()
        };
        let usual = assert_inside_safe_area(&tools, dir.path(), &normal).await;
        // The size took effect: three capitalised words at 140 px wrap onto more lines,
        // or at least stand taller, than at the preset's 92.
        assert!(
            big > usual,
            "{position:?}: {big} px tall at 140, {usual} at 92"
        );
    }
}

#[tokio::test]
async fn the_hook_title_shows_above_the_captions_for_its_seconds_then_goes() {
    let tools = Tools::detect().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The largest centred captions come nearest the hook.
    let largest = CaptionsDef {
        size: Some(captions::MAX_SIZE),
        outline: Some(captions::MAX_OUTLINE),
        upper: Some(true),
        pop: Some(true),
        ..CaptionsDef::default()
    };
    let caption_ass = captions::ass(&largest, &words());
    let text = "Why owls turn their heads almost all the way around, and how they do it";
    let hook = media::hook_ass(text, 1.0, "DejaVu Sans", 1080, 1920);
    let with = render(&tools, dir.path(), "hook", Some(&caption_ass), Some(&hook)).await;
    let without = render(&tools, dir.path(), "plain", Some(&caption_ass), None).await;

    let at = |video: &Path, t: f64, name: &str| frame(video, t, &dir.path().join(name));
    let (hooked, plain) = (at(&with, 0.5, "hook.png"), at(&without, 0.5, "plain.png"));
    if let Some(out) = std::env::var_os("FACTORY_SCREENSHOTS") {
        std::fs::copy(
            dir.path().join("hook.png"),
            Path::new(&out).join("hook-title.png"),
        )
        .unwrap();
    }
    let (left, top, right, bottom) =
        difference_box(&hooked, &plain, 1080).expect("the hook is on screen at 0.5 s");
    let area = media::HOOK_AREA;
    assert!(
        left >= area.left && top >= area.top && right <= area.right && bottom <= area.bottom,
        "hook at x {left}–{right}, y {top}–{bottom}, outside {area:?}"
    );
    assert!(
        area.left >= SAFE_AREA.left
            && area.top >= SAFE_AREA.top
            && area.right <= SAFE_AREA.right
            && area.bottom <= SAFE_AREA.bottom
    );
    // Something real: three lines of words on a box, most of the area's width.
    assert!(
        right - left > 500 && bottom - top > 150,
        "{left} {top} {right} {bottom}"
    );
    let (_, caption_top, _, _) = caption_box(&plain, 1080).expect("captions at 0.5 s");
    assert!(
        bottom < caption_top,
        "the hook ends at y {bottom}, the captions start at y {caption_top}"
    );

    // After its second, the hook is gone: the frames match.
    let (hooked, plain) = (
        at(&with, 1.3, "hook-late.png"),
        at(&without, 1.3, "plain-late.png"),
    );
    assert_eq!(
        difference_box(&hooked, &plain, 1080),
        None,
        "the hook is still there at 1.3 s"
    );
}

/// Pixels that differ from the background in an RGB frame.
fn caption_pixels(rgb: &[u8]) -> usize {
    rgb.chunks_exact(3)
        .filter(|p| p.iter().zip(BACKGROUND).any(|(a, b)| a.abs_diff(b) > 48))
        .count()
}

/// Pixels where two frames differ clearly.
fn differing(first: &[u8], second: &[u8]) -> usize {
    first
        .chunks_exact(3)
        .zip(second.chunks_exact(3))
        .filter(|(p, q)| p.iter().zip(*q).any(|(a, b)| a.abs_diff(*b) > 48))
        .count()
}

/// Words spoken one after another over the first 1.6 seconds.
fn timed(text: &str) -> Vec<WordTiming> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let each = 1.6 / words.len() as f64;
    words
        .iter()
        .enumerate()
        .map(|(i, word)| WordTiming {
            word: (*word).to_owned(),
            start: i as f64 * each,
            end: (i + 1) as f64 * each,
        })
        .collect()
}

#[tokio::test]
async fn captions_in_other_scripts_are_drawn_with_real_glyphs() {
    let tools = Tools::detect().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let def = CaptionsDef {
        highlight: Highlight::None,
        ..CaptionsDef::default()
    };
    // Each text, and the same text with every word's letters reversed: real glyphs
    // differ, while boxes for missing glyphs would be the same boxes in the same places.
    let scripts = [
        ("cyrillic", "Совы видят ночью"),
        ("greek", "Οι κουκουβάγιες βλέπουν"),
        ("arabic", "البوم يرى ليلا"),
        ("devanagari", "उल्लू रात में देखते"),
        ("japanese", "フクロウ は 夜に 見える"),
        ("chinese", "猫头鹰 在 夜里 看见"),
        // No spaces: one long word, shrunk to fit its line.
        (
            "japanese-long",
            "猫は昼にたくさん眠ります、そして夜になると狩りに出かけます。",
        ),
    ];
    for (name, text) in scripts {
        let reversed: Vec<String> = text
            .split_whitespace()
            .map(|w| w.chars().rev().collect())
            .collect();
        let mut frames = Vec::new();
        for (i, text) in [text.to_owned(), reversed.join(" ")].iter().enumerate() {
            let ass = captions::ass(&def, &timed(text));
            let video = render(&tools, dir.path(), &format!("{name}-{i}"), Some(&ass), None).await;
            frames.push(frame(
                &video,
                0.2,
                &dir.path().join(format!("{name}-{i}.png")),
            ));
        }
        for (i, rgb) in frames.iter().enumerate() {
            let (left, top, right, bottom) = caption_box(rgb, 1080).unwrap();
            assert!(
                left >= SAFE_AREA.left
                    && top >= SAFE_AREA.top
                    && right <= SAFE_AREA.right
                    && bottom <= SAFE_AREA.bottom,
                "{name} {i}: captions at x {left}–{right}, y {top}–{bottom}, outside {SAFE_AREA:?}"
            );
            let drawn = caption_pixels(rgb);
            // Three words of 92-pixel letters with their outline: tens of thousands.
            assert!(drawn > 8_000, "{name} {i}: only {drawn} caption pixels");
        }
        // Boxes would differ in no pixel at all; a swapped pair of real glyphs in
        // thousands.
        let apart = differing(&frames[0], &frames[1]);
        assert!(
            apart > 1_000,
            "{name}: a text and its reverse differ in only {apart} pixels, as boxes for missing glyphs would"
        );
    }
}

#[test]
fn a_text_script_in_japanese_and_in_russian_renders_real_glyphs() {
    use crate::support::{Factory, write};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A plain moving background (noise well under the caption threshold, and no frozen
    // picture for the quality gate).
    std::fs::create_dir(d.join("clips")).unwrap();
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=0x206040:size=1080x1920:rate=30:duration=4,noise=alls=8:allf=t",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        d.join("clips/plain.mp4").to_str().unwrap(),
    ]);
    write(
        d,
        "scripts.yaml",
        "version: 1\nname: scripts\nvoices:\n  ja: { provider: espeak, voice: ja }\n  ru: { provider: espeak, voice: ru }\n\
         templates:\n  t:\n    script: { provider: text, seconds: 5 }\n    footage: { provider: local, dir: clips, clips: 1 }\n\
         \x20   captions: { style: bold-center, highlight: none }\n    title: \"{{ topic }}\"\n\
         batch:\n  template: t\n  matrix:\n    topic: [cats]\n    voice: [ja]\n    include:\n\
         \x20     - { topic: owls, voice: ja, vars: { script: \"フクロウは夜によく見ます。\" } }\n\
         \x20     - { topic: mice, voice: ru, vars: { script: \"Кошки спят почти весь день, а ночью они охотятся на мышей.\" } }\n\
         \x20 vars: { script: \"猫は昼にたくさん眠ります。\" }\n",
    );
    let run = Factory::new()
        .args(["--state-dir", "state", "run", "scripts.yaml"])
        .current_dir(d)
        .run();
    assert_eq!(run.code, 0, "{run:?}");
    let draft = |topic: &str| {
        std::fs::read_dir(d.join("state/drafts/scripts"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                name.starts_with(&format!("{topic}-")) && name.ends_with(".mp4")
            })
            .unwrap_or_else(|| panic!("no draft for {topic}"))
    };
    let frames: Vec<Vec<u8>> = ["cats", "owls", "mice"]
        .iter()
        .map(|topic| frame(&draft(topic), 1.0, &d.join(format!("{topic}.png"))))
        .collect();
    if let Some(out) = std::env::var_os("FACTORY_SCREENSHOTS") {
        for (topic, file) in [
            ("owls", "captions-japanese.png"),
            ("mice", "captions-russian.png"),
        ] {
            std::fs::copy(d.join(format!("{topic}.png")), Path::new(&out).join(file)).unwrap();
        }
    }
    for (topic, rgb) in ["cats", "owls", "mice"].iter().zip(&frames) {
        let drawn = caption_pixels(rgb);
        assert!(drawn > 8_000, "{topic}: only {drawn} caption pixels");
    }
    let apart = differing(&frames[0], &frames[1]);
    assert!(
        apart > 5_000,
        "two Japanese sentences differ in only {apart} pixels, as boxes for missing glyphs would"
    );
}
