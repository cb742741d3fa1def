//! TikTok Factory: recipes in, vertical videos out, delivered as TikTok inbox drafts.
//!
//! The flow, one module per step: [`recipe`] loads and validates, [`expand`] turns a
//! recipe into jobs, [`plan`] diffs them against the [`store`], and [`engine`] runs the
//! [`stages`] through [`providers`] and [`media`].

pub mod artifacts;
pub mod cli;
pub mod clock;
pub mod disk;
pub mod engine;
pub mod expand;
pub mod keys;
pub mod lock;
pub mod media;
pub mod plan;
pub mod preflight;
pub mod privacy;
pub mod providers;
pub mod queue;
pub mod recipe;
pub mod registry;
pub mod secret;
pub mod stages;
pub mod store;
