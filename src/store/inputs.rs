//! What a plan diff and `factory why` read back: each job's expanded spec, the named
//! inputs of its stage keys, and how long stages took.

use std::collections::HashMap;

use sqlx::Row;

use super::{Store, StoreError};

/// A stage's recorded key and, when recorded, the inputs it was hashed from (JSON of
/// `keys::Inputs`).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedInputs {
    pub stage: String,
    pub key: String,
    pub inputs: Option<String>,
}

impl Store {
    /// The expanded spec (canonical JSON) of every job of a recipe, by id.
    pub async fn job_specs(&self, recipe: &str) -> Result<HashMap<String, String>, StoreError> {
        let rows = sqlx::query("SELECT id, spec FROM jobs WHERE recipe = $1")
            .bind(recipe)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("spec")?)))
            .collect()
    }

    /// Records the inputs of a stage's key, only when the stage row holds that key: a
    /// row whose key differs was made from other inputs. Whether it was recorded.
    pub async fn record_inputs(
        &self,
        job: &str,
        stage: &str,
        key: &str,
        inputs: &str,
    ) -> Result<bool, StoreError> {
        let done = self
            .write(|| {
                sqlx::query(
                    "UPDATE stages SET inputs = $4 WHERE job_id = $1 AND stage = $2 AND key = $3",
                )
                .bind(job)
                .bind(stage)
                .bind(key)
                .bind(inputs)
                .execute(self.pool())
            })
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// A job's stage keys with their recorded inputs, by stage name.
    pub async fn stage_inputs(
        &self,
        job: &str,
    ) -> Result<HashMap<String, RecordedInputs>, StoreError> {
        let rows = sqlx::query("SELECT stage, key, inputs FROM stages WHERE job_id = $1")
            .bind(job)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                let stage: String = r.try_get("stage")?;
                Ok((
                    stage.clone(),
                    RecordedInputs {
                        stage,
                        key: r.try_get("key")?,
                        inputs: r.try_get("inputs")?,
                    },
                ))
            })
            .collect()
    }

    /// How long each stage took on average when it executed (not reused), in seconds,
    /// over the last `recent` executions of that stage: what an ETA is made from.
    pub async fn stage_durations(&self, recent: i64) -> Result<HashMap<String, f64>, StoreError> {
        let rows = sqlx::query(
            "SELECT stage, CAST(AVG(seconds) AS DOUBLE PRECISION) AS seconds FROM ( \
               SELECT stage, finished_at - started_at AS seconds, \
                      ROW_NUMBER() OVER (PARTITION BY stage ORDER BY finished_at DESC) AS n \
               FROM stages WHERE status = 'done' AND started_at IS NOT NULL AND finished_at IS NOT NULL \
             ) AS recent WHERE n <= $1 GROUP BY stage",
        )
        .bind(recent)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("stage")?, r.try_get::<f64, _>("seconds")?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{NewJob, Status};
    use super::*;

    async fn store_with_job(dir: &std::path::Path) -> Store {
        let store = Store::open(dir).await.unwrap();
        store
            .upsert_job(&NewJob {
                id: "abcd000011112222",
                recipe: "r",
                recipe_path: "r.yaml",
                cell: "{}",
                spec: r#"{"title":"t"}"#,
                topic: "t",
                voice: "v",
                status: Status::Pending,
            })
            .await
            .unwrap();
        store
    }

    #[tokio::test]
    async fn inputs_are_recorded_only_under_the_key_the_stage_row_holds() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_job(dir.path()).await;
        let job = "abcd000011112222";
        store
            .stage_finished(job, "script", "k1", "done", None, None, None)
            .await
            .unwrap();
        assert!(
            !store
                .record_inputs(job, "script", "k2", "{}")
                .await
                .unwrap()
        );
        assert!(
            store
                .record_inputs(job, "script", "k1", r#"{"a":1}"#)
                .await
                .unwrap()
        );
        let got = store.stage_inputs(job).await.unwrap();
        assert_eq!(got["script"].key, "k1");
        assert_eq!(got["script"].inputs.as_deref(), Some(r#"{"a":1}"#));
        assert_eq!(store.job_specs("r").await.unwrap()[job], r#"{"title":"t"}"#);
    }
}
