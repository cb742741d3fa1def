//! Fake servers for the real services, bound to 127.0.0.1, checking what the clients send
//! against the documented contracts.

pub mod publish_support;
pub mod telegram;
pub mod tiktok;
