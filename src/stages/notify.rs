//! Notify: the creator hears a draft is waiting (Telegram, or a log line). Telegram
//! cannot be asked whether a message arrived, so a notice goes out at most once: one
//! whose answer was lost is reported unconfirmed, never sent again.

use serde_json::json;

use super::Stage;
use crate::engine::{EffectKind, Effected, Halt, JobRun};
use crate::expand::JobSpec;
use crate::keys::Inputs;
use crate::providers::{Credit, Notice};

pub const VERSION: u32 = 1;

/// The draft (by its key) and where the notice goes.
pub fn key(spec: &JobSpec, draft_key: &str) -> String {
    inputs(spec, draft_key).key()
}

/// What [`key`] hashes, by name.
pub fn inputs(spec: &JobSpec, draft_key: &str) -> Inputs {
    Inputs::new(Stage::Notify, VERSION)
        .part("draft_key", json!(draft_key))
        .part("notify", json!(spec.notify))
}

/// Whether the notice was confirmed sent.
pub async fn run(job: &mut JobRun<'_>, draft_key: &str, text: String) -> Result<bool, Halt> {
    let spec = job.spec();
    let services = job.services();
    let key = key(spec, draft_key);
    let notice = Notice {
        chat: spec
            .notify
            .as_ref()
            .and_then(|n| n.telegram.as_ref())
            .map(|t| t.chat.clone())
            .unwrap_or_default(),
        text,
    };
    let notice = &notice;
    let done = job
        .effect(
            Stage::Notify,
            &key,
            EffectKind::AtMostOnce,
            |_log| async move {
                let notifier = services.notifier(spec.notify.as_ref())?;
                Ok(json!({ "message_id": notifier.send(notice).await? }))
            },
        )
        .await?;
    Ok(matches!(done, Effected::Done(_)))
}

/// The notice a creator reads: what to paste when posting the draft by hand.
pub fn text(
    title: &str,
    caption: &str,
    hashtags: &[String],
    credits: &[Credit],
    link: &str,
    draft: &str,
    deleted_at: i64,
) -> String {
    let mut text = format!("New draft: {title}\n\n{caption}");
    if !hashtags.is_empty() {
        text.push_str("\n\n");
        text.push_str(
            &hashtags
                .iter()
                .map(|h| format!("#{h}"))
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    if !credits.is_empty() {
        text.push_str("\n\nFootage: ");
        text.push_str(
            &credits
                .iter()
                .map(|c| format!("{} ({})", c.creator, c.url))
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    text.push_str(&format!(
        "\n\nVideo: {link}\nDraft: {draft}\n{}",
        crate::privacy::retention::deletion_notice(deleted_at)
    ));
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_notice_says_when_the_local_files_are_deleted() {
        let text = super::text(
            "Owls",
            "They fly at night.",
            &["owls".to_owned()],
            &[],
            "file:///v.mp4",
            "/drafts/owls-a-01234567.mp4",
            1_800_000_000 + 14 * 86_400,
        );
        assert!(
            text.ends_with(
                "Draft: /drafts/owls-a-01234567.mp4\nThe video and its copies are deleted on 2027-01-29 08:00 UTC (retention); post or save it before then."
            ),
            "{text}"
        );
    }
}
