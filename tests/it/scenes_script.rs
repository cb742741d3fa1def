//! Scenes from the writer: the OpenRouter client asks for a footage query per spoken line
//! in its structured output and hands them on as `Script::visuals`.

use tiktok_factory::providers::Pace;
use tiktok_factory::providers::ScriptRequest;

use crate::fakes::openrouter::{self, GOOD_VISUALS, Scenario, good_script};
use crate::providers_openrouter::{client_with_key, request, write};

#[tokio::test]
async fn each_scene_comes_back_with_what_it_shows() {
    let fake = openrouter::start().await;
    let script = write(&client_with_key(&fake, openrouter::KEY), &request())
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
    write(&client_with_key(&fake, openrouter::KEY), &fast)
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
    let script = write(&client_with_key(&fake, openrouter::KEY), &request())
        .await
        .unwrap();
    assert_eq!(fake.requests(), 2, "the empty `show` was retried");
    assert_eq!(script.visuals.len(), script.spoken().len());
}
