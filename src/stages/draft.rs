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

/// The name a creator finds a draft by: `<topic-slug>-<voice>-<short id>`, e.g.
/// `black-holes-narrator-3f9a0c12`. Not part of the key: a draft delivered under an
/// earlier name is not sent again for a new one.
pub fn file_name(spec: &JobSpec, job_id: &str) -> String {
    let short = job_id.get(..8).unwrap_or(job_id);
    let mut name = slug(&spec.topic, 48);
    let voice = slug(&spec.voice_name, 24);
    for part in [voice.as_str(), short] {
        if !part.is_empty() {
            if !name.is_empty() {
                name.push('-');
            }
            name.push_str(part);
        }
    }
    name
}

/// Lowercase letters and digits (accented and other scripts kept, so a name stays
/// readable), every other run of characters one dash, at most `max` characters, cut at
/// a dash where it can be.
fn slug(text: &str, max: usize) -> String {
    let mut out: Vec<char> = Vec::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            out.push(c);
        } else if out.last().is_some_and(|&l| l != '-') {
            out.push('-');
        }
    }
    if out.len() > max {
        out.truncate(max);
        if let Some(dash) = out.iter().rposition(|&c| c == '-').filter(|&d| d > max / 2) {
            out.truncate(dash);
        }
    }
    while out.last() == Some(&'-') {
        out.pop();
    }
    out.into_iter().collect()
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
        name: file_name(spec, &id),
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

#[cfg(test)]
mod tests {
    use super::slug;

    #[test]
    fn slugs_are_short_lowercase_and_dashed() {
        assert_eq!(slug("Black holes", 48), "black-holes");
        assert_eq!(slug("  Crème brûlée: 3 ways!  ", 48), "crème-brûlée-3-ways");
        assert_eq!(slug("../../etc/passwd", 48), "etc-passwd");
        assert_eq!(slug("日本の夏", 3), "日本の");
        assert_eq!(slug("?!", 48), "");
        assert_eq!(
            slug("the quick brown fox jumps over the lazy dog again", 20),
            "the-quick-brown-fox"
        );
        assert_eq!(slug("a".repeat(30).as_str(), 10), "aaaaaaaaaa");
    }
}
