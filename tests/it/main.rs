//! The one integration-test binary. Each module covers one area; shared helpers live in
//! `support`.

mod cli;
mod fakes;
mod publish_r2;
mod publish_telegram;
mod publish_tiktok;
