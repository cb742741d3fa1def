//! Data minimization: every column in the store is on the allow list in
//! `docs/PRIVACY.md`, which says why it is kept.

use std::collections::BTreeSet;

use sqlx::Row;
use tiktok_factory::store::Store;

use crate::support::repo;

/// The `table.column` entries of the allow list (`table.*` allows a whole table).
fn allow_list() -> BTreeSet<String> {
    let doc = std::fs::read_to_string(repo().join("docs/PRIVACY.md")).unwrap();
    let section = doc
        .split("## Columns kept, and why")
        .nth(1)
        .expect("docs/PRIVACY.md has the column section");
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn privacy_schema_every_column_is_on_the_documented_allow_list() {
    let allowed = allow_list();
    assert!(allowed.contains("accounts.open_id"), "{allowed:?}");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let tables: Vec<String> = sqlx::query(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    )
    .fetch_all(store.pool())
    .await
    .unwrap()
    .iter()
    .map(|r| r.get("name"))
    .collect();
    assert!(tables.iter().any(|t| t == "jobs"));
    let mut unlisted = Vec::new();
    let mut seen = BTreeSet::new();
    for table in &tables {
        let columns = sqlx::query(&format!("PRAGMA table_info(\"{table}\")"))
            .fetch_all(store.pool())
            .await
            .unwrap();
        assert!(!columns.is_empty());
        for column in columns {
            let name: String = column.get("name");
            let entry = format!("{table}.{name}");
            if !allowed.contains(&entry) && !allowed.contains(&format!("{table}.*")) {
                unlisted.push(entry.clone());
            }
            seen.insert(entry);
        }
    }
    store.close().await;
    assert!(
        unlisted.is_empty(),
        "columns not on the allow list in docs/PRIVACY.md: {unlisted:?}"
    );
    // The list names no column that does not exist, so it stays an honest description.
    let stale: Vec<_> = allowed
        .iter()
        .filter(|a| !a.ends_with(".*") && !seen.contains(*a))
        .collect();
    assert!(
        stale.is_empty(),
        "documented columns that do not exist: {stale:?}"
    );
}
