//! What the privacy policy promises, in code: tokens encrypted at rest.

pub mod accounts;
pub mod crypto;
pub mod export;
pub mod paths;
pub mod permissions;
pub mod purge;
pub mod retention;

use std::path::{Path, PathBuf};

/// Where the token-encryption key file lives: `FACTORY_SECRET_KEY_FILE`, else the user's
/// config directory (so the key is not beside the database it protects), else the state
/// directory. `FACTORY_SECRET_KEY` in the environment takes precedence over any file.
pub fn key_file(state_dir: &Path) -> PathBuf {
    if let Some(p) = std::env::var_os("FACTORY_SECRET_KEY_FILE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|p| !p.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        });
    config.map_or_else(
        || state_dir.join("secret.key"),
        |c| c.join("tiktok-factory").join("secret.key"),
    )
}
