//! The one integration-test binary. Each module covers one area; shared helpers live in
//! `support`.

mod auth;
mod cli;
mod fakes;
mod job_id;
mod pipeline;
mod pipeline_real;
mod plan;
mod plan_spend;
mod privacy_export;
mod privacy_gc;
mod privacy_purge;
mod privacy_schema;
mod providers_elevenlabs;
mod providers_keys;
mod providers_openrouter;
mod providers_pexels;
mod publish_r2;
mod publish_telegram;
mod publish_tiktok;
mod schema;
mod support;
mod validate;
