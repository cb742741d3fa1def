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

/// What the creator does by hand before posting. TikTok's inbox upload cannot set a
/// cover or the "AI-generated content" label (both are Direct Post fields), and a draft
/// from the drafts folder is uploaded by hand anyway. A local draft's cover is named:
/// `<draft-name>.jpg` beside it.
pub fn checklist(spec: &JobSpec, job_id: &str) -> Vec<String> {
    let at = crate::media::COVER_SECONDS;
    let cover = if spec.publish.tiktok.is_none() {
        format!(
            "Pick the cover: upload `{}.jpg` (beside the draft), or pick the frame at {at} s.",
            file_name(spec, job_id)
        )
    } else {
        format!("Pick the cover: the frame at {at} s, on the hook.")
    };
    vec![
        "Paste the caption and its hashtags.".to_owned(),
        cover,
        "Turn on \"AI-generated content\" (under More options) before posting.".to_owned(),
    ]
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
        job_id: id.clone(),
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
        // The frame the render kept beside the video; a render from before covers has none.
        cover: Some(video.with_file_name(super::render::COVER)).filter(|c| c.exists()),
        checklist: checklist(spec, &id),
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
    use super::{checklist, slug};

    fn spec(publish: &str) -> crate::expand::JobSpec {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            format!(
                "version: 1\nname: c\nvoices:\n  a: {{ provider: espeak, voice: en-us }}\ntemplates:\n  t:\n    script: {{ provider: offline, seconds: 8 }}\n    title: \"{{{{ topic }}}}\"\nbatch:\n  template: t\n  matrix: {{ topic: [Owls], voice: [a] }}\n{publish}"
            ),
        )
        .unwrap();
        let (recipes, diagnostics) = crate::cli::load_all(&[path]);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        recipes[0].jobs[0].spec.clone()
    }

    #[test]
    fn the_checklist_names_a_local_cover_and_the_frame_for_an_inbox_draft() {
        let local = checklist(&spec(""), "0123456789abcdef");
        assert_eq!(
            local,
            [
                "Paste the caption and its hashtags.",
                "Pick the cover: upload `owls-a-01234567.jpg` (beside the draft), or pick the frame at 0.7 s.",
                "Turn on \"AI-generated content\" (under More options) before posting.",
            ]
        );
        let inbox = checklist(
            &spec("publish: { tiktok: { account: main } }\n"),
            "0123456789abcdef",
        );
        assert_eq!(inbox[1], "Pick the cover: the frame at 0.7 s, on the hook.");
        assert_eq!(inbox[2], local[2]);
    }

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
