//! The artifact store on S3 (`--artifacts s3://bucket/prefix`) against a real S3 server,
//! moto: runners with state directories and caches of their own share one bucket, and
//! the second repeats no stage and no side effect.

use std::path::Path;

use crate::publish_r2::{BUCKET, Moto};
use crate::support::{Factory, Output, executed, write};

const PREFIX: &str = "shared";

fn recipe(dir: &Path) {
    write(
        dir,
        "tiny.yaml",
        "version: 1\nname: tiny\nvoices:\n  a: { provider: espeak, voice: en-us, rate: 260 }\n\
         templates:\n  t:\n    script: { provider: offline, seconds: 3 }\n    footage: { provider: generated, clips: 1 }\n\
         \x20   captions: { style: none }\n    title: \"{{ topic }}\"\n\
         batch:\n  template: t\n  matrix: { topic: [Alpha, Beta], voice: [a] }\n",
    );
}

/// `factory` as a runner named `name`: its own state directory and cache, the bucket at
/// `endpoint`.
fn on_bucket(dir: &Path, endpoint: &str, name: &str) -> Factory {
    Factory::new()
        .args(["--state-dir", name, "--cache-dir", &format!("{name}-cache")])
        .current_dir(dir)
        .env("FACTORY_ARTIFACTS", format!("s3://{BUCKET}/{PREFIX}"))
        .env("R2_ENDPOINT", endpoint)
        .env("R2_ACCESS_KEY_ID", "AKIAFAKE")
        .env("R2_SECRET_ACCESS_KEY", "fake-secret-key")
        .env("CI", "1")
}

/// A runner's command on the shared bucket.
fn runner(dir: &Path, moto: &Moto, name: &str, args: &[&str]) -> Output {
    on_bucket(dir, &moto.endpoint, name).args(args).run()
}

fn notices(state: &Path) -> usize {
    std::fs::read_to_string(state.join("notices.log"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

fn drafts(state: &Path) -> usize {
    std::fs::read_dir(state.join("drafts/tiny"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "mp4"))
                .count()
        })
        .unwrap_or(0)
}

fn s3(moto: &Moto) -> aws_sdk_s3::Client {
    tiktok_factory::providers::r2::client(
        &moto.endpoint,
        "AKIAFAKE",
        &tiktok_factory::secret::Secret::new("fake-secret-key"),
    )
}

async fn delete(moto: &Moto, key: &str) {
    s3(moto)
        .delete_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_runner_on_the_same_bucket_repeats_no_stage_and_no_side_effect() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    recipe(dir.path());
    let root = dir.path().to_owned();

    let first =
        tokio::task::block_in_place(|| runner(&root, &moto, "runner-1", &["run", "tiny.yaml"]));
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(executed(&first), 16, "{first:?}");
    assert_eq!(drafts(&root.join("runner-1")), 2);
    assert_eq!(notices(&root.join("runner-1")), 2);
    let uploaded = moto.keys(&format!("{PREFIX}/")).await;
    let manifests = uploaded
        .iter()
        .filter(|k| k.ends_with("/manifest.json"))
        .count();
    assert!(
        manifests >= 10,
        "every entry is in the bucket: {uploaded:?}"
    );
    assert_eq!(
        uploaded
            .iter()
            .filter(|k| k.starts_with(&format!("{PREFIX}/jobs/")))
            .count(),
        2
    );
    assert!(
        uploaded
            .iter()
            .any(|k| k.starts_with(&format!("{PREFIX}/effects/"))),
        "the ledger is in the bucket: {uploaded:?}"
    );

    // Another machine: nothing of the first runner's but the bucket.
    let planned = tokio::task::block_in_place(|| {
        runner(&root, &moto, "runner-2", &["--json", "plan", "tiny.yaml"])
    });
    assert_eq!(planned.code, 0, "{planned:?}");
    assert_eq!(
        planned.json()["recipes"][0]["counts"]["done"],
        2,
        "{planned:?}"
    );
    let second =
        tokio::task::block_in_place(|| runner(&root, &moto, "runner-2", &["run", "tiny.yaml"]));
    assert_eq!(second.code, 0, "{second:?}");
    assert_eq!(executed(&second), 0, "{second:?}");
    assert_eq!(drafts(&root.join("runner-2")), 0, "no draft sent again");
    assert_eq!(notices(&root.join("runner-2")), 0, "no notice twice");

    // Without the finished-job records, every stage is found by key in the bucket
    // (downloaded and verified) and every effect in its ledger.
    for key in moto.keys(&format!("{PREFIX}/jobs/")).await {
        delete(&moto, &key).await;
    }
    let third =
        tokio::task::block_in_place(|| runner(&root, &moto, "runner-3", &["run", "tiny.yaml"]));
    assert_eq!(third.code, 0, "{third:?}");
    assert_eq!(executed(&third), 0, "{third:?}");
    assert_eq!(drafts(&root.join("runner-3")), 0);
    assert_eq!(notices(&root.join("runner-3")), 0);
    let cached = std::fs::read_dir(root.join("runner-3-cache/script"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(
        cached, 2,
        "the scripts came down into the third runner's cache"
    );

    // Retention collects the renders from the bucket as from the cache.
    let renders = |keys: &[String]| {
        keys.iter()
            .filter(|k| k.starts_with(&format!("{PREFIX}/render/")) && k.ends_with("manifest.json"))
            .count()
    };
    assert_eq!(renders(&moto.keys(&format!("{PREFIX}/")).await), 2);
    let later = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH))
        .unwrap()
        .as_secs()
        + 30 * 86_400;
    let collected = tokio::task::block_in_place(|| {
        Factory::new()
            .args([
                "--state-dir",
                "runner-1",
                "--cache-dir",
                "runner-1-cache",
                "gc",
            ])
            .current_dir(&root)
            .env("FACTORY_ARTIFACTS", format!("s3://{BUCKET}/{PREFIX}"))
            .env("R2_ENDPOINT", &moto.endpoint)
            .env("R2_ACCESS_KEY_ID", "AKIAFAKE")
            .env("R2_SECRET_ACCESS_KEY", "fake-secret-key")
            .env("FACTORY_NOW", later.to_string())
            .run()
    });
    assert_eq!(collected.code, 0, "{collected:?}");
    let left = moto.keys(&format!("{PREFIX}/")).await;
    assert_eq!(renders(&left), 0, "{left:?}");
    assert!(
        !left
            .iter()
            .any(|k| k.starts_with(&format!("{PREFIX}/render/"))),
        "the renders' files go too: {left:?}"
    );

    // A purge takes the jobs' records and ledger out of the bucket too.
    let purged = tokio::task::block_in_place(|| {
        runner(&root, &moto, "runner-1", &["purge", "--all", "--yes"])
    });
    assert_eq!(purged.code, 0, "{purged:?}");
    for folder in ["jobs", "effects"] {
        let left = moto.keys(&format!("{PREFIX}/{folder}/")).await;
        assert!(left.is_empty(), "{folder}: {left:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plan_on_a_runner_with_only_the_bucket_sees_the_stages_the_bucket_holds() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    recipe(dir.path());
    let root = dir.path().to_owned();
    let first =
        tokio::task::block_in_place(|| runner(&root, &moto, "runner-1", &["run", "tiny.yaml"]));
    assert_eq!(first.code, 0, "{first:?}");
    // Without the finished-job records, the plan must find each stage by its key.
    for key in moto.keys(&format!("{PREFIX}/jobs/")).await {
        delete(&moto, &key).await;
    }
    // The plan of a runner with nothing but the bucket sees what the bucket holds.
    let planned = tokio::task::block_in_place(|| {
        runner(&root, &moto, "runner-2", &["--json", "plan", "tiny.yaml"])
    });
    assert_eq!(planned.code, 0, "{planned:?}");
    let stages = planned.json()["recipes"][0]["jobs"].clone();
    let actions: Vec<String> = stages
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|j| j["stages"].as_array().cloned().unwrap_or_default())
        .map(|s| {
            format!(
                "{}={}",
                s["stage"].as_str().unwrap_or("?"),
                s["action"].as_str().unwrap_or("?")
            )
        })
        .collect();
    assert!(
        !actions.is_empty() && actions.iter().all(|a| a.ends_with("=reuse")),
        "every stage is reused from the bucket: {actions:?} {planned:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_runners_at_once_on_one_bucket_send_each_draft_and_notice_once() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    recipe(dir.path());
    let root = dir.path().to_owned();
    let (one, two) = tokio::task::block_in_place(|| {
        std::thread::scope(|s| {
            let one = s.spawn(|| runner(&root, &moto, "runner-1", &["--json", "run", "tiny.yaml"]));
            let two = s.spawn(|| runner(&root, &moto, "runner-2", &["--json", "run", "tiny.yaml"]));
            (one.join().unwrap(), two.join().unwrap())
        })
    });
    for out in [&one, &two] {
        let summary: serde_json::Value = out
            .stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["event"] == "summary")
            .unwrap_or_else(|| panic!("no summary: {out:?}"));
        assert_eq!(
            summary["summary"]["failed"], 0,
            "a side effect the other runner claimed defers, never fails: {out:?}"
        );
    }
    let sent = |f: fn(&Path) -> usize| f(&root.join("runner-1")) + f(&root.join("runner-2"));
    assert_eq!(sent(drafts), 2, "{one:?} {two:?}");
    assert_eq!(sent(notices), 2, "{one:?} {two:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupted_object_in_the_bucket_is_never_used() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    recipe(dir.path());
    let root = dir.path().to_owned();
    let first =
        tokio::task::block_in_place(|| runner(&root, &moto, "runner-1", &["run", "tiny.yaml"]));
    assert_eq!(first.code, 0, "{first:?}");
    // Every script blob changed under its manifest, and the job records gone.
    let all = moto.keys(&format!("{PREFIX}/")).await;
    for key in &all {
        if key.starts_with(&format!("{PREFIX}/script/")) && key.contains("/blobs/") {
            s3(&moto)
                .put_object()
                .bucket(BUCKET)
                .key(key)
                .body(b"tampered".to_vec().into())
                .send()
                .await
                .unwrap();
        }
        if key.starts_with(&format!("{PREFIX}/jobs/")) {
            delete(&moto, key).await;
        }
    }
    let second =
        tokio::task::block_in_place(|| runner(&root, &moto, "runner-2", &["run", "tiny.yaml"]));
    assert_eq!(second.code, 0, "{second:?}");
    // The scripts are written again; nothing downstream changes, and no effect repeats.
    assert_eq!(executed(&second), 2, "{second:?}");
    assert_eq!(drafts(&root.join("runner-2")), 0);
    assert_eq!(notices(&root.join("runner-2")), 0);
    for entry in std::fs::read_dir(root.join("runner-2-cache/script")).unwrap() {
        let entry = entry.unwrap().path();
        if entry.join("manifest.json").is_file() {
            let text = std::fs::read_dir(&entry)
                .unwrap()
                .flatten()
                .filter(|f| f.file_name() != "manifest.json")
                .map(|f| std::fs::read_to_string(f.path()).unwrap_or_default())
                .collect::<String>();
            assert!(!text.contains("tampered"), "{entry:?}");
        }
    }
}

fn shared_store(moto: &Moto, root: &Path) -> tiktok_factory::artifacts::ArtifactStore {
    let remote = tiktok_factory::artifacts::s3::Remote::new(
        format!("s3://{BUCKET}/{PREFIX}").parse().unwrap(),
        &moto.endpoint,
        "AKIAFAKE",
        &tiktok_factory::secret::Secret::new("fake-secret-key"),
    );
    tiktok_factory::artifacts::ArtifactStore::open(root)
        .unwrap()
        .with_remote(remote)
}

#[tokio::test]
async fn of_two_runners_the_first_intent_claims_an_effect_and_the_other_is_refused() {
    use tiktok_factory::artifacts::{ArtifactError, EffectRecord, EffectStatus};
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let a = shared_store(&moto, &dir.path().join("a"));
    let b = shared_store(&moto, &dir.path().join("b"));
    let intent = EffectRecord {
        key: "draft-k".into(),
        kind: "draft".into(),
        job: "j1".into(),
        status: EffectStatus::Intent,
        attempts: 1,
        progress: None,
        result: None,
        error: None,
        updated_at: 1,
        owner: None,
    };
    a.put_effect(&intent).await.unwrap();
    let refused = b.put_effect(&intent).await.unwrap_err();
    assert!(
        matches!(refused, ArtifactError::Claimed { .. }),
        "{refused}"
    );
    // The claimant records its progress and the outcome over its own claim.
    let progressed = EffectRecord {
        progress: Some(tiktok_factory::providers::EffectProgress {
            external_id: Some("p_1".into()),
            phase: "initialized".into(),
            data: serde_json::Value::Null,
        }),
        ..intent.clone()
    };
    a.put_effect(&progressed).await.unwrap();
    a.put_effect(&EffectRecord {
        status: EffectStatus::Done,
        ..progressed
    })
    .await
    .unwrap();
    let seen = b.effect("draft-k").await.unwrap().unwrap();
    assert_eq!(seen.status, EffectStatus::Done);
    assert_eq!(seen.progress.unwrap().external_id.as_deref(), Some("p_1"));
}

#[tokio::test]
async fn of_two_runners_committing_one_entry_the_second_takes_the_first_ones() {
    use tiktok_factory::artifacts::Lookup;
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let a = shared_store(&moto, &dir.path().join("a"));
    let b = shared_store(&moto, &dir.path().join("b"));
    let output = serde_json::json!({ "file": "voice.wav" });
    let work = a.workdir("voice", "k1").await.unwrap();
    std::fs::write(work.join("voice.wav"), "first runner's take").unwrap();
    a.commit("voice", "k1", &work, "voice.wav", &output, None)
        .await
        .unwrap();
    let work = b.workdir("voice", "k1").await.unwrap();
    std::fs::write(work.join("voice.wav"), "second runner's take").unwrap();
    let hit = b
        .commit("voice", "k1", &work, "voice.wav", &output, None)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(hit.path("voice.wav")).unwrap(),
        "first runner's take"
    );
    // A third runner with an empty cache gets it from the bucket, verified.
    let c = shared_store(&moto, &dir.path().join("c"));
    let Lookup::Hit(hit) = c.get("voice", "k1").await.unwrap() else {
        panic!("the entry is in the bucket")
    };
    assert_eq!(
        std::fs::read_to_string(hit.path("voice.wav")).unwrap(),
        "first runner's take"
    );
}

/// A service that ignores `If-None-Match` takes every create-only write, so runners
/// sharing it cannot claim a draft from each other: that is said before any job starts
/// (a bucket that honours the header gets no warning); the jobs still run, since runs
/// one after another share the bucket safely.
#[tokio::test(flavor = "multi_thread")]
async fn a_bucket_that_ignores_create_only_writes_is_named_in_a_warning_before_any_job() {
    use crate::fakes::proxy::Proxy;
    let moto = Moto::start().await;
    let lax = Proxy::dropping(&moto.endpoint, axum::http::header::IF_NONE_MATCH).await;
    let dir = tempfile::tempdir().unwrap();
    recipe(dir.path());
    let run = |endpoint: &str, name: &str| {
        on_bucket(dir.path(), endpoint, name)
            .args(["run", "tiny.yaml"])
            .run()
    };
    let out = run(&lax.url(), "lax");
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("warning: the S3 service ignores create-only writes (`If-None-Match: *`)"),
        "{}",
        out.stderr
    );
    assert_eq!(executed(&out), 16, "the jobs still run: {}", out.stdout);
    let straight = run(&moto.endpoint, "straight");
    assert_eq!(straight.code, 0, "{straight:?}");
    assert!(
        !straight.stderr.contains("create-only"),
        "{}",
        straight.stderr
    );
}

/// A runner that found another runner's unfinished draft in the bucket took it for a
/// crashed attempt and sent the draft again, though the other might be sending it at
/// that moment. A recent attempt of another runner now defers the job, saying why; once
/// the stage's time is up it is taken over.
#[tokio::test(flavor = "multi_thread")]
async fn a_draft_another_runner_may_be_sending_is_waited_for_not_sent_again() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    recipe(dir.path());
    let root = dir.path().to_owned();
    let first =
        tokio::task::block_in_place(|| runner(&root, &moto, "runner-1", &["run", "tiny.yaml"]));
    assert_eq!(first.code, 0, "{first:?}");
    // One draft's ledger entry as another machine leaves it mid-send, just now; the
    // finished-job records gone, so the jobs are run again.
    let client = s3(&moto);
    let mut tampered = None;
    for key in moto.keys(&format!("{PREFIX}/effects/")).await {
        let body = client
            .get_object()
            .bucket(BUCKET)
            .key(&key)
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        let mut record: serde_json::Value = serde_json::from_slice(&body).unwrap();
        if record["kind"] == "draft" && tampered.is_none() {
            record["status"] = "intent".into();
            record["owner"] = "another-host:/ci/cache".into();
            record["updated_at"] = tiktok_factory::clock::now().into();
            record.as_object_mut().unwrap().remove("result");
            client
                .put_object()
                .bucket(BUCKET)
                .key(&key)
                .body(serde_json::to_vec(&record).unwrap().into())
                .send()
                .await
                .unwrap();
            tampered = Some(record["job"].as_str().unwrap().to_owned());
        }
    }
    let job = tampered.expect("a draft in the ledger");
    for key in moto.keys(&format!("{PREFIX}/jobs/")).await {
        delete(&moto, &key).await;
    }
    let summary = |out: &Output| -> serde_json::Value {
        out.stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["event"] == "summary")
            .unwrap_or_else(|| panic!("no summary: {out:?}"))["summary"]
            .clone()
    };
    let second = tokio::task::block_in_place(|| {
        runner(&root, &moto, "runner-2", &["--json", "run", "tiny.yaml"])
    });
    assert_eq!(second.code, 0, "{second:?}");
    let s = summary(&second);
    assert_eq!(
        (s["deferred"].as_u64(), s["failed"].as_u64()),
        (Some(1), Some(0)),
        "{second:?}"
    );
    assert!(
        second
            .stdout
            .contains("another runner (`another-host:/ci/cache`) is sending it"),
        "the wait says why: {}",
        second.stdout
    );
    assert_eq!(
        drafts(&root.join("runner-2")),
        0,
        "nothing sent while it may be in flight"
    );
    // Past the draft stage's time the attempt is over, and the job is taken over.
    let later = (tiktok_factory::clock::now() + 1_801).to_string();
    let third = tokio::task::block_in_place(|| {
        on_bucket(&root, &moto.endpoint, "runner-2")
            .env("FACTORY_NOW", &later)
            .args(["--json", "run", "tiny.yaml"])
            .run()
    });
    assert_eq!(third.code, 0, "{third:?}");
    let s = summary(&third);
    assert_eq!(
        (s["deferred"].as_u64(), s["failed"].as_u64()),
        (Some(0), Some(0)),
        "{third:?}"
    );
    assert!(third.stdout.contains(&job), "{third:?}");
}
