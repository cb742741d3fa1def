//! The job store's behaviour, run against both backends: SQLite (a file in a temporary
//! directory) and Postgres (a fresh database on the harness's server, [`crate::pg`]).
//! Each case is one function over a [`Store`]; `both!` makes a `sqlite` and a `postgres`
//! test of it.

use std::path::Path;

use tiktok_factory::store::{
    AccountRow, Artifact, ArtifactRef, JobFilter, JobScope, NewJob, StageStatus, Status, Store,
    StoreError, StoreUrl,
};

use crate::pg;

/// A store to test, with what keeps it alive.
struct Opened {
    store: Store,
    url: StoreUrl,
    _dir: tempfile::TempDir,
}

#[derive(Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

async fn open(backend: Backend) -> Opened {
    let dir = tempfile::tempdir().unwrap();
    let url = match backend {
        Backend::Sqlite => StoreUrl::in_state_dir(&dir.path().join("state")),
        Backend::Postgres => pg::shared().url().parse().unwrap(),
    };
    let store = Store::open(&url).await.unwrap();
    Opened {
        store,
        url,
        _dir: dir,
    }
}

macro_rules! both {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                #[tokio::test]
                async fn sqlite() {
                    super::$case(super::Backend::Sqlite).await;
                }

                #[tokio::test]
                async fn postgres() {
                    super::$case(super::Backend::Postgres).await;
                }
            }
        )*
    };
}

both!(
    jobs_are_found_filtered_and_counted,
    stages_record_attempts_in_pipeline_order,
    artifacts_expire_and_are_shared_between_jobs,
    the_ledger_keeps_what_an_effect_did,
    a_budget_window_holds_its_limit_and_a_later_block_wins,
    accounts_are_saved_resealed_and_deleted,
    export_shows_numbers_as_numbers_and_purge_leaves_nothing,
    running_work_is_interrupted,
    a_store_opens_again_without_migrating_twice,
    read_only_finds_no_store_before_the_first_open,
);

fn job<'a>(id: &'a str, recipe: &'a str, topic: &'a str) -> NewJob<'a> {
    NewJob {
        id,
        recipe,
        recipe_path: "recipes/r.yaml",
        cell: "{\"topic\":\"x\"}",
        spec: "{}",
        topic,
        voice: "narrator",
        status: Status::Pending,
    }
}

async fn jobs_are_found_filtered_and_counted(backend: Backend) {
    let o = open(backend).await;
    let s = &o.store;
    s.upsert_job(&job("abcd0001", "space", "Black holes"))
        .await
        .unwrap();
    s.upsert_job(&job("abcd0002", "space", "Neutron stars"))
        .await
        .unwrap();
    s.upsert_job(&job("ef010003", "food", "Pasta"))
        .await
        .unwrap();
    // Upserting again refreshes the spec and keeps the job.
    s.upsert_job(&NewJob {
        spec: "{\"v\":2}",
        ..job("ef010003", "food", "Pasta")
    })
    .await
    .unwrap();
    assert_eq!(s.job_spec("ef010003").await.unwrap(), "{\"v\":2}");
    assert_eq!(
        s.recipe_path("space").await.unwrap().as_deref(),
        Some("recipes/r.yaml")
    );
    assert_eq!(s.list_jobs(&JobFilter::default()).await.unwrap().len(), 3);
    let space = s
        .list_jobs(&JobFilter {
            recipe: Some("space".into()),
            status: None,
        })
        .await
        .unwrap();
    assert_eq!(
        space.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        ["abcd0001", "abcd0002"]
    );

    assert!(matches!(
        s.find_job("abcd").await,
        Err(StoreError::Ambiguous { ref matches, .. }) if matches.len() == 2
    ));
    assert_eq!(s.find_job("ABCD0002").await.unwrap().topic, "Neutron stars");
    assert!(matches!(
        s.find_job("ffff").await,
        Err(StoreError::NoSuchJob(_))
    ));
    // A prefix is a prefix, not a pattern.
    assert!(matches!(
        s.find_job("ab_d").await,
        Err(StoreError::BadPrefix(_))
    ));

    s.set_status("abcd0001", Status::Running, Some("script"), None)
        .await
        .unwrap();
    s.set_status("abcd0001", Status::Running, Some("voice"), None)
        .await
        .unwrap();
    s.set_status("abcd0001", Status::Failed, Some("voice"), Some("boom"))
        .await
        .unwrap();
    s.set_status("abcd0001", Status::Running, Some("voice"), None)
        .await
        .unwrap();
    s.set_status_until(
        "abcd0002",
        Status::Deferred,
        Some("draft"),
        None,
        Some(4_000_000_000),
    )
    .await
    .unwrap();
    let one = s.find_job("abcd0001").await.unwrap();
    assert_eq!((one.status, one.attempts), (Status::Running, 2));
    let deferred = s
        .list_jobs(&JobFilter {
            recipe: None,
            status: Some(Status::Deferred),
        })
        .await
        .unwrap();
    assert_eq!(deferred.len(), 1);
    assert_eq!(deferred[0].deferred_until, Some(4_000_000_000));
    assert!(matches!(
        s.set_status("00000000", Status::Done, None, None).await,
        Err(StoreError::NoSuchJob(_))
    ));
    assert_eq!(
        s.job_ids(&JobScope::Recipe("space".into())).await.unwrap(),
        ["abcd0001", "abcd0002"]
    );
}

async fn stages_record_attempts_in_pipeline_order(backend: Backend) {
    let o = open(backend).await;
    let s = &o.store;
    s.upsert_job(&job("abcd0001", "space", "t")).await.unwrap();
    assert_eq!(s.stage_started("abcd0001", "voice", "k1").await.unwrap(), 1);
    s.stage_retry("abcd0001", "voice", "429").await.unwrap();
    assert_eq!(s.stage_started("abcd0001", "voice", "k1").await.unwrap(), 3);
    s.stage_finished(
        "abcd0001",
        "voice",
        "k1",
        "done",
        Some("k1"),
        None,
        Some(0.25),
    )
    .await
    .unwrap();
    s.stage_finished("abcd0001", "script", "k0", "cached", Some("k0"), None, None)
        .await
        .unwrap();
    let stages = s.stages("abcd0001").await.unwrap();
    assert_eq!(
        stages
            .iter()
            .map(|st| st.stage.as_str())
            .collect::<Vec<_>>(),
        ["script", "voice"]
    );
    let voice = &stages[1];
    assert_eq!(voice.status, StageStatus::Done);
    assert_eq!(voice.attempt, 3);
    assert_eq!(voice.cost, Some(0.25));
    assert!(voice.started_at.is_some() && voice.finished_at.is_some());
    assert_eq!(stages[0].cost, None);
}

fn artifact(key: &str, stage: &str, expires_at: Option<i64>) -> Artifact {
    Artifact {
        key: key.into(),
        stage: stage.into(),
        location: format!("{stage}/{key}"),
        bytes: 1234,
        sha256: "00".repeat(32),
        meta: "{\"seconds\":20.5}".into(),
        expires_at,
    }
}

async fn artifacts_expire_and_are_shared_between_jobs(backend: Backend) {
    let o = open(backend).await;
    let s = &o.store;
    for id in ["abcd0001", "abcd0002"] {
        s.upsert_job(&job(id, "space", "t")).await.unwrap();
    }
    s.put_artifact(&artifact("script-1", "script", None))
        .await
        .unwrap();
    s.put_artifact(&artifact("voice-1", "voice", None))
        .await
        .unwrap();
    s.put_artifact(&artifact("render-1", "render", Some(100)))
        .await
        .unwrap();
    s.put_artifact(&artifact("render-2", "render", Some(500)))
        .await
        .unwrap();
    for (id, stage, key) in [
        ("abcd0001", "script", "script-1"),
        ("abcd0002", "script", "script-1"),
        ("abcd0001", "voice", "voice-1"),
        ("abcd0001", "render", "render-1"),
        ("abcd0002", "render", "render-2"),
    ] {
        s.stage_finished(id, stage, key, "done", Some(key), None, None)
            .await
            .unwrap();
    }
    assert_eq!(s.artifact("voice-1").await.unwrap().unwrap().bytes, 1234);
    assert_eq!(
        s.artifacts_only_of_job("abcd0001").await.unwrap(),
        [
            ArtifactRef {
                stage: "render".into(),
                key: "render-1".into()
            },
            ArtifactRef {
                stage: "voice".into(),
                key: "voice-1".into()
            },
        ]
    );
    assert_eq!(
        s.jobs_using_artifact("script-1").await.unwrap(),
        ["abcd0001", "abcd0002"]
    );
    assert_eq!(
        s.expired_renders(200).await.unwrap(),
        [ArtifactRef {
            stage: "render".into(),
            key: "render-1".into()
        }]
    );
    // The narration of job 1 is only in its expired render; the shared script is also in
    // job 2's live one.
    assert_eq!(
        s.inputs_of_expired_renders("abcd0001", "voice", 200)
            .await
            .unwrap(),
        ["voice-1"]
    );
    assert!(
        s.inputs_of_expired_renders("abcd0001", "script", 200)
            .await
            .unwrap()
            .is_empty()
    );
    s.expire_artifact("render-1", 200).await.unwrap();
    assert!(s.artifact("render-1").await.unwrap().is_none());
    assert!(s.expired_renders(200).await.unwrap().is_empty());
    // Storing it again brings it back.
    s.put_artifact(&artifact("render-1", "render", Some(900)))
        .await
        .unwrap();
    assert!(s.artifact("render-1").await.unwrap().is_some());
    s.delete_artifact("render-1").await.unwrap();
    assert!(s.artifact("render-1").await.unwrap().is_none());
}

async fn the_ledger_keeps_what_an_effect_did(backend: Backend) {
    let o = open(backend).await;
    let s = &o.store;
    s.upsert_job(&job("abcd0001", "space", "t")).await.unwrap();
    s.record_effect(
        "draft-k",
        "abcd0001",
        "draft",
        "intent",
        None,
        Some("{\"a\":1}"),
    )
    .await
    .unwrap();
    s.record_effect("draft-k", "abcd0001", "draft", "done", Some("p_1"), None)
        .await
        .unwrap();
    let e = s.effect("draft-k").await.unwrap().unwrap();
    assert_eq!(
        (
            e.status.as_str(),
            e.external_id.as_deref(),
            e.detail.as_deref()
        ),
        ("done", Some("p_1"), Some("{\"a\":1}")),
        "a later record keeps what an earlier one said and it did not"
    );
    s.expire_effect("draft-k").await.unwrap();
    let effects = s.effects_of_job("abcd0001").await.unwrap();
    assert_eq!(effects.len(), 1);
    assert_eq!(effects[0].status, "expired");
    assert!(s.effect("other").await.unwrap().is_none());
}

async fn a_budget_window_holds_its_limit_and_a_later_block_wins(backend: Backend) {
    let o = open(backend).await;
    let s = &o.store;
    let key = "tiktok:inits:open-1";
    for i in 0..6 {
        assert_eq!(s.take_budget(key, 6, 60, 1000 + i).await.unwrap(), Ok(()));
    }
    assert_eq!(s.take_budget(key, 6, 60, 1010).await.unwrap(), Err(1061));
    assert_eq!(s.take_budget(key, 6, 60, 1061).await.unwrap(), Ok(()));
    s.give_back_budget(key).await.unwrap();
    assert_eq!(s.take_budget(key, 6, 60, 1061).await.unwrap(), Ok(()));
    s.block_budget("k", 500).await.unwrap();
    s.block_budget("k", 400).await.unwrap();
    assert_eq!(s.take_budget("k", 10, 60, 100).await.unwrap(), Err(500));
    s.block_budget("k", 700).await.unwrap();
    assert_eq!(s.take_budget("k", 10, 60, 100).await.unwrap(), Err(700));
}

#[tokio::test]
async fn takes_from_many_connections_at_once_never_exceed_a_postgres_budget() {
    let url: StoreUrl = pg::shared().url().parse().unwrap();
    let stores = futures_util::future::join_all((0..4).map(|_| Store::open(&url))).await;
    let stores: Vec<Store> = stores.into_iter().map(Result::unwrap).collect();
    let takes = stores.iter().flat_map(|s| {
        (0..10).map(move |_| async move { s.take_budget("shared", 6, 60, 5000).await.unwrap() })
    });
    let results = futures_util::future::join_all(takes).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 6);
    assert!(results.iter().all(|r| *r == Ok(()) || *r == Err(5061)));
}

fn account(name: &str) -> AccountRow {
    AccountRow {
        provider: "tiktok".into(),
        name: name.into(),
        open_id: format!("open-{name}"),
        access_token_enc: "sealed-a".into(),
        refresh_token_enc: "sealed-r".into(),
        scopes: vec!["user.info.basic".into(), "video.upload".into()],
        access_expires_at: 10,
        refresh_expires_at: 20,
    }
}

#[derive(Debug)]
struct Refused;

impl From<StoreError> for Refused {
    fn from(e: StoreError) -> Self {
        panic!("store error {e}")
    }
}

async fn accounts_are_saved_resealed_and_deleted(backend: Backend) {
    let o = open(backend).await;
    let s = &o.store;
    s.save_account_row(&account("main")).await.unwrap();
    s.save_account_row(&account("second")).await.unwrap();
    assert_eq!(
        s.account_row("tiktok", "main").await.unwrap(),
        Some(account("main"))
    );
    let resealed = s
        .reseal_accounts::<Refused>(|row| Ok((format!("{}+", row.access_token_enc), "r2".into())))
        .await
        .unwrap();
    assert_eq!(resealed, 2);
    assert_eq!(
        s.account_row("tiktok", "main")
            .await
            .unwrap()
            .unwrap()
            .access_token_enc,
        "sealed-a+"
    );
    // A reseal that fails for one row writes nothing.
    let failed = s
        .reseal_accounts(|row| {
            if row.name == "second" {
                Err(Refused)
            } else {
                Ok(("x".into(), "y".into()))
            }
        })
        .await;
    assert!(failed.is_err());
    assert_eq!(
        s.account_row("tiktok", "main")
            .await
            .unwrap()
            .unwrap()
            .access_token_enc,
        "sealed-a+"
    );
    s.delete_account("tiktok", "main").await.unwrap();
    s.delete_account("tiktok", "main").await.unwrap();
    let left = s.account_summaries().await.unwrap();
    assert_eq!(
        left.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
        ["second"]
    );
    assert_eq!(left[0].scopes, ["user.info.basic", "video.upload"]);
}

async fn export_shows_numbers_as_numbers_and_purge_leaves_nothing(backend: Backend) {
    let o = open(backend).await;
    let s = &o.store;
    s.upsert_job(&job("abcd0001", "space", "t")).await.unwrap();
    s.put_artifact(&artifact("voice-1", "voice", None))
        .await
        .unwrap();
    s.stage_finished(
        "abcd0001",
        "voice",
        "voice-1",
        "done",
        Some("voice-1"),
        None,
        Some(0.5),
    )
    .await
    .unwrap();
    s.record_effect("e", "abcd0001", "notify", "done", Some("m1"), None)
        .await
        .unwrap();
    let rows = s.export_rows().await.unwrap();
    assert_eq!(rows.jobs.len(), 1);
    let exported = &rows.jobs[0];
    assert_eq!(exported.row["attempts"], serde_json::json!(0));
    assert_eq!(exported.row["topic"], serde_json::json!("t"));
    assert_eq!(exported.row["finished_at"], serde_json::Value::Null);
    assert_eq!(exported.stages[0]["cost"], serde_json::json!(0.5));
    assert_eq!(exported.artifacts[0]["key"], serde_json::json!("voice-1"));
    assert!(exported.events[0]["seq"].is_i64());
    assert_eq!(rows.effects.len(), 1);

    s.delete_job("abcd0001").await.unwrap();
    s.forget_recipes_without_jobs().await.unwrap();
    s.compact().await.unwrap();
    let rows = s.export_rows().await.unwrap();
    assert!(rows.jobs.is_empty() && rows.effects.is_empty());
    assert_eq!(s.recipe_path("space").await.unwrap(), None);
}

async fn running_work_is_interrupted(backend: Backend) {
    let o = open(backend).await;
    let s = &o.store;
    s.upsert_job(&job("abcd0001", "space", "t")).await.unwrap();
    s.set_status("abcd0001", Status::Running, Some("render"), None)
        .await
        .unwrap();
    s.stage_started("abcd0001", "render", "k").await.unwrap();
    assert_eq!(s.interrupt_running().await.unwrap(), 1);
    assert_eq!(
        s.find_job("abcd").await.unwrap().status,
        Status::Interrupted
    );
    assert_eq!(
        s.stages("abcd0001").await.unwrap()[0].status,
        StageStatus::Interrupted
    );
}

async fn a_store_opens_again_without_migrating_twice(backend: Backend) {
    let o = open(backend).await;
    o.store
        .upsert_job(&job("abcd0001", "space", "t"))
        .await
        .unwrap();
    o.store.close().await;
    let again = Store::open(&o.url).await.unwrap();
    assert_eq!(again.find_job("abcd0001").await.unwrap().topic, "t");
    let read = Store::open_read_only(&o.url).await.unwrap().unwrap();
    assert_eq!(
        read.list_jobs(&JobFilter::default()).await.unwrap().len(),
        1
    );
}

async fn read_only_finds_no_store_before_the_first_open(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let url: StoreUrl = match backend {
        Backend::Sqlite => StoreUrl::in_state_dir(&dir.path().join("state")),
        Backend::Postgres => pg::shared().url().parse().unwrap(),
    };
    assert!(Store::open_read_only(&url).await.unwrap().is_none());
    Store::open(&url).await.unwrap().close().await;
    assert!(Store::open_read_only(&url).await.unwrap().is_some());
}

/// A store made before the migrations moved into `migrations/sqlite/`: the checksums
/// its `_sqlx_migrations` table holds are the ones that release wrote (read from a
/// `factory.db` it made), with a job in it.
#[tokio::test]
async fn an_existing_sqlite_store_opens_and_keeps_its_jobs() {
    const APPLIED: [(i64, &str, &str, &str); 3] = [
        (
            1,
            "init",
            "sqlite/0001_init.sql",
            "AC57B82C29EA98FE7A8AEA54E5C070A03D30D526AAAD667153F600EDEB193329EA2FC998B0665FD9FA899D3D784BD6CF",
        ),
        (
            2,
            "deferred",
            "sqlite/0002_deferred.sql",
            "C650EE83E3C663AA53804938F16F1022F2E2C91F838F18AD8C04D3324B13A229A5097A61BD2D677381BDC569E65BBD9D",
        ),
        (
            3,
            "budgets",
            "sqlite/0003_budgets.sql",
            "FC9D05397D7C6EDBCC28F79F21B23DA6685D21925B8F9FF3181A2515F016DB3F43B4EF26D53A89D4F5AA1EEBABE6BED3",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("factory.db");
    {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&file)
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        // The table as sqlx 0.8 creates it.
        sqlx::raw_sql(
            "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
             installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL, \
             checksum BLOB NOT NULL, execution_time BIGINT NOT NULL)",
        )
        .execute(&pool)
        .await
        .unwrap();
        let migrations = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        for (version, name, file, checksum) in APPLIED {
            let sql = std::fs::read_to_string(migrations.join(file)).unwrap();
            sqlx::raw_sql(&sql).execute(&pool).await.unwrap();
            sqlx::query(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                 VALUES ($1, $2, 1, $3, 1)",
            )
            .bind(version)
            .bind(name)
            .bind(hex::decode(checksum).unwrap())
            .execute(&pool)
            .await
            .unwrap();
        }
        sqlx::raw_sql(
            "INSERT INTO jobs (id, recipe, cell, spec, topic, voice, status, attempts, created_at, updated_at) \
             VALUES ('abcd0001', 'space', '{}', '{}', 'Black holes', 'narrator', 'done', 1, 10, 10)",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
    let store = Store::open(dir.path()).await.unwrap();
    let found = store.find_job("abcd").await.unwrap();
    assert_eq!(
        (found.topic.as_str(), found.status),
        ("Black holes", Status::Done)
    );
}

#[tokio::test]
async fn an_unreachable_postgres_store_is_named_without_its_password() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url: StoreUrl = format!("postgres://factory:hunter2@127.0.0.1:{port}/videos")
        .parse()
        .unwrap();
    let err = Store::open(&url).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Connect { .. }), "{err:?}");
    assert!(
        text.contains(&format!("`postgres://factory@127.0.0.1:{port}/videos`")),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn a_command_on_an_unreachable_store_exits_3_naming_the_host_not_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let out = crate::support::Factory::new()
        .current_dir(dir.path())
        .env(
            "FACTORY_STORE",
            format!("postgres://factory:hunter2@127.0.0.1:{port}/videos"),
        )
        .args(["jobs", "list"])
        .run();
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("postgres://factory@127.0.0.1:{port}/videos")),
        "{out:?}"
    );
    assert!(!out.stderr.contains("hunter2"), "{out:?}");
    let bad = crate::support::Factory::new()
        .current_dir(dir.path())
        .args(["--store", "mysql://root:hunter2@db/x", "jobs", "list"])
        .run();
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(!bad.stderr.contains("hunter2"), "{bad:?}");
}

/// `run`, `plan`, `jobs`, `report`, `export`, `gc` and `purge` on a Postgres store, offline
/// providers: the same commands, unchanged, and no SQLite file appears.
#[test]
fn every_command_works_unchanged_on_a_postgres_store() {
    let dir = tempfile::tempdir().unwrap();
    crate::support::write(
        dir.path(),
        "tiny.yaml",
        "version: 1\nname: tiny\nvoices:\n  a: { provider: espeak, voice: en-us, rate: 260 }\n\
         templates:\n  t:\n    script: { provider: offline, seconds: 3 }\n    footage: { provider: generated, clips: 1 }\n\
         \x20   captions: { style: none }\n    title: \"{{ topic }}\"\n\
         batch:\n  template: t\n  matrix: { topic: [Alpha, Beta], voice: [a] }\n",
    );
    let url = pg::shared().url();
    let factory = |args: &[&str]| {
        crate::support::Factory::new()
            .current_dir(dir.path())
            .env("FACTORY_STORE", &url)
            .env("CI", "1")
            .args(args)
            .run()
    };
    let run = factory(&["run", "tiny.yaml"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(crate::support::executed(&run), 16, "{run:?}");
    assert!(
        !dir.path().join(".factory/factory.db").exists(),
        "the jobs are in Postgres, not in a SQLite file"
    );

    let again = factory(&["run", "tiny.yaml"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(crate::support::executed(&again), 0, "{again:?}");

    let plan = factory(&["--json", "plan", "tiny.yaml"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    assert_eq!(plan.json()["recipes"][0]["counts"]["done"], 2, "{plan:?}");

    let jobs = factory(&["--json", "jobs", "list"]);
    assert_eq!(jobs.code, 0, "{jobs:?}");
    let listed = jobs.json()["jobs"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 2, "{jobs:?}");
    assert!(listed.iter().all(|j| j["status"] == "done"), "{listed:?}");
    let id = listed[0]["id"].as_str().unwrap().to_owned();
    let show = factory(&["jobs", "show", &id[..8]]);
    assert_eq!(show.code, 0, "{show:?}");
    assert!(show.stdout.contains("render"), "{show:?}");

    let report = factory(&["report", "--out", "report.html"]);
    assert_eq!(report.code, 0, "{report:?}");
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(html.contains("Alpha") && html.contains("Beta"));

    let export = factory(&["export"]);
    assert_eq!(export.code, 0, "{export:?}");
    assert_eq!(export.json()["jobs"].as_array().unwrap().len(), 2);

    let gc = factory(&["gc"]);
    assert_eq!(gc.code, 0, "{gc:?}");

    let purge = factory(&["purge", "--all", "--yes"]);
    assert_eq!(purge.code, 0, "{purge:?}");
    let empty = factory(&["--json", "jobs", "list"]);
    assert_eq!(
        empty.json()["jobs"].as_array().unwrap().len(),
        0,
        "{empty:?}"
    );
    let database = url.rsplit('/').next().unwrap();
    let counted = pg::shared().psql(database, "SELECT COUNT(*) FROM jobs");
    assert!(
        String::from_utf8_lossy(&counted.stdout).contains(" 0\n"),
        "{counted:?}"
    );
}
