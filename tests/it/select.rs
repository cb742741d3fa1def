//! Choosing what runs: `--select` and `--limit` on `plan`, `jobs list` and `run`, and
//! `factory preview JOB`, which renders one job small without recording anything.

use crate::plan_diff::{Project, RECIPE, TINY, make_clip};

fn rows(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("      "))
        .collect()
}

#[tokio::test]
async fn plan_and_jobs_list_show_only_what_is_selected() {
    let project = Project::new(RECIPE);
    project.record_run().await;
    project.edit(&RECIPE.replace("rate: 155", "rate: 140"));
    let brit = project.plan(&["--select", "voice=brit"]);
    assert_eq!(rows(&brit.stdout).len(), 2, "{}", brit.stdout);
    assert!(
        rows(&brit.stdout).iter().all(|r| r.contains("· brit ·")),
        "{}",
        brit.stdout
    );
    assert!(
        brit.stdout.contains("Plan: 0 new, 2 changed, 0 removed"),
        "{}",
        brit.stdout
    );
    // Terms of one flag all match; a second flag adds what it matches.
    let owl = project.plan(&["--select", "voice=brit,topic=owls"]);
    assert_eq!(rows(&owl.stdout).len(), 1, "{}", owl.stdout);
    let either = project.plan(&[
        "--select",
        "topic=owls",
        "--select",
        "topic=bats,voice=brit",
    ]);
    assert_eq!(rows(&either.stdout).len(), 3, "{}", either.stdout);
    let id = project.jobs()[0].id.to_string();
    let by_id = project.plan(&["--select", &format!("id:{}", &id[..6])]);
    assert_eq!(rows(&by_id.stdout).len(), 1, "{}", by_id.stdout);
    assert!(by_id.stdout.contains(&id), "{}", by_id.stdout);
    let limited = project.plan(&["--limit", "3"]);
    assert_eq!(rows(&limited.stdout).len(), 3, "{}", limited.stdout);

    let list = project
        .factory()
        .args(["jobs", "list", "--select", "voice=narrator", "--limit", "1"])
        .run();
    assert_eq!(list.code, 0, "{list:?}");
    // A header, then the one job.
    assert_eq!(list.stdout.lines().count(), 2, "{}", list.stdout);
    assert!(list.stdout.contains("narrator"), "{}", list.stdout);
    let bats = project
        .factory()
        .args(["jobs", "list", "--select", "topic=bat*"])
        .run();
    assert_eq!(bats.stdout.lines().count(), 3, "{}", bats.stdout);
    crate::support::tmp_filters(project.path()).bind(|| {
        insta::assert_snapshot!("jobs_list_selected", bats.stdout);
        insta::assert_snapshot!("plan_selected", brit.stdout);
    });
}

#[test]
fn a_mistyped_select_exits_2_with_a_hint() {
    let project = Project::new(RECIPE);
    let out = project
        .factory()
        .args(["plan", "--select", "vioce=brit", "recipe.yaml"])
        .run();
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("did you mean `voice`?"),
        "{}",
        out.stderr
    );
}

#[test]
fn run_with_a_limit_runs_that_many_and_says_what_it_left() {
    let project = Project::new(&TINY.replace("topic: [Alpha]", "topic: [Alpha, Beta]"));
    make_clip(&project.path().join("clips/one.mp4"));
    let run = project
        .factory()
        .args(["run", "--limit", "1", "recipe.yaml"])
        .env("CI", "1")
        .run();
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.starts_with("1 done"), "{}", run.stdout);
    assert!(
        run.stderr
            .contains("1 more job with work left for a later run (`--limit 1`)"),
        "{}",
        run.stderr
    );
    let plan = project.plan(&[]);
    assert!(plan.stdout.contains("1 new, 0 changed"), "{}", plan.stdout);
}

#[test]
fn a_preview_renders_small_and_records_nothing() {
    let project = Project::new(TINY);
    make_clip(&project.path().join("clips/one.mp4"));
    let id = project.jobs()[0].id.to_string();
    let out = project
        .factory()
        .args(["preview", &id[..6], "--recipes", "recipe.yaml"])
        .env("CI", "1")
        .run();
    assert_eq!(out.code, 0, "{out:?}");
    let path = out
        .stdout
        .trim()
        .rsplit(": ")
        .next()
        .expect("the preview's path");
    assert!(
        out.stdout.contains("(540x960, 24 fps, not a draft)"),
        "{}",
        out.stdout
    );
    let dims = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args(["stream=width,height", "-of", "csv=p=0", path])
        .output()
        .expect("run ffprobe");
    assert_eq!(String::from_utf8_lossy(&dims.stdout).trim(), "540,960");
    // Nothing recorded: no job in the store, no draft, no finished-job record.
    let list = project.factory().args(["--json", "jobs", "list"]).run();
    assert_eq!(list.json()["jobs"], serde_json::json!([]), "{list:?}");
    assert!(!project.state().join("drafts").exists());
    assert!(!project.state().join("cache/jobs").exists());
    let plan = project.plan(&[]);
    assert!(
        plan.stdout
            .contains("runs: render host draft notify · reused: script footage voice captions"),
        "the batch reuses what the preview made: {}",
        plan.stdout
    );
}
