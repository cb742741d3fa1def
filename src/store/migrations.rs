//! Migrations compiled into the binary, so a fresh machine needs no SQL files: one list per
//! backend (`migrations/sqlite/`, `migrations/postgres/`), numbered alike.
//!
//! An applied migration is never changed or renumbered: sqlx refuses a store whose
//! recorded checksum differs from the embedded one. The SQLite files are the ones every
//! existing `factory.db` has applied, byte for byte (a test pins their checksums).

use std::borrow::Cow;

use futures_core::future::BoxFuture;
use sqlx::AnyPool;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

/// Version, name and SQL of each migration.
pub(super) type List = &'static [(i64, &'static str, &'static str)];

const SQLITE: List = &[
    (
        1,
        "init",
        include_str!("../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "deferred",
        include_str!("../../migrations/sqlite/0002_deferred.sql"),
    ),
    (
        3,
        "budgets",
        include_str!("../../migrations/sqlite/0003_budgets.sql"),
    ),
    (
        4,
        "stage_inputs",
        include_str!("../../migrations/sqlite/0004_stage_inputs.sql"),
    ),
];

const POSTGRES: List = &[
    (
        1,
        "init",
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "deferred",
        include_str!("../../migrations/postgres/0002_deferred.sql"),
    ),
    (
        3,
        "budgets",
        include_str!("../../migrations/postgres/0003_budgets.sql"),
    ),
    (
        4,
        "stage_inputs",
        include_str!("../../migrations/postgres/0004_stage_inputs.sql"),
    ),
];

/// A list of migrations compiled in, as sqlx's migrator reads them (the queue's own
/// schema has one too).
#[derive(Debug)]
pub(super) struct Embedded(pub(super) List);

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(self) -> BoxFuture<'s, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|(version, name, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*name),
                        MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// Applies what is missing; on Postgres under sqlx's advisory lock, so workers starting
/// together migrate once.
pub async fn run(pool: &AnyPool, postgres: bool) -> Result<(), sqlx::migrate::MigrateError> {
    let list = if postgres { POSTGRES } else { SQLITE };
    Migrator::new(Embedded(list)).await?.run(pool).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha384};

    /// The checksums every existing SQLite store recorded in `_sqlx_migrations` (read
    /// from a store made before the migrations moved into `migrations/sqlite/`).
    const APPLIED: [(i64, &str, &str); 3] = [
        (
            1,
            "init",
            "ac57b82c29ea98fe7a8aea54e5c070a03d30d526aaad667153f600edeb193329ea2fc998b0665fd9fa899d3d784bd6cf",
        ),
        (
            2,
            "deferred",
            "c650ee83e3c663aa53804938f16f1022f2e2c91f838f18ad8c04d3324b13a229a5097a61bd2d677381bdc569e65bbd9d",
        ),
        (
            3,
            "budgets",
            "fc9d05397d7c6edbcc28f79f21b23da6685d21925b8f9ff3181a2515f016db3f43b4ef26d53a89d4f5aa1eebabe6bed3",
        ),
    ];

    #[test]
    fn the_sqlite_migrations_existing_stores_applied_are_unchanged() {
        for ((version, name, sql), (applied, applied_name, checksum)) in SQLITE.iter().zip(APPLIED)
        {
            assert_eq!((*version, *name), (applied, applied_name));
            assert_eq!(hex::encode(Sha384::digest(sql.as_bytes())), checksum);
        }
    }

    #[test]
    fn both_backends_number_their_migrations_alike() {
        let versions = |list: List| list.iter().map(|(v, n, _)| (*v, *n)).collect::<Vec<_>>();
        assert_eq!(versions(SQLITE), versions(POSTGRES));
    }
}
