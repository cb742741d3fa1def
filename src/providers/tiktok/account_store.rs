//! Connected accounts in the `accounts` table, tokens encrypted with
//! [`crate::privacy::crypto`]. Plain SQL with `$n` placeholders, so the same statements
//! serve Postgres.

use async_trait::async_trait;
use sqlx::{Row, SqlitePool};

use super::{Account, AccountStore, AccountStoreError, PROVIDER};
use crate::clock::now as unix_now;
use crate::privacy::crypto::{self, Key};
use crate::secret::Secret;

pub struct SqliteAccountStore {
    pool: SqlitePool,
    key: Key,
}

/// What `auth tiktok status` and `export` show of an account: never its tokens.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AccountSummary {
    pub provider: String,
    pub name: String,
    pub open_id: String,
    pub scopes: Vec<String>,
    pub access_expires_at: i64,
    pub refresh_expires_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl SqliteAccountStore {
    pub fn new(pool: SqlitePool, key: Key) -> Self {
        Self { pool, key }
    }

    /// Every stored account, by name; tokens are not read.
    pub async fn summaries(pool: &SqlitePool) -> Result<Vec<AccountSummary>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT provider, name, open_id, scopes, access_expires_at, refresh_expires_at, \
                    created_at, updated_at FROM accounts ORDER BY provider, name",
        )
        .fetch_all(pool)
        .await?;
        rows.iter()
            .map(|row| {
                let scopes: String = row.try_get("scopes")?;
                Ok(AccountSummary {
                    provider: row.try_get("provider")?,
                    name: row.try_get("name")?,
                    open_id: row.try_get("open_id")?,
                    scopes: scopes
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    access_expires_at: row.try_get("access_expires_at")?,
                    refresh_expires_at: row.try_get("refresh_expires_at")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                })
            })
            .collect()
    }

    /// Re-encrypts every account's tokens under `new`; fails without writing anything
    /// when a stored value does not decrypt under the current key.
    pub async fn rotate_key(&self, new: &Key) -> Result<usize, AccountStoreError> {
        let mut tx = self.pool.begin().await?;
        let rows =
            sqlx::query("SELECT provider, name, access_token_enc, refresh_token_enc FROM accounts")
                .fetch_all(&mut *tx)
                .await?;
        for row in &rows {
            let access: String = row.try_get("access_token_enc")?;
            let refresh: String = row.try_get("refresh_token_enc")?;
            let access = crypto::decrypt(&self.key, &access)?;
            let refresh = crypto::decrypt(&self.key, &refresh)?;
            sqlx::query(
                "UPDATE accounts SET access_token_enc = $1, refresh_token_enc = $2 \
                 WHERE provider = $3 AND name = $4",
            )
            .bind(crypto::encrypt(new, &access))
            .bind(crypto::encrypt(new, &refresh))
            .bind(row.try_get::<String, _>("provider")?)
            .bind(row.try_get::<String, _>("name")?)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(rows.len())
    }
}

#[async_trait]
impl AccountStore for SqliteAccountStore {
    async fn load(&self, name: &str) -> Result<Option<Account>, AccountStoreError> {
        let row = sqlx::query(
            "SELECT open_id, access_token_enc, refresh_token_enc, scopes, \
                    access_expires_at, refresh_expires_at \
             FROM accounts WHERE provider = $1 AND name = $2",
        )
        .bind(PROVIDER)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let scopes: String = row.try_get("scopes")?;
        let access: String = row.try_get("access_token_enc")?;
        let refresh: String = row.try_get("refresh_token_enc")?;
        Ok(Some(Account {
            open_id: row.try_get("open_id")?,
            access_token: Secret::new(crypto::decrypt(&self.key, &access)?),
            refresh_token: Secret::new(crypto::decrypt(&self.key, &refresh)?),
            scopes: scopes
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            access_expires_at: row.try_get("access_expires_at")?,
            refresh_expires_at: row.try_get("refresh_expires_at")?,
        }))
    }

    async fn save(&self, name: &str, account: &Account) -> Result<(), AccountStoreError> {
        let now = unix_now();
        sqlx::query(
            "INSERT INTO accounts (provider, name, open_id, access_token_enc, refresh_token_enc, \
                                   scopes, access_expires_at, refresh_expires_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
             ON CONFLICT (provider, name) DO UPDATE SET \
                 open_id = excluded.open_id, \
                 access_token_enc = excluded.access_token_enc, \
                 refresh_token_enc = excluded.refresh_token_enc, \
                 scopes = excluded.scopes, \
                 access_expires_at = excluded.access_expires_at, \
                 refresh_expires_at = excluded.refresh_expires_at, \
                 updated_at = excluded.updated_at",
        )
        .bind(PROVIDER)
        .bind(name)
        .bind(&account.open_id)
        .bind(crypto::encrypt(&self.key, account.access_token.expose()))
        .bind(crypto::encrypt(&self.key, account.refresh_token.expose()))
        .bind(account.scopes.join(","))
        .bind(account.access_expires_at)
        .bind(account.refresh_expires_at)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete(&self, name: &str) -> Result<(), AccountStoreError> {
        sqlx::query("DELETE FROM accounts WHERE provider = $1 AND name = $2")
            .bind(PROVIDER)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pool(dir: &std::path::Path) -> SqlitePool {
        crate::store::Store::open(dir).await.unwrap().pool().clone()
    }

    fn account(refresh: &str) -> Account {
        Account {
            open_id: "open-1".to_owned(),
            access_token: Secret::new("act.plain-access"),
            refresh_token: Secret::new(refresh),
            scopes: vec!["video.upload".to_owned()],
            access_expires_at: 100,
            refresh_expires_at: 200,
        }
    }

    #[tokio::test]
    async fn saves_encrypted_replaces_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let pool = pool(dir.path()).await;
        let key = Key::generate();
        let store = SqliteAccountStore::new(pool.clone(), key.clone());
        assert_eq!(store.load("main").await.unwrap(), None);

        store.save("main", &account("rft.first")).await.unwrap();
        store.save("main", &account("rft.rotated")).await.unwrap();
        let loaded = store.load("main").await.unwrap().unwrap();
        assert_eq!(loaded, account("rft.rotated"));

        let raw: (String, String) =
            sqlx::query_as("SELECT access_token_enc, refresh_token_enc FROM accounts")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert!(!raw.0.contains("plain-access") && !raw.1.contains("rotated"));

        let other_key = SqliteAccountStore::new(pool.clone(), Key::generate());
        let err = other_key.load("main").await.unwrap_err().to_string();
        assert!(err.contains("the secret key is wrong or missing"), "{err}");

        store.delete("main").await.unwrap();
        store.delete("main").await.unwrap();
        assert_eq!(store.load("main").await.unwrap(), None);
    }
}
