//! `factory gc` with the clock stepped by `FACTORY_NOW`: after the retention period the
//! render, its footage and narration, the hosted copy and the local draft are gone; the
//! script and the job row stay, with the expiry noted.

use std::path::Path;

use tiktok_factory::store::{Artifact, NewJob, Status, Store};

use crate::support::Factory;

const T0: i64 = 1_800_000_000;
const DAY: i64 = 86_400;

async fn artifact(
    store: &Store,
    state: &Path,
    job: &str,
    stage: &str,
    key: &str,
    expires: Option<i64>,
) {
    let dir = state.join("cache").join(stage).join(key);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("main"), stage).unwrap();
    store
        .put_artifact(&Artifact {
            key: key.into(),
            stage: stage.into(),
            location: format!("{stage}/{key}/main"),
            bytes: i64::try_from(stage.len()).unwrap(),
            sha256: "0".repeat(64),
            meta: "{}".into(),
            expires_at: expires,
        })
        .await
        .unwrap();
    store
        .stage_finished(job, stage, key, "done", Some(key), None, None)
        .await
        .unwrap();
}

/// A finished job: script, footage, voice and render in the cache, hosted and drafted.
async fn finished(store: &Store, state: &Path, id: &str, footage: &str, expires: i64) {
    store
        .upsert_job(&NewJob {
            id,
            recipe: "r",
            recipe_path: "r.yaml",
            cell: id,
            spec: "{}",
            topic: id,
            voice: "v",
            status: Status::Done,
        })
        .await
        .unwrap();
    artifact(store, state, id, "script", &format!("script-{id}"), None).await;
    artifact(store, state, id, "footage", footage, None).await;
    artifact(store, state, id, "voice", &format!("voice-{id}"), None).await;
    artifact(
        store,
        state,
        id,
        "render",
        &format!("render-{id}"),
        Some(expires),
    )
    .await;
    let hosted = state.join("hosted/r").join(format!("{id}.mp4"));
    let draft = state.join("drafts/r").join(format!("{id}.mp4"));
    for f in [&hosted, &draft] {
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, "video").unwrap();
    }
    let detail = serde_json::json!({ "location": hosted, "expires_at": expires });
    store
        .record_effect(
            &format!("host-{id}"),
            id,
            "host",
            "done",
            None,
            Some(&detail.to_string()),
        )
        .await
        .unwrap();
    store
        .record_effect(
            &format!("draft-{id}"),
            id,
            "draft",
            "done",
            Some(&draft.display().to_string()),
            Some("{}"),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_retention_videos_and_inputs_are_gone_and_job_rows_remain() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let store = Store::open(&state).await.unwrap();
    finished(&store, &state, "old", "footage-shared", T0 + 14 * DAY).await;
    finished(&store, &state, "new", "footage-shared", T0 + 20 * DAY).await;
    store.close().await;
    let gc = |now: i64, args: &[&str]| {
        Factory::new()
            .env("FACTORY_STATE_DIR", &state)
            .env("FACTORY_NOW", now.to_string())
            .arg("gc")
            .args(args)
            .run()
    };

    let early = gc(T0 + 13 * DAY, &[]);
    assert_eq!(early.code, 0, "{}", early.stderr);
    assert_eq!(early.stdout, "nothing has expired\n");

    let dry = gc(T0 + 15 * DAY, &["--dry-run"]);
    assert!(
        dry.stdout.starts_with(
            "would delete 2 cached file sets, 1 hosted copy and 1 local draft of 1 job"
        ),
        "{}",
        dry.stdout
    );
    assert!(state.join("cache/render/render-old").exists());

    let out = gc(T0 + 15 * DAY, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.starts_with("deleted 2 cached file sets"),
        "{}",
        out.stdout
    );
    for gone in [
        "cache/render/render-old",
        "cache/voice/voice-old",
        "hosted/r/old.mp4",
        "drafts/r/old.mp4",
    ] {
        assert!(!state.join(gone).exists(), "`{gone}` is still there");
    }
    // The script is kept for a rerun; the footage is still used by a live video.
    for kept in [
        "cache/script/script-old",
        "cache/footage/footage-shared",
        "cache/render/render-new",
        "hosted/r/new.mp4",
    ] {
        assert!(state.join(kept).exists(), "`{kept}` was deleted");
    }
    assert_eq!(gc(T0 + 15 * DAY, &[]).stdout, "nothing has expired\n");

    let jobs = Factory::new()
        .env("FACTORY_STATE_DIR", &state)
        .args(["--json", "jobs", "list"])
        .run()
        .json();
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 2);
    let export = Factory::new()
        .env("FACTORY_STATE_DIR", &state)
        .arg("export")
        .run()
        .json();
    let old = export["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"] == "old")
        .unwrap();
    let last = old["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["status"], "expired");
    assert!(last["detail"].as_str().unwrap().contains("video expired"));
    let render = old["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["stage"] == "render")
        .unwrap();
    assert_eq!(render["expired_at"], T0 + 15 * DAY);

    let later = gc(T0 + 21 * DAY, &[]);
    assert!(
        later.stdout.starts_with("deleted 3 cached file sets"),
        "{}",
        later.stdout
    );
    assert!(!state.join("cache/footage/footage-shared").exists());
    assert!(!state.join("hosted/r/new.mp4").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_retention_objects_in_the_s3_server_are_gone() {
    use tiktok_factory::providers::r2::R2;
    use tiktok_factory::providers::{Host, HostRequest};

    use crate::publish_r2::{BUCKET, Moto};

    let moto = Moto::start().await;
    let r2 = R2::new(moto.config()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let video = dir.path().join("video.mp4");
    std::fs::write(&video, "video bytes").unwrap();
    let put = |key: &str, expires_at: i64| HostRequest {
        path: video.clone(),
        key: key.to_owned(),
        content_type: "video/mp4".into(),
        expires_at,
    };
    // Hosted by a job in the ledger, and one the ledger no longer knows (a purged store).
    let hosted = r2.put(&put("r/old.mp4", T0 + 14 * DAY)).await.unwrap();
    let stray = r2.put(&put("r/stray.mp4", T0 + 14 * DAY)).await.unwrap();
    let live = r2.put(&put("r/new.mp4", T0 + 20 * DAY)).await.unwrap();
    let store = Store::open(&state).await.unwrap();
    finished(&store, &state, "old", "footage-old", T0 + 14 * DAY).await;
    let detail = serde_json::json!({ "location": hosted.location, "url": hosted.url });
    store
        .record_effect(
            "host-old",
            "old",
            "host",
            "done",
            None,
            Some(&detail.to_string()),
        )
        .await
        .unwrap();
    store.close().await;

    let out = Factory::new()
        .env("FACTORY_STATE_DIR", &state)
        .env("FACTORY_NOW", (T0 + 15 * DAY).to_string())
        .env("R2_ENDPOINT", &moto.endpoint)
        .env("R2_ACCESS_KEY_ID", "AKIAFAKE")
        .env("R2_SECRET_ACCESS_KEY", "fake-secret-key")
        .env("R2_BUCKET", BUCKET)
        .arg("gc")
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut remaining = r2.expired(i64::MAX).await.unwrap();
    remaining.sort();
    assert_eq!(remaining, vec![live.location.clone()]);
    assert!(!remaining.contains(&stray.location));
    assert!(out.stdout.contains(&hosted.location), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_in_a_copy_leaves_the_originals_files_alone() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let store = Store::open(&a).await.unwrap();
    finished(&store, &a, "old", "footage-old", T0 + DAY).await;
    store.close().await;
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(&a)
        .arg(&b)
        .status()
        .unwrap();
    assert!(copied.success());
    let originals = crate::privacy_purge::files(&a);

    let out = Factory::new()
        .env("FACTORY_STATE_DIR", &b)
        .env("FACTORY_NOW", (T0 + 2 * DAY).to_string())
        .arg("gc")
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .starts_with("deleted 3 cached file sets, 1 hosted copy and 1 local draft"),
        "{}",
        out.stdout
    );
    assert_eq!(
        crate::privacy_purge::files(&a),
        originals,
        "the original's files changed"
    );
    for gone in [
        "hosted/r/old.mp4",
        "drafts/r/old.mp4",
        "cache/render/render-old",
    ] {
        assert!(!b.join(gone).exists(), "`{gone}` is still in the copy");
        assert!(a.join(gone).exists(), "`{gone}` left the original");
    }
}
