//! The Telegram notifier against the fake Bot API.

use std::time::{Duration, Instant};

use tiktok_factory::engine::RetryPolicy;
use tiktok_factory::providers::telegram::{Telegram, draft_notice_text};
use tiktok_factory::providers::{Notice, Notifier, ProviderError, Timeouts};
use tiktok_factory::secret::Secret;

use crate::fakes::faults::Fault;
use crate::fakes::telegram::{CHAT, FakeTelegram, MIGRATED_CHAT, NEW_CHAT_ID, TOKEN};

fn notice(chat: &str, text: &str) -> Notice {
    Notice {
        chat: chat.to_owned(),
        text: text.to_owned(),
    }
}

#[tokio::test]
async fn sends_plain_text_without_previews_and_returns_the_message_id() {
    let fake = FakeTelegram::start().await;
    let telegram = Telegram::new(fake.url(), Secret::new(TOKEN)).unwrap();
    let text = draft_notice_text(
        "Black <holes>",
        "Bend & light",
        &["space".to_owned()],
        &[],
        None,
    );
    let id = telegram.send(&notice(CHAT, &text)).await.unwrap();
    assert_eq!(id, "1");
    let sent = &fake.messages()[0];
    assert_eq!(sent["chat_id"], CHAT);
    assert_eq!(sent["text"], text.as_str());
    assert!(sent["text"].as_str().unwrap().contains("Black <holes>"));
    assert!(
        sent.get("parse_mode").is_none(),
        "plain text needs no parse mode"
    );
    assert_eq!(sent["link_preview_options"]["is_disabled"], true);
}

#[tokio::test]
async fn flood_control_is_retried_after_the_wait_telegram_asks_for() {
    let fake = FakeTelegram::start().await;
    fake.flood(1, 1);
    let telegram = Telegram::new(fake.url(), Secret::new(TOKEN)).unwrap();
    let started = Instant::now();
    let first = telegram
        .send(&notice(CHAT, "draft ready"))
        .await
        .unwrap_err();
    assert!(matches!(
        first,
        ProviderError::Retryable { retry_after: Some(wait), .. } if wait == Duration::from_secs(1)
    ));
    fake.flood(1, 1);
    let ready = notice(CHAT, "draft ready");
    let id = RetryPolicy::default()
        .run(|_| telegram.send(&ready))
        .await
        .unwrap();
    assert_eq!(id, "1");
    assert_eq!(fake.requests(), 3);
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn text_over_4096_characters_is_truncated_not_refused() {
    let fake = FakeTelegram::start().await;
    let telegram = Telegram::new(fake.url(), Secret::new(TOKEN)).unwrap();
    telegram
        .send(&notice(CHAT, &"é".repeat(5000)))
        .await
        .unwrap();
    let sent = fake.messages()[0]["text"].as_str().unwrap().to_owned();
    assert_eq!(sent.chars().count(), 4096);
    assert!(sent.ends_with('…'));
}

#[tokio::test]
async fn refusals_are_permanent_with_a_hint_and_never_show_the_token() {
    let fake = FakeTelegram::start().await;
    let telegram = Telegram::new(fake.url(), Secret::new(TOKEN)).unwrap();

    let stranger = telegram
        .send(&notice("@someone_else", "hi"))
        .await
        .unwrap_err();
    assert!(!stranger.is_retryable());
    assert!(stranger.to_string().contains("/start"), "{stranger}");

    let migrated = telegram
        .send(&notice(MIGRATED_CHAT, "hi"))
        .await
        .unwrap_err();
    assert!(!migrated.is_retryable());
    assert!(
        migrated.to_string().contains(&NEW_CHAT_ID.to_string()),
        "{migrated}"
    );

    // Nothing listens on this port: the connection error would name the URL, token included.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let unreachable =
        Telegram::new(format!("http://127.0.0.1:{port}"), Secret::new(TOKEN)).unwrap();
    let down = unreachable.send(&notice(CHAT, "hi")).await.unwrap_err();
    assert!(down.is_retryable());

    let wrong_token = Telegram::new(fake.url(), Secret::new("999:other")).unwrap();
    let unauthorized = wrong_token.send(&notice(CHAT, "hi")).await.unwrap_err();
    assert!(!unauthorized.is_retryable());

    for error in [stranger, migrated, down, unauthorized] {
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains("fake-bot-token"), "{shown}");
        assert!(!shown.contains("999:other"), "{shown}");
    }
}

/// Sends like an engine that honours the classes: retries what is retryable, and never
/// sends again what may have gone out.
async fn send_at_most_once(telegram: &Telegram, notice: &Notice) -> Result<String, ProviderError> {
    let mut last = None;
    for _ in 0..4 {
        match telegram.send(notice).await {
            Ok(id) => return Ok(id),
            Err(error @ ProviderError::Retryable { .. }) => last = Some(error),
            Err(error) => return Err(error),
        }
    }
    Err(last.unwrap())
}

#[tokio::test]
async fn a_cut_off_send_message_answer_is_unconfirmed_and_not_sent_again() {
    for fault in [Fault::Cut, Fault::Drop, Fault::Garble] {
        let fake = FakeTelegram::start().await;
        fake.faults().inject("/sendMessage", fault.clone());
        let telegram = Telegram::new(fake.url(), Secret::new(TOKEN)).unwrap();
        let error = send_at_most_once(&telegram, &notice(CHAT, "draft ready"))
            .await
            .unwrap_err();
        assert!(
            matches!(error, ProviderError::Unconfirmed { .. }),
            "{fault:?}: {error:?}"
        );
        assert!(!error.to_string().contains(TOKEN), "{error}");
        assert_eq!(fake.messages().len(), 1, "{fault:?}: exactly one notice");
    }
}

#[tokio::test]
async fn a_timeout_after_sending_is_unconfirmed() {
    let fake = FakeTelegram::start().await;
    fake.faults()
        .inject("/sendMessage", Fault::Stall(Duration::from_millis(800)));
    let telegram = Telegram::with_timeouts(
        fake.url(),
        Secret::new(TOKEN),
        Timeouts {
            connect: Duration::from_secs(2),
            request: Duration::from_millis(300),
        },
    )
    .unwrap();
    let error = send_at_most_once(&telegram, &notice(CHAT, "draft ready"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::Unconfirmed { .. }),
        "{error:?}"
    );
    // The slow answer's message did go out: that is why it is not sent again.
    assert_eq!(fake.messages().len(), 1);
}

#[tokio::test]
async fn answers_that_say_it_was_not_sent_are_retried_and_a_refused_connection_too() {
    let fake = FakeTelegram::start().await;
    fake.faults().inject("/sendMessage", Fault::BadGateway);
    fake.flood(1, 0);
    let telegram = Telegram::new(fake.url(), Secret::new(TOKEN)).unwrap();
    let first = telegram.send(&notice(CHAT, "a")).await.unwrap_err();
    // A gateway's page without Telegram's JSON could have come from anywhere: unconfirmed.
    assert!(
        matches!(first, ProviderError::Unconfirmed { .. }),
        "{first:?}"
    );
    let flood = telegram.send(&notice(CHAT, "a")).await.unwrap_err();
    assert!(
        matches!(flood, ProviderError::Retryable { .. }),
        "{flood:?}"
    );
    assert!(fake.messages().is_empty());
    telegram.send(&notice(CHAT, "a")).await.unwrap();
    assert_eq!(fake.messages().len(), 1);

    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        url
    };
    let nowhere = Telegram::new(closed, Secret::new(TOKEN)).unwrap();
    let refused = nowhere.send(&notice(CHAT, "a")).await.unwrap_err();
    assert!(
        matches!(refused, ProviderError::Retryable { .. }),
        "{refused:?}"
    );
    assert!(!refused.to_string().contains(TOKEN), "{refused}");
}

/// The engine's half of the notify contract, as a double: the intent is recorded before
/// the call, and an intent found without an outcome (a crash, an unconfirmed send) is
/// reported, never sent again. Telegram cannot be asked, so this is all there is.
#[derive(Default)]
struct NoticeLedger {
    entry: std::sync::Mutex<Option<&'static str>>,
}

impl NoticeLedger {
    /// One run of the notify stage; `crash_before_record` dies between the answer and
    /// the record.
    async fn run(&self, telegram: &Telegram, notice: &Notice, crash_before_record: bool) {
        if self.entry.lock().unwrap().is_some() {
            return; // done, unconfirmed or interrupted: never sent twice
        }
        *self.entry.lock().unwrap() = Some("intent");
        let result = send_at_most_once(telegram, notice).await;
        if crash_before_record {
            return;
        }
        *self.entry.lock().unwrap() = Some(match result {
            Ok(_) => "sent",
            Err(ProviderError::Unconfirmed { .. }) => "unconfirmed",
            Err(_) => "failed",
        });
    }
}

#[tokio::test]
async fn faults_at_every_point_of_a_notice_leave_at_most_one_notice() {
    // Before the call: refused by flood control, then sent.
    let fake = FakeTelegram::start().await;
    fake.flood(1, 0);
    let telegram = Telegram::new(fake.url(), Secret::new(TOKEN)).unwrap();
    let ledger = NoticeLedger::default();
    for _ in 0..2 {
        ledger.run(&telegram, &notice(CHAT, "ready"), false).await;
    }
    assert_eq!(fake.messages().len(), 1);
    assert_eq!(*ledger.entry.lock().unwrap(), Some("sent"));

    // After the call, before the answer: unconfirmed, reported, not sent again.
    let fake = FakeTelegram::start().await;
    fake.faults().inject("/sendMessage", Fault::Drop);
    let telegram = Telegram::new(fake.url(), Secret::new(TOKEN)).unwrap();
    let ledger = NoticeLedger::default();
    for _ in 0..2 {
        ledger.run(&telegram, &notice(CHAT, "ready"), false).await;
    }
    assert_eq!(fake.messages().len(), 1);
    assert_eq!(*ledger.entry.lock().unwrap(), Some("unconfirmed"));

    // After the answer, before the record: the rerun finds the intent and sends nothing.
    let fake = FakeTelegram::start().await;
    let telegram = Telegram::new(fake.url(), Secret::new(TOKEN)).unwrap();
    let ledger = NoticeLedger::default();
    ledger.run(&telegram, &notice(CHAT, "ready"), true).await;
    ledger.run(&telegram, &notice(CHAT, "ready"), false).await;
    assert_eq!(fake.messages().len(), 1);
    assert_eq!(*ledger.entry.lock().unwrap(), Some("intent"));
}
