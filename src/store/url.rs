//! Where the job store lives, by URL: `sqlite://<file>` (the default, `<state-dir>/factory.db`)
//! or `postgres://user:password@host:port/database` for a store many machines share.
//!
//! A URL can hold a password, so it is shown only through [`StoreUrl`]'s `Display`, which
//! leaves out the password and the query (where `password=` can also go).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;

use super::DB_FILE;

/// The job store's location.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// A SQLite database file (created with its directory when missing).
    Sqlite(PathBuf),
    /// A Postgres database, as given; `shown` is the same without credentials.
    Postgres { url: String, shown: String },
}

/// A `--store` value that is not a store URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadStoreUrl {
    #[error(
        "`{0}` is not a store URL; use `sqlite://<file>` or `postgres://<user>@<host>/<database>`"
    )]
    Scheme(String),
    #[error("the store URL `sqlite://` names no file; use `sqlite://<file>`")]
    NoFile,
    #[error("the store URL `{shown}` cannot be read: {reason}")]
    Postgres { shown: String, reason: String },
}

impl StoreUrl {
    /// The default store of a state directory: `<state-dir>/factory.db`.
    pub fn in_state_dir(state_dir: &Path) -> Self {
        Self::Sqlite(state_dir.join(DB_FILE))
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres { .. })
    }

    /// The backend's name, as the store's messages use it.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres { .. } => "postgres",
        }
    }
}

impl From<&Path> for StoreUrl {
    fn from(state_dir: &Path) -> Self {
        Self::in_state_dir(state_dir)
    }
}

impl From<&PathBuf> for StoreUrl {
    fn from(state_dir: &PathBuf) -> Self {
        Self::in_state_dir(state_dir)
    }
}

impl From<&StoreUrl> for StoreUrl {
    fn from(url: &StoreUrl) -> Self {
        url.clone()
    }
}

impl FromStr for StoreUrl {
    type Err = BadStoreUrl;

    fn from_str(text: &str) -> Result<Self, BadStoreUrl> {
        let text = text.trim();
        if let Some(path) = text
            .strip_prefix("sqlite://")
            .or_else(|| text.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(BadStoreUrl::NoFile);
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            let shown = scrub(text);
            let options = PgConnectOptions::from_str(text).map_err(|e| BadStoreUrl::Postgres {
                shown: shown.clone(),
                reason: e.to_string(),
            })?;
            // What the connection will use, host and database included, never the password.
            let user = options.get_username();
            let host = options.get_host();
            let port = options.get_port();
            let database = options.get_database().unwrap_or(user);
            let shown = format!("postgres://{user}@{host}:{port}/{database}");
            return Ok(Self::Postgres {
                url: text.to_owned(),
                shown,
            });
        }
        // The text may be a mistyped URL with a password in it: show its scheme only.
        let scheme = text.split_once("://").map_or("", |(scheme, _)| scheme);
        Err(BadStoreUrl::Scheme(if scheme.is_empty() {
            scrub(text)
        } else {
            format!("{scheme}://…")
        }))
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            Self::Postgres { shown, .. } => f.write_str(shown),
        }
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({self})")
    }
}

/// `text` without a password in its authority (`user:password@`) and without its query.
pub fn scrub(text: &str) -> String {
    let text = text.split(['?', '#']).next().unwrap_or_default();
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_owned();
    };
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{user}@{host}")
        }
        None => authority.to_owned(),
    };
    if path.is_empty() && !rest.contains('/') {
        format!("{scheme}://{authority}")
    } else {
        format!("{scheme}://{authority}/{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sqlite_url_names_its_file() {
        assert_eq!(
            "sqlite://.factory/other.db".parse::<StoreUrl>().unwrap(),
            StoreUrl::Sqlite(PathBuf::from(".factory/other.db"))
        );
        assert_eq!(
            "sqlite:/srv/f.db".parse::<StoreUrl>().unwrap(),
            StoreUrl::Sqlite(PathBuf::from("/srv/f.db"))
        );
        assert_eq!("sqlite://".parse::<StoreUrl>(), Err(BadStoreUrl::NoFile));
        assert_eq!(
            StoreUrl::from(Path::new("state")),
            StoreUrl::Sqlite(PathBuf::from("state/factory.db"))
        );
    }

    #[test]
    fn a_postgres_url_is_shown_without_its_password() {
        let url: StoreUrl = "postgres://factory:hunter2@db.internal:6543/videos?sslmode=require"
            .parse()
            .unwrap();
        assert!(url.is_postgres());
        assert_eq!(
            url.to_string(),
            "postgres://factory@db.internal:6543/videos"
        );
        assert!(!format!("{url:?}").contains("hunter2"));
        let StoreUrl::Postgres { url: given, .. } = &url else {
            unreachable!()
        };
        assert!(given.contains("hunter2"), "the connection keeps it");
    }

    #[test]
    fn a_password_in_the_query_is_not_shown_either() {
        let url: StoreUrl = "postgresql://factory@db/videos?password=hunter2"
            .parse()
            .unwrap();
        assert!(!url.to_string().contains("hunter2"), "{url}");
    }

    #[test]
    fn another_scheme_is_refused_without_echoing_its_credentials() {
        let err = "mysql://root:hunter2@db/videos"
            .parse::<StoreUrl>()
            .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(err.to_string().contains("`mysql://…`"), "{err}");
        let err = "postgres://u:hunter2@db:notaport/x"
            .parse::<StoreUrl>()
            .unwrap_err();
        assert!(matches!(err, BadStoreUrl::Postgres { .. }), "{err:?}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn scrub_keeps_the_user_and_host() {
        assert_eq!(scrub("postgres://u:p@h:1/d?x=y"), "postgres://u@h:1/d");
        assert_eq!(scrub("postgres://h"), "postgres://h");
        assert_eq!(scrub("s3://bucket/prefix"), "s3://bucket/prefix");
    }
}
