//! `factory purge`: a recipe's jobs, artifacts, hosted copies and ledger rows are deleted,
//! and after compaction its topics are absent from the database file's bytes.

use std::path::Path;

use tiktok_factory::store::{Artifact, NewJob, Status, Store};

use crate::auth::{contains, db_bytes};
use crate::support::Factory;

/// One job as a run leaves it: status history, a cached artifact, a hosted copy and a
/// local draft recorded in the ledger.
pub async fn job(store: &Store, state: &Path, recipe: &str, id: &str, topic: &str) {
    store
        .upsert_job(&NewJob {
            id,
            recipe,
            recipe_path: "recipes/x.yaml",
            cell: "{}",
            spec: &format!("{{\"topic\":\"{topic}\"}}"),
            topic,
            voice: "warm",
            status: Status::Pending,
        })
        .await
        .unwrap();
    store
        .set_status(id, Status::Done, None, Some(&format!("made {topic}")))
        .await
        .unwrap();
    let key = format!("key-{id}");
    let dir = state.join("cache").join("script").join(&key);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("script.json"), topic).unwrap();
    store
        .put_artifact(&Artifact {
            key: key.clone(),
            stage: "script".into(),
            location: format!("script/{key}/script.json"),
            bytes: i64::try_from(topic.len()).unwrap(),
            sha256: "0".repeat(64),
            meta: format!("{{\"narration\":\"all about {topic}\"}}"),
            expires_at: None,
        })
        .await
        .unwrap();
    store
        .stage_finished(id, "script", &key, "done", Some(&key), None, None)
        .await
        .unwrap();
    let hosted = state.join("hosted").join(recipe).join(format!("{id}.mp4"));
    let draft = state.join("drafts").join(recipe).join(format!("{id}.mp4"));
    for f in [&hosted, &draft] {
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, "video").unwrap();
    }
    let host_detail =
        serde_json::json!({ "location": hosted, "url": format!("file://{}", hosted.display()) });
    store
        .record_effect(
            &format!("h-{id}"),
            id,
            "host",
            "done",
            None,
            Some(&host_detail.to_string()),
        )
        .await
        .unwrap();
    store
        .record_effect(
            &format!("d-{id}"),
            id,
            "draft",
            "done",
            Some(&draft.display().to_string()),
            Some(&serde_json::json!({ "title": topic }).to_string()),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_recipe_leaves_none_of_its_topics_in_the_file_and_keeps_other_recipes() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let store = Store::open(&state).await.unwrap();
    job(&store, &state, "alpha", "a1", "octopus-hearts-topic").await;
    job(&store, &state, "alpha", "a2", "saturn-rings-topic").await;
    job(&store, &state, "beta", "b1", "kept-volcano-topic").await;
    store.close().await;
    let before = db_bytes(&state);
    assert!(contains(&before, "octopus-hearts-topic"));

    let factory = || Factory::new().env("FACTORY_STATE_DIR", &state);
    let refused = factory().args(["purge", "--recipe", "alpha"]).run();
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("`--yes`"), "{}", refused.stderr);
    assert!(contains(&db_bytes(&state), "octopus-hearts-topic"));

    let out = factory()
        .args(["purge", "--recipe", "alpha", "--yes"])
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("deleted 2 jobs, 2 cached artifacts, 2 hosted copies and 2 local drafts"),
        "{}",
        out.stdout
    );
    let after = db_bytes(&state);
    for gone in ["octopus-hearts-topic", "saturn-rings-topic", "alpha"] {
        assert!(!contains(&after, gone), "`{gone}` is still in the file");
    }
    assert!(contains(&after, "kept-volcano-topic"));
    for id in ["a1", "a2"] {
        assert!(
            !state
                .join("hosted/alpha")
                .join(format!("{id}.mp4"))
                .exists()
        );
        assert!(
            !state
                .join("drafts/alpha")
                .join(format!("{id}.mp4"))
                .exists()
        );
        assert!(
            !state
                .join("cache/script")
                .join(format!("key-{id}"))
                .exists()
        );
    }
    assert!(state.join("hosted/beta/b1.mp4").exists());
    assert!(state.join("cache/script/key-b1").exists());

    let jobs = factory().args(["--json", "jobs", "list"]).run().json();
    let ids: Vec<_> = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].clone())
        .collect();
    assert_eq!(ids, vec![serde_json::json!("b1")]);

    let all = factory().args(["purge", "--all", "--yes"]).run();
    assert_eq!(all.code, 0, "{}", all.stderr);
    assert!(!contains(&db_bytes(&state), "kept-volcano-topic"));
    let missing = factory().args(["purge", "--recipe", "nope", "--yes"]).run();
    assert_eq!(missing.code, 2, "{}", missing.stderr);
}

/// Two jobs whose ids share the prefix `149c`, and one that starts with `14` only.
async fn prefix_store(state: &Path) {
    let store = Store::open(state).await.unwrap();
    for (id, topic) in [
        ("149c0000aaaa0001", "first-comet-topic"),
        ("149c1111bbbb0002", "second-comet-topic"),
        ("14ff2222cccc0003", "third-comet-topic"),
    ] {
        job(&store, state, "comets", id, topic).await;
    }
    store.close().await;
}

fn listed_ids(state: &Path) -> Vec<String> {
    Factory::new()
        .env("FACTORY_STATE_DIR", state)
        .args(["--json", "jobs", "list"])
        .run()
        .json()["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_with_an_empty_prefix_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let store = Store::open(&state).await.unwrap();
    job(&store, &state, "solo", "5eed0000aaaa0001", "lonely-topic").await;
    store.close().await;
    for typed in [
        "", "%", "_", "%%%%", "____", "5ee", "5ee%", "5eed%", "not-hex!",
    ] {
        let out = Factory::new()
            .env("FACTORY_STATE_DIR", &state)
            .args(["purge", "--job", typed, "--yes"])
            .run();
        assert_eq!(out.code, 2, "`{typed}`: {}", out.stderr);
        assert!(
            out.stderr.contains("give at least 4 of its hex digits"),
            "`{typed}`: {}",
            out.stderr
        );
    }
    assert_eq!(listed_ids(&state), vec!["5eed0000aaaa0001"]);
    assert!(state.join("drafts/solo/5eed0000aaaa0001.mp4").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_with_a_wildcard_prefix_deletes_only_the_named_job() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let store = Store::open(&state).await.unwrap();
    job(
        &store,
        &state,
        "comets",
        "149c0000aaaa0001",
        "first-comet-topic",
    )
    .await;
    job(
        &store,
        &state,
        "comets",
        "2aaa0000bbbb0002",
        "second-comet-topic",
    )
    .await;
    store.close().await;
    for typed in ["14%", "1_9c", "14"] {
        let refused = Factory::new()
            .env("FACTORY_STATE_DIR", &state)
            .args(["purge", "--job", typed, "--yes"])
            .run();
        assert_eq!(refused.code, 2, "`{typed}`: {}", refused.stderr);
        assert_eq!(listed_ids(&state).len(), 2, "`{typed}`");
    }

    let out = Factory::new()
        .env("FACTORY_STATE_DIR", &state)
        .args(["purge", "--job", "2AAA", "--yes"])
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("deleted 1 job,"), "{}", out.stdout);
    assert_eq!(listed_ids(&state), vec!["149c0000aaaa0001"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ambiguous_prefix_is_an_error_listing_the_matches() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    prefix_store(&state).await;
    for command in [
        vec!["purge", "--job", "149c", "--yes"],
        vec!["jobs", "show", "149c"],
        vec!["jobs", "retry", "149c"],
    ] {
        let out = Factory::new()
            .env("FACTORY_STATE_DIR", &state)
            .args(&command)
            .run();
        assert_eq!(out.code, 2, "{command:?}: {}", out.stderr);
        assert!(
            out.stderr.contains(
                "job id prefix `149c` matches several jobs: `149c0000aaaa0001`, `149c1111bbbb0002`"
            ),
            "{command:?}: {}",
            out.stderr
        );
        let error = out
            .stderr
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap();
        assert!(!error.contains("14ff2222cccc0003"), "{error}");
    }
    assert_eq!(listed_ids(&state).len(), 3);
    let show = Factory::new()
        .env("FACTORY_STATE_DIR", &state)
        .args(["jobs", "show", "149c1"])
        .run();
    assert_eq!(show.code, 0, "{}", show.stderr);
    assert!(
        show.stdout.starts_with("job 149c1111bbbb0002\n"),
        "{}",
        show.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_show_and_retry_need_four_hex_digits() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    prefix_store(&state).await;
    for command in [
        vec!["jobs", "show", ""],
        vec!["jobs", "show", "14"],
        vec!["jobs", "show", "14_"],
        vec!["jobs", "retry", "%"],
        vec!["jobs", "retry", "149"],
    ] {
        let out = Factory::new()
            .env("FACTORY_STATE_DIR", &state)
            .args(&command)
            .run();
        assert_eq!(out.code, 2, "{command:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("give at least 4 of its hex digits"),
            "{command:?}: {}",
            out.stderr
        );
    }
    // Without a store the question is still checked first.
    let none = Factory::new()
        .env("FACTORY_STATE_DIR", dir.path().join("none"))
        .args(["jobs", "show", "%"])
        .run();
    assert_eq!(none.code, 2, "{}", none.stderr);
    assert!(none.stderr.contains("give at least 4"), "{}", none.stderr);
}

/// Every file under `dir`, relative to it, sorted.
pub fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                // SQLite's write-ahead files come and go as connections close.
                if !name.ends_with("-wal") && !name.ends_with("-shm") {
                    out.push(name);
                }
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_in_a_copy_leaves_the_originals_files_alone() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let store = Store::open(&a).await.unwrap();
    // What a run records today: absolute paths into `a`.
    job(&store, &a, "alpha", "a1", "octopus-hearts-topic").await;
    job(&store, &a, "alpha", "a2", "saturn-rings-topic").await;
    // And a hostile record naming a file that belongs to neither directory.
    let victim = dir.path().join("elsewhere").join("victim.mp4");
    std::fs::create_dir_all(victim.parent().unwrap()).unwrap();
    std::fs::write(&victim, "not yours").unwrap();
    store
        .record_effect(
            "h-hostile",
            "a1",
            "host",
            "done",
            None,
            Some(&serde_json::json!({ "location": victim }).to_string()),
        )
        .await
        .unwrap();
    store.close().await;
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(&a)
        .arg(&b)
        .status()
        .unwrap();
    assert!(copied.success());
    let originals = files(&a);
    assert!(
        originals.contains(&"drafts/alpha/a1.mp4".to_owned()),
        "{originals:?}"
    );

    let out = Factory::new()
        .env("FACTORY_STATE_DIR", &b)
        .args(["purge", "--all", "--yes"])
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(files(&a), originals, "the original's files changed");
    assert!(
        victim.exists(),
        "a file outside both directories was deleted"
    );
    assert!(
        out.stdout.contains("left 1 recorded file alone") && out.stdout.contains("victim.mp4"),
        "{}",
        out.stdout
    );
    // The copy's own files went: its store's paths were read as its own.
    let left: Vec<_> = files(&b)
        .into_iter()
        .filter(|f| !f.starts_with("factory.db") && f != "lock" && f != "space.reserve")
        .collect();
    assert_eq!(left, Vec::<String>::new());
}
