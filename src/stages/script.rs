//! Script: the words a video says, written by an LLM or the offline writer. Paid: its
//! key never changes by accident (see the golden keys in `keys`).

use serde_json::json;

use super::Stage;
use crate::artifacts::Hit;
use crate::engine::{Built, Halt, JobRun};
use crate::expand::JobSpec;
use crate::keys::Inputs;
use crate::providers::{Script, ScriptRequest};

pub const VERSION: u32 = 1;
const FILE: &str = "script.json";

/// The script settings and the topic.
pub fn key(spec: &JobSpec) -> String {
    inputs(spec).key()
}

/// What [`key`] hashes, by name.
pub fn inputs(spec: &JobSpec) -> Inputs {
    Inputs::new(Stage::Script, VERSION)
        .part("script", json!(spec.script))
        .part("topic", json!(spec.topic))
}

pub async fn run(job: &mut JobRun<'_>) -> Result<Script, Halt> {
    let spec = job.spec();
    let services = job.services();
    let key = key(spec);
    let hit = job
        .cached(Stage::Script, &key, None, |work| async move {
            let writer = services.script_writer(&spec.script)?;
            let request = ScriptRequest {
                topic: spec.topic.clone(),
                prompt: spec.script.prompt.clone().unwrap_or_default(),
                seconds: spec.script.seconds,
                cta: spec.script.cta.clone(),
                models: spec.script.models.clone(),
                temperature: spec.script.temperature,
                seed: spec.script.seed,
            };
            let script = writer.write(&request).await?;
            let value = json!(script);
            super::write_json(&work.join(FILE), &value).await?;
            Ok(Built {
                main: FILE.to_owned(),
                output: value,
                cost: script.usage.as_ref().and_then(|u| u.cost),
            })
        })
        .await?;
    output(&hit)
}

/// The cached script of an entry.
pub fn output(hit: &Hit) -> Result<Script, Halt> {
    hit.output()
        .map_err(|e| Halt::failed(Stage::Script, e.to_string()))
}
