//! `factory export`: everything stored about the user, as one JSON document.

use std::path::PathBuf;

use super::{CmdResult, Failure, Outcome, out};
use crate::store::Store;

pub async fn run(out_file: Option<PathBuf>, store: &crate::store::StoreUrl) -> CmdResult {
    let document = match Store::open_read_only(store).await? {
        Some(store) => {
            let document = crate::privacy::export::export(&store).await;
            store.close().await;
            document.map_err(|e| Failure::environment(format!("cannot read the store: {e}")))?
        }
        None => serde_json::json!({
            "schema": crate::privacy::export::SCHEMA,
            "exported_at": crate::clock::now(),
            "accounts": [],
            "jobs": [],
            "effects": [],
        }),
    };
    let mut text = serde_json::to_string_pretty(&document).unwrap_or_default();
    text.push('\n');
    match out_file {
        None => out(&text),
        Some(path) => {
            // The export holds the user's content: owner-only, like the store it came from.
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let written = options
                .open(&path)
                .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()));
            written.map_err(|e| {
                Failure::environment(format!("cannot write `{}`: {e}", path.display()))
            })?;
        }
    }
    Ok(Outcome::Ok)
}
