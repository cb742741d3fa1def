//! The cover: one frame of the finished video as a JPEG, for the creator to pick when
//! posting (TikTok's inbox upload cannot set one).

use std::path::Path;

use super::tools::{media_url, run};
use super::{MediaError, Tools};

/// Where a cover is taken: early, on the hook, once the first caption is up.
pub const COVER_SECONDS: f64 = 0.7;

/// Writes the frame of `video` at `at` seconds (or its last frame, for a shorter video)
/// to `out` as a full-size JPEG. Seeks on the input, so only the frames from the
/// keyframe before `at` are decoded; written beside `out` and renamed, so a failure
/// leaves nothing there.
pub async fn cover(tools: &Tools, video: &Path, at: f64, out: &Path) -> Result<(), MediaError> {
    let dir = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let io_error = |source| MediaError::Io {
        path: out.to_path_buf(),
        source,
    };
    let temp = tempfile::Builder::new()
        .prefix(".cover-")
        .suffix(".jpg")
        .tempfile_in(dir)
        .map_err(io_error)?;
    let info = super::probe(tools, video).await?;
    // A frame before the end, so a short video still has one to give.
    let at = at.min((info.duration - 0.1).max(0.0)).max(0.0);
    run(
        &tools.ffmpeg,
        [
            "-nostdin".into(),
            "-hide_banner".into(),
            "-loglevel".into(),
            "error".into(),
            "-y".into(),
            "-ss".into(),
            format!("{at:.3}").into(),
            "-i".into(),
            media_url(video),
            "-frames:v".into(),
            "1".into(),
            "-q:v".into(),
            "2".into(),
            "-f".into(),
            "image2".into(),
            "-c:v".into(),
            "mjpeg".into(),
            media_url(temp.path()),
        ],
    )
    .await?;
    let written = tokio::fs::metadata(temp.path())
        .await
        .map_err(io_error)?
        .len();
    if written == 0 {
        return Err(MediaError::Corrupt {
            path: video.to_path_buf(),
            reason: format!("no frame at {at:.2} s to take a cover from"),
        });
    }
    temp.persist(out).map_err(|error| io_error(error.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{probe, testing};

    #[tokio::test]
    async fn the_cover_is_a_full_size_jpeg_of_an_early_frame() {
        let tools = testing::tools();
        let dir = tempfile::tempdir().unwrap();
        let video = dir.path().join("v.mp4");
        // Black for the first half second, then white: the cover is taken past it.
        testing::clip(
            &tools,
            "color=c=black:s=180x320:r=30,geq=lum='if(lt(T,0.5),0,255)':cb=128:cr=128",
            2.0,
            &video,
        )
        .await;
        let out = dir.path().join("cover.jpg");
        cover(&tools, &video, COVER_SECONDS, &out).await.unwrap();
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(&bytes[..3], [0xFF, 0xD8, 0xFF], "a JPEG");
        let info = probe(&tools, &out).await.unwrap();
        let picture = info.video.unwrap();
        assert_eq!((picture.width, picture.height), (180, 320));
        let frame = testing::frame(&tools, &out, 0.0, 18, 32).await;
        let mean = frame.iter().map(|&p| u64::from(p)).sum::<u64>() / frame.len() as u64;
        assert!(mean > 200, "the frame at 0.7 s is white, got mean {mean}");

        // A video shorter than the cover time gives its last frame.
        let short = dir.path().join("short.mp4");
        testing::clip(&tools, "color=c=white:s=180x320:r=30", 0.4, &short).await;
        cover(&tools, &short, COVER_SECONDS, &out).await.unwrap();
        assert!(std::fs::metadata(&out).unwrap().len() > 0);
    }

    #[tokio::test]
    async fn a_video_that_does_not_decode_leaves_no_cover() {
        let tools = testing::tools();
        let dir = tempfile::tempdir().unwrap();
        let video = dir.path().join("broken.mp4");
        std::fs::write(&video, "not a video").unwrap();
        let out = dir.path().join("cover.jpg");
        assert!(cover(&tools, &video, COVER_SECONDS, &out).await.is_err());
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "only the input remains");
    }
}
