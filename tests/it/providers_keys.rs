//! No key ever shows up in an error message or a Debug print, even when a server echoes
//! the credentials it received or the connection fails outright.

use std::time::Duration;

use tiktok_factory::providers::ScriptWriter;
use tiktok_factory::providers::elevenlabs::ElevenLabsVoice;

use crate::fakes::{elevenlabs, openrouter, pexels};
use crate::{providers_elevenlabs as el, providers_openrouter as or, providers_pexels as px};

/// Every key the fakes accept, plus the wrong ones tests send.
const KEYS: [&str; 4] = [
    openrouter::KEY,
    pexels::KEY,
    elevenlabs::KEY,
    "sk-wrong-key-0123456789",
];

fn assert_clean(what: &str, text: &str) {
    for key in KEYS {
        assert!(!text.contains(key), "{what} leaks a key: {text}");
    }
}

/// An address nothing listens on: the port of a fake that has been stopped.
async fn dead_base(path: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{address}{path}")
}

#[tokio::test]
async fn keys_never_appear_in_errors_or_debug_output() {
    let mut texts: Vec<(String, String)> = Vec::new();
    let mut keep = |what: &str, text: String| texts.push((what.to_owned(), text));

    // OpenRouter: wrong key, an echoing server, every error scenario, a dead address.
    let scenarios = [
        openrouter::Scenario::EchoKey,
        openrouter::Scenario::status(402),
        openrouter::Scenario::status(500),
        openrouter::Scenario::ErrorIn200 { code: 502 },
        openrouter::Scenario::Truncated,
        openrouter::Scenario::NotJson,
        openrouter::Scenario::Slow(Duration::from_secs(2)),
        openrouter::Scenario::Content(None),
    ];
    for scenario in scenarios {
        let fake = openrouter::start().await;
        fake.push(scenario);
        let client = or::client_with_key(&fake, openrouter::KEY);
        let error = client.write(&or::request()).await.unwrap_err();
        keep("openrouter error", format!("{error} {error:?}"));
        keep("openrouter client", format!("{client:?}"));
    }
    let fake = openrouter::start().await;
    let wrong = or::client_with_key(&fake, KEYS[3]);
    let error = wrong.write(&or::request()).await.unwrap_err();
    keep("openrouter wrong key", format!("{error} {error:?}"));
    let error = wrong.key_status().await.unwrap_err();
    keep("openrouter key status", format!("{error} {error:?}"));
    let mut dead = fake;
    dead.base_url = dead_base("/api/v1").await;
    let error = or::client_with_key(&dead, openrouter::KEY)
        .write(&or::request())
        .await
        .unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
    keep("openrouter dead address", format!("{error} {error:?}"));

    // Pexels.
    let scenarios = [
        pexels::Scenario::EchoKey,
        pexels::Scenario::TooManyRequests,
        pexels::Scenario::Status(500),
        pexels::Scenario::Truncated,
        pexels::Scenario::NotJson,
        pexels::Scenario::Slow(Duration::from_secs(2)),
    ];
    for scenario in scenarios {
        let fake = pexels::start().await;
        fake.push(scenario);
        let client = px::client_with(&fake, pexels::KEY, Duration::from_secs(1));
        let dir = tempfile::tempdir().unwrap();
        let error = tiktok_factory::providers::FootageSource::fetch(
            &client,
            &px::request(1, &[]),
            dir.path(),
        )
        .await
        .unwrap_err();
        keep("pexels error", format!("{error} {error:?}"));
        keep("pexels client", format!("{client:?}"));
    }
    let fake = pexels::start().await;
    let error = px::client_with(&fake, KEYS[3], Duration::from_secs(1))
        .probe_key()
        .await
        .unwrap_err();
    keep("pexels wrong key", format!("{error} {error:?}"));
    let mut dead = fake;
    dead.base_url = dead_base("").await;
    let error = px::client_with(&dead, pexels::KEY, Duration::from_secs(1))
        .probe_key()
        .await
        .unwrap_err();
    keep("pexels dead address", format!("{error} {error:?}"));

    // ElevenLabs.
    let scenarios = [
        elevenlabs::Scenario::EchoKey,
        elevenlabs::Scenario::code(429, "concurrent_limit_exceeded"),
        elevenlabs::Scenario::legacy(401, "quota_exceeded"),
        elevenlabs::Scenario::Truncated,
        elevenlabs::Scenario::NotJson,
        elevenlabs::Scenario::BadAudio,
        elevenlabs::Scenario::Slow(Duration::from_secs(2)),
    ];
    for scenario in scenarios {
        let fake = elevenlabs::start().await;
        fake.push(scenario);
        let client = el::client_with(&fake, elevenlabs::KEY, el::voice());
        let dir = tempfile::tempdir().unwrap();
        let error = tiktok_factory::providers::Voice::speak(&client, &el::request(), dir.path())
            .await
            .unwrap_err();
        keep("elevenlabs error", format!("{error} {error:?}"));
        keep("elevenlabs client", format!("{client:?}"));
    }
    let fake = elevenlabs::start().await;
    let error = el::client_with(&fake, KEYS[3], ElevenLabsVoice::new(elevenlabs::VOICE_ID))
        .subscription()
        .await
        .unwrap_err();
    keep("elevenlabs wrong key", format!("{error} {error:?}"));
    let mut dead = fake;
    dead.base_url = dead_base("").await;
    let error = el::client_with(&dead, elevenlabs::KEY, el::voice())
        .subscription()
        .await
        .unwrap_err();
    keep("elevenlabs dead address", format!("{error} {error:?}"));

    assert!(texts.len() > 25, "every case produced output");
    for (what, text) in &texts {
        assert_clean(what, text);
    }
}

/// A server that echoes the key where the error text is cut, or in capitals: the message
/// carries no piece of it (cutting before scrubbing left the key's first characters).
#[tokio::test]
async fn a_key_echoed_across_the_cut_or_in_capitals_leaves_no_prefix_in_the_error() {
    let prefix = openrouter::KEY[..10].to_ascii_lowercase();
    let fake = openrouter::start().await;
    let client = or::client_with_key(&fake, openrouter::KEY);
    let mut seen = 0;
    // "Bearer " puts the key 8 characters after the padding; the cut is at 200.
    for before in [180, 186, 189, 192, 195] {
        for upper in [false, true] {
            fake.push(openrouter::Scenario::EchoKeyPlain { before, upper });
            let error = client.write(&or::request()).await.unwrap_err();
            let text = format!("{error} {error:?}");
            assert!(!error.is_retryable(), "{text}");
            assert!(
                !text.to_ascii_lowercase().contains(&prefix),
                "{before} {upper}: the key's prefix leaks: {text}"
            );
            if before == 180 {
                assert!(text.contains("[redacted]"), "{text}");
            }
            seen += 1;
        }
    }
    assert_eq!(seen, 10);
}
