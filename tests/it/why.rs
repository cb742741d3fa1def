//! `factory why JOB [STAGE]`: which input of a stage key changed since the job's cell
//! last ran, against a store and artifact store filled as a finished run fills them.

use crate::plan_diff::{Project, RECIPE};
use crate::support::{Output, tmp_filters};

/// Stage keys hash the tool versions of the machine: shown cut to 12 digits, they are
/// filtered out of snapshots.
fn settings(project: &Project) -> insta::Settings {
    let mut s = tmp_filters(project.path());
    s.add_filter(r"\b[0-9a-f]{12}…", "[KEY]…");
    s
}

fn why(project: &Project, args: &[&str]) -> Output {
    project
        .factory()
        .arg("why")
        .args(args)
        .args(["--recipes", "recipe.yaml"])
        .run()
}

fn id_of(project: &Project, topic: &str, voice: &str) -> String {
    project
        .jobs()
        .into_iter()
        .find(|j| j.spec.topic == topic && j.spec.voice_name == voice)
        .map(|j| j.id.to_string())
        .expect("the job")
}

#[tokio::test]
async fn a_title_edit_is_why_only_the_publishing_stages_run() {
    let project = Project::new(RECIPE);
    project.record_run().await;
    let old = id_of(&project, "Owls", "narrator");
    project.edit(&RECIPE.replace("the 12-second tip", "the quick tip"));
    let new = id_of(&project, "Owls", "narrator");
    let out = why(&project, &[&new[..8]]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains(&format!("compared with {old}")),
        "{}",
        out.stdout
    );
    assert_eq!(out.stdout.matches(": reused").count(), 5, "{}", out.stdout);
    assert!(
        out.stdout
            .contains("~ post[0]: \"Owls: the 12-second tip\" → \"Owls: the quick tip\""),
        "{}",
        out.stdout
    );
    // A render that is gone is no longer reused, though its key is the same.
    let cache = project.state().join("cache").join("render");
    for entry in std::fs::read_dir(&cache).expect("render entries") {
        std::fs::remove_dir_all(entry.expect("an entry").path()).expect("remove a render");
    }
    let gone = why(&project, &[&new, "render"]);
    assert!(
        gone.stdout.contains("but its result is no longer kept"),
        "{}",
        gone.stdout
    );
    // The old id names the same cell: the answer is about its current version.
    let by_old = why(&project, &[&old]);
    assert!(
        by_old.stdout.starts_with(&format!("job {new} ")),
        "{}",
        by_old.stdout
    );
    settings(&project).bind(|| insta::assert_snapshot!("why_title", out.stdout));
}

#[tokio::test]
async fn a_caption_setting_names_itself_and_the_key_it_passes_on() {
    let project = Project::new(RECIPE);
    project.record_run().await;
    project.edit(&RECIPE.replace("max_words: 3", "max_words: 2"));
    let new = id_of(&project, "Bats", "brit");
    let captions = why(&project, &[&new, "captions"]);
    assert_eq!(captions.code, 0, "{}", captions.stderr);
    assert!(
        captions.stdout.contains("~ captions.max_words: 3 → 2"),
        "{}",
        captions.stdout
    );
    let render = why(&project, &[&new, "render"]);
    assert!(
        render.stdout.contains("~ captions_key: "),
        "{}",
        render.stdout
    );
    assert!(!render.stdout.contains("captions "), "{}", render.stdout);
    let json = why(&project, &["--json", &new, "captions"]);
    let json: serde_json::Value = json.json();
    assert_eq!(json["stages"][0]["verdict"], "changed");
    assert_eq!(
        json["stages"][0]["changes"],
        serde_json::json!([{ "input": "captions.max_words", "old": 3, "new": 2 }])
    );
    settings(&project).bind(|| {
        insta::assert_snapshot!("why_captions", captions.stdout);
        insta::assert_snapshot!("why_render", render.stdout);
    });
}

#[tokio::test]
async fn a_run_before_inputs_were_recorded_says_so_and_keeps_the_keys() {
    let project = Project::new(RECIPE);
    project.record_run().await;
    let store = tiktok_factory::store::Store::open(&project.state())
        .await
        .expect("open the store");
    sqlx::query("UPDATE stages SET inputs = NULL")
        .execute(store.pool())
        .await
        .expect("forget the inputs");
    store.close().await;
    project.edit(&RECIPE.replace("fps: 30", "fps: 24"));
    let out = why(&project, &[&id_of(&project, "Owls", "brit"), "render"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("the last run's inputs were not recorded"),
        "{}",
        out.stdout
    );
    // The spec's own change still shows.
    assert!(
        out.stdout.contains("~ video.fps: 30 → 24"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn an_unknown_stage_or_job_exits_2_with_a_hint() {
    let project = Project::new(RECIPE);
    project.record_run().await;
    let id = id_of(&project, "Owls", "brit");
    let out = why(&project, &[&id, "rendr"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("unknown stage `rendr`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("the stages are script, footage"),
        "{}",
        out.stderr
    );
    let out = why(&project, &["ffff0000"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("no job `ffff0000`"), "{}", out.stderr);
}
