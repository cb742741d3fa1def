//! What the privacy policy promises, in code: tokens encrypted at rest.

pub mod crypto;
