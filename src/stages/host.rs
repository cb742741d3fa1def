//! Host: a short-lived copy of the video a person can open (R2, or a local folder).
//! A side effect: sent at most once per key, reconciled by the object key.

use std::path::Path;

use serde_json::{Value, json};

use super::Stage;
use crate::engine::{EffectKind, Effected, Halt, JobRun};
use crate::expand::JobSpec;
use crate::keys::Inputs;
use crate::providers::HostRequest;

pub const VERSION: u32 = 2;

/// The render, the job and where it is hosted: two jobs never share a hosted object.
pub fn key(spec: &JobSpec, job_id: &str, render_key: &str) -> String {
    inputs(spec, job_id, render_key).key()
}

/// What [`key`] hashes, by name.
pub fn inputs(spec: &JobSpec, job_id: &str, render_key: &str) -> Inputs {
    Inputs::new(Stage::Host, VERSION)
        .part("render_key", json!(render_key))
        .part("job_id", json!(job_id))
        .part("host", json!(spec.publish.host))
}

/// The hosted copy's receipt (`url`, `location`, `expires_at`).
pub async fn run(
    job: &mut JobRun<'_>,
    video: &Path,
    render_key: &str,
    expires: i64,
) -> Result<Value, Halt> {
    let spec = job.spec();
    let services = job.services();
    let id = job.id();
    let key = key(spec, &id, render_key);
    let request = HostRequest {
        path: video.to_owned(),
        key: format!("{}/{id}.mp4", spec.recipe),
        content_type: "video/mp4".into(),
        expires_at: expires,
    };
    let request = &request;
    let done = job
        .effect(
            Stage::Host,
            &key,
            EffectKind::Reconcilable,
            |_log| async move {
                let host = services.host(&spec.publish)?;
                Ok(json!(host.put(request).await?))
            },
        )
        .await?;
    Ok(match done {
        Effected::Done(v) => v,
        Effected::Unconfirmed => Value::Null,
    })
}
