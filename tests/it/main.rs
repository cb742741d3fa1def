//! The one integration-test binary. Each module covers one area; shared helpers live in
//! `support`.

mod cli;
mod fakes;
mod providers_elevenlabs;
mod providers_keys;
mod providers_openrouter;
mod providers_pexels;
