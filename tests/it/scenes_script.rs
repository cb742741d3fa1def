//! Scenes from the writer: the OpenRouter client asks for a footage query per spoken line
//! in its structured output and hands them on as `Script::visuals`; one's own words (a
//! `text` script, a topics file's `script` column) are spoken as written.

use std::path::Path;

use tiktok_factory::providers::{Pace, ScriptRequest};

use crate::fakes::openrouter::{self, GOOD_VISUALS, Scenario, good_script};
use crate::providers_openrouter::{client_with_key, request, write as written};
use crate::support::{Factory, repo, write};

#[tokio::test]
async fn each_scene_comes_back_with_what_it_shows() {
    let fake = openrouter::start().await;
    let script = written(&client_with_key(&fake, openrouter::KEY), &request())
        .await
        .unwrap();
    assert_eq!(script.visuals, GOOD_VISUALS);
    let scenes = script.scenes();
    assert_eq!(scenes.len(), 6);
    assert_eq!(scenes[0].say, "Black holes bend time itself.");
    assert_eq!(scenes[0].show, Some("black hole bending starlight"));
    assert_eq!(scenes[5].say, "Follow for more space facts.");

    let sent: serde_json::Value = serde_json::from_slice(&fake.seen()[0].body).unwrap();
    let system = sent["messages"][0]["content"].as_str().unwrap();
    assert!(system.contains("`show`"), "{system}");
    assert!(system.contains("concrete, filmable"), "{system}");
    let scene = &sent["response_format"]["json_schema"]["schema"]["properties"]["hook"];
    assert_eq!(scene["required"], serde_json::json!(["say", "show"]));
}

#[tokio::test]
async fn the_prompt_asks_for_the_words_the_voice_says_in_the_seconds() {
    let fake = openrouter::start().await;
    let fast = ScriptRequest {
        seconds: 30,
        pace: Pace {
            words_per_second: 3.0,
            pause_seconds: 0.0,
        },
        ..request()
    };
    written(&client_with_key(&fake, openrouter::KEY), &fast)
        .await
        .unwrap();
    let sent: serde_json::Value = serde_json::from_slice(&fake.seen()[0].body).unwrap();
    let system = sent["messages"][0]["content"].as_str().unwrap();
    assert!(system.contains("about 90 spoken words"), "{system}");
}

#[tokio::test]
async fn a_scene_without_a_visual_is_asked_for_again() {
    let fake = openrouter::start().await;
    let mut missing = good_script();
    missing["sentences"][2]["show"] = serde_json::json!("");
    fake.push(Scenario::Content(Some(missing.to_string())));
    let script = written(&client_with_key(&fake, openrouter::KEY), &request())
        .await
        .unwrap();
    assert_eq!(fake.requests(), 2, "the empty `show` was retried");
    assert_eq!(script.visuals.len(), script.spoken().len());
}

/// The example project of one's own words, copied: `factory.yaml`, both recipes and a
/// one-row topics file (a French row, so the row's `language` picks the French voice).
fn own_words(dir: &Path) {
    let from = repo().join("examples/own-words");
    for file in ["factory.yaml", "told.yaml", "rows.yaml", "README.md"] {
        std::fs::copy(from.join(file), dir.join(file)).unwrap();
    }
    write(
        dir,
        "topics/rows.csv",
        "topic,language,mood,script\nHiboux,fr,calme,\"Les hiboux ne bougent pas les yeux.\nAlors ils tournent la tête.\"\n",
    );
}

#[test]
fn the_own_words_example_validates() {
    let out = Factory::new()
        .args(["validate", "examples/own-words"])
        .current_dir(repo())
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.starts_with("ok: 2 recipes, 4 jobs"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_rows_own_words_are_spoken_as_written_by_the_voice_of_its_language() {
    let tmp = tempfile::tempdir().unwrap();
    own_words(tmp.path());
    let state = tmp.path().join("state");
    let factory = || {
        Factory::new()
            .arg("--state-dir")
            .arg(&state)
            .current_dir(tmp.path())
    };
    let out = factory().args(["run", "rows.yaml"]).run();
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);

    let listed = factory().args(["--json", "jobs", "list"]).run().json();
    let id = listed["jobs"][0]["id"].as_str().expect("a job").to_owned();
    let shown = factory().args(["--json", "jobs", "show", &id]).run().json();
    let script = &shown["script"];
    assert_eq!(script["hook"], "Les hiboux ne bougent pas les yeux.");
    assert_eq!(
        script["sentences"],
        serde_json::json!(["Alors ils tournent la tête."])
    );
    assert_eq!(script["cta"], "", "nothing is added to one's own words");
    assert_eq!(script["visuals"].as_array().map(Vec::len), Some(2));
    let spec = &shown["spec"];
    assert_eq!(spec["voice"]["voice"], "fr-fr", "{spec}");
    assert_eq!(spec["voice"]["language"], "fr");
    assert_eq!(spec["title"], "Hiboux (fr)");

    // Drafts are named `<topic>-<voice>-<first 8 digits of the id>`, the sidecar beside.
    let suffix = format!("-{}.json", &id[..8]);
    let sidecar = std::fs::read_dir(state.join("drafts/animal-rows"))
        .expect("the drafts folder")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(&suffix))
        .expect("the sidecar");
    let sidecar: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sidecar).unwrap()).unwrap();
    assert_eq!(sidecar["title"], "Hiboux (fr)", "{sidecar}");
}

#[test]
fn plan_warns_when_ones_own_words_are_longer_than_the_video_may_be() {
    let tmp = tempfile::tempdir().unwrap();
    own_words(tmp.path());
    let long = "Owls cannot move their eyes, so they turn their heads instead, a long way round. "
        .repeat(6);
    write(
        tmp.path(),
        "topics/rows.csv",
        &format!("topic,language,mood,script\nOwls,en,calm,\"{long}\"\n"),
    );
    let out = Factory::new()
        .arg("--state-dir")
        .arg(tmp.path().join("state"))
        .args(["plan", "rows.yaml"])
        .current_dir(tmp.path())
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("past `video.max_seconds` (30): it would fail at `voice`"),
        "{}",
        out.stdout
    );
}
