//! Helpers for tests that run the real tools on tiny generated inputs.

use std::path::Path;

use super::Tools;
use super::tools::{media_url, run};

pub(crate) fn tools() -> Tools {
    Tools::detect().expect("ffmpeg, ffprobe and espeak-ng are installed")
}

/// Encodes `seconds` of a lavfi video source as H.264 with the index at the front.
pub(crate) async fn clip(tools: &Tools, source: &str, seconds: f64, path: &Path) {
    run(
        &tools.ffmpeg,
        [
            "-nostdin".into(),
            "-v".into(),
            "error".into(),
            "-f".into(),
            "lavfi".into(),
            "-i".into(),
            source.into(),
            "-t".into(),
            seconds.to_string().into(),
            "-c:v".into(),
            "libx264".into(),
            "-preset".into(),
            "ultrafast".into(),
            "-pix_fmt".into(),
            "yuv420p".into(),
            "-movflags".into(),
            "+faststart".into(),
            "-y".into(),
            media_url(path),
        ],
    )
    .await
    .expect("test clip encodes");
}

/// Writes `seconds` of a lavfi audio source; the format follows the file extension.
pub(crate) async fn audio(tools: &Tools, source: &str, seconds: f64, path: &Path) {
    run(
        &tools.ffmpeg,
        [
            "-nostdin".into(),
            "-v".into(),
            "error".into(),
            "-f".into(),
            "lavfi".into(),
            "-i".into(),
            source.into(),
            "-t".into(),
            seconds.to_string().into(),
            "-y".into(),
            media_url(path),
        ],
    )
    .await
    .expect("test audio encodes");
}

/// One frame at `at` seconds, scaled to `width`×`height`, as raw RGB bytes.
pub(crate) async fn frame(tools: &Tools, path: &Path, at: f64, width: u32, height: u32) -> Vec<u8> {
    let output = run(
        &tools.ffmpeg,
        [
            "-nostdin".into(),
            "-v".into(),
            "error".into(),
            "-ss".into(),
            at.to_string().into(),
            "-i".into(),
            media_url(path),
            "-frames:v".into(),
            "1".into(),
            "-vf".into(),
            format!("scale={width}:{height}").into(),
            "-f".into(),
            "rawvideo".into(),
            "-pix_fmt".into(),
            "rgb24".into(),
            "-".into(),
        ],
    )
    .await
    .expect("frame decodes");
    assert_eq!(output.stdout.len(), (width * height * 3) as usize);
    output.stdout
}

/// Pixels whose colour differs clearly (more than compression noise) between two frames.
pub(crate) fn differing_pixels(a: &[u8], b: &[u8]) -> usize {
    assert_eq!(a.len(), b.len());
    a.chunks_exact(3)
        .zip(b.chunks_exact(3))
        .filter(|(x, y)| x.iter().zip(*y).any(|(p, q)| p.abs_diff(*q) > 40))
        .count()
}
