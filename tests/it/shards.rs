//! `factory run --shard I/N`: runners of a CI matrix each take a deterministic slice of
//! the jobs by id, every job in exactly one slice; their artifact stores, merged, are a
//! store in which every job is done and nothing runs or is sent again.

use std::collections::BTreeSet;
use std::path::Path;

use crate::plan_diff::{TINY, make_clip};
use crate::support::{Factory, Output, write};

const TOPICS: &str = "topic: [Alpha, Beta, Gamma, Delta]";

fn factory(dir: &Path, state: &str, cache: &str, args: &[&str]) -> Output {
    Factory::new()
        .args(["--state-dir", state, "--cache-dir", cache])
        .args(args)
        .current_dir(dir)
        .env("CI", "1")
        .run()
}

fn done_ids(dir: &Path, state: &str) -> BTreeSet<String> {
    let out = Factory::new()
        .args([
            "--state-dir",
            state,
            "--json",
            "jobs",
            "list",
            "--select",
            "recipe=tiny",
        ])
        .current_dir(dir)
        .run();
    out.json()["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter(|j| j["status"] == "done")
        .map(|j| j["id"].as_str().expect("an id").to_owned())
        .collect()
}

/// Copies every entry of `from` into `to` that `to` lacks: what the matrix's last job
/// does with the stores the shards uploaded.
fn merge(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read a store") {
        let entry = entry.expect("an entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a type").is_dir() {
            std::fs::create_dir_all(&target).expect("create a folder");
            merge(&entry.path(), &target);
        } else if !target.exists() {
            std::fs::copy(entry.path(), &target).expect("copy a file");
        }
    }
}

#[test]
fn two_shards_run_every_job_once_and_their_merged_stores_run_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    write(d, "recipe.yaml", &TINY.replace("topic: [Alpha]", TOPICS));
    make_clip(&d.join("clips/one.mp4"));
    let one = factory(d, "s1", "c1", &["run", "--shard", "1/2", "recipe.yaml"]);
    assert_eq!(one.code, 0, "{one:?}");
    let two = factory(d, "s2", "c2", &["run", "--shard", "2/2", "recipe.yaml"]);
    assert_eq!(two.code, 0, "{two:?}");
    let (a, b) = (done_ids(d, "s1"), done_ids(d, "s2"));
    assert!(a.is_disjoint(&b), "{a:?} {b:?}");
    assert_eq!(a.len() + b.len(), 4, "{a:?} {b:?}");
    // The same slice every time: a shard run again has nothing to do.
    let again = factory(d, "s1", "c1", &["run", "--shard", "1/2", "recipe.yaml"]);
    assert!(
        again.stdout.contains("0 stages executed"),
        "{}",
        again.stdout
    );

    std::fs::create_dir_all(d.join("merged")).expect("create the merged store");
    merge(&d.join("c1"), &d.join("merged"));
    merge(&d.join("c2"), &d.join("merged"));
    let plan = factory(d, "fresh", "merged", &["plan", "recipe.yaml"]);
    assert!(plan.stdout.contains("4 done"), "{}", plan.stdout);
    // What the workflow's gather job does: index the merged store without running.
    let index = factory(
        d,
        "fresh",
        "merged",
        &["run", "--limit", "0", "recipe.yaml"],
    );
    assert_eq!(index.code, 0, "{index:?}");
    assert_eq!(done_ids(d, "fresh").len(), 4);
    let after = factory(d, "fresh", "merged", &["run", "recipe.yaml"]);
    assert_eq!(after.code, 0, "{after:?}");
    assert!(
        after
            .stdout
            .starts_with("0 done (0 reused from cache), 4 already done"),
        "{}",
        after.stdout
    );
}

#[test]
fn a_shard_out_of_range_exits_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = factory(
        dir.path(),
        "s",
        "c",
        &["run", "--shard", "3/2", "recipe.yaml"],
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("`3/2` is not a shard"),
        "{}",
        out.stderr
    );
}
