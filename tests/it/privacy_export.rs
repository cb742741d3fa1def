//! `factory export`: every job in the store round-trips with its fields, the account shows
//! without its tokens.

use tiktok_factory::privacy::accounts::SealedAccounts;
use tiktok_factory::privacy::crypto::Key;
use tiktok_factory::providers::tiktok::{Account, AccountStore};
use tiktok_factory::secret::Secret;
use tiktok_factory::store::{JobFilter, Store};

use crate::privacy_purge::job;
use crate::support::Factory;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_round_trips_every_job_and_never_a_plaintext_token() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let store = Store::open(&state).await.unwrap();
    job(&store, &state, "alpha", "a1", "octopus-hearts-topic").await;
    job(&store, &state, "alpha", "a2", "saturn-rings-topic").await;
    job(&store, &state, "beta", "b1", "volcano-topic").await;
    let accounts = SealedAccounts::new(store.clone(), Key::generate());
    accounts
        .save(
            "main",
            &Account {
                open_id: "open-export-1".into(),
                access_token: Secret::new("act.export-plain-access"),
                refresh_token: Secret::new("rft.export-plain-refresh"),
                scopes: vec!["video.upload".into()],
                access_expires_at: 100,
                refresh_expires_at: 200,
            },
        )
        .await
        .unwrap();
    let stored = store.list_jobs(&JobFilter::default()).await.unwrap();
    store.close().await;

    let file = dir.path().join("export.json");
    let out = Factory::new()
        .env("FACTORY_STATE_DIR", &state)
        .args(["export", "--out"])
        .arg(&file)
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = std::fs::read_to_string(&file).unwrap();
    for secret in ["act.export-plain-access", "rft.export-plain-refresh"] {
        assert!(!text.contains(secret), "`{secret}` is in the export");
    }
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["schema"], "tiktok-factory/export/v1");
    assert_eq!(doc["accounts"][0]["open_id"], "open-export-1");
    assert_eq!(doc["accounts"][0]["scopes"][0], "video.upload");
    assert!(doc["accounts"][0].get("access_token_enc").is_none());

    let jobs = doc["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), stored.len());
    for s in &stored {
        let j = jobs.iter().find(|j| j["id"] == s.id.as_str()).unwrap();
        assert_eq!(j["recipe"], s.recipe.as_str());
        assert_eq!(j["topic"], s.topic.as_str());
        assert_eq!(j["voice"], s.voice.as_str());
        assert_eq!(j["status"], s.status.as_str());
        assert_eq!(j["spec"]["topic"], s.topic.as_str());
        assert_eq!(
            j["script"]["narration"],
            format!("all about {}", s.topic).as_str()
        );
        let statuses: Vec<_> = j["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["status"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(statuses, vec!["done", "done"]);
        assert_eq!(j["stages"][0]["stage"], "script");
    }
    let effects = doc["effects"].as_array().unwrap();
    assert_eq!(effects.len(), 2 * stored.len());
    assert!(effects.iter().any(|e| e["job_id"] == "a1"
        && e["kind"] == "draft"
        && e["detail"]["title"] == "octopus-hearts-topic"));

    let stdout = Factory::new()
        .env("FACTORY_STATE_DIR", &state)
        .arg("export")
        .run();
    assert_eq!(
        stdout.json()["jobs"].as_array().unwrap().len(),
        stored.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_html_is_written_owner_only_and_says_where_and_with_which_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let store = Store::open(&state).await.unwrap();
    job(&store, &state, "alpha", "a1", "octopus-hearts-topic").await;
    store.close().await;
    let report = dir.path().join("report.html");
    std::fs::write(&report, "old").unwrap();
    std::fs::set_permissions(&report, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Factory::new()
        .env("FACTORY_STATE_DIR", &state)
        .args(["report", "--out"])
        .arg(&report)
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mode = std::fs::metadata(&report).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(
        std::fs::read_to_string(&report)
            .unwrap()
            .contains("octopus-hearts-topic")
    );
    assert_eq!(
        out.stdout,
        format!(
            "report of 1 job written to `{}` (mode 600: readable by you only)\n",
            report.display()
        )
    );
}
