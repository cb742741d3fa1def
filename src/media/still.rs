//! Stills: pictures shown for a whole scene. The offline still (a two-colour gradient
//! chosen by the scene's words, the words set large over it) and the Ken Burns move the
//! render gives every still, a slow zoom or pan chosen per still, in the render's own
//! graph.

use std::ffi::OsString;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::tools::{media_url, run};
use super::{MediaError, Tools};

/// Picture files footage may be: shown as stills and moved, never decoded as video.
pub const STILL_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp"];

/// Whether `path` names a still by its extension.
pub fn is_still(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| STILL_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Deep and light colour pairs that sit well under white words: the gradient runs from
/// the first to the second.
const PALETTE: &[(&str, &str)] = &[
    ("0x1F2A44", "0xC97B63"),
    ("0x0F3D3E", "0xE2B659"),
    ("0x2B1E3F", "0xE86A92"),
    ("0x13315C", "0x5FA8D3"),
    ("0x3A2618", "0xD9A05B"),
    ("0x1B4332", "0x95D5B2"),
    ("0x2D3142", "0xEF8354"),
    ("0x22223B", "0x9A8C98"),
    ("0x0B525B", "0xF4D35E"),
    ("0x4A1942", "0xF2A65A"),
];

/// The first eight bytes of the SHA-256 of `text`: stable across releases, unlike
/// `std`'s hasher.
pub fn text_hash(text: &str) -> u64 {
    let digest = Sha256::digest(text.as_bytes());
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(bytes)
}

/// The ffmpeg arguments that draw the offline still for `words` (its colours and the
/// gradient's direction from `seed`) at `width`×`height` into `out`, with the words from
/// the ASS file `words_ass`.
fn draw_args(seed: u64, width: u32, height: u32, words_ass: &Path, out: &Path) -> Vec<OsString> {
    let (deep, light) = PALETTE[(seed % PALETTE.len() as u64) as usize];
    // From a top corner to the opposite bottom corner, or top to bottom.
    let (x0, x1) = match (seed >> 8) % 3 {
        0 => (0, width),
        1 => (width, 0),
        _ => (width / 2, width / 2),
    };
    let graph = format!(
        "gradients=s={width}x{height}:n=2:c0={deep}:c1={light}:x0={x0}:y0=0:x1={x1}:y1={height}:\
         speed=0.00001:d=1,vignette=PI/5,ass=filename={}",
        super::render::filter_value(&words_ass.to_string_lossy())
    );
    [
        "-nostdin",
        "-hide_banner",
        "-v",
        "error",
        "-f",
        "lavfi",
        "-i",
    ]
    .map(OsString::from)
    .into_iter()
    .chain([graph.into()])
    .chain(["-frames:v", "1", "-update", "1", "-y"].map(OsString::from))
    .chain([media_url(out)])
    .collect()
}

/// The scene's words as a subtitle over the whole still: large, bold, white with a soft
/// shadow, wrapped and centred in the upper part of the frame (clear of the captions).
fn words_ass(words: &str, width: u32, height: u32) -> String {
    // Override blocks and escapes are ASS syntax, not words.
    let text: String = words
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace(['{', '}'], "")
        .replace('\\', "/");
    let size = width / 9;
    let margin = width / 12;
    let top = height / 6;
    format!(
        "[Script Info]\nScriptType: v4.00+\nPlayResX: {width}\nPlayResY: {height}\nWrapStyle: 0\n\n\
         [V4+ Styles]\nFormat: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, \
         BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, \
         Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding\n\
         Style: Words,DejaVu Sans,{size},&H00FFFFFF,&H00FFFFFF,&H60000000,&H80000000,1,0,0,0,100,100,0,0,1,\
         2,4,8,{margin},{margin},{top},1\n\n\
         [Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n\
         Dialogue: 0,0:00:00.00,0:00:10.00,Words,,0,0,0,,{text}\n"
    )
}

/// Draws the offline still for `words` into `out` (a `.png`): a gradient whose colours
/// and direction come from `seed`, the words set large over it.
pub async fn draw(
    tools: &Tools,
    words: &str,
    seed: u64,
    width: u32,
    height: u32,
    out: &Path,
) -> Result<(), MediaError> {
    let dir = out.parent().unwrap_or(Path::new("."));
    let io = |source| MediaError::Io {
        path: out.to_owned(),
        source,
    };
    let ass = tempfile::Builder::new()
        .prefix(".words-")
        .suffix(".ass")
        .tempfile_in(dir)
        .map_err(io)?;
    tokio::fs::write(ass.path(), words_ass(words, width, height))
        .await
        .map_err(io)?;
    run(
        &tools.ffmpeg,
        draw_args(seed, width, height, ass.path(), out),
    )
    .await?;
    Ok(())
}

/// How a still moves over its scene: a slow zoom in or out on the centre, or a pan
/// across the picture held slightly enlarged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    ZoomIn,
    ZoomOut,
    PanRight,
    PanLeft,
    PanDown,
    PanUp,
}

/// The most a still is enlarged while it moves: enough to see, slow enough to read.
const ZOOM: f64 = 0.12;
/// A still is filled to this many times the frame before it moves, so the move's
/// whole-pixel steps are finer than a pixel of the output.
const OVERSAMPLE: f64 = 1.5;

impl Move {
    const ALL: [Self; 6] = [
        Self::ZoomIn,
        Self::PanRight,
        Self::ZoomOut,
        Self::PanUp,
        Self::PanLeft,
        Self::PanDown,
    ];

    /// The move of the `index`th clip of a render when it is the still `path`:
    /// deterministic, and neighbouring stills move differently.
    pub fn of(path: &Path, index: usize) -> Self {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let start = text_hash(&name) as usize;
        Self::ALL[start.wrapping_add(index) % Self::ALL.len()]
    }

    /// The filter chain that turns one decoded picture into `frames` frames of
    /// `width`×`height` at `fps`, filled (never letterboxed) and moving.
    pub fn filter(self, width: u32, height: u32, fps: u32, frames: u64) -> String {
        let (bw, bh) = (
            even(f64::from(width) * OVERSAMPLE),
            even(f64::from(height) * OVERSAMPLE),
        );
        // `on` is the output frame number; `p` runs from 0 to 1 over the scene.
        let p = format!("(on/{})", frames.saturating_sub(1).max(1));
        let zoom = match self {
            Self::ZoomIn => format!("1+{ZOOM}*{p}"),
            Self::ZoomOut => format!("{}-{ZOOM}*{p}", 1.0 + ZOOM),
            _ => format!("{}", 1.0 + ZOOM),
        };
        let centre_x = "(iw-iw/zoom)/2".to_owned();
        let centre_y = "(ih-ih/zoom)/2".to_owned();
        let (x, y) = match self {
            Self::ZoomIn | Self::ZoomOut => (centre_x, centre_y),
            Self::PanRight => (format!("(iw-iw/zoom)*{p}"), centre_y),
            Self::PanLeft => (format!("(iw-iw/zoom)*(1-{p})"), centre_y),
            Self::PanDown => (centre_x, format!("(ih-ih/zoom)*{p}")),
            Self::PanUp => (centre_x, format!("(ih-ih/zoom)*(1-{p})")),
        };
        format!(
            "scale={bw}:{bh}:force_original_aspect_ratio=increase,crop={bw}:{bh},setsar=1,\
             zoompan=z='{zoom}':x='{x}':y='{y}':d={frames}:s={width}x{height}:fps={fps},\
             trim=end_frame={frames},setsar=1"
        )
    }
}

fn even(value: f64) -> u32 {
    (value / 2.0).round() as u32 * 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::testing;

    #[test]
    fn stills_are_known_by_their_extension() {
        for name in ["a.jpg", "b.JPEG", "c.png", "d.webp"] {
            assert!(is_still(Path::new(name)), "{name}");
        }
        for name in ["a.mp4", "b.mov", "png", "c.png.mp4"] {
            assert!(!is_still(Path::new(name)), "{name}");
        }
    }

    #[test]
    fn moves_are_deterministic_and_neighbours_differ() {
        let path = Path::new("/cache/footage/s03/image-00.png");
        assert_eq!(Move::of(path, 2), Move::of(path, 2));
        assert_ne!(Move::of(path, 2), Move::of(path, 3));
        let chain = Move::ZoomIn.filter(1080, 1920, 30, 91);
        assert!(
            chain
                .starts_with("scale=1620:2880:force_original_aspect_ratio=increase,crop=1620:2880"),
            "{chain}"
        );
        assert!(chain.contains("z='1+0.12*(on/90)'"), "{chain}");
        assert!(chain.contains("d=91:s=1080x1920:fps=30"), "{chain}");
        // No comma inside an expression: it would end the filter in the graph.
        for m in Move::ALL {
            let chain = m.filter(540, 960, 30, 10);
            let zoompan = chain.split(',').find(|f| f.starts_with("zoompan")).unwrap();
            assert!(zoompan.ends_with("fps=30"), "{m:?}: {chain}");
        }
    }

    #[test]
    fn the_words_cannot_inject_ass_overrides() {
        let ass = words_ass("owl {\\fs400} at\nnight", 1080, 1920);
        let line = ass.lines().last().unwrap();
        assert!(line.ends_with(",owl /fs400 at night"), "{line}");
    }

    #[tokio::test]
    async fn the_offline_still_is_a_gradient_with_words_not_noise() {
        let tools = testing::tools();
        let dir = tempfile::tempdir().unwrap();
        let words = dir.path().join("words.png");
        let other = dir.path().join("other.png");
        draw(&tools, "owl at night", 3, 270, 480, &words)
            .await
            .unwrap();
        draw(&tools, "", 3, 270, 480, &other).await.unwrap();
        let info = crate::media::probe(&tools, &words).await.unwrap();
        let video = info.video.unwrap();
        assert_eq!((video.width, video.height), (270, 480));
        let with = testing::frame(&tools, &words, 0.0, 54, 96).await;
        let without = testing::frame(&tools, &other, 0.0, 54, 96).await;
        // The words change the picture.
        assert!(testing::differing_pixels(&with, &without) > 54 * 96 / 50);
        // Without words it is smooth: neighbouring pixels differ little (noise would not).
        let rough = without
            .chunks_exact(3)
            .zip(without.chunks_exact(3).skip(1))
            .filter(|(a, b)| a.iter().zip(*b).any(|(p, q)| p.abs_diff(*q) > 24))
            .count();
        assert!(rough < 54 * 96 / 50, "{rough} rough pixels");
        // Top and bottom are different colours: a gradient, not a flat fill.
        let top = &without[..3];
        let bottom = &without[without.len() - 3..];
        assert!(
            top.iter().zip(bottom).any(|(a, b)| a.abs_diff(*b) > 40),
            "{top:?} {bottom:?}"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".ass"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
