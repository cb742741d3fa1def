//! `factory plan` as a diff: a changed job's fields, which of its stages run and which
//! are reused, the totals line, superseded versions collapsed. The store and the
//! artifact store are filled the way a finished run fills them (every stage's entry or
//! ledger record under the key the pipeline computes), without rendering anything.

use std::path::{Path, PathBuf};

use tiktok_factory::artifacts::{ArtifactStore, EffectRecord, EffectStatus};
use tiktok_factory::expand::{self, Job, canonical_json};
use tiktok_factory::keys::ToolVersions;
use tiktok_factory::plan::{KeyEnv, forecast};
use tiktok_factory::providers::Script;
use tiktok_factory::recipe;
use tiktok_factory::stages::Stage;
use tiktok_factory::store::{NewJob, Status, Store};

use crate::support::{Factory, Output, tmp_filters, write};

pub const RECIPE: &str = r#"version: 1
name: diff-check
voices:
  narrator: { provider: espeak, voice: en-us, rate: 165 }
  brit: { provider: espeak, voice: en-gb, rate: 155 }
templates:
  fact:
    script: { provider: offline, seconds: 20 }
    footage: { provider: generated, clips: 2 }
    captions: { style: bold-center, max_words: 3, highlight: word }
    video: { size: 1080x1920, fps: 30, max_seconds: 60 }
    title: "{{ topic }}: the 12-second tip"
batch:
  template: fact
  matrix:
    topic: [Owls, Bats]
    voice: [narrator, brit]
"#;

/// When the first recorded run happened (unix seconds); each later one a day after.
const RECORDED_AT: i64 = 1_767_225_600;

pub struct Project {
    dir: tempfile::TempDir,
    runs: std::cell::Cell<i64>,
}

impl Project {
    pub fn new(recipe: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        write(dir.path(), "recipe.yaml", recipe);
        Self {
            dir,
            runs: std::cell::Cell::new(0),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn state(&self) -> PathBuf {
        self.path().join("state")
    }

    pub fn edit(&self, recipe: &str) {
        write(self.path(), "recipe.yaml", recipe);
    }

    pub fn jobs(&self) -> Vec<Job> {
        let resolved = recipe::load(&self.path().join("recipe.yaml"))
            .unwrap_or_else(|d| panic!("invalid recipe: {d:?}"));
        expand::expand(&resolved).unwrap_or_else(|d| panic!("invalid recipe: {d:?}"))
    }

    /// The tool versions `factory` itself finds, so the keys recorded here are the
    /// keys it predicts.
    async fn versions() -> ToolVersions {
        match tiktok_factory::media::Tools::detect() {
            Ok(tools) => tools.versions().await,
            Err(_) => ToolVersions::default(),
        }
    }

    /// Records every job of the current recipe as a finished run does: each stage's
    /// artifact (or ledger record) under its key, the stage rows with their key inputs,
    /// the job done.
    pub async fn record_run(&self) {
        let store = Store::open(&self.state()).await.expect("open the store");
        let artifacts =
            ArtifactStore::open(&self.state().join("cache")).expect("open the artifact store");
        let versions = Self::versions().await;
        let recipe_path = self.path().join("recipe.yaml").display().to_string();
        let at = RECORDED_AT + 86_400 * self.runs.get();
        self.runs.set(self.runs.get() + 1);
        for job in self.jobs() {
            let id = job.id.to_string();
            let spec = canonical_json(&serde_json::to_value(&job.spec).expect("spec as JSON"));
            store
                .upsert_job(&NewJob {
                    id: &id,
                    recipe: &job.spec.recipe,
                    recipe_path: &recipe_path,
                    cell: &job.cell,
                    spec: &spec,
                    topic: &job.spec.topic,
                    voice: &job.spec.voice_name,
                    status: Status::Pending,
                })
                .await
                .expect("insert the job");
            let script = Script {
                hook: format!("{} are stranger than you think.", job.spec.topic),
                sentences: vec!["Here is one fact.".into()],
                cta: "Follow for more.".into(),
                title: job.spec.topic.clone(),
                caption: job.spec.topic.clone(),
                hashtags: vec!["#facts".into()],
                visuals: Vec::new(),
                usage: None,
            };
            let env = KeyEnv {
                versions: &versions,
                folder: None,
                music: None,
                script: Some(&script),
            };
            for (stage, inputs) in forecast(&job.spec, &id, &env) {
                let inputs = inputs.expect("every input is known once the script is");
                let key = inputs.key();
                match stage {
                    Stage::Host | Stage::Draft | Stage::Notify => artifacts
                        .put_effect(&EffectRecord {
                            key: key.clone(),
                            kind: stage.as_str().to_owned(),
                            job: id.clone(),
                            status: EffectStatus::Done,
                            attempts: 1,
                            progress: None,
                            result: Some(serde_json::json!({})),
                            error: None,
                            updated_at: at,
                            owner: None,
                        })
                        .await
                        .expect("record the effect"),
                    _ if artifacts.contains(stage.as_str(), &key) => {}
                    _ => {
                        let work = artifacts
                            .workdir(stage.as_str(), &key)
                            .await
                            .expect("a work folder");
                        std::fs::write(work.join("out"), "made").expect("write the artifact");
                        let output = if stage == Stage::Script {
                            serde_json::to_value(&script).expect("script as JSON")
                        } else {
                            serde_json::json!({})
                        };
                        artifacts
                            .commit(stage.as_str(), &key, &work, "out", &output, None)
                            .await
                            .expect("commit the artifact");
                    }
                }
                store
                    .stage_finished(&id, stage.as_str(), &key, "done", None, None, None)
                    .await
                    .expect("record the stage");
                let json = serde_json::to_string(&inputs).expect("inputs as JSON");
                assert!(
                    store
                        .record_inputs(&id, stage.as_str(), &key, &json)
                        .await
                        .expect("record the inputs")
                );
            }
            store
                .set_status(&id, Status::Done, None, None)
                .await
                .expect("record the status");
            sqlx::query(
                "UPDATE jobs SET created_at = $2, updated_at = $2, finished_at = $2 WHERE id = $1",
            )
            .bind(&id)
            .bind(at)
            .execute(store.pool())
            .await
            .expect("pin the timestamps");
        }
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(store.pool())
            .await
            .expect("checkpoint the WAL");
        store.close().await;
    }

    pub fn factory(&self) -> Factory {
        Factory::new()
            .arg("--state-dir")
            .arg(self.state())
            .current_dir(self.path())
            .env_remove("NO_COLOR")
    }

    pub fn plan(&self, extra: &[&str]) -> Output {
        let out = self
            .factory()
            .arg("plan")
            .args(extra)
            .arg("recipe.yaml")
            .run();
        assert_eq!(out.code, 0, "{}", out.stderr);
        out
    }
}

fn titled(title: &str) -> String {
    RECIPE.replace("{{ topic }}: the 12-second tip", title)
}

#[tokio::test]
async fn a_title_edit_is_a_diff_that_reuses_every_render() {
    let project = Project::new(RECIPE);
    project.record_run().await;
    project.edit(&titled("{{ topic }}: the quick tip"));
    let out = project.plan(&[]);
    assert!(
        !out.stdout.contains('\u{1b}'),
        "colour in a pipe: {}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("~ title: \"Owls: the 12-second tip\" → \"Owls: the quick tip\""),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("runs: host draft notify · reused: script footage voice captions render"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("Plan: 0 new, 4 changed, 0 removed; 12 stages to run, 20 reused"),
        "{}",
        out.stdout
    );
    tmp_filters(project.path()).bind(|| insta::assert_snapshot!("plan_diff_title", out.stdout));
}

#[tokio::test]
async fn a_long_shared_start_is_left_out_of_a_changed_field() {
    let long = "{{ topic }}: everything a beginner should know, the 12-second tip";
    let project = Project::new(&titled(long));
    project.record_run().await;
    project.edit(&titled(
        "{{ topic }}: everything a beginner should know, the quick tip",
    ));
    let out = project.plan(&[]);
    assert!(
        out.stdout
            .contains("~ title: \"…12-second tip\" → \"…quick tip\""),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn a_voice_edit_runs_the_voice_and_everything_after_it_and_totals_count_them() {
    let project = Project::new(RECIPE);
    project.record_run().await;
    project.edit(
        &RECIPE
            .replace("rate: 155 }", "rate: 155, pitch: 60 }")
            .replace("topic: [Owls, Bats]", "topic: [Owls, Bats, Moths]"),
    );
    let out = project.plan(&[]);
    assert!(
        out.stdout.contains("~ voice.pitch: null → 60"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("runs: voice captions render host draft notify · reused: script footage"),
        "{}",
        out.stdout
    );
    // 2 new Moths jobs run all 8; the 2 brit jobs run 6 and reuse 2.
    assert!(
        out.stdout
            .contains("Plan: 2 new, 2 changed, 0 removed; 28 stages to run, 4 reused"),
        "{}",
        out.stdout
    );
    let json = project.plan(&["--json"]).json();
    assert_eq!(json["totals"]["stages_to_run"], 28);
    assert_eq!(json["totals"]["changed"], 2);
    let changed: Vec<&serde_json::Value> = json["recipes"][0]["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter(|j| j["action"] == "changed")
        .collect();
    assert_eq!(changed.len(), 2);
    for j in changed {
        assert_eq!(
            j["changes"],
            serde_json::json!([{ "field": "voice.pitch", "old": null, "new": 60 }])
        );
        assert_eq!(
            j["stages"][0],
            serde_json::json!({ "stage": "script", "action": "reuse" })
        );
        assert_eq!(
            j["stages"][2],
            serde_json::json!({ "stage": "voice", "action": "run" })
        );
    }
    tmp_filters(project.path()).bind(|| insta::assert_snapshot!("plan_diff_voice", out.stdout));
}

/// Two edits used to leave a pile of "removed … last done" rows, one per old version.
#[tokio::test]
async fn superseded_versions_collapse_into_one_line_per_job_and_all_lists_them() {
    let project = Project::new(RECIPE);
    project.record_run().await;
    project.edit(&titled("{{ topic }}: second take"));
    project.record_run().await;
    project.edit(&titled("{{ topic }}: third take"));
    project.record_run().await;
    let out = project.plan(&[]);
    assert!(!out.stdout.contains("removed  "), "{}", out.stdout);
    assert_eq!(
        out.stdout
            .matches("2 older versions superseded (`--all` lists them)")
            .count(),
        4,
        "{}",
        out.stdout
    );
    let all = project.plan(&["--all"]);
    assert_eq!(
        all.stdout.matches("superseded ").count(),
        8,
        "{}",
        all.stdout
    );
    // A cell taken out of the recipe: one removed row, its older versions collapsed.
    project.edit(&titled("{{ topic }}: third take").replace("[Owls, Bats]", "[Owls]"));
    let out = project.plan(&[]);
    assert_eq!(
        out.stdout.matches("  - removed").count(),
        2,
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Plan: 0 new, 0 changed, 2 removed"),
        "{}",
        out.stdout
    );
    let settings = tmp_filters(project.path());
    settings.bind(|| {
        insta::assert_snapshot!("plan_diff_superseded", out.stdout);
        insta::assert_snapshot!("plan_diff_superseded_all", all.stdout);
    });
}

/// A two-second portrait clip made with ffmpeg, for `provider: local` footage.
pub fn make_clip(path: &Path) {
    std::fs::create_dir_all(path.parent().expect("a folder")).expect("create the folder");
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc=size=540x960:rate=30:duration=2")
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p"])
        .arg(path)
        .status()
        .expect("run ffmpeg");
    assert!(status.success());
}

pub const TINY: &str = "version: 1\nname: tiny\nvoices:\n  a: { provider: espeak, voice: en-us, rate: 260 }\ntemplates:\n  t:\n    script: { provider: offline, seconds: 3 }\n    footage: { provider: local, dir: clips, clips: 1 }\n    title: \"{{ topic }} in brief\"\nbatch:\n  template: t\n  matrix: { topic: [Alpha], voice: [a] }\n";

/// The keys `plan` predicts are the keys the pipeline computes: after a real run, a
/// title edit reuses every stage up to the render, in the plan and in the next run.
#[tokio::test]
async fn a_real_run_records_every_key_input_and_the_plan_predicts_its_keys() {
    let project = Project::new(TINY);
    make_clip(&project.path().join("clips/one.mp4"));
    let run = project
        .factory()
        .args(["run", "recipe.yaml"])
        .env("CI", "1")
        .run();
    assert_eq!(run.code, 0, "{run:?}");
    let store = Store::open_read_only(&project.state())
        .await
        .expect("open the store")
        .expect("a store");
    let id = project.jobs()[0].id.to_string();
    let recorded = store.stage_inputs(&id).await.expect("the stage inputs");
    store.close().await;
    assert_eq!(recorded.len(), 8, "{recorded:?}");
    for (stage, row) in &recorded {
        let inputs: tiktok_factory::keys::Inputs =
            serde_json::from_str(row.inputs.as_deref().unwrap_or_else(|| panic!("{stage}")))
                .expect("inputs as JSON");
        assert_eq!(inputs.key(), row.key, "{stage}");
    }
    project.edit(&TINY.replace("in brief", "in a minute"));
    let plan = project.plan(&[]);
    assert!(
        plan.stdout
            .contains("runs: host draft notify · reused: script footage voice captions render"),
        "{}",
        plan.stdout
    );
    let again = project
        .factory()
        .args(["run", "recipe.yaml"])
        .env("CI", "1")
        .run();
    assert_eq!(again.code, 0, "{again:?}");
    assert!(
        again.stdout.contains("3 stages executed") && again.stdout.contains(", 5 reused"),
        "{}",
        again.stdout
    );
}
