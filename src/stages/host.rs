//! Host: a short-lived copy of the video a person can open (R2, or a local folder).
//! A side effect: sent at most once per key, reconciled by the object key.

use std::path::Path;

use serde_json::{Value, json};

use super::Stage;
use crate::engine::{EffectKind, Effected, Halt, JobRun};
use crate::expand::JobSpec;
use crate::keys::stage_key;
use crate::providers::HostRequest;

pub const VERSION: u32 = 2;

/// The render, the job and where it is hosted: two jobs never share a hosted object.
pub fn key(spec: &JobSpec, job_id: &str, render_key: &str) -> String {
    stage_key(
        Stage::Host.as_str(),
        VERSION,
        &[
            &json!(render_key),
            &json!(job_id),
            &json!(spec.publish.host),
        ],
    )
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
