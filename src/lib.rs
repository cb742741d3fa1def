//! TikTok Factory: recipes in, vertical videos out, delivered as TikTok inbox drafts.
//!
//! The flow, one module per step: [`recipe`] loads and validates, [`expand`] turns a
//! recipe into jobs, [`plan`] diffs them against the [`store`], and [`engine`] runs the
//! [`stages`] through [`providers`] and [`media`].

pub mod privacy;
pub mod providers;
pub mod secret;
