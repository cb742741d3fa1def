//! The TikTok account port over the store: tokens sealed with [`crypto`] before they
//! reach a row, opened after they leave one. The store never sees a plaintext token and
//! the provider never sees a row.

use async_trait::async_trait;

use super::crypto::{self, CryptoError, Key};
use crate::providers::tiktok::{Account, AccountStore, AccountStoreError, PROVIDER};
use crate::secret::Secret;
use crate::store::{AccountRow, Store, StoreError};

/// Connected TikTok accounts, tokens encrypted under `key`.
#[derive(Debug, Clone)]
pub struct SealedAccounts {
    store: Store,
    key: Key,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

impl From<AccountsError> for AccountStoreError {
    fn from(e: AccountsError) -> Self {
        match e {
            AccountsError::Store(e) => Self::Unavailable(e.to_string()),
            AccountsError::Crypto(e) => Self::Sealed(e.to_string()),
        }
    }
}

impl SealedAccounts {
    pub fn new(store: Store, key: Key) -> Self {
        Self { store, key }
    }

    /// Re-encrypts every account's tokens under `new`; fails without writing anything
    /// when a stored value does not decrypt under the current key.
    pub async fn rotate_key(&self, new: &Key) -> Result<usize, AccountsError> {
        self.store
            .reseal_accounts(|row| {
                let access = crypto::decrypt(&self.key, &row.access_token_enc)?;
                let refresh = crypto::decrypt(&self.key, &row.refresh_token_enc)?;
                Ok::<_, AccountsError>((
                    crypto::encrypt(new, &access),
                    crypto::encrypt(new, &refresh),
                ))
            })
            .await
    }

    async fn open(&self, name: &str) -> Result<Option<Account>, AccountsError> {
        let Some(row) = self.store.account_row(PROVIDER, name).await? else {
            return Ok(None);
        };
        Ok(Some(Account {
            open_id: row.open_id,
            access_token: Secret::new(crypto::decrypt(&self.key, &row.access_token_enc)?),
            refresh_token: Secret::new(crypto::decrypt(&self.key, &row.refresh_token_enc)?),
            scopes: row.scopes,
            access_expires_at: row.access_expires_at,
            refresh_expires_at: row.refresh_expires_at,
        }))
    }

    fn seal(&self, name: &str, account: &Account) -> AccountRow {
        AccountRow {
            provider: PROVIDER.to_owned(),
            name: name.to_owned(),
            open_id: account.open_id.clone(),
            access_token_enc: crypto::encrypt(&self.key, account.access_token.expose()),
            refresh_token_enc: crypto::encrypt(&self.key, account.refresh_token.expose()),
            scopes: account.scopes.clone(),
            access_expires_at: account.access_expires_at,
            refresh_expires_at: account.refresh_expires_at,
        }
    }
}

#[async_trait]
impl AccountStore for SealedAccounts {
    async fn load(&self, name: &str) -> Result<Option<Account>, AccountStoreError> {
        Ok(self.open(name).await?)
    }

    async fn save(&self, name: &str, account: &Account) -> Result<(), AccountStoreError> {
        self.store
            .save_account_row(&self.seal(name, account))
            .await
            .map_err(|e| AccountsError::from(e).into())
    }

    async fn delete(&self, name: &str) -> Result<(), AccountStoreError> {
        self.store
            .delete_account(PROVIDER, name)
            .await
            .map_err(|e| AccountsError::from(e).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let store = Store::open(dir.path()).await.unwrap();
        let key = Key::generate();
        let accounts = SealedAccounts::new(store.clone(), key.clone());
        assert_eq!(accounts.load("main").await.unwrap(), None);

        accounts.save("main", &account("rft.first")).await.unwrap();
        accounts
            .save("main", &account("rft.rotated"))
            .await
            .unwrap();
        let loaded = accounts.load("main").await.unwrap().unwrap();
        assert_eq!(loaded, account("rft.rotated"));

        let raw = store.account_row(PROVIDER, "main").await.unwrap().unwrap();
        assert!(!raw.access_token_enc.contains("plain-access"));
        assert!(!raw.refresh_token_enc.contains("rotated"));

        let other_key = SealedAccounts::new(store.clone(), Key::generate());
        let err = other_key.load("main").await.unwrap_err().to_string();
        assert!(err.contains("the secret key is wrong or missing"), "{err}");

        let new = Key::generate();
        assert!(other_key.rotate_key(&new).await.is_err());
        assert_eq!(accounts.rotate_key(&new).await.unwrap(), 1);
        let rotated = SealedAccounts::new(store.clone(), new);
        assert_eq!(
            rotated.load("main").await.unwrap(),
            Some(account("rft.rotated"))
        );
        assert!(accounts.load("main").await.is_err());

        accounts.delete("main").await.unwrap();
        accounts.delete("main").await.unwrap();
        assert_eq!(accounts.load("main").await.unwrap(), None);
    }
}
