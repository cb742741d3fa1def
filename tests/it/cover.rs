//! The cover beside each local draft and the creator's checklist (paste the caption, pick
//! the cover, turn on the AI-generated label) in the sidecar and the notice: a real
//! offline run, notices through the fake Telegram.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::fakes::telegram::{self, FakeTelegram};
use crate::support::{Factory, Output, executed, write};

const T0: i64 = 1_800_000_000;
const DAY: i64 = 86_400;

fn recipe(dir: &Path, title: &str) {
    write(
        dir,
        "cover.yaml",
        &format!(
            "version: 1\nname: cover\nvoices:\n  a: {{ provider: espeak, voice: en-us, rate: 260 }}\ntemplates:\n  t:\n    script: {{ provider: offline, seconds: 3 }}\n    footage: {{ provider: generated, clips: 1 }}\n    title: \"{title}\"\n    caption: \"All about {{{{ topic }}}}\"\n    hashtags: [facts]\nbatch:\n  template: t\n  matrix: {{ topic: [Owls], voice: [a] }}\nnotify: {{ telegram: {{ chat: \"{}\" }} }}\n",
            telegram::CHAT
        ),
    );
}

fn factory(dir: &Path, telegram: &FakeTelegram, now: i64, args: &[&str]) -> Output {
    Factory::new()
        .current_dir(dir)
        .env("CI", "1")
        .env("FACTORY_NOW", now.to_string())
        .env("TELEGRAM_API_BASE_URL", telegram.url())
        .env("TELEGRAM_BOT_TOKEN", telegram::TOKEN)
        .args(args)
        .run()
}

/// The files of the drafts folder, by name.
fn drafts(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(".factory/drafts/cover"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// `codec,width,height` of an image's first stream, as ffprobe reads it.
fn probed(image: &Path) -> String {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(image)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_puts_a_cover_beside_the_draft_and_the_checklist_in_the_sidecar_and_the_notice() {
    let telegram = FakeTelegram::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    recipe(d, "{{ topic }} facts");
    let first = factory(d, &telegram, T0, &["run", "cover.yaml"]);
    assert_eq!(first.code, 0, "{first:?}");

    let files = drafts(d);
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    let video = files
        .iter()
        .find(|f| f.extension().unwrap() == "mp4")
        .unwrap();
    let cover = video.with_extension("jpg");
    let cover_name = cover.file_name().unwrap().to_str().unwrap().to_owned();
    assert!(names.contains(&cover_name), "{names:?}");

    // A real JPEG of the full frame, one copy on disk with the render's.
    let bytes = std::fs::read(&cover).unwrap();
    assert_eq!(&bytes[..3], [0xFF, 0xD8, 0xFF]);
    assert_eq!(probed(&cover), "mjpeg,1080,1920");
    assert_eq!(
        std::fs::metadata(&cover).unwrap().nlink(),
        2,
        "render and draft"
    );
    assert_eq!(std::fs::metadata(&cover).unwrap().mode() & 0o777, 0o600);

    let sidecar: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(video.with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(sidecar["cover"], cover_name.as_str());
    let checklist: Vec<&str> = sidecar["checklist"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(
        checklist,
        [
            "Paste the caption and its hashtags.".to_owned(),
            format!(
                "Pick the cover: upload `{cover_name}` (beside the draft), or pick the frame at 0.7 s."
            ),
            "Turn on \"AI-generated content\" (under More options) before posting.".to_owned(),
        ]
    );

    let messages = telegram.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let text = messages[0]["text"].as_str().unwrap();
    let expected = format!(
        "Before posting:\n1. Paste the caption and its hashtags.\n2. {}\n3. {}\n\nVideo: ",
        checklist[1], checklist[2]
    );
    assert!(text.contains(&expected), "{text}");
}

/// Neither the checklist nor the cover is part of a draft's or a notice's key: a job
/// finished before they existed (its sidecar without them, no cover) is not delivered or
/// notified again when the new version runs its recipe or is asked to retry it.
#[tokio::test(flavor = "multi_thread")]
async fn a_finished_job_is_not_sent_again_after_the_upgrade() {
    let telegram = FakeTelegram::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    recipe(d, "{{ topic }} facts");
    let first = factory(d, &telegram, T0, &["run", "cover.yaml"]);
    assert_eq!(first.code, 0, "{first:?}");
    let video = drafts(d)
        .into_iter()
        .find(|f| f.extension().unwrap() == "mp4")
        .unwrap();
    // What the earlier version left: a sidecar without the checklist, no cover.
    let sidecar = video.with_extension("json");
    let mut old: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&sidecar).unwrap()).unwrap();
    let old = old.as_object_mut().unwrap();
    old.remove("checklist");
    old.remove("cover");
    std::fs::write(&sidecar, serde_json::to_string_pretty(old).unwrap()).unwrap();
    std::fs::remove_file(video.with_extension("jpg")).unwrap();
    let stamp = std::fs::metadata(&video).unwrap().modified().unwrap();

    let again = factory(d, &telegram, T0 + 60, &["run", "cover.yaml"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(executed(&again), 0, "{again:?}");
    assert!(again.stdout.contains("1 already done"), "{again:?}");
    let id = std::fs::read_dir(d.join(".factory/drafts/cover"))
        .unwrap()
        .find_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".mp4")
                .map(|stem| stem.rsplit('-').next().unwrap().to_owned())
        })
        .unwrap();
    let retry = factory(d, &telegram, T0 + 120, &["jobs", "retry", &id]);
    assert_eq!(retry.code, 0, "{retry:?}");
    assert!(retry.stdout.contains("nothing to retry"), "{retry:?}");

    assert_eq!(telegram.messages().len(), 1, "no notice twice");
    assert_eq!(drafts(d).len(), 2, "no new draft, no cover added");
    assert_eq!(
        std::fs::metadata(&video).unwrap().modified().unwrap(),
        stamp
    );
    assert!(
        std::fs::read_to_string(&sidecar)
            .unwrap()
            .find("checklist")
            .is_none(),
        "the delivered sidecar is left as it was"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cover_goes_with_its_draft_when_superseded_and_at_retention() {
    let telegram = FakeTelegram::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    recipe(d, "{{ topic }} facts");
    let first = factory(d, &telegram, T0, &["run", "cover.yaml"]);
    assert_eq!(first.code, 0, "{first:?}");
    let old = drafts(d);
    assert_eq!(old.len(), 3, "{old:?}");

    // A new title is a new version of the job: its draft, sidecar and cover replace the
    // old ones.
    recipe(d, "{{ topic }} at night");
    let second = factory(d, &telegram, T0 + 60, &["run", "cover.yaml"]);
    assert_eq!(second.code, 0, "{second:?}");
    let now = drafts(d);
    assert_eq!(now.len(), 3, "{now:?}");
    for file in &old {
        assert!(!file.exists(), "`{}` is still there", file.display());
    }

    // After the retention period the draft and everything derived from it are gone.
    let gc = factory(d, &telegram, T0 + 15 * DAY, &["gc"]);
    assert_eq!(gc.code, 0, "{gc:?}");
    assert!(drafts(d).is_empty(), "{:?}", drafts(d));
}

#[tokio::test(flavor = "multi_thread")]
async fn purging_a_recipe_removes_its_covers() {
    let telegram = FakeTelegram::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    recipe(d, "{{ topic }} facts");
    let first = factory(d, &telegram, T0, &["run", "cover.yaml"]);
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(drafts(d).len(), 3);
    let purged = factory(
        d,
        &telegram,
        T0 + 60,
        &["purge", "--recipe", "cover", "--yes"],
    );
    assert_eq!(purged.code, 0, "{purged:?}");
    assert!(drafts(d).is_empty(), "{:?}", drafts(d));
}
