//! The OpenRouter script writer against the fake, through the retry policy.

use std::time::Duration;

use serde_json::{Value, json};
use tiktok_factory::providers::openrouter::{OpenRouter, OpenRouterOptions};
use tiktok_factory::providers::{ProviderError, Script, ScriptRequest, ScriptWriter, Timeouts};
use tiktok_factory::secret::Secret;

use crate::fakes::faults::Fault;
use crate::fakes::openrouter::{self, KEY, Scenario};
use crate::fakes::{Fake, quick_retries, unix, unix_in};

const COMPLETIONS: &str = "/api/v1/chat/completions";

pub fn client_with_key(fake: &Fake<Scenario>, key: &str) -> OpenRouter {
    let options = OpenRouterOptions {
        base_url: fake.base_url.clone(),
        timeouts: Timeouts {
            connect: Duration::from_secs(2),
            request: Duration::from_millis(500),
        },
        app_url: Some("https://example.test/factory".into()),
        ..OpenRouterOptions::default()
    };
    OpenRouter::new(Secret::new(key), options).unwrap()
}

fn client(fake: &Fake<Scenario>) -> OpenRouter {
    client_with_key(fake, KEY)
}

pub fn request() -> ScriptRequest {
    ScriptRequest {
        topic: "Black holes".into(),
        prompt: "Write a 30-second TikTok voice-over about black holes.".into(),
        seconds: 30,
        cta: Some("Follow for more space facts.".into()),
        models: vec!["openai/gpt-4o-mini".into()],
        temperature: Some(0.8),
        seed: Some(7),
        pace: tiktok_factory::providers::Pace::default(),
    }
}

pub async fn write(client: &OpenRouter, request: &ScriptRequest) -> Result<Script, ProviderError> {
    quick_retries().run(|_| client.write(request)).await
}

fn body(fake: &Fake<Scenario>, index: usize) -> Value {
    serde_json::from_slice(&fake.seen()[index].body).unwrap()
}

#[tokio::test]
async fn writes_a_script_and_records_usage() {
    let fake = openrouter::start().await;
    let script = write(&client(&fake), &request()).await.unwrap();

    assert_eq!(script.hook, "Black holes bend time itself.");
    assert_eq!(script.sentences.len(), 4);
    assert_eq!(script.cta, "Follow for more space facts.");
    assert_eq!(script.hashtags, ["space", "blackholes", "science"]);
    let usage = script.usage.unwrap();
    assert_eq!(usage.model, "openai/gpt-4o-mini");
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (120, 95));
    assert_eq!(usage.cost, Some(0.00042));

    assert_eq!(fake.requests(), 1);
    let seen = &fake.seen()[0];
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("POST", COMPLETIONS)
    );
    assert_eq!(seen.header("x-openrouter-title"), Some("TikTok Factory"));
    assert_eq!(
        seen.header("http-referer"),
        Some("https://example.test/factory")
    );
    let sent = body(&fake, 0);
    assert_eq!(sent["messages"][0]["role"], "system");
    assert_eq!(sent["messages"][1]["content"], request().prompt);
    assert_eq!(sent["temperature"], 0.8);
    assert_eq!(sent["seed"], 7);
    assert!(
        sent.get("models").is_none(),
        "one model needs no fallback list"
    );
    let schema = &sent["response_format"]["json_schema"]["schema"];
    assert_eq!(
        schema["required"],
        json!(["hook", "sentences", "cta", "title", "caption", "hashtags"])
    );
}

#[tokio::test]
async fn sends_the_fallback_list_when_there_is_one() {
    let fake = openrouter::start().await;
    let request = ScriptRequest {
        models: vec![
            "openai/gpt-4o-mini".into(),
            "anthropic/claude-3.5-haiku".into(),
        ],
        ..request()
    };
    write(&client(&fake), &request).await.unwrap();
    let sent = body(&fake, 0);
    assert_eq!(sent["model"], "openai/gpt-4o-mini");
    assert_eq!(
        sent["models"],
        json!(["openai/gpt-4o-mini", "anthropic/claude-3.5-haiku"])
    );
}

#[tokio::test]
async fn transient_failures_are_retried_until_a_script_arrives() {
    let cases = [
        ("429", Scenario::status(429)),
        ("500", Scenario::status(500)),
        ("502", Scenario::status(502)),
        ("503", Scenario::status(503)),
        ("408", Scenario::status(408)),
        ("error inside 200", Scenario::ErrorIn200 { code: 502 }),
        ("truncated body", Scenario::Truncated),
        ("invalid json body", Scenario::NotJson),
        ("slow response", Scenario::Slow(Duration::from_secs(2))),
        ("null content", Scenario::Content(None)),
        ("empty content", Scenario::Content(Some("  ".into()))),
        ("content not json", Scenario::Content(Some("Here is your script:".into()))),
        (
            "too few sentences",
            Scenario::Content(Some(
                json!({"hook": "h", "sentences": ["one"], "cta": "c", "title": "t", "caption": "c", "hashtags": []})
                    .to_string(),
            )),
        ),
    ];
    for (name, scenario) in cases {
        let fake = openrouter::start().await;
        fake.push(scenario);
        let result = write(&client(&fake), &request()).await;
        assert!(result.is_ok(), "{name}: {result:?}");
        assert_eq!(fake.requests_to(COMPLETIONS), 2, "{name}");
    }
}

#[tokio::test]
async fn retry_after_is_honoured_in_seconds() {
    let fake = openrouter::start().await;
    fake.push(Scenario::Error {
        status: 429,
        metadata: json!({ "error_type": "rate_limit_exceeded" }),
        retry_after: Some("1".into()),
    });
    write(&client(&fake), &request()).await.unwrap();
    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    let waited = seen[1].at.duration_since(seen[0].at).unwrap();
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
}

#[tokio::test]
async fn retry_after_is_honoured_as_a_date() {
    let fake = openrouter::start().await;
    let until = unix_in(Duration::from_secs(2));
    fake.push(Scenario::Error {
        status: 503,
        metadata: json!({ "error_type": "provider_overloaded" }),
        retry_after: Some(httpdate::fmt_http_date(unix(until))),
    });
    write(&client(&fake), &request()).await.unwrap();
    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen[1].at >= unix(until), "retried before the date");
}

#[tokio::test]
async fn an_exhausted_in_flight_budget_waits_and_retries() {
    let fake = openrouter::start().await;
    fake.push(Scenario::Error {
        status: 402,
        metadata: json!({ "limit_source": "openrouter_in_flight_budget", "reason": "in_flight_budget_exhausted" }),
        retry_after: Some("1".into()),
    });
    write(&client(&fake), &request()).await.unwrap();
    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen[1].at.duration_since(seen[0].at).unwrap() >= Duration::from_secs(1));
}

async fn permanent_failure(scenario: Option<Scenario>, key: &str) -> String {
    let fake = openrouter::start().await;
    if let Some(scenario) = scenario {
        fake.push(scenario);
    }
    let error = write(&client_with_key(&fake, key), &request())
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::Permanent { .. }),
        "{error:?}"
    );
    assert_eq!(
        fake.requests(),
        1,
        "a permanent failure must not be retried"
    );
    error.to_string()
}

#[tokio::test]
async fn a_rejected_key_fails_at_once_naming_the_variable() {
    let message = permanent_failure(None, "sk-or-v1-wrong").await;
    assert!(
        message.contains("rejected the API key (`OPENROUTER_API_KEY`)"),
        "{message}"
    );
}

#[tokio::test]
async fn out_of_credits_fails_at_once() {
    let message = permanent_failure(Some(Scenario::status(402)), KEY).await;
    assert!(message.contains("out of credits"), "{message}");
    let message = permanent_failure(
        Some(Scenario::Error {
            status: 402,
            metadata: json!({ "limit_source": "openrouter_credits", "reason": "weight_exceeds_budget" }),
            retry_after: Some("1".into()),
        }),
        KEY,
    )
    .await;
    assert!(message.contains("lower `max_tokens`"), "{message}");
}

#[tokio::test]
async fn other_client_errors_fail_at_once() {
    for status in [400, 403, 404] {
        let message = permanent_failure(Some(Scenario::status(status)), KEY).await;
        assert!(message.contains("the fake says no"), "{status}: {message}");
    }
    let message = permanent_failure(Some(Scenario::ErrorIn200 { code: 400 }), KEY).await;
    assert!(message.contains("mid-generation"), "{message}");
    let message = permanent_failure(Some(Scenario::Finish("length")), KEY).await;
    assert!(message.contains("`max_tokens`"), "{message}");
}

#[tokio::test]
async fn retries_stop_after_the_last_attempt() {
    let fake = openrouter::start().await;
    for _ in 0..3 {
        fake.push(Scenario::status(503));
    }
    let error = write(&client(&fake), &request()).await.unwrap_err();
    assert!(error.is_retryable());
    assert_eq!(fake.requests(), 3);
}

#[tokio::test]
async fn timeouts_say_so() {
    let fake = openrouter::start().await;
    for _ in 0..3 {
        fake.push(Scenario::Slow(Duration::from_secs(2)));
    }
    let error = write(&client(&fake), &request()).await.unwrap_err();
    assert!(error.to_string().contains("timed out"), "{error}");
}

#[tokio::test]
async fn key_status_reports_limits() {
    let fake = openrouter::start().await;
    let status = client(&fake).key_status().await.unwrap();
    assert_eq!(status.limit, Some(20.0));
    assert_eq!(status.remaining, Some(12.5));
    assert_eq!(status.usage, Some(7.5));
    assert!(!status.is_free_tier);
    assert_eq!(fake.seen()[0].path, "/api/v1/key");

    let error = client_with_key(&fake, "sk-or-v1-wrong")
        .key_status()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("OPENROUTER_API_KEY"), "{error}");
}

#[tokio::test]
async fn answers_lost_cut_garbled_or_slow_on_the_way_are_retried() {
    let faults = [
        Fault::Drop,
        Fault::Cut,
        Fault::Garble,
        Fault::BadGateway,
        Fault::Stall(Duration::from_millis(800)),
    ];
    for fault in faults {
        let fake = openrouter::start().await;
        fake.faults.inject(COMPLETIONS, fault.clone());
        let result = write(&client(&fake), &request()).await;
        assert!(result.is_ok(), "{fault:?}: {result:?}");
        let reached = if fault == Fault::BadGateway { 1 } else { 2 };
        assert_eq!(fake.requests_to(COMPLETIONS), reached, "{fault:?}");
        assert_eq!(fake.faults.met().len(), 1, "{fault:?}");
    }
}
