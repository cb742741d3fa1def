//! Reading a media file's duration with `ffprobe`, which also proves the file is readable.

use std::path::Path;

/// The container duration in seconds; an error says why the file is not usable media.
pub(crate) async fn duration(path: &Path) -> Result<f64, String> {
    let output = tokio::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "default=noprint_wrappers=1:nokey=1",
        ])
        .arg(path)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run `ffprobe`: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!("`ffprobe` cannot read it: {}", stderr.trim()));
    }
    match stdout.trim().parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds > 0.0 => Ok(seconds),
        _ => Err(format!(
            "`ffprobe` found no duration: {}",
            if stderr.trim().is_empty() {
                stdout.trim()
            } else {
                stderr.trim()
            }
        )),
    }
}
