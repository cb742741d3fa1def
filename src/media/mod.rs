//! Everything that touches audio and video files: finding and running ffmpeg, ffprobe
//! and espeak-ng, probing and verifying media, ASS captions, loudness, and the render.

mod captions;
mod error;
pub mod gates;
mod loudness;
mod probe;
mod render;
#[cfg(test)]
pub(crate) mod testing;
mod tools;

pub use captions::{CaptionPosition, CaptionStyle, Rect, Rgb, SAFE_AREA, ass};
pub use error::MediaError;
pub use gates::{Gate, GateFailure, GateSpec};
pub use loudness::integrated_lufs;
pub use probe::{
    AudioStream, Limits, MediaInfo, TIKTOK_MAX_SECONDS, VideoStream, check, check_tiktok, probe,
    verify_media,
};
pub use render::{RenderSpec, TARGET_LUFS, frame_shares, render, render_args};
pub use tools::{INSTALL_HINT, MissingTool, MissingTools, Tools};

pub(crate) use tools::{media_url, run};
