//! Compaction after a deletion that the policy promises: SQLite keeps deleted rows in
//! free pages and, in WAL mode, in the log, so a `DELETE` alone leaves the content in the
//! file's bytes. `VACUUM` rewrites the database without them and a truncating checkpoint
//! empties the log.

use sqlx::SqlitePool;

/// Rewrites the database so deleted content is gone from the file and its WAL.
pub async fn compact(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    sqlx::query("VACUUM").execute(pool).await?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(pool)
        .await?;
    Ok(())
}
