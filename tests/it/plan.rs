//! `factory plan` and `factory jobs` against a real SQLite store, filled the way a
//! recorded run fills it: one row per job, then its final status.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tiktok_factory::expand::{self, Job, canonical_json};
use tiktok_factory::recipe;
use tiktok_factory::store::{DB_FILE, NewJob, Status, Store};

use crate::support::{Factory, Output, tmp_filters, write};

const RECIPE: &str = r#"version: 1
name: plan-check
voices:
  narrator: { provider: espeak, voice: en-us, rate: 165 }
  brit: { provider: espeak, voice: en-gb, rate: 155 }
templates:
  fact:
    script: { provider: offline, seconds: 20 }
    title: "{{ topic }} — did you know?"
batch:
  template: fact
  matrix:
    topic: [Black holes, Neutron stars, Dark matter]
    voice: [narrator, brit]
"#;

/// When the recorded run happened (unix seconds).
const RECORDED_AT: i64 = 1_767_225_600;

/// A project folder with the recipe and a state directory beside it.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(recipe: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        write(dir.path(), "recipe.yaml", recipe);
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn state(&self) -> PathBuf {
        self.path().join("state")
    }

    fn edit(&self, recipe: &str) {
        write(self.path(), "recipe.yaml", recipe);
    }

    fn jobs(&self) -> Vec<Job> {
        let resolved = recipe::load(&self.path().join("recipe.yaml"))
            .unwrap_or_else(|d| panic!("invalid recipe: {d:?}"));
        expand::expand(&resolved).unwrap_or_else(|d| panic!("invalid recipe: {d:?}"))
    }

    /// Records every job of the current recipe as a run would: inserted, then finished
    /// with `status` (and, for failures, the stage and error).
    async fn record(&self, status: impl Fn(&Job) -> (Status, Option<&'static str>)) {
        let store = Store::open(&self.state()).await.expect("open the store");
        let recipe_path = self.path().join("recipe.yaml").display().to_string();
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
            let (status, stage) = status(&job);
            store
                .set_status(&id, Status::Running, Some("script"), None)
                .await
                .expect("record the start");
            let error = stage.map(|s| format!("{s} failed: ffmpeg exited with status 1"));
            store
                .set_status(&id, status, stage, error.as_deref())
                .await
                .expect("record the status");
        }
        // One instant for every row, so their order (by time, then id) does not depend
        // on whether the inserts straddled a second.
        sqlx::query(
            "UPDATE jobs SET created_at = $1, updated_at = $1, \
             finished_at = CASE WHEN finished_at IS NULL THEN NULL ELSE $1 END",
        )
        .bind(RECORDED_AT)
        .execute(store.pool())
        .await
        .expect("pin the timestamps");
        // Everything into the database file, as a finished run leaves it, whatever the
        // pool does with connections it has not yet closed.
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(store.pool())
            .await
            .expect("checkpoint the WAL");
        store.close().await;
    }

    fn factory(&self) -> Factory {
        Factory::new()
            .arg("--state-dir")
            .arg(self.state())
            .current_dir(self.path())
    }

    fn plan(&self) -> Output {
        let out = self.factory().args(["--json", "plan", "recipe.yaml"]).run();
        assert_eq!(out.code, 0, "{}", out.stderr);
        out
    }
}

fn all_done(_: &Job) -> (Status, Option<&'static str>) {
    (Status::Done, None)
}

/// The planned jobs of the one recipe, by (topic, voice).
fn planned(out: &Output) -> BTreeMap<(String, String), Value> {
    let json = out.json();
    let recipes = json["recipes"].as_array().expect("a recipe list");
    assert_eq!(recipes.len(), 1, "{json}");
    recipes[0]["jobs"]
        .as_array()
        .expect("a job list")
        .iter()
        .map(|j| {
            let text = |k: &str| j[k].as_str().expect("a string").to_owned();
            ((text("topic"), text("voice")), j.clone())
        })
        .collect()
}

fn actions(out: &Output) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for job in planned(out).values() {
        let action = job["action"].as_str().expect("an action").to_owned();
        *counts.entry(action).or_default() += 1;
    }
    counts
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(a, n)| ((*a).to_owned(), *n)).collect()
}

#[tokio::test]
async fn a_recorded_recipe_plans_as_done() {
    let project = Project::new(RECIPE);
    project.record(all_done).await;
    let out = project.plan();
    assert_eq!(actions(&out), counts(&[("done", 6)]));
    assert_eq!(out.json()["recipes"][0]["counts"]["done"], 6);
}

#[tokio::test]
async fn editing_one_topic_plans_one_new_and_one_removed_job() {
    let project = Project::new(&RECIPE.replace("voice: [narrator, brit]", "voice: [narrator]"));
    project.record(all_done).await;
    let old = project.jobs();
    project.edit(
        &RECIPE
            .replace("voice: [narrator, brit]", "voice: [narrator]")
            .replace("Dark matter]", "Dark energy]"),
    );
    let out = project.plan();
    assert_eq!(
        actions(&out),
        counts(&[("done", 2), ("new", 1), ("removed", 1)])
    );
    let jobs = planned(&out);
    let key = |topic: &str| (topic.to_owned(), "narrator".to_owned());
    assert_eq!(jobs[&key("Dark energy")]["action"], "new");
    let removed = &jobs[&key("Dark matter")];
    assert_eq!(removed["action"], "removed");
    let old_id = old
        .iter()
        .find(|j| j.spec.topic == "Dark matter")
        .map(|j| j.id.to_string())
        .expect("the old job");
    assert_eq!(removed["id"], old_id.as_str());
    for topic in ["Black holes", "Neutron stars"] {
        assert_eq!(jobs[&key(topic)]["action"], "done", "{topic}");
    }
}

#[tokio::test]
async fn a_failed_job_plans_as_failed_at_its_stage() {
    let project = Project::new(RECIPE);
    project
        .record(|job| {
            if job.spec.topic == "Neutron stars" && job.spec.voice_name == "brit" {
                (Status::Failed, Some("render"))
            } else {
                (Status::Done, None)
            }
        })
        .await;
    let out = project.plan();
    assert_eq!(actions(&out), counts(&[("done", 5), ("failed", 1)]));
    let failed = &planned(&out)[&("Neutron stars".to_owned(), "brit".to_owned())];
    assert_eq!(failed["action"], "failed");
    assert_eq!(failed["stage"], "render");
    let reason = failed["reason"].as_str().expect("a reason");
    assert!(
        reason.starts_with("resumes at `render`") && reason.contains("ffmpeg exited"),
        "{reason}"
    );
}

#[tokio::test]
async fn changing_a_voice_setting_plans_its_jobs_as_changed() {
    let project = Project::new(RECIPE);
    project.record(all_done).await;
    let before: BTreeMap<_, _> = project
        .jobs()
        .into_iter()
        .map(|j| {
            (
                (j.spec.topic.clone(), j.spec.voice_name.clone()),
                j.id.to_string(),
            )
        })
        .collect();
    project.edit(&RECIPE.replace("voice: en-gb, rate: 155", "voice: en-gb, rate: 170"));
    let out = project.plan();
    assert_eq!(actions(&out), counts(&[("changed", 3), ("done", 3)]));
    for ((topic, voice), job) in planned(&out) {
        let old = &before[&(topic.clone(), voice.clone())];
        if voice == "brit" {
            assert_eq!(job["action"], "changed", "{topic}");
            assert_ne!(job["id"], old.as_str());
            assert_eq!(job["reason"], format!("replaces {old}"));
        } else {
            assert_eq!(job["action"], "done", "{topic}");
            assert_eq!(job["id"], old.as_str());
        }
    }
}

/// The database file's bytes and modification time, and the WAL's bytes (none when
/// absent): what holds the store's data. The `-shm` index is left out: every reader of a
/// WAL database, read-only or not, keeps its read marks there.
fn store_files(state: &Path) -> (Vec<u8>, std::time::SystemTime, Vec<u8>, Vec<String>) {
    let db = state.join(DB_FILE);
    let bytes = std::fs::read(&db).expect("read the database");
    let modified = std::fs::metadata(&db)
        .and_then(|m| m.modified())
        .expect("mtime");
    let wal = std::fs::read(state.join(format!("{DB_FILE}-wal"))).unwrap_or_default();
    let mut names: Vec<String> = std::fs::read_dir(state)
        .expect("read the state dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(&format!("{DB_FILE}-")))
        .collect();
    names.sort();
    (bytes, modified, wal, names)
}

#[tokio::test]
async fn plan_does_not_modify_the_store() {
    let project = Project::new(RECIPE);
    project.record(all_done).await;
    project.edit(&RECIPE.replace("Dark matter]", "Dark energy]"));
    let (bytes, modified, wal, names) = store_files(&project.state());
    assert!(bytes.len() > 4096, "the rows are in the database file");
    for _ in 0..2 {
        let out = project.plan();
        assert_eq!(actions(&out)["new"], 2);
        let human = project.factory().args(["plan", "recipe.yaml"]).run();
        assert_eq!(human.code, 0, "{}", human.stderr);
    }
    let (now_bytes, now_modified, now_wal, now_names) = store_files(&project.state());
    assert!(bytes == now_bytes, "plan changed the database file");
    assert_eq!(modified, now_modified, "plan touched the database file");
    assert!(wal == now_wal, "plan wrote to the WAL");
    assert_eq!(
        names, now_names,
        "plan added or removed files in the state dir"
    );
}

#[test]
fn plan_without_a_store_creates_none() {
    let project = Project::new(RECIPE);
    let out = project.plan();
    assert_eq!(actions(&out), counts(&[("new", 6)]));
    assert!(!project.state().exists(), "plan created the state dir");
    // The default state dir, beside the recipes, is not created either.
    let default = Factory::new()
        .args(["plan", "recipe.yaml"])
        .current_dir(project.path())
        .run();
    assert_eq!(default.code, 0, "{}", default.stderr);
    assert!(!project.path().join(".factory").exists());
}

#[tokio::test]
async fn plan_prints_a_table() {
    let project = Project::new(RECIPE);
    project
        .record(|job| {
            if job.spec.topic == "Black holes" && job.spec.voice_name == "narrator" {
                (Status::Failed, Some("voice"))
            } else {
                (Status::Done, None)
            }
        })
        .await;
    project.edit(&RECIPE.replace("Dark matter]", "Dark energy]"));
    let out = project
        .factory()
        .arg("plan")
        .arg(project.path().join("recipe.yaml"))
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut settings = tmp_filters(project.path());
    settings.add_filter(r"\b[0-9a-f]{16}\b", "[JOB-ID]");
    settings.bind(|| insta::assert_snapshot!(out.stdout));
}

/// The shortest prefix of `id` that no other id shares, but at least 6 characters.
fn unique_prefix<'a>(id: &'a str, all: &[String]) -> &'a str {
    (6..=id.len())
        .map(|n| &id[..n])
        .find(|p| all.iter().filter(|other| other.starts_with(p)).count() == 1)
        .expect("ids are distinct")
}

#[tokio::test]
async fn jobs_list_and_show_print_the_rows() {
    let project = Project::new(RECIPE);
    project
        .record(|job| {
            if job.spec.topic == "Dark matter" && job.spec.voice_name == "brit" {
                (Status::Failed, Some("render"))
            } else {
                (Status::Done, None)
            }
        })
        .await;
    let ids: Vec<String> = project.jobs().iter().map(|j| j.id.to_string()).collect();

    let list = project.factory().args(["jobs", "list"]).run();
    assert_eq!(list.code, 0, "{}", list.stderr);
    for id in &ids {
        assert_eq!(
            list.stdout.matches(id.as_str()).count(),
            1,
            "`{id}` listed once"
        );
    }
    let failed = project
        .factory()
        .args(["jobs", "list", "--status", "failed"])
        .run();
    assert_eq!(
        failed.stdout.lines().count(),
        2,
        "a header and one job: {}",
        failed.stdout
    );

    let target = project
        .jobs()
        .into_iter()
        .find(|j| j.spec.topic == "Dark matter" && j.spec.voice_name == "brit")
        .expect("the failed job");
    let id = target.id.to_string();
    let show = project
        .factory()
        .args(["jobs", "show", unique_prefix(&id, &ids)])
        .run();
    assert_eq!(show.code, 0, "{}", show.stderr);
    assert!(
        show.stdout.starts_with(&format!("job {id}\n")),
        "{}",
        show.stdout
    );

    let mut settings = tmp_filters(project.path());
    settings.add_filter(r"\b[0-9a-f]{16}\b", "[JOB-ID]");
    settings.add_filter(r"\d{4}-\d\d-\d\d \d\d:\d\d( UTC)?", "[DATE]");
    settings.bind(|| {
        insta::assert_snapshot!("jobs_list", list.stdout);
        insta::assert_snapshot!("jobs_list_failed", failed.stdout);
        insta::assert_snapshot!("jobs_show", show.stdout);
    });
}

#[tokio::test]
async fn jobs_show_of_an_unknown_id_exits_2() {
    let project = Project::new(RECIPE);
    project.record(all_done).await;
    let ids: Vec<String> = project.jobs().iter().map(|j| j.id.to_string()).collect();
    let unknown = (0..=u8::MAX)
        .map(|b| format!("{b:02x}{b:02x}{b:02x}"))
        .find(|p| !ids.iter().any(|id| id.starts_with(p.as_str())))
        .expect("some prefix is unused");
    let out = project.factory().args(["jobs", "show", &unknown]).run();
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(out.stdout, "");
    let settings = tmp_filters(project.path());
    let stderr = out.stderr.replace(&unknown, "[UNKNOWN]");
    settings.bind(|| insta::assert_snapshot!(stderr));

    // Without any store, the same question is still invalid input, not a crash.
    let empty = tempfile::tempdir().expect("temp dir");
    let out = Factory::new()
        .arg("--state-dir")
        .arg(empty.path().join("none"))
        .args(["jobs", "show", &unknown])
        .current_dir(empty.path())
        .run();
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(!empty.path().join("none").exists());
}

#[tokio::test]
async fn jobs_list_of_a_store_with_an_unknown_status_exits_3_instead_of_showing_failed() {
    let project = Project::new(RECIPE);
    project.record(all_done).await;
    let store = Store::open(&project.state()).await.unwrap();
    sqlx::query("UPDATE jobs SET status = 'finished'")
        .execute(store.pool())
        .await
        .unwrap();
    store.close().await;
    for args in [vec!["jobs", "list"], vec!["plan", "recipe.yaml"]] {
        let out = project.factory().args(&args).run();
        assert_eq!(out.code, 3, "{args:?}: {}{}", out.stdout, out.stderr);
        assert!(
            out.stderr.contains("`finished` in `jobs`"),
            "{}",
            out.stderr
        );
        assert!(!out.stdout.contains("failed"), "{}", out.stdout);
    }
}

/// The commands that read the store, each of which must fail loudly on one it cannot read.
const READERS: [&[&str]; 6] = [
    &["plan", "recipe.yaml"],
    &["jobs", "list"],
    &["jobs", "show", "abcd"],
    &["export"],
    &["purge", "--all", "--yes"],
    &["gc"],
];

#[tokio::test]
async fn an_unreadable_store_is_an_error_not_an_empty_one() {
    // A directory where the store file belongs.
    let project = Project::new(RECIPE);
    std::fs::create_dir_all(project.state().join(DB_FILE)).unwrap();
    for args in READERS {
        let out = project.factory().args(args).run();
        assert_eq!(out.code, 3, "{args:?}: {}{}", out.stdout, out.stderr);
        assert!(
            out.stderr.contains(&format!(
                "the job store `{}` is not a file",
                project.state().join(DB_FILE).display()
            )),
            "{args:?}: {}",
            out.stderr
        );
        assert!(!out.stdout.contains("no jobs yet") && !out.stdout.contains("nothing to"));
    }

    // A file whose contents are not a database.
    let project = Project::new(RECIPE);
    std::fs::create_dir_all(project.state()).unwrap();
    std::fs::write(project.state().join(DB_FILE), "x".repeat(4096)).unwrap();
    for args in READERS {
        let out = project.factory().args(args).run();
        assert_eq!(out.code, 3, "{args:?}: {}{}", out.stdout, out.stderr);
        assert!(
            out.stderr.contains(&format!(
                "cannot open the job store file `{}`",
                project.state().join(DB_FILE).display()
            )),
            "{args:?}: {}",
            out.stderr
        );
    }
}

/// Root reads everything, so the permission case runs the binary as `nobody`.
#[tokio::test]
async fn a_store_the_user_cannot_read_exits_3_naming_the_file_and_the_permission() {
    use std::os::unix::fs::PermissionsExt;
    let project = Project::new(RECIPE);
    project.record(all_done).await;
    let state = project.state();
    std::fs::set_permissions(project.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        project.path().join("recipe.yaml"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    assert_eq!(
        std::fs::metadata(&state).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let as_nobody = |args: &[&str]| {
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_factory"))
            .arg("--state-dir")
            .arg(&state)
            .args(args)
            .current_dir(project.path())
            .env_remove("FACTORY_STATE_DIR")
            .env_remove("CI")
            .env("HOME", "/nonexistent")
            .output()
            .expect("setpriv runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for args in READERS {
        let (code, stdout, stderr) = as_nobody(args);
        assert_eq!(code, 3, "{args:?}: {stdout}{stderr}");
        // Readers name the database; commands that change state stop earlier, at the
        // state directory's lock, and name that.
        let named = stderr.contains(&format!(
            "cannot read the job store at `{}`",
            state.join(DB_FILE).display()
        )) || stderr
            .contains(&format!("cannot lock `{}`", state.join("lock").display()));
        assert!(
            named && stderr.contains("Permission denied"),
            "{args:?}: {stderr}"
        );
        assert!(!stdout.contains("new"), "{args:?}: {stdout}");
    }
}
