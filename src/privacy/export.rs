//! Everything stored about the user as one JSON document (schema in `docs/PRIVACY.md`):
//! connected accounts without their tokens, every job with its content metadata, stages,
//! artifacts and status history, and the side-effect ledger.

use serde_json::{Value, json};

use crate::store::{Store, StoreError};

/// The document's `schema` field; bumped when a field changes meaning.
pub const SCHEMA: &str = "tiktok-factory/export/v1";

/// Builds the export document.
pub async fn export(store: &Store) -> Result<Value, StoreError> {
    let rows = store.export_rows().await?;
    let mut jobs = Vec::new();
    for job in rows.jobs {
        let mut object = job.row;
        let spec = object.remove("spec").unwrap_or(Value::Null);
        object.insert("spec".into(), parse(&spec));
        let artifacts: Vec<Value> = job
            .artifacts
            .into_iter()
            .map(|mut a| {
                let meta = parse(a.get("meta").unwrap_or(&Value::Null));
                a.insert("meta".into(), meta);
                Value::Object(a)
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
        for e in &job.effects {
            collect_urls(&parse(e.get("detail").unwrap_or(&Value::Null)), &mut urls);
        }
        urls.sort();
        urls.dedup();
        object.insert("script".into(), script);
        object.insert("asset_urls".into(), json!(urls));
        object.insert("stages".into(), json!(job.stages));
        object.insert("artifacts".into(), json!(artifacts));
        object.insert("events".into(), json!(job.events));
        jobs.push(Value::Object(object));
    }
    let ledger = rows
        .effects
        .into_iter()
        .map(|mut o| {
            let detail = o.remove("detail").unwrap_or(Value::Null);
            o.insert("detail".into(), parse(&detail));
            Value::Object(o)
        })
        .collect::<Vec<_>>();
    Ok(json!({
        "schema": SCHEMA,
        "exported_at": crate::clock::now(),
        "accounts": rows.accounts,
        "jobs": jobs,
        "effects": ledger,
    }))
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
