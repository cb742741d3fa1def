//! The one integration-test binary. Each module covers one area; shared helpers live in
//! `support`.

mod ci_mode;
mod cli;
mod completions;
mod fakes;
mod job_id;
mod plan;
mod providers_elevenlabs;
mod providers_keys;
mod providers_openrouter;
mod providers_pexels;
mod publish_r2;
mod publish_telegram;
mod publish_tiktok;
mod report;
mod schema;
mod support;
mod validate;
mod watch;
