//! Measuring loudness the way the platforms do (EBU R128), to check the render's
//! normalization.

use std::path::Path;

use super::tools::{media_url, run};
use super::{MediaError, Tools};

/// Integrated loudness of the first audio stream, in LUFS (ffmpeg's `ebur128` filter).
pub async fn integrated_lufs(tools: &Tools, path: &Path) -> Result<f64, MediaError> {
    let output = run(
        &tools.ffmpeg,
        [
            "-nostdin".into(),
            "-hide_banner".into(),
            "-nostats".into(),
            "-i".into(),
            media_url(path),
            "-map".into(),
            "0:a:0".into(),
            // Per-frame lines go to the verbose level, so only the summary is printed.
            "-af".into(),
            "ebur128=framelog=verbose".into(),
            "-f".into(),
            "null".into(),
            "-".into(),
        ],
    )
    .await?;
    parse_integrated(&String::from_utf8_lossy(&output.stderr)).ok_or_else(|| MediaError::Corrupt {
        path: path.to_path_buf(),
        reason: "ffmpeg printed no loudness summary".to_string(),
    })
}

/// The `I:` value of the `Integrated loudness:` block in the summary.
fn parse_integrated(log: &str) -> Option<f64> {
    let summary = &log[log.rfind("Summary:")?..];
    let block = &summary[summary.find("Integrated loudness:")?..];
    let value = block
        .lines()
        .find_map(|line| line.trim().strip_prefix("I:"))?;
    value.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::testing;

    #[test]
    fn reads_the_summary_value() {
        let log = "[Parsed_ebur128_0 @ 0x1] t: 2.9  M: -14.1 S: -14.0  I: -13.9 LUFS\n\
                   [Parsed_ebur128_0 @ 0x1] Summary:\n\n  Integrated loudness:\n    I:         -13.7 LUFS\n\
                   \x20   Threshold: -24.1 LUFS\n\n  Loudness range:\n    LRA:         0.6 LU\n";
        assert_eq!(parse_integrated(log), Some(-13.7));
        assert_eq!(parse_integrated("no summary here"), None);
    }

    #[tokio::test]
    async fn six_decibels_quieter_measures_six_lu_lower() {
        let tools = testing::tools();
        let dir = tempfile::tempdir().unwrap();
        let loud = dir.path().join("loud.wav");
        let quiet = dir.path().join("quiet.wav");
        testing::audio(&tools, "sine=f=1000:r=48000,volume=-10dB", 4.0, &loud).await;
        testing::audio(&tools, "sine=f=1000:r=48000,volume=-16dB", 4.0, &quiet).await;
        let loud = integrated_lufs(&tools, &loud).await.unwrap();
        let quiet = integrated_lufs(&tools, &quiet).await.unwrap();
        assert!(loud < -5.0 && loud > -40.0, "{loud}");
        assert!((loud - quiet - 6.0).abs() < 0.3, "{loud} vs {quiet}");
    }
}
