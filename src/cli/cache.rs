//! `factory cache verify`: every artifact checked against its manifest's digests. What
//! fails is removed, so the next run builds it again instead of using it.

use std::path::Path;

use serde_json::json;

use super::{CmdResult, Failure, Outcome, out, out_json};
use crate::artifacts::ArtifactStore;

pub async fn verify(cache: &Path, json: bool) -> CmdResult {
    let (checked, bad) = ArtifactStore::at(cache)
        .verify_all()
        .await
        .map_err(|e| Failure::environment(e.to_string()))?;
    if json {
        let bad: Vec<_> = bad
            .iter()
            .map(|(stage, key, problem)| json!({ "stage": stage, "key": key, "problem": problem }))
            .collect();
        out_json(&json!({ "event": "cache_verified", "checked": checked, "failed": bad }));
    } else {
        let mut text = format!(
            "checked {checked} artifact{} in `{}`: {} failed\n",
            if checked == 1 { "" } else { "s" },
            cache.display(),
            bad.len()
        );
        for (stage, key, problem) in &bad {
            text.push_str(&format!(
                "  {stage} {key}: {problem}; removed, the next run builds it again\n"
            ));
        }
        out(&text);
    }
    Ok(if bad.is_empty() {
        Outcome::Ok
    } else {
        Outcome::JobsFailed
    })
}
