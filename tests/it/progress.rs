//! Progress and the counts a run reports, in plain mode (CI), from real runs: a job that
//! fails after some stages counts them as executed; the stage it reuses on the next run
//! takes no time of its own in `jobs show`; the voice is labelled so it never reads as
//! a stage.

use std::path::Path;

use crate::plan_diff::make_clip;
use crate::support::{Factory, Output, tmp_filters, write};

/// A voice named like a stage: the progress lines must still tell them apart.
const RECIPE: &str = "version: 1\nname: counts\nvoices:\n  render: { provider: espeak, voice: en-us, rate: 260 }\ntemplates:\n  t:\n    script: { provider: offline, seconds: 3 }\n    footage: { provider: local, dir: clips, clips: 1 }\n    title: \"{{ topic }}\"\nbatch:\n  template: t\n  matrix: { topic: [Alpha], voice: [render] }\n";

const T0: i64 = 1_767_225_600;

fn factory(dir: &Path, now: i64, args: &[&str]) -> Output {
    Factory::new()
        .args(["--state-dir", "state"])
        .args(args)
        .current_dir(dir)
        .env("CI", "1")
        .env("FACTORY_NOW", now.to_string())
        .run()
}

/// The summary's "N stages executed".
fn executed(out: &Output) -> usize {
    crate::support::executed(out)
}

#[test]
fn a_job_that_fails_after_a_stage_counts_it_executed_and_a_reuse_takes_no_time() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    write(d, "recipe.yaml", RECIPE);
    write(d, "clips/one.mp4", "this is not a video");
    let first = factory(d, T0, &["run", "recipe.yaml"]);
    assert_eq!(first.code, 1, "{first:?}");
    // The script ran before the footage failed.
    assert_eq!(executed(&first), 1, "{}", first.stdout);
    assert!(
        first
            .stderr
            .contains("\"Alpha\" (voice render) stage 1/8 script: done"),
        "{}",
        first.stderr
    );
    let mut settings = tmp_filters(d);
    settings.add_filter(r"\b\d+(\.\d+)? ?s\b", "[TIME]");
    // ffmpeg's own words differ by its build (and name its parser by address).
    settings.add_filter(
        r"is unreadable or corrupt: .*",
        "is unreadable or corrupt: [FFMPEG]",
    );
    settings.bind(|| insta::assert_snapshot!("progress_plain_failed", first.stderr));

    // An hour later, with the clip fixed, the script is reused: it took no time.
    std::fs::remove_file(d.join("clips/one.mp4")).expect("remove the bad clip");
    make_clip(&d.join("clips/one.mp4"));
    let second = factory(d, T0 + 3600, &["run", "recipe.yaml"]);
    assert_eq!(second.code, 0, "{second:?}");
    assert_eq!(executed(&second), 7, "{}", second.stdout);
    assert!(second.stdout.contains(", 1 reused"), "{}", second.stdout);
    let show = factory(d, T0 + 3600, &["jobs", "show", &id(d)]);
    let script = show
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("script "))
        .unwrap_or_else(|| panic!("no script row: {}", show.stdout));
    assert!(script.contains("cached"), "{script}");
    assert!(script.contains(" 0s "), "{script}");
}

fn id(dir: &Path) -> String {
    let out = factory(dir, T0, &["--json", "jobs", "list"]);
    out.json()["jobs"][0]["id"]
        .as_str()
        .expect("a job id")
        .to_owned()
}
