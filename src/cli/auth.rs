//! `factory auth`: connect, inspect and disconnect TikTok accounts, and rotate the key
//! that encrypts their tokens.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use clap::Subcommand;
use serde_json::json;

use super::{CmdResult, Failure, Outcome, out, out_json};
use crate::privacy::accounts::SealedAccounts;
use crate::privacy::crypto::{KEY_ENV, Key};
use crate::providers::tiktok::{AccountStore, LoginOptions, OAuth, OAuthError, TikTokConfig};
use crate::store::Store;

/// The environment variable `rotate-key` reads the new key from when the current one
/// comes from [`KEY_ENV`]: the program cannot change its caller's environment.
pub const NEW_KEY_ENV: &str = "FACTORY_NEW_SECRET_KEY";

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Connect, show or disconnect TikTok accounts.
    Tiktok {
        #[command(subcommand)]
        command: TikTokCommand,
    },
    /// Re-encrypt every stored account under a new key.
    RotateKey,
}

#[derive(Debug, Subcommand)]
pub enum TikTokCommand {
    /// Log in through the browser and store the account, tokens encrypted.
    Login {
        /// The name recipes use in `publish.tiktok.account`.
        #[arg(long, default_value = "main")]
        account: String,
        /// Loopback port for the redirect; 0 picks a free one.
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Seconds to wait for the browser.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Show connected accounts: open id, scopes and expiry, never tokens.
    Status,
    /// Revoke the account's access at TikTok and delete its tokens.
    Disconnect {
        #[arg(long, default_value = "main")]
        account: String,
    },
}

pub async fn run(
    command: AuthCommand,
    state_dir: &Path,
    store: &crate::store::StoreUrl,
    json: bool,
) -> CmdResult {
    match command {
        AuthCommand::Tiktok { command } => match command {
            TikTokCommand::Login {
                account,
                port,
                timeout,
            } => login(state_dir, store, &account, port, timeout, json).await,
            TikTokCommand::Status => status(store, json).await,
            TikTokCommand::Disconnect { account } => {
                disconnect(state_dir, store, &account, json).await
            }
        },
        AuthCommand::RotateKey => rotate_key(state_dir, store, json).await,
    }
}

fn config() -> Result<TikTokConfig, Failure> {
    TikTokConfig::from_env().map_err(|e| Failure::environment(e.to_string()))
}

fn key(state_dir: &Path) -> Result<Key, Failure> {
    Key::resolve(&crate::privacy::key_file(state_dir))
        .map_err(|e| Failure::environment(e.to_string()))
}

fn store_error(e: impl std::fmt::Display) -> Failure {
    Failure::environment(e.to_string())
}

async fn login(
    state_dir: &Path,
    store_url: &crate::store::StoreUrl,
    name: &str,
    port: u16,
    timeout: u64,
    json: bool,
) -> CmdResult {
    let config = config()?;
    let key = key(state_dir)?;
    let store = Store::open(store_url).await?;
    let oauth = OAuth::new(config).map_err(store_error)?;
    let options = LoginOptions {
        port,
        timeout: Duration::from_secs(timeout),
    };
    let account = oauth
        .login(&options, |url| {
            // Printed first, so a headless machine can finish the login from elsewhere.
            if json {
                out_json(&json!({ "event": "authorize", "url": url }));
            } else {
                out(&format!("open this page to connect TikTok:\n{url}\n"));
            }
            if std::io::stdout().is_terminal() {
                open_browser(url);
            }
        })
        .await
        .map_err(store_error)?;
    let accounts = SealedAccounts::new(store.clone(), key);
    accounts.save(name, &account).await.map_err(store_error)?;
    store.close().await;
    if json {
        out_json(&json!({
            "event": "connected",
            "account": name,
            "open_id": account.open_id,
            "scopes": account.scopes,
        }));
    } else {
        out(&format!(
            "connected account `{name}` (open_id `{}`, scopes `{}`)\n",
            account.open_id,
            account.scopes.join(",")
        ));
    }
    Ok(Outcome::Ok)
}

/// Launches the desktop's browser without waiting; the printed URL is the fallback.
fn open_browser(url: &str) {
    let program = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let _ = std::process::Command::new(program)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

async fn status(store_url: &crate::store::StoreUrl, json: bool) -> CmdResult {
    let Some(store) = Store::open_read_only(store_url).await? else {
        if json {
            out_json(&json!({ "accounts": [] }));
        } else {
            out("no accounts connected\n");
        }
        return Ok(Outcome::Ok);
    };
    let accounts = store.account_summaries().await?;
    store.close().await;
    if json {
        out_json(&json!({ "accounts": accounts }));
    } else if accounts.is_empty() {
        out("no accounts connected\n");
    } else {
        let now = crate::clock::now();
        let mut text = String::new();
        for a in &accounts {
            text.push_str(&format!(
                "{}  {}  open_id `{}`  scopes `{}`  access {}  refresh {}\n",
                a.provider,
                a.name,
                a.open_id,
                a.scopes.join(","),
                expiry(a.access_expires_at, now),
                expiry(a.refresh_expires_at, now),
            ));
        }
        out(&text);
    }
    Ok(Outcome::Ok)
}

fn expiry(at: i64, now: i64) -> String {
    if at == i64::MAX {
        "does not expire".to_owned()
    } else if at <= now {
        "expired".to_owned()
    } else {
        let left = at - now;
        if left >= 86_400 {
            format!("expires in {} d", left / 86_400)
        } else {
            format!("expires in {} h", left / 3_600)
        }
    }
}

async fn disconnect(
    state_dir: &Path,
    store_url: &crate::store::StoreUrl,
    name: &str,
    json: bool,
) -> CmdResult {
    let Some(store) = Store::open_read_only(store_url).await? else {
        return Err(Failure::invalid(format!(
            "account `{name}` is not connected"
        )));
    };
    store.close().await;
    let store = Store::open(store_url).await?;
    let accounts = SealedAccounts::new(store.clone(), key(state_dir)?);
    // A key that does not fit still lets the tokens be deleted; only the revoke needs them.
    let loaded = accounts.load(name).await;
    let mut nothing_to_revoke = false;
    let revoke_problem = match &loaded {
        Ok(None) => {
            store.close().await;
            return Err(Failure::invalid(format!(
                "account `{name}` is not connected"
            )));
        }
        Ok(Some(account)) => {
            let oauth = OAuth::new(config()?).map_err(store_error)?;
            match revoke(&oauth, account).await {
                Ok(true) => None,
                Ok(false) => {
                    nothing_to_revoke = true;
                    None
                }
                Err(e) => Some(e),
            }
        }
        Err(e) => Some(e.to_string()),
    };
    accounts.delete(name).await.map_err(store_error)?;
    store.compact().await?;
    store.close().await;
    if json {
        out_json(&json!({
            "event": "disconnected",
            "account": name,
            "revoked": revoke_problem.is_none() && !nothing_to_revoke,
            "nothing_to_revoke": nothing_to_revoke,
        }));
    } else if nothing_to_revoke {
        out(&format!(
            "deleted the tokens of account `{name}`; it held no access token, so there was nothing to revoke at tiktok\n"
        ));
    } else {
        out(&format!("deleted the tokens of account `{name}`\n"));
    }
    match revoke_problem {
        None => Ok(Outcome::Ok),
        Some(problem) => Err(Failure::environment(format!(
            "the tokens are deleted here, but revoking them at tiktok failed: {problem}"
        ))
        .with_hint("remove the app under TikTok → Settings → Security → Manage app permissions")),
    }
}

/// Revokes the account's access at TikTok. Revoking takes an access token: an account
/// seeded without one (`TIKTOK_ACCOUNT_JSON` with a refresh token only) gets one from its
/// refresh token first, so the revoke never sends an empty `token=`. `Ok(false)`: the
/// account held no token at all, so there was nothing to revoke.
async fn revoke(
    oauth: &OAuth,
    account: &crate::providers::tiktok::Account,
) -> Result<bool, String> {
    let revoked = |r: Result<(), OAuthError>| match r {
        Ok(()) => Ok(true),
        Err(OAuthError::NothingToRevoke) => Ok(false),
        Err(e) => Err(e.to_string()),
    };
    if !account.access_token.expose().is_empty() {
        return revoked(oauth.revoke(account).await);
    }
    if account.refresh_token.expose().is_empty() {
        return Ok(false);
    }
    let fresh = oauth.refresh(account).await.map_err(|e| {
        format!("the account held no access token and its refresh token was refused ({e}), so nothing was revoked")
    })?;
    revoked(oauth.revoke(&fresh).await)
}

async fn rotate_key(state_dir: &Path, store_url: &crate::store::StoreUrl, json: bool) -> CmdResult {
    let key_file = crate::privacy::key_file(state_dir);
    let from_env = std::env::var_os(KEY_ENV).is_some_and(|v| !v.is_empty());
    let new = if from_env {
        let Some(text) = crate::secret::Secret::from_env(NEW_KEY_ENV) else {
            return Err(Failure::invalid(format!(
                "the key comes from `{KEY_ENV}`, which this command cannot change"
            ))
            .with_hint(format!(
                "put a new 32-byte key (`openssl rand -base64 32`) in `{NEW_KEY_ENV}`, run `factory auth rotate-key` again, then move it to `{KEY_ENV}`"
            )));
        };
        Key::parse(text.expose()).ok_or_else(|| {
            Failure::invalid(format!(
                "`{NEW_KEY_ENV}` is not a 32-byte key in base64 or hex"
            ))
        })?
    } else {
        Key::generate()
    };
    let old = key(state_dir)?;
    // The new key is saved before the tokens move to it, so no crash leaves tokens
    // encrypted under a key that exists nowhere.
    let staged = key_file.with_extension("key.new");
    if !from_env {
        new.write_file(&staged).map_err(store_error)?;
    }
    let store = Store::open(store_url).await?;
    let rotated = SealedAccounts::new(store.clone(), old)
        .rotate_key(&new)
        .await;
    let count = match rotated {
        Ok(count) => count,
        Err(e) => {
            store.close().await;
            if !from_env {
                let _ = std::fs::remove_file(&staged);
            }
            return Err(store_error(e));
        }
    };
    // The old ciphertexts leave the file too.
    store.compact().await?;
    store.close().await;
    if !from_env {
        std::fs::rename(&staged, &key_file).map_err(|e| {
            Failure::environment(format!(
                "cannot move the new key into `{}`: {e}; the tokens are already encrypted under the key in `{}`",
                key_file.display(),
                staged.display()
            ))
        })?;
    }
    if json {
        out_json(&json!({ "event": "rotated", "accounts": count, "from_env": from_env }));
    } else if from_env {
        out(&format!(
            "re-encrypted {count} account{} under `{NEW_KEY_ENV}`; set `{KEY_ENV}` to that key now\n",
            if count == 1 { "" } else { "s" }
        ));
    } else {
        out(&format!(
            "re-encrypted {count} account{} under a new key in `{}`\n",
            if count == 1 { "" } else { "s" },
            key_file.display()
        ));
    }
    Ok(Outcome::Ok)
}
