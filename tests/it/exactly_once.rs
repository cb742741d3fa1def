//! Exactly once across runners and processes, through the binary: a CI runner that keeps
//! only the artifact store, and two runs started together on one state directory.

use std::path::Path;
use std::process::Stdio;

use crate::support::{Factory, Output, executed, write};

/// A job per topic, offline, a few seconds each; notices go to the log.
fn recipe(dir: &Path, topics: &[&str]) {
    write(
        dir,
        "tiny.yaml",
        &format!(
            "version: 1\nname: tiny\nvoices:\n  a: {{ provider: espeak, voice: en-us, rate: 260 }}\n\
             templates:\n  t:\n    script: {{ provider: offline, seconds: 3 }}\n    footage: {{ provider: generated, clips: 1 }}\n\
             \x20   captions: {{ style: none }}\n    title: \"{{{{ topic }}}}\"\n\
             batch:\n  template: t\n  matrix: {{ topic: [{}], voice: [a] }}\n",
            topics.join(", ")
        ),
    );
}

fn factory(dir: &Path, state: &str, args: &[&str]) -> Output {
    Factory::new()
        .args(["--state-dir", state, "--cache-dir", "artifacts"])
        .args(args)
        .current_dir(dir)
        .env("CI", "1")
        .run()
}

/// `factory run` of the tiny recipe on the shared state and artifacts, started and left
/// running.
fn spawn_run(dir: &Path) -> std::process::Child {
    Factory::new()
        .args([
            "--state-dir",
            "state",
            "--cache-dir",
            "artifacts",
            "run",
            "tiny.yaml",
        ])
        .current_dir(dir)
        .env("CI", "1")
        .command()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Notices the offline notifier wrote to the state directory's log, one line each.
fn notices(state: &Path) -> usize {
    std::fs::read_to_string(state.join("notices.log"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

fn drafts(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("drafts/tiny"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "mp4"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn ci_pays_and_publishes_everything_again_on_a_fresh_runner_with_only_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    recipe(dir.path(), &["Alpha", "Beta"]);
    let first = factory(dir.path(), "runner-1", &["run", "tiny.yaml"]);
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(executed(&first), 16);
    assert_eq!(drafts(&dir.path().join("runner-1")), 2);
    assert_eq!(notices(&dir.path().join("runner-1")), 2);

    // A fresh runner: the workflow restored the artifact store and nothing else.
    let planned = factory(dir.path(), "runner-2", &["plan", "tiny.yaml"]);
    assert_eq!(planned.code, 0, "{planned:?}");
    assert!(
        planned.stdout.contains("2 done") || planned.stdout.matches("done").count() >= 2,
        "plan shows the finished jobs as done: {}",
        planned.stdout
    );
    let second = factory(dir.path(), "runner-2", &["run", "tiny.yaml"]);
    assert_eq!(second.code, 0, "{second:?}");
    assert_eq!(executed(&second), 0, "{second:?}");
    assert_eq!(notices(&dir.path().join("runner-2")), 0, "no notice twice");
    assert_eq!(
        drafts(&dir.path().join("runner-2")),
        0,
        "no draft sent again"
    );

    // Even with the finished-job records gone, every stage and effect is found by key.
    std::fs::remove_dir_all(dir.path().join("artifacts/jobs")).unwrap();
    let third = factory(dir.path(), "runner-3", &["run", "tiny.yaml"]);
    assert_eq!(third.code, 0, "{third:?}");
    assert_eq!(executed(&third), 0, "{third:?}");
    assert_eq!(notices(&dir.path().join("runner-3")), 0);
    assert_eq!(drafts(&dir.path().join("runner-3")), 0);
}

#[test]
fn two_processes_on_one_state_directory_collide() {
    let dir = tempfile::tempdir().unwrap();
    recipe(dir.path(), &["Alpha"]);
    let start = || spawn_run(dir.path());
    let (a, b) = (start(), start());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let mut codes = [a.status.code(), b.status.code()];
    codes.sort();
    assert_eq!(codes, [Some(0), Some(3)], "{a:?}\n{b:?}");
    let refused = if a.status.code() == Some(3) { &a } else { &b };
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("is in use by pid"), "{stderr}");
    assert!(stderr.contains("`factory run`"), "{stderr}");
    assert_eq!(drafts(&dir.path().join("state")), 1);

    // With --wait the second queues behind the first and finds nothing left to do.
    let waited = Factory::new()
        .args([
            "--wait",
            "--state-dir",
            "state",
            "--cache-dir",
            "artifacts",
            "run",
            "tiny.yaml",
        ])
        .current_dir(dir.path())
        .env("CI", "1")
        .run();
    assert_eq!(waited.code, 0, "{waited:?}");
}

/// Two runs started together, round after round, each on new work: one runs, the other
/// stops at once; never a draft or a notice twice, never a job left failed.
#[test]
fn concurrent_runs_never_send_twice() {
    let rounds: usize = std::env::var("FACTORY_CONCURRENT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let dir = tempfile::tempdir().unwrap();
    let mut topics: Vec<String> = Vec::new();
    for round in 0..rounds {
        // Every eighth round brings a new job; the others find everything done.
        if round % 8 == 0 {
            topics.push(format!("Topic{round}"));
        }
        let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        recipe(dir.path(), &refs);
        let start = || spawn_run(dir.path());
        let (a, b) = (start(), start());
        for out in [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()] {
            let code = out.status.code();
            assert!(code == Some(0) || code == Some(3), "round {round}: {out:?}");
        }
    }
    let last = factory(dir.path(), "state", &["run", "tiny.yaml"]);
    assert_eq!(last.code, 0, "{last:?}");
    assert_eq!(drafts(&dir.path().join("state")), topics.len());
    assert_eq!(
        notices(&dir.path().join("state")),
        topics.len(),
        "one notice per job"
    );
}

#[test]
fn cached_stage_metadata_stores_paths_relative_to_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    recipe(&project, &["Alpha"]);
    let here = dir.path().join("elsewhere/deeper");
    std::fs::create_dir_all(&here).unwrap();
    let run_from = |cwd: &Path, state: &str, recipe: &str| {
        Factory::new()
            .args(["--state-dir", state, "run", recipe])
            .current_dir(cwd)
            .env("CI", "1")
            .run()
    };
    let first = run_from(&project, "../state", "tiny.yaml");
    assert_eq!(first.code, 0, "{first:?}");
    // Another working directory, the same state by another relative path: everything is
    // reused; a changed voice renders again from the cached script and footage, found
    // through paths relative to their entries.
    let second = run_from(&here, "../../state", "../../project/tiny.yaml");
    assert_eq!(second.code, 0, "{second:?}");
    assert_eq!(executed(&second), 0, "{second:?}");
    let text = std::fs::read_to_string(project.join("tiny.yaml")).unwrap();
    std::fs::write(
        project.join("tiny.yaml"),
        text.replace("voice: en-us, rate: 260", "voice: en-us, rate: 250"),
    )
    .unwrap();
    let third = run_from(&here, "../../state", "../../project/tiny.yaml");
    assert_eq!(
        third.code, 0,
        "a changed voice renders from the cached footage: {third:?}"
    );
}

#[test]
fn a_cache_hit_is_checked_by_size_only() {
    let dir = tempfile::tempdir().unwrap();
    recipe(dir.path(), &["Alpha"]);
    let first = factory(dir.path(), "state", &["run", "tiny.yaml"]);
    assert_eq!(first.code, 0, "{first:?}");
    let ok = factory(dir.path(), "state", &["cache", "verify"]);
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(ok.stdout.contains(": 0 failed"), "{}", ok.stdout);
    // The render corrupted in place, same size.
    let render = std::fs::read_dir(dir.path().join("artifacts/render"))
        .unwrap()
        .flatten()
        .find(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .unwrap()
        .path()
        .join("video.mp4");
    let mut bytes = std::fs::read(&render).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&render, bytes).unwrap();
    let bad = factory(dir.path(), "state", &["cache", "verify"]);
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(
        bad.stdout.contains("render") && bad.stdout.contains("digest"),
        "{}",
        bad.stdout
    );
    // Removed: the next lookup builds it again rather than using it.
    assert!(!render.exists());
}

#[test]
fn a_truncated_draft_is_never_noticed() {
    let dir = tempfile::tempdir().unwrap();
    recipe(dir.path(), &["Alpha"]);
    let first = factory(dir.path(), "state", &["run", "tiny.yaml"]);
    assert_eq!(first.code, 0, "{first:?}");
    let drafts_dir = dir.path().join("state/drafts/tiny");
    let video = std::fs::read_dir(&drafts_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "mp4"))
        .unwrap();
    let whole = std::fs::read(&video).unwrap();
    std::fs::write(&video, &whole[..whole.len() / 2]).unwrap();
    let sidecar: serde_json::Value =
        serde_json::from_slice(&std::fs::read(video.with_extension("json")).unwrap()).unwrap();
    let id = sidecar["job_id"].as_str().unwrap().to_owned();
    let retried = factory(dir.path(), "state", &["jobs", "retry", &id]);
    assert_eq!(retried.code, 0, "{retried:?}");
    assert!(
        retried
            .stderr
            .contains("draft: the kept copy failed verification"),
        "the output says the draft was made again: {}",
        retried.stderr
    );
    // The draft is a hard link to its render, so the cut reached the cached render too:
    // that failed its digest and was rendered again, and the draft is made from it.
    let rebuilt = std::fs::read(&video).unwrap();
    let renders: Vec<Vec<u8>> = std::fs::read_dir(dir.path().join("artifacts/render"))
        .unwrap()
        .flat_map(|entry| std::fs::read_dir(entry.unwrap().path()).unwrap())
        .map(|f| f.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "mp4"))
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert!(
        renders.contains(&rebuilt) && rebuilt.len() > whole.len() * 99 / 100,
        "rebuilt from its render: {} bytes, {} before",
        rebuilt.len(),
        whole.len()
    );

    // A broken sidecar is noticed the same way.
    std::fs::write(video.with_extension("json"), b"{ not json").unwrap();
    let again = factory(dir.path(), "state", &["jobs", "retry", &id]);
    assert_eq!(again.code, 0, "{again:?}");
    let sidecar: serde_json::Value =
        serde_json::from_slice(&std::fs::read(video.with_extension("json")).unwrap()).unwrap();
    assert_eq!(sidecar["job_id"], id.as_str());
}

/// Paths below `dir` (itself included) whose mode lets the group or others in.
fn loose(dir: &Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        if !meta.file_type().is_symlink() && mode & 0o077 != 0 {
            found.push(format!("{} {mode:o}", path.display()));
        }
        if meta.is_dir() {
            pending.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
    found
}

#[test]
fn a_cache_dir_in_another_folder_is_made_user_only_with_user_only_files() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let cache = elsewhere.path().join("shared/cache");
    recipe(dir.path(), &["Alpha"]);
    let out = Factory::new()
        .args(["--state-dir", "state", "--cache-dir"])
        .arg(&cache)
        .args(["run", "tiny.yaml"])
        .current_dir(dir.path())
        .env("CI", "1")
        .run();
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        cache.join("jobs").is_dir(),
        "the run used the cache: {out:?}"
    );
    let files = walkdir_count(&cache);
    assert!(files > 10, "entries were written: {files}");
    assert_eq!(loose(&cache), Vec::<String>::new());
}

fn walkdir_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            if path.is_dir() {
                walkdir_count(&path)
            } else {
                1
            }
        })
        .sum()
}
