//! Draft: the video in the creator's TikTok inbox (or the local drafts folder), never a
//! published post. A side effect, reconciled through the recorded `publish_id`.

use std::path::Path;

use serde_json::{Value, json};

use super::Stage;
use crate::engine::{EffectKind, Effected, Halt, JobRun};
use crate::expand::JobSpec;
use crate::keys::Inputs;
use crate::providers::{Credit, DraftReceipt, DraftRequest};

pub const VERSION: u32 = 2;

/// The render, the job, the words that go with it and the account.
pub fn key(spec: &JobSpec, job_id: &str, render_key: &str, hashtags: &[String]) -> String {
    inputs(spec, job_id, render_key, hashtags).key()
}

/// What [`key`] hashes, by name.
pub fn inputs(spec: &JobSpec, job_id: &str, render_key: &str, hashtags: &[String]) -> Inputs {
    Inputs::new(Stage::Draft, VERSION)
        .part("render_key", json!(render_key))
        .part("job_id", json!(job_id))
        .part("post", json!([&spec.title, &spec.caption, hashtags]))
        .part("tiktok", json!(spec.publish.tiktok))
}

/// What goes with a draft: the post text the creator pastes.
pub struct Words<'a> {
    pub title: &'a str,
    pub caption: &'a str,
    pub hashtags: &'a [String],
    pub credits: &'a [Credit],
}

/// The draft's receipt (`external_id`, `status`).
pub async fn run(
    job: &mut JobRun<'_>,
    video: &Path,
    render_key: &str,
    words: &Words<'_>,
) -> Result<Value, Halt> {
    let spec = job.spec();
    let services = job.services();
    let id = job.id();
    let key = key(spec, &id, render_key, words.hashtags);
    let request = DraftRequest {
        video: video.to_owned(),
        job_id: id,
        recipe: spec.recipe.clone(),
        account: spec
            .publish
            .tiktok
            .as_ref()
            .map(|t| t.account.clone())
            .unwrap_or_default(),
        title: words.title.to_owned(),
        caption: words.caption.to_owned(),
        hashtags: words.hashtags.to_vec(),
        credits: words.credits.to_vec(),
    };
    let request = &request;
    // A draft delivered earlier is checked where it can be: a local draft truncated or
    // changed on disk is delivered again from its render.
    if let Some(result) = job.effect_result(Stage::Draft, &key).await?
        && let Ok(receipt) = serde_json::from_value::<DraftReceipt>(result)
    {
        let drafts = services
            .drafts(&spec.publish)
            .map_err(|e| Halt::failed(Stage::Draft, e.to_string()))?;
        if let Some(problem) = drafts
            .verify(request, &receipt)
            .await
            .map_err(|e| Halt::failed(Stage::Draft, e.to_string()))?
        {
            job.redo_effect(Stage::Draft, &key, problem).await?;
        }
    }
    let done = job
        .effect(
            Stage::Draft,
            &key,
            EffectKind::Reconcilable,
            |log| async move {
                let drafts = services.drafts(&spec.publish)?;
                Ok(json!(drafts.send(request, log.as_ref()).await?))
            },
        )
        .await?;
    Ok(match done {
        Effected::Done(v) => v,
        Effected::Unconfirmed => Value::Null,
    })
}
