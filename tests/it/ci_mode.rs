//! CI mode: plain output without control characters, JUnit and summary files, workflow
//! annotations for broken recipes, and `--changed-since` through a real git repository.

use std::path::Path;
use std::process::Command;

use crate::support::{Factory, copy_samples, repo, write};

/// Bytes a log viewer would interpret: everything below 0x20 except the newline.
fn control_bytes(text: &str) -> Vec<u8> {
    text.bytes().filter(|&b| b < 0x20 && b != b'\n').collect()
}

#[test]
fn a_ci_run_prints_plain_lines_and_writes_junit_and_summary() {
    let tmp = tempfile::tempdir().expect("temp dir");
    copy_samples(tmp.path());
    let out = Factory::new()
        .current_dir(tmp.path())
        .env("CI", "true")
        .args(["run", "recipes/space-facts.yaml"])
        .run();
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        control_bytes(&out.stdout),
        Vec::<u8>::new(),
        "{}",
        out.stdout
    );
    assert_eq!(
        control_bytes(&out.stderr),
        Vec::<u8>::new(),
        "{}",
        out.stderr
    );
    // One plain line per transition: every job's end is on a line of its own.
    assert_eq!(
        out.stderr
            .lines()
            .filter(|l| l.contains(" job done: "))
            .count(),
        3,
        "{}",
        out.stderr
    );

    let reports = tmp.path().join(".factory/reports");
    let xml = std::fs::read_to_string(reports.join("junit.xml")).expect("junit.xml written");
    let doc = roxmltree::Document::parse(&xml).expect("junit.xml is well-formed XML");
    let cases: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), 3, "{xml}");
    assert!(
        cases.iter().all(|c| c.first_element_child().is_none()),
        "{xml}"
    );
    let suite = doc
        .descendants()
        .find(|n| n.has_tag_name("testsuite"))
        .expect("a testsuite");
    assert_eq!(suite.attribute("name"), Some("space-facts"));

    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(reports.join("summary.json")).expect("summary.json written"),
    )
    .expect("summary.json is JSON");
    assert_eq!(summary["summary"]["done"], 3, "{summary}");
    assert_eq!(summary["jobs"].as_array().map(Vec::len), Some(3));
}

#[test]
fn broken_recipes_become_annotations_with_their_position() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let text = std::fs::read_to_string(repo().join("tests/fixtures/invalid/clips-zero.yaml"))
        .expect("fixture");
    write(tmp.path(), "bad.yaml", &text);
    let out = Factory::new()
        .current_dir(tmp.path())
        .args(["--ci", "validate", "bad.yaml"])
        .run();
    assert_eq!(out.code, 2, "{out:?}");
    let line_no = text
        .lines()
        .position(|l| l.contains("clips: 0"))
        .expect("fixture has `clips: 0`")
        + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or_default();
    let columns = [
        line.find("clips").expect("key") + 1,
        line.find("clips: 0").expect("value") + "clips: ".len() + 1,
    ];
    let annotations: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("::error "))
        .collect();
    assert_eq!(annotations.len(), 1, "{}", out.stdout);
    assert!(
        columns.iter().any(|col| annotations[0]
            .starts_with(&format!("::error file=bad.yaml,line={line_no},col={col},"))),
        "{annotations:?} should point at line {line_no}, columns {columns:?}"
    );
    // The ordinary diagnostic is still printed for people reading the log.
    assert!(
        out.stderr.contains(&format!("bad.yaml:{line_no}:")),
        "{}",
        out.stderr
    );
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=test",
            "-c",
            "user.email=test@example.invalid",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .status()
        .expect("git runs");
    assert!(status.success(), "git {args:?}");
}

fn selected(dir: &Path) -> Vec<String> {
    let out = Factory::new()
        .current_dir(dir)
        .args(["--json", "validate", "--changed-since", "HEAD", "recipes"])
        .run();
    assert_eq!(out.code, 0, "{out:?}");
    if out.stdout.starts_with("no recipe changed") {
        return Vec::new();
    }
    let mut names: Vec<String> = out.json()["recipes"]
        .as_array()
        .expect("recipes")
        .iter()
        .map(|r| r["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn changed_since_selects_exactly_the_changed_recipes() {
    let tmp = tempfile::tempdir().expect("temp dir");
    copy_samples(tmp.path());
    git(tmp.path(), &["init", "-q"]);
    git(tmp.path(), &["add", "."]);
    git(tmp.path(), &["commit", "-qm", "recipes"]);
    assert_eq!(selected(tmp.path()), Vec::<String>::new());

    let ocean = tmp.path().join("recipes/ocean-life.yaml");
    let text = std::fs::read_to_string(&ocean).expect("ocean-life");
    std::fs::write(&ocean, format!("{text}# edited\n")).expect("edit");
    assert_eq!(selected(tmp.path()), ["ocean-life"]);

    // A new, untracked recipe counts as changed too.
    let space =
        std::fs::read_to_string(tmp.path().join("recipes/space-facts.yaml")).expect("space-facts");
    write(
        tmp.path(),
        "recipes/new-one.yaml",
        &space.replace("name: space-facts", "name: new-one"),
    );
    assert_eq!(selected(tmp.path()), ["new-one", "ocean-life"]);

    // The project file changes every recipe of its folder.
    git(tmp.path(), &["add", "."]);
    git(tmp.path(), &["commit", "-qm", "more"]);
    let project = tmp.path().join("recipes/factory.yaml");
    let text = std::fs::read_to_string(&project).expect("factory.yaml");
    std::fs::write(&project, format!("{text}# edited\n")).expect("edit");
    assert_eq!(
        selected(tmp.path()),
        ["history-shorts", "new-one", "ocean-life", "space-facts"]
    );
}

/// A job that fails and one done before: under GitHub Actions, an `::error` at the failed
/// job's cell, a `::group::` per job, a Markdown table in the step summary, and JUnit with
/// the done job skipped and every test named with its voice.
#[test]
fn github_actions_gets_annotations_groups_a_step_summary_and_junit_with_voices() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let d = tmp.path();
    crate::plan_diff::make_clip(&d.join("good/one.mp4"));
    write(d, "bad/one.mp4", "this is not a video");
    write(
        d,
        "mixed.yaml",
        "version: 1\nname: mixed\nvoices:\n  a: { provider: espeak, voice: en-us, rate: 260 }\ntemplates:\n  good:\n    script: { provider: offline, seconds: 3 }\n    footage: { provider: local, dir: good, clips: 1 }\n    title: \"{{ topic }}\"\n  bad:\n    script: { provider: offline, seconds: 3 }\n    footage: { provider: local, dir: bad, clips: 1 }\n    title: \"{{ topic }} again\"\nbatch:\n  matrix:\n    topic: [Alpha]\n    voice: [a]\n    template: [good, bad]\n",
    );
    let run = |summary: &Path| {
        Factory::new()
            .current_dir(d)
            .env("CI", "true")
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_STEP_SUMMARY", summary)
            .args(["run", "mixed.yaml"])
            .run()
    };
    let first = run(&d.join("first.md"));
    assert_eq!(first.code, 1, "{first:?}");
    let summary = d.join("summary.md");
    let second = run(&summary);
    assert_eq!(second.code, 1, "{second:?}");
    let annotations: Vec<&str> = second
        .stdout
        .lines()
        .filter(|l| l.starts_with("::"))
        .collect();
    assert_eq!(annotations.len(), 1, "{}", second.stdout);
    assert!(
        annotations[0].starts_with(
            "::error file=mixed.yaml,line=16,title=mixed job failed::\"Alpha\" (voice a, job "
        ),
        "{}",
        annotations[0]
    );
    assert_eq!(
        second.stderr.matches("::group::").count(),
        1,
        "{}",
        second.stderr
    );
    assert_eq!(
        second.stderr.matches("::endgroup::").count(),
        1,
        "{}",
        second.stderr
    );

    let xml = std::fs::read_to_string(d.join(".factory/reports/junit.xml")).expect("junit.xml");
    let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
    let cases: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), 2, "{xml}");
    assert!(
        cases.iter().all(|c| c
            .attribute("name")
            .is_some_and(|n| n.starts_with("Alpha · a ("))),
        "{xml}"
    );
    let skipped: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("skipped"))
        .collect();
    assert_eq!(skipped.len(), 1, "{xml}");
    assert_eq!(
        skipped[0].attribute("message"),
        Some("already done before this run")
    );

    let table = std::fs::read_to_string(&summary).expect("the step summary");
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"\b[0-9a-f]{8}\b", "[ID]");
    settings.add_filter(r"\d+ s\b", "[TIME] s");
    settings.add_filter(
        r"is unreadable or corrupt: .*",
        "is unreadable or corrupt: [FFMPEG]",
    );
    settings.bind(|| {
        insta::assert_snapshot!("github_step_summary", table);
        insta::assert_snapshot!("github_annotations", annotations.join("\n"));
    });
}

#[test]
fn an_empty_or_missing_recipes_folder_suggests_init() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let missing = Factory::new().current_dir(tmp.path()).arg("validate").run();
    assert_eq!(missing.code, 2, "{missing:?}");
    assert!(
        missing
            .stderr
            .contains("help: `factory init` makes a recipes folder"),
        "{}",
        missing.stderr
    );
    std::fs::create_dir(tmp.path().join("recipes")).expect("an empty folder");
    let empty = Factory::new().current_dir(tmp.path()).arg("plan").run();
    assert_eq!(empty.code, 0, "{empty:?}");
    assert!(
        empty
            .stderr
            .contains("note: no recipes in `recipes`; `factory init` makes a recipes folder"),
        "{}",
        empty.stderr
    );
}

/// A ref is the user's text: printed back, it must not become a workflow command.
#[test]
fn a_git_ref_with_a_newline_cannot_start_a_workflow_command() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let d = tmp.path();
    git(d, &["init", "-q"]);
    copy_samples(d);
    let out = Factory::new()
        .current_dir(d)
        .args([
            "validate",
            "--changed-since",
            "main\n::error::INJECTED",
            "recipes",
        ])
        .run();
    assert_ne!(out.code, 0, "{out:?}");
    for line in out.stdout.lines().chain(out.stderr.lines()) {
        assert!(
            !line.trim_start().starts_with("::error::INJECTED"),
            "{line}"
        );
    }
    assert!(
        out.stderr.contains("main␊::error::INJECTED"),
        "{}",
        out.stderr
    );
}
