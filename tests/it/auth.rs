//! `factory auth`: login through the binary with the loopback redirect driven here, status,
//! key rotation, and disconnect leaving no token bytes in the database file.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tiktok_factory::privacy::accounts::SealedAccounts;
use tiktok_factory::privacy::crypto::Key;
use tiktok_factory::providers::tiktok::{Account, AccountStore};
use tiktok_factory::store::Store;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::fakes::tiktok::{CLIENT_KEY, CLIENT_SECRET, FakeTikTok, OPEN_ID};
use crate::support::Factory;

struct Env {
    dir: tempfile::TempDir,
    fake: FakeTikTok,
}

impl Env {
    async fn start() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            fake: FakeTikTok::start().await,
        }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn key_file(&self) -> PathBuf {
        self.dir.path().join("config").join("secret.key")
    }

    fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("FACTORY_STATE_DIR", self.state().display().to_string()),
            (
                "FACTORY_SECRET_KEY_FILE",
                self.key_file().display().to_string(),
            ),
            ("TIKTOK_CLIENT_KEY", CLIENT_KEY.to_owned()),
            ("TIKTOK_CLIENT_SECRET", CLIENT_SECRET.to_owned()),
            ("TIKTOK_API_BASE_URL", self.fake.url()),
            ("TIKTOK_AUTH_BASE_URL", self.fake.url()),
        ]
    }

    fn factory(&self) -> Factory {
        let mut f = Factory::new();
        for (k, v) in self.vars() {
            f = f.env(k, v);
        }
        f.env_remove("FACTORY_SECRET_KEY")
    }

    /// `factory auth tiktok login`, with this test as the browser: it reads the authorize
    /// URL the binary prints and follows it; the fake redirects to the binary's listener.
    async fn login(&self, account: &str) -> String {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_factory"));
        command
            .args([
                "auth",
                "tiktok",
                "login",
                "--account",
                account,
                "--timeout",
                "30",
            ])
            .envs(self.vars())
            .env_remove("CI")
            .env_remove("FACTORY_SECRET_KEY")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = loop {
            let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
                .await
                .expect("the login prints the authorize URL")
                .unwrap()
                .expect("stdout ended before the authorize URL");
            if line.starts_with("http") {
                break line;
            }
        };
        let page = reqwest::get(&url).await.unwrap().text().await.unwrap();
        assert!(page.contains("TikTok is connected"), "{page}");
        let mut rest = String::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            rest.push_str(&line);
            rest.push('\n');
        }
        let status = child.wait().await.unwrap();
        assert!(status.success(), "login failed: {rest}");
        rest
    }

    async fn load(&self, key: Key, account: &str) -> Option<Account> {
        let store = Store::open(&self.state()).await.unwrap();
        let loaded = SealedAccounts::new(store.clone(), key)
            .load(account)
            .await
            .unwrap();
        store.close().await;
        loaded
    }

    async fn ciphertexts(&self) -> Vec<String> {
        let store = Store::open(&self.state()).await.unwrap();
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT access_token_enc, refresh_token_enc FROM accounts")
                .fetch_all(store.pool())
                .await
                .unwrap();
        store.close().await;
        rows.into_iter().flat_map(|(a, r)| [a, r]).collect()
    }
}

/// The database file and its write-ahead log, as bytes: what a copy of the file holds.
pub fn db_bytes(state: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for name in ["factory.db", "factory.db-wal"] {
        if let Ok(b) = std::fs::read(state.join(name)) {
            bytes.extend(b);
        }
    }
    assert!(!bytes.is_empty(), "no database in `{}`", state.display());
    bytes
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn key_in_file(path: &Path) -> Key {
    Key::parse(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_stores_only_ciphertext_and_disconnect_revokes_and_leaves_no_token_bytes() {
    let env = Env::start().await;
    let said = env.login("main").await;
    assert!(said.contains("connected account `main`"), "{said}");

    let account = env
        .load(key_in_file(&env.key_file()), "main")
        .await
        .expect("the login stored the account");
    assert_eq!(account.open_id, OPEN_ID);
    let tokens = [
        account.access_token.expose().to_owned(),
        account.refresh_token.expose().to_owned(),
    ];
    let ciphertexts = env.ciphertexts().await;
    let bytes = db_bytes(&env.state());
    for token in &tokens {
        assert!(
            !contains(&bytes, token),
            "`{token}` is stored in plain text"
        );
    }
    assert!(ciphertexts.iter().all(|c| contains(&bytes, c)));

    let status = env
        .factory()
        .args(["--json", "auth", "tiktok", "status"])
        .run();
    assert_eq!(status.code, 0, "{}", status.stderr);
    let listed = status.json();
    assert_eq!(listed["accounts"][0]["name"], "main");
    assert_eq!(listed["accounts"][0]["open_id"], OPEN_ID);
    assert_eq!(listed["accounts"][0]["scopes"][0], "video.upload");
    for token in &tokens {
        assert!(!status.stdout.contains(token.as_str()));
    }

    let out = env.factory().args(["auth", "tiktok", "disconnect"]).run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(env.fake.revoked(), vec![tokens[0].clone()]);
    let bytes = db_bytes(&env.state());
    for secret in tokens.iter().chain(&ciphertexts) {
        assert!(!contains(&bytes, secret), "`{secret}` is still in the file");
    }
    assert!(!contains(&bytes, OPEN_ID));
    let again = env.factory().args(["auth", "tiktok", "disconnect"]).run();
    assert_eq!(again.code, 2, "{}", again.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_key_re_encrypts_and_a_wrong_key_is_a_clear_error() {
    let env = Env::start().await;
    env.login("main").await;
    let old = key_in_file(&env.key_file());
    let before = env.load(old.clone(), "main").await.unwrap();

    let out = env.factory().args(["auth", "rotate-key"]).run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("re-encrypted 1 account"),
        "{}",
        out.stdout
    );
    let new = key_in_file(&env.key_file());
    assert_eq!(env.load(new, "main").await.unwrap(), before);
    let store = Store::open(&env.state()).await.unwrap();
    let stale = SealedAccounts::new(store.clone(), old)
        .load("main")
        .await
        .unwrap_err();
    store.close().await;
    assert!(
        stale
            .to_string()
            .contains("the secret key is wrong or missing")
    );

    let wrong = env
        .factory()
        .env("FACTORY_SECRET_KEY", hex::encode([9u8; 32]))
        .env("FACTORY_NEW_SECRET_KEY", hex::encode([8u8; 32]))
        .args(["auth", "rotate-key"])
        .run();
    assert_eq!(wrong.code, 3, "{}", wrong.stderr);
    assert!(
        wrong.stderr.contains("the secret key is wrong or missing"),
        "{}",
        wrong.stderr
    );

    let no_new = env
        .factory()
        .env("FACTORY_SECRET_KEY", hex::encode([9u8; 32]))
        .args(["auth", "rotate-key"])
        .run();
    assert_eq!(no_new.code, 2, "{}", no_new.stderr);
    assert!(
        no_new.stderr.contains("`FACTORY_NEW_SECRET_KEY`"),
        "{}",
        no_new.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_of_an_account_seeded_without_an_access_token_revokes_with_its_refresh_token() {
    let env = Env::start().await;
    let mut account = env.fake.connected_account();
    account.access_token = tiktok_factory::secret::Secret::new("");
    account.access_expires_at = 0;
    let key = Key::load_or_create(&env.key_file()).unwrap();
    let store = Store::open(&env.state()).await.unwrap();
    SealedAccounts::new(store.clone(), key)
        .save("main", &account)
        .await
        .unwrap();
    store.close().await;

    let out = env.factory().args(["auth", "tiktok", "disconnect"]).run();
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let revoked = env.fake.revoked();
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert!(!revoked[0].is_empty(), "revoked with an empty `token=`");
    assert_eq!(env.fake.refreshes(), 1);
    assert!(!contains(&db_bytes(&env.state()), OPEN_ID));
}
