//! `factory run` publishing for real: R2 on a moto server, drafts into the fake TikTok
//! inbox, notices through the fake Telegram — all through the binary and its environment.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tiktok_factory::providers::Host;
use tiktok_factory::providers::r2::R2;

use crate::fakes::telegram::{self, FakeTelegram};
use crate::fakes::tiktok::{self, FakeTikTok};
use crate::publish_r2::Moto;
use crate::support::{Factory, write};

const SECRET_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

struct Services {
    moto: Moto,
    tiktok: FakeTikTok,
    telegram: FakeTelegram,
    account: String,
}

impl Services {
    async fn start() -> Self {
        let tiktok = FakeTikTok::start().await;
        let account = tiktok.account_json();
        Self {
            moto: Moto::start().await,
            tiktok,
            telegram: FakeTelegram::start().await,
            account,
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("CI", "1".into()),
            ("R2_ENDPOINT", self.moto.endpoint.clone()),
            ("R2_ACCESS_KEY_ID", "AKIAFAKE".into()),
            ("R2_SECRET_ACCESS_KEY", "fake-secret-key".into()),
            ("R2_BUCKET", crate::publish_r2::BUCKET.into()),
            ("TIKTOK_CLIENT_KEY", tiktok::CLIENT_KEY.into()),
            ("TIKTOK_CLIENT_SECRET", tiktok::CLIENT_SECRET.into()),
            ("TIKTOK_API_BASE_URL", self.tiktok.url()),
            ("TIKTOK_AUTH_BASE_URL", self.tiktok.url()),
            ("TIKTOK_ACCOUNT_JSON", self.account.clone()),
            ("TELEGRAM_API_BASE_URL", self.telegram.url()),
            ("TELEGRAM_BOT_TOKEN", telegram::TOKEN.into()),
            ("FACTORY_SECRET_KEY", SECRET_KEY.into()),
        ]
    }

    fn factory(&self, dir: &Path) -> Factory {
        let mut f = Factory::new().current_dir(dir);
        for (k, v) in self.env() {
            f = f.env(k, v);
        }
        f
    }
}

fn recipe(dir: &Path, topics: &[&str]) {
    write(
        dir,
        "publish.yaml",
        &format!(
            "version: 1\nname: publish\nvoices:\n  a: {{ provider: espeak, voice: en-us, rate: 260 }}\ntemplates:\n  t:\n    script: {{ provider: offline, seconds: 3 }}\n    footage: {{ provider: generated, clips: 1 }}\n    title: \"{{{{ topic }}}} facts\"\n    caption: \"All about {{{{ topic }}}}\"\n    hashtags: [facts]\nbatch:\n  template: t\n  matrix: {{ topic: [{}], voice: [a] }}\npublish: {{ host: r2, tiktok: {{ account: main }} }}\nnotify: {{ telegram: {{ chat: \"{}\" }} }}\n",
            topics.join(", "),
            telegram::CHAT
        ),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn drafts_go_to_the_inbox_and_wait_in_a_queue_when_the_account_is_full() {
    let services = Services::start().await;
    services.tiktok.set(|b| b.pending_cap = 1);
    let dir = tempfile::tempdir().unwrap();
    recipe(dir.path(), &["Alpha", "Beta"]);

    let first = services
        .factory(dir.path())
        .args(["run", "publish.yaml"])
        .run();
    assert_eq!(
        first.code, 0,
        "a deferred draft is not a failure: {first:?}"
    );
    assert!(first.stdout.contains("1 deferred"), "{}", first.stdout);
    assert_eq!(services.tiktok.inbox().len(), 1);
    let listed = services
        .factory(dir.path())
        .args(["jobs", "list", "--status", "deferred"])
        .run();
    assert_eq!(
        listed.stdout.lines().count(),
        2,
        "a header and one job: {listed:?}"
    );
    let planned = services
        .factory(dir.path())
        .args(["plan", "publish.yaml"])
        .run();
    assert!(
        planned.stdout.contains("deferred until"),
        "{}",
        planned.stdout
    );

    // The creator posted or deleted the waiting draft, and the deferral's hour is over:
    // room again, the queue empties.
    services.tiktok.set(|b| b.pending_cap = 5);
    let later = tiktok_factory::clock::now() + 3_700;
    let second = services
        .factory(dir.path())
        .args(["run", "publish.yaml"])
        .env("FACTORY_NOW", later.to_string())
        .run();
    assert_eq!(second.code, 0, "{second:?}");
    assert_eq!(
        services.tiktok.inbox().len(),
        2,
        "each job's draft exactly once"
    );

    let hosted = R2::new(services.moto.config())
        .unwrap()
        .expired(i64::MAX)
        .await
        .unwrap();
    assert_eq!(hosted.len(), 2, "{hosted:?}");
    let messages = services.telegram.messages();
    assert_eq!(messages.len(), 2, "{messages:?}");
    let text = messages[0]["text"].as_str().unwrap_or_default().to_owned();
    assert!(text.contains("facts") && text.contains("#facts"), "{text}");
    assert!(
        !services
            .tiktok
            .paths()
            .iter()
            .any(|p| p.contains("/post/publish/video/")),
        "never a direct post: {:?}",
        services.tiktok.paths()
    );
    // Tokens exist in the store only encrypted.
    let db = std::fs::read(dir.path().join(".factory/factory.db")).unwrap();
    let account: serde_json::Value = serde_json::from_str(&services.account).unwrap();
    for token in ["access_token", "refresh_token"] {
        let t = account[token].as_str().unwrap();
        assert!(
            !db.windows(t.len()).any(|w| w == t.as_bytes()),
            "{token} in plain text"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_between_init_and_the_last_chunk_then_rerun_delivers_exactly_one_draft() {
    let services = Services::start().await;
    services
        .tiktok
        .set(|b| b.put_delay = Some(Duration::from_secs(30)));
    let dir = tempfile::tempdir().unwrap();
    recipe(dir.path(), &["Alpha"]);

    let mut command = Command::new(env!("CARGO_BIN_EXE_factory"));
    command
        .args(["run", "publish.yaml"])
        .current_dir(dir.path());
    for (k, v) in services.env() {
        command.env(k, v);
    }
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    while services.tiktok.inits().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no upload started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    child.kill().unwrap(); // SIGKILL, mid-upload
    child.wait().unwrap();
    assert!(services.tiktok.inbox().is_empty());

    services.tiktok.set(|b| b.put_delay = None);
    let again = services
        .factory(dir.path())
        .args(["run", "publish.yaml"])
        .run();
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(services.tiktok.inbox().len(), 1);
    let third = services
        .factory(dir.path())
        .args(["run", "publish.yaml"])
        .run();
    assert_eq!(third.code, 0, "{third:?}");
    assert_eq!(
        services.tiktok.inbox().len(),
        1,
        "a rerun never sends the draft again"
    );
}
