//! The keys of the paid stages, computed in one place so the engine (which caches by
//! them) and the plan (which predicts what the cache saves) cannot drift apart.

use serde_json::json;

use super::cache::stage_key;
use crate::expand::JobSpec;

/// The script stage: the script settings and the topic.
pub fn script_key(spec: &JobSpec) -> String {
    stage_key("script", 1, &[&json!(spec.script), &json!(spec.topic)])
}

/// The variant that picks different footage for different jobs of one batch.
pub fn footage_variant(spec: &JobSpec) -> u64 {
    u64::from_str_radix(
        &stage_key(
            "variant",
            1,
            &[&json!([&spec.recipe, &spec.topic, &spec.template])],
        )[..12],
        16,
    )
    .unwrap_or(0)
}

/// The footage stage. Not keyed on the voice, so changing a voice reuses it.
pub fn footage_key(spec: &JobSpec) -> String {
    stage_key(
        "footage",
        1,
        &[
            &json!(spec.footage),
            &json!(spec.topic),
            &json!(footage_variant(spec)),
            &json!(spec.script.seconds),
        ],
    )
}

/// The voice stage: the voice settings and the lines it speaks (known once the script is).
pub fn voice_key(spec: &JobSpec, spoken: &[&str]) -> String {
    stage_key("voice", 1, &[&json!(spec.voice), &json!(spoken)])
}
