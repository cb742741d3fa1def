//! The ElevenLabs voice against the fake, through the retry policy.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tiktok_factory::providers::elevenlabs::{
    ElevenLabs, ElevenLabsOptions, ElevenLabsVoice, PlanTier,
};
use tiktok_factory::providers::{Narration, ProviderError, Timeouts, Voice, VoiceRequest};
use tiktok_factory::secret::Secret;
use tokio::sync::Semaphore;

use crate::fakes::elevenlabs::{self, CHARACTER_SECONDS, KEY, Scenario, VOICE_ID, audio};
use crate::fakes::faults::Fault;
use crate::fakes::{Fake, quick_retries};

pub fn voice() -> ElevenLabsVoice {
    ElevenLabsVoice {
        stability: Some(0.5),
        similarity_boost: Some(0.75),
        use_speaker_boost: Some(true),
        speed: Some(1.05),
        seed: Some(1234),
        ..ElevenLabsVoice::new(VOICE_ID)
    }
}

pub fn client_with(fake: &Fake<Scenario>, key: &str, voice: ElevenLabsVoice) -> ElevenLabs {
    let options = ElevenLabsOptions {
        base_url: fake.base_url.clone(),
        timeouts: Timeouts {
            connect: Duration::from_secs(2),
            request: Duration::from_millis(500),
        },
    };
    ElevenLabs::new(Secret::new(key), voice, options, PlanTier::Free.permits()).unwrap()
}

fn client(fake: &Fake<Scenario>) -> ElevenLabs {
    client_with(fake, KEY, voice())
}

pub fn request() -> VoiceRequest {
    VoiceRequest {
        lines: vec!["Hello there.".into(), " ".into(), "How are you?".into()],
    }
}

const TEXT: &str = "Hello there. How are you?";

pub async fn speak(client: &ElevenLabs, dir: &Path) -> Result<Narration, ProviderError> {
    let request = request();
    quick_retries().run(|_| client.speak(&request, dir)).await
}

fn words(narration: &Narration) -> Vec<&str> {
    narration.words.iter().map(|w| w.word.as_str()).collect()
}

#[tokio::test]
async fn speaks_with_word_timings_from_the_alignment() {
    let fake = elevenlabs::start().await;
    let dir = tempfile::tempdir().unwrap();
    let narration = speak(&client(&fake), dir.path()).await.unwrap();

    assert_eq!(narration.audio, dir.path().join("narration.mp3"));
    assert_eq!(std::fs::read(&narration.audio).unwrap(), audio());
    assert_eq!(words(&narration), ["Hello", "there.", "How", "are", "you?"]);
    let how = &narration.words[2];
    assert!(
        (how.start - 13.0 * CHARACTER_SECONDS).abs() < 1e-9,
        "{how:?}"
    );
    assert!((how.end - 16.0 * CHARACTER_SECONDS).abs() < 1e-9, "{how:?}");
    let total = TEXT.chars().count();
    assert!((narration.duration - total as f64 * CHARACTER_SECONDS).abs() < 1e-9);
    assert_eq!(narration.characters, total as u64);

    let seen = &fake.seen()[0];
    assert_eq!(
        seen.path,
        format!("/v1/text-to-speech/{VOICE_ID}/with-timestamps")
    );
    assert_eq!(
        seen.query_param("output_format").as_deref(),
        Some("mp3_44100_128")
    );
    assert_eq!(seen.header("authorization"), None);
    let sent: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(sent["text"], TEXT);
    assert_eq!(sent["model_id"], "eleven_multilingual_v2");
    assert_eq!(
        sent["voice_settings"],
        json!({ "stability": 0.5, "similarity_boost": 0.75, "use_speaker_boost": true, "speed": 1.05 })
    );
    assert_eq!(sent["seed"], 1234);
}

#[tokio::test]
async fn falls_back_to_the_normalized_alignment() {
    let fake = elevenlabs::start().await;
    fake.push(Scenario::NormalizedOnly);
    let dir = tempfile::tempdir().unwrap();
    let narration = speak(&client(&fake), dir.path()).await.unwrap();
    assert_eq!(words(&narration), ["Hello", "there.", "How", "are", "you?"]);
    assert_eq!(fake.requests(), 1);
}

#[tokio::test]
async fn without_alignment_words_are_spread_over_the_audio() {
    let fake = elevenlabs::start().await;
    fake.push(Scenario::NoAlignment);
    let dir = tempfile::tempdir().unwrap();
    let narration = speak(&client(&fake), dir.path()).await.unwrap();
    assert!(
        (1.4..1.7).contains(&narration.duration),
        "{}",
        narration.duration
    );
    assert_eq!(words(&narration), ["Hello", "there.", "How", "are", "you?"]);
    let last = narration.words.last().unwrap();
    assert!((last.end - narration.duration).abs() < 1e-9);
    assert!(
        narration
            .words
            .windows(2)
            .all(|w| w[0].end <= w[1].start + 1e-9)
    );
}

#[tokio::test]
async fn transient_failures_are_retried() {
    let cases = [
        (
            "concurrency, current vocabulary",
            Scenario::code(429, "concurrent_limit_exceeded"),
        ),
        (
            "concurrency, older vocabulary",
            Scenario::legacy(429, "too_many_concurrent_requests"),
        ),
        (
            "rate limit, current vocabulary",
            Scenario::code(429, "rate_limit_exceeded"),
        ),
        (
            "busy, older vocabulary",
            Scenario::legacy(429, "system_busy"),
        ),
        ("503", Scenario::legacy(503, "service_unavailable")),
        (
            "500 without a body shape",
            Scenario::Detail {
                status: 500,
                detail: json!("oops"),
                retry_after: None,
            },
        ),
        ("truncated body", Scenario::Truncated),
        ("invalid json", Scenario::NotJson),
        ("audio that is not audio", Scenario::BadAudio),
        ("slow", Scenario::Slow(Duration::from_secs(2))),
    ];
    for (name, scenario) in cases {
        let fake = elevenlabs::start().await;
        fake.push(scenario);
        let dir = tempfile::tempdir().unwrap();
        let narration = speak(&client(&fake), dir.path()).await;
        assert!(narration.is_ok(), "{name}: {narration:?}");
        assert_eq!(fake.requests(), 2, "{name}");
        assert!(!dir.path().join("narration.mp3.part").exists(), "{name}");
    }
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let fake = elevenlabs::start().await;
    fake.push(Scenario::Detail {
        status: 429,
        detail: json!({ "code": "rate_limit_exceeded", "message": "slow down" }),
        retry_after: Some("1"),
    });
    let dir = tempfile::tempdir().unwrap();
    speak(&client(&fake), dir.path()).await.unwrap();
    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen[1].at.duration_since(seen[0].at).unwrap() >= Duration::from_secs(1));
}

async fn permanent_failure(client: &ElevenLabs, fake: &Fake<Scenario>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let error = speak(client, dir.path()).await.unwrap_err();
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
    let fake = elevenlabs::start().await;
    let message = permanent_failure(&client_with(&fake, "sk_wrong", voice()), &fake).await;
    assert!(
        message.contains("rejected the API key (`ELEVENLABS_API_KEY`)"),
        "{message}"
    );
}

#[tokio::test]
async fn an_unknown_voice_fails_at_once_naming_it() {
    let fake = elevenlabs::start().await;
    let voice = ElevenLabsVoice::new("no-such-voice");
    let message = permanent_failure(&client_with(&fake, KEY, voice), &fake).await;
    assert!(
        message.contains("voice `no-such-voice` was not found"),
        "{message}"
    );
}

#[tokio::test]
async fn an_exhausted_quota_fails_at_once() {
    for scenario in [
        Scenario::legacy(401, "quota_exceeded"),
        Scenario::code(400, "quota_exceeded"),
    ] {
        let fake = elevenlabs::start().await;
        fake.push(scenario);
        let message = permanent_failure(&client(&fake), &fake).await;
        assert!(message.contains("out of characters"), "{message}");
    }
}

#[tokio::test]
async fn validation_errors_fail_at_once_with_their_messages() {
    let fake = elevenlabs::start().await;
    let voice = ElevenLabsVoice {
        stability: Some(1.5),
        ..voice()
    };
    let message = permanent_failure(&client_with(&fake, KEY, voice), &fake).await;
    assert!(
        message.contains("`body.voice_settings`: invalid `stability`"),
        "{message}"
    );
}

#[tokio::test]
async fn concurrency_is_capped_by_the_shared_semaphore() {
    let fake = elevenlabs::start().await;
    for _ in 0..6 {
        fake.push(Scenario::Slow(Duration::from_millis(200)));
    }
    let options = ElevenLabsOptions {
        base_url: fake.base_url.clone(),
        ..ElevenLabsOptions::default()
    };
    let permits = Arc::new(Semaphore::new(2));
    let first = ElevenLabs::new(Secret::new(KEY), voice(), options, permits).unwrap();
    // Two voices of one account share the cap.
    let second = first.with_voice(ElevenLabsVoice::new(VOICE_ID));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..6 {
        let client = if i % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        tasks.spawn(async move {
            let dir = tempfile::tempdir().unwrap();
            client.speak(&request(), dir.path()).await
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
    }
    assert_eq!(fake.requests(), 6);
    assert_eq!(fake.most_in_flight(), 2);
}

#[tokio::test]
async fn subscription_reports_remaining_characters() {
    let fake = elevenlabs::start().await;
    let subscription = client(&fake).subscription().await.unwrap();
    assert_eq!(subscription.remaining, 88_000);
    assert_eq!(subscription.resets_at, Some(1_900_000_000));
    assert_eq!(subscription.plan(), Some(PlanTier::Creator));
    assert_eq!(fake.seen()[0].header("xi-api-key"), Some(KEY));

    let error = client_with(&fake, "sk_wrong", voice())
        .subscription()
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("`ELEVENLABS_API_KEY`"),
        "{error}"
    );
}

#[tokio::test]
async fn clients_built_for_each_voice_and_job_share_one_connection() {
    let fake = elevenlabs::start().await;
    // The registry builds a client per voice and per job; they must not each open a
    // connection (and a TLS handshake) of their own.
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        client(&fake).speak(&request(), dir.path()).await.unwrap();
    }
    assert_eq!(fake.requests(), 3);
    assert_eq!(fake.connections(), 1);
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
        let fake = elevenlabs::start().await;
        fake.faults.inject("/with-timestamps", fault.clone());
        let dir = tempfile::tempdir().unwrap();
        let (voice, asked) = (client(&fake), request());
        let result = quick_retries()
            .run(|_| voice.speak(&asked, dir.path()))
            .await;
        assert!(result.is_ok(), "{fault:?}: {result:?}");
        assert_eq!(fake.faults.met().len(), 1, "{fault:?}");
        let reached = if fault == Fault::BadGateway { 1 } else { 2 };
        assert_eq!(fake.requests(), reached, "{fault:?}");
    }
}
