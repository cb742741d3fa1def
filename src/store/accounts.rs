//! Connected accounts as the store keeps them: ciphertext only. Sealing and opening the
//! tokens is [`crate::privacy::accounts`]'s business; these rows never hold a plaintext.

use sqlx::Row;

use super::{Store, StoreError, now};

/// One `accounts` row. The token fields are sealed (authenticated encryption, base64).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    pub provider: String,
    pub name: String,
    pub open_id: String,
    pub access_token_enc: String,
    pub refresh_token_enc: String,
    pub scopes: Vec<String>,
    pub access_expires_at: i64,
    pub refresh_expires_at: i64,
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

fn scopes(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn row_from(r: &sqlx::any::AnyRow) -> Result<AccountRow, StoreError> {
    Ok(AccountRow {
        provider: r.try_get("provider")?,
        name: r.try_get("name")?,
        open_id: r.try_get("open_id")?,
        access_token_enc: r.try_get("access_token_enc")?,
        refresh_token_enc: r.try_get("refresh_token_enc")?,
        scopes: scopes(&r.try_get::<String, _>("scopes")?),
        access_expires_at: r.try_get("access_expires_at")?,
        refresh_expires_at: r.try_get("refresh_expires_at")?,
    })
}

const ACCOUNT_COLUMNS: &str = "SELECT provider, name, open_id, access_token_enc, \
     refresh_token_enc, scopes, access_expires_at, refresh_expires_at FROM accounts";

impl Store {
    pub async fn account_row(
        &self,
        provider: &str,
        name: &str,
    ) -> Result<Option<AccountRow>, StoreError> {
        sqlx::query(&format!(
            "{ACCOUNT_COLUMNS} WHERE provider = $1 AND name = $2"
        ))
        .bind(provider)
        .bind(name)
        .fetch_optional(self.pool())
        .await?
        .as_ref()
        .map(row_from)
        .transpose()
    }

    /// Inserts or replaces one account.
    pub async fn save_account_row(&self, row: &AccountRow) -> Result<(), StoreError> {
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
        .bind(&row.provider)
        .bind(&row.name)
        .bind(&row.open_id)
        .bind(&row.access_token_enc)
        .bind(&row.refresh_token_enc)
        .bind(row.scopes.join(","))
        .bind(row.access_expires_at)
        .bind(row.refresh_expires_at)
        .bind(now())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Deleting an absent account succeeds.
    pub async fn delete_account(&self, provider: &str, name: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM accounts WHERE provider = $1 AND name = $2")
            .bind(provider)
            .bind(name)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Every stored account, by provider and name; tokens are not read.
    pub async fn account_summaries(&self) -> Result<Vec<AccountSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT provider, name, open_id, scopes, access_expires_at, refresh_expires_at, \
                    created_at, updated_at FROM accounts ORDER BY provider, name",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AccountSummary {
                    provider: row.try_get("provider")?,
                    name: row.try_get("name")?,
                    open_id: row.try_get("open_id")?,
                    scopes: scopes(&row.try_get::<String, _>("scopes")?),
                    access_expires_at: row.try_get("access_expires_at")?,
                    refresh_expires_at: row.try_get("refresh_expires_at")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                })
            })
            .collect()
    }

    /// Replaces the sealed tokens of every account with what `reseal` makes of them, in
    /// one transaction: when `reseal` fails for any row, nothing is written.
    pub async fn reseal_accounts<E>(
        &self,
        reseal: impl Fn(&AccountRow) -> Result<(String, String), E>,
    ) -> Result<usize, E>
    where
        E: From<StoreError>,
    {
        let mut tx = self.pool().begin().await.map_err(StoreError::from)?;
        let rows = sqlx::query(ACCOUNT_COLUMNS)
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        for row in &rows {
            let row = row_from(row)?;
            let (access, refresh) = reseal(&row)?;
            sqlx::query(
                "UPDATE accounts SET access_token_enc = $1, refresh_token_enc = $2 \
                 WHERE provider = $3 AND name = $4",
            )
            .bind(access)
            .bind(refresh)
            .bind(&row.provider)
            .bind(&row.name)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        }
        tx.commit().await.map_err(StoreError::from)?;
        Ok(rows.len())
    }
}
