//! `factory plan`'s spend estimate: what it counts, how it prices, and that it says when it
//! cannot price a model. No service is called.

use serde_json::Value;

use crate::support::{Factory, write};

const RECIPE: &str = r#"version: 1
name: spend-check
voices:
  eleven: { provider: elevenlabs, voice_id: 21m00Tcm4TlvDq8ikWAM }
  narrator: { provider: espeak, voice: en-us }
templates:
  fact:
    script: { provider: openrouter, model: MODEL, prompt: "Facts about {{ topic }}.", seconds: 20 }
    footage: { provider: pexels, query: "{{ topic }}", clips: 2 }
    title: "{{ topic }}"
batch:
  template: fact
  matrix:
    topic: [Black holes, Neutron stars, Dark matter]
    voice: [eleven, narrator]
"#;

fn plan(model: &str, price: Option<&str>) -> (Value, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "recipe.yaml", &RECIPE.replace("MODEL", model));
    let factory = || {
        let f = Factory::new()
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .current_dir(dir.path());
        match price {
            Some(p) => f.env("OPENROUTER_PRICE_PER_1K", p),
            None => f,
        }
    };
    let json = factory().args(["--json", "plan", "recipe.yaml"]).run();
    assert_eq!(json.code, 0, "{}", json.stderr);
    let human = factory().args(["plan", "recipe.yaml"]).run();
    assert_eq!(human.code, 0, "{}", human.stderr);
    (json.json()["recipes"][0]["spend"].clone(), human.stdout)
}

#[test]
fn jobs_sharing_a_script_or_footage_count_once() {
    let (spend, human) = plan("openai/gpt-4o-mini", None);
    // Six jobs, three topics: each footage search serves two voices; a script is sized
    // to its voice's pace, so each topic has one per voice.
    assert_eq!(spend["spend"]["llm_requests"], 6, "{spend}");
    assert_eq!(spend["spend"]["footage_searches"], 3, "{spend}");
    // Only the ElevenLabs jobs need characters: three narrations of a 20 s script.
    let characters = spend["spend"]["tts_characters"].as_u64().unwrap();
    assert!((3 * 200..=3 * 400).contains(&characters), "{spend}");
    assert!(spend["spend"]["llm_cost_usd"].as_f64().unwrap() > 0.0);
    assert_eq!(spend["saved"]["llm_requests"], 0);
    assert!(
        human.contains("spend (estimate): 6 LLM requests"),
        "{human}"
    );
}

#[test]
fn the_price_override_prices_every_token() {
    let (spend, _) = plan("acme/house-model", Some("0.5"));
    let tokens = spend["spend"]["llm_tokens"].as_f64().unwrap();
    let cost = spend["spend"]["llm_cost_usd"].as_f64().unwrap();
    assert!((cost - tokens * 0.5 / 1000.0).abs() < 1e-9, "{spend}");
    assert!(spend.get("unpriced_models").is_none(), "{spend}");
}

#[test]
fn a_model_without_a_price_says_so() {
    let (spend, human) = plan("acme/house-model", None);
    assert_eq!(spend["spend"]["llm_cost_usd"], Value::Null, "{spend}");
    assert_eq!(
        spend["unpriced_models"],
        serde_json::json!(["acme/house-model"])
    );
    assert!(
        human.contains(
            "cost unknown (no price for `acme/house-model`; set `OPENROUTER_PRICE_PER_1K`)"
        ),
        "{human}"
    );
}
