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
