//! Everything stored about the user as one JSON document (schema in `docs/PRIVACY.md`):
//! connected accounts without their tokens, every job with its content metadata, stages,
//! artifacts and status history, and the side-effect ledger.

use serde_json::{Map, Value, json};
use sqlx::sqlite::SqliteRow;
use sqlx::{Column, Row, SqlitePool, TypeInfo};

use crate::providers::tiktok::SqliteAccountStore;

/// The document's `schema` field; bumped when a field changes meaning.
pub const SCHEMA: &str = "tiktok-factory/export/v1";

/// Builds the export document.
pub async fn export(pool: &SqlitePool) -> Result<Value, sqlx::Error> {
    let accounts = SqliteAccountStore::summaries(pool).await?;
    let mut jobs = Vec::new();
    for job in sqlx::query(
        "SELECT id, recipe, cell, spec, topic, voice, status, stage, attempts, error, \
                created_at, updated_at, finished_at FROM jobs ORDER BY recipe, created_at, id",
    )
    .fetch_all(pool)
    .await?
    {
        let mut object = row_object(&job);
        let id: String = job.try_get("id")?;
        let spec = object.remove("spec").unwrap_or(Value::Null);
        object.insert("spec".into(), parse(&spec));
        let stages = rows(
            pool,
            "SELECT stage, key, status, attempt, artifact, error, cost, started_at, finished_at \
             FROM stages WHERE job_id = $1 ORDER BY started_at, stage",
            &id,
        )
        .await?;
        let artifacts: Vec<Value> = rows(
            pool,
            "SELECT a.key, a.stage, a.meta, a.created_at, a.expires_at, a.expired_at \
             FROM artifacts a JOIN stages s ON s.artifact = a.key WHERE s.job_id = $1 \
             ORDER BY a.created_at, a.stage",
            &id,
        )
        .await?
        .into_iter()
        .map(|mut a| {
            let meta = parse(&a["meta"]);
            a["meta"] = meta;
            a
        })
        .collect();
        let script = artifacts
            .iter()
            .find(|a| a["stage"] == "script")
            .map_or(Value::Null, |a| a["meta"].clone());
        let mut urls = Vec::new();
        for a in &artifacts {
            collect_urls(&a["meta"], &mut urls);
        }
        let events = rows(
            pool,
            "SELECT seq, stage, status, detail, at FROM events WHERE job_id = $1 ORDER BY seq",
            &id,
        )
        .await?;
        let effects = rows(
            pool,
            "SELECT key, kind, status, external_id, detail, started_at, finished_at \
             FROM effects WHERE job_id = $1 ORDER BY started_at, key",
            &id,
        )
        .await?;
        for e in &effects {
            collect_urls(&parse(&e["detail"]), &mut urls);
        }
        urls.sort();
        urls.dedup();
        object.insert("script".into(), script);
        object.insert("asset_urls".into(), json!(urls));
        object.insert("stages".into(), json!(stages));
        object.insert("artifacts".into(), json!(artifacts));
        object.insert("events".into(), json!(events));
        jobs.push(Value::Object(object));
    }
    let ledger = sqlx::query(
        "SELECT key, job_id, kind, status, external_id, detail, started_at, finished_at \
         FROM effects ORDER BY started_at, key",
    )
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        let mut o = row_object(r);
        let detail = o.remove("detail").unwrap_or(Value::Null);
        o.insert("detail".into(), parse(&detail));
        Value::Object(o)
    })
    .collect::<Vec<_>>();
    Ok(json!({
        "schema": SCHEMA,
        "exported_at": crate::clock::now(),
        "accounts": accounts,
        "jobs": jobs,
        "effects": ledger,
    }))
}

async fn rows(pool: &SqlitePool, sql: &str, id: &str) -> Result<Vec<Value>, sqlx::Error> {
    Ok(sqlx::query(sql)
        .bind(id)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| Value::Object(row_object(r)))
        .collect())
}

/// A row as a JSON object, by the declared type of each column.
fn row_object(row: &SqliteRow) -> Map<String, Value> {
    let mut object = Map::new();
    for (i, column) in row.columns().iter().enumerate() {
        let value = match column.type_info().name() {
            "INTEGER" | "BIGINT" => row
                .try_get::<Option<i64>, _>(i)
                .ok()
                .flatten()
                .map_or(Value::Null, Value::from),
            "REAL" | "DOUBLE PRECISION" => row
                .try_get::<Option<f64>, _>(i)
                .ok()
                .flatten()
                .map_or(Value::Null, Value::from),
            _ => row
                .try_get::<Option<String>, _>(i)
                .ok()
                .flatten()
                .map_or(Value::Null, Value::from),
        };
        object.insert(column.name().to_owned(), value);
    }
    object
}

/// Stored JSON text as a value; text that is not JSON stays text.
fn parse(value: &Value) -> Value {
    match value.as_str() {
        Some(text) => serde_json::from_str(text).unwrap_or_else(|_| value.clone()),
        None => value.clone(),
    }
}

/// Every http(s) URL in a value: footage sources and credits, hosted links.
fn collect_urls(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) if s.starts_with("http://") || s.starts_with("https://") => {
            out.push(s.clone());
        }
        Value::Array(items) => items.iter().for_each(|v| collect_urls(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_urls(v, out)),
        _ => {}
    }
}
