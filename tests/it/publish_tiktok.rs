//! TikTok login and inbox drafts against the fake TikTok.

use std::collections::HashMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use oauth2::url::Url;
use sha2::{Digest, Sha256};
use tiktok_factory::privacy::accounts::SealedAccounts;
use tiktok_factory::privacy::crypto::Key;
use tiktok_factory::providers::tiktok::upload::{
    PHASE_INIT_SENT, PHASE_INITIALIZED, PHASE_UPLOADED,
};
use tiktok_factory::providers::tiktok::{
    Account, AccountStore, DraftSettings, LoginOptions, OAuth, OAuthError, TikTokDrafts,
    inits_budget, is_pending_draft_cap, pending_budget,
};
use tiktok_factory::providers::{DraftReceipt, DraftRequest, Drafts, MemoryBudgets, ProviderError};
use tiktok_factory::secret::Secret;
use tiktok_factory::store::Store;

use crate::fakes::faults::Fault;
use crate::fakes::publish_support::MemoryLog;
use crate::fakes::tiktok::{CLIENT_KEY, FakeTikTok, OPEN_ID};

const ACCOUNT: &str = "main";

struct Setup {
    fake: FakeTikTok,
    store: Arc<SealedAccounts>,
    drafts: Arc<TikTokDrafts>,
    dir: tempfile::TempDir,
}

async fn open_store(dir: &Path) -> Store {
    Store::open(dir).await.unwrap()
}

fn fast() -> DraftSettings {
    DraftSettings {
        poll_interval: Duration::from_millis(10),
        ..DraftSettings::default()
    }
}

/// A fake, a store holding `account` (a freshly connected one when `None`), and drafts.
async fn setup(account: Option<Account>) -> Setup {
    let fake = FakeTikTok::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SealedAccounts::new(
        open_store(dir.path()).await,
        Key::generate(),
    ));
    let account = account.unwrap_or_else(|| fake.connected_account());
    store.save(ACCOUNT, &account).await.unwrap();
    let drafts = Arc::new(
        TikTokDrafts::new(fake.config(), store.clone())
            .unwrap()
            .with_settings(fast()),
    );
    Setup {
        fake,
        store,
        drafts,
        dir,
    }
}

fn video(dir: &Path, size: u64) -> PathBuf {
    let path = dir.join(format!("video-{size}.mp4"));
    let mut file = std::fs::File::create(&path).unwrap();
    file.set_len(size).unwrap();
    // Sparse, but with a distinct mark every 5 MB, so a chunk sent out of place or twice
    // changes the digest.
    let mut offset = 0;
    while offset < size {
        file.seek(SeekFrom::Start(offset)).unwrap();
        let mark = offset.to_le_bytes();
        let room = usize::try_from((size - offset).min(8)).unwrap();
        file.write_all(&mark[..room]).unwrap();
        offset += 5_000_000;
    }
    path
}

fn sha256_of(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

fn request(video: PathBuf) -> DraftRequest {
    DraftRequest {
        video,
        job_id: "job-1".to_owned(),
        recipe: "space-facts".to_owned(),
        name: "black-holes-narrator-job-1".to_owned(),
        account: ACCOUNT.to_owned(),
        title: "Black holes".to_owned(),
        caption: "They bend light.".to_owned(),
        hashtags: vec!["space".to_owned()],
        credits: Vec::new(),
    }
}

/// Drives the browser's part: follows the authorize URL (the fake redirects to the
/// loopback listener) and hands back the page the listener answered with.
fn browser() -> (impl FnOnce(&str), tokio::sync::oneshot::Receiver<String>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let open = move |url: &str| {
        let url = url.to_owned();
        tokio::spawn(async move {
            let page = reqwest::get(url).await.unwrap().text().await.unwrap();
            let _ = tx.send(page);
        });
    };
    (open, rx)
}

#[tokio::test]
async fn login_end_to_end_with_hex_pkce_refresh_rotation_and_revoke() {
    let fake = FakeTikTok::start().await;
    let oauth = OAuth::new(fake.config()).unwrap();
    let (open, page) = browser();
    let options = LoginOptions {
        port: 0,
        timeout: Duration::from_secs(20),
    };
    let account = oauth.login(&options, open).await.unwrap();
    assert!(page.await.unwrap().contains("TikTok is connected"));
    assert_eq!(account.open_id, OPEN_ID);
    assert_eq!(account.scopes, vec!["video.upload"]);
    assert!(
        account.access_expires_at > 0 && account.refresh_expires_at > account.access_expires_at
    );

    let query = &fake.authorize_queries()[0];
    assert_eq!(query["client_key"], CLIENT_KEY);
    assert!(!query.contains_key("client_id"));
    let redirect = Url::parse(&query["redirect_uri"]).unwrap();
    assert_eq!(redirect.host_str(), Some("127.0.0.1"));
    assert_eq!(redirect.path(), "/callback/");

    let refreshed = oauth.refresh(&account).await.unwrap();
    assert_ne!(refreshed.refresh_token, account.refresh_token);
    assert!(fake.refresh_token_valid(refreshed.refresh_token.expose()));
    assert!(!fake.refresh_token_valid(account.refresh_token.expose()));
    let stale = oauth.refresh(&account).await.unwrap_err();
    assert!(matches!(&stale, OAuthError::Refused { error, .. } if error == "invalid_grant"));
    assert!(!ProviderError::from(stale).is_retryable());

    oauth.revoke(&refreshed).await.unwrap();
    assert_eq!(
        fake.revoked(),
        vec![refreshed.access_token.expose().to_owned()]
    );
    assert!(!fake.refresh_token_valid(refreshed.refresh_token.expose()));
}

#[tokio::test]
async fn a_redirect_with_a_foreign_state_is_refused() {
    let fake = FakeTikTok::start().await;
    let oauth = OAuth::new(fake.config()).unwrap();
    let open = |url: &str| {
        let query: HashMap<String, String> = Url::parse(url)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        let forged = format!("{}?code=stolen&state=not-ours", query["redirect_uri"]);
        tokio::spawn(async move {
            let _ = reqwest::get(forged).await;
        });
    };
    let options = LoginOptions {
        port: 0,
        timeout: Duration::from_secs(20),
    };
    let error = oauth.login(&options, open).await.unwrap_err();
    assert!(matches!(error, OAuthError::StateMismatch), "{error}");
    assert!(!fake.paths().contains(&"/v2/oauth/token/".to_owned()));
}

#[tokio::test]
async fn a_denied_or_unanswered_login_says_so() {
    let fake = FakeTikTok::start().await;
    let oauth = OAuth::new(fake.config()).unwrap();
    let open = |url: &str| {
        let query: HashMap<String, String> = Url::parse(url)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        let denied = format!(
            "{}?error=access_denied&error_description=user+cancelled&state={}",
            query["redirect_uri"], query["state"]
        );
        tokio::spawn(async move {
            let _ = reqwest::get(denied).await;
        });
    };
    let options = LoginOptions {
        port: 0,
        timeout: Duration::from_secs(20),
    };
    let denied = oauth.login(&options, open).await.unwrap_err();
    assert_eq!(
        denied.to_string(),
        "tiktok did not authorize the app: `access_denied`: user cancelled"
    );

    let quick = LoginOptions {
        port: 0,
        timeout: Duration::from_millis(200),
    };
    let timeout = oauth.login(&quick, |_| {}).await.unwrap_err();
    assert!(matches!(timeout, OAuthError::Timeout(_)));
}

/// Sends like the engine does: one retry loop around `send`, the same ledger throughout,
/// retrying what the error class allows (retryable and unconfirmed) up to `attempts`.
async fn drive(
    drafts: &TikTokDrafts,
    draft: &DraftRequest,
    log: &MemoryLog,
    attempts: u32,
) -> Result<DraftReceipt, ProviderError> {
    let mut last = None;
    for _ in 0..attempts {
        match drafts.send(draft, log).await {
            Ok(receipt) => return Ok(receipt),
            Err(error) if error.is_retryable() => last = Some(error),
            Err(error) => return Err(error),
        }
    }
    Err(last.unwrap())
}

/// Runs one attempt until its ledger "crashes" (see [`MemoryLog`]), then stops it.
async fn crash(setup: &Setup, draft: &DraftRequest, log: &Arc<MemoryLog>) {
    let task = {
        let (drafts, log, draft) = (setup.drafts.clone(), log.clone(), draft.clone());
        tokio::spawn(async move { drafts.send(&draft, log.as_ref()).await })
    };
    log.crashed.notified().await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
}

fn drafts_with(
    setup: &Setup,
    settings: DraftSettings,
    budgets: &Arc<MemoryBudgets>,
) -> TikTokDrafts {
    TikTokDrafts::new(setup.fake.config(), setup.store.clone())
        .unwrap()
        .with_settings(settings)
        .with_budgets(budgets.clone())
}

#[tokio::test]
async fn a_video_over_one_chunk_goes_up_in_order_and_lands_in_the_inbox() {
    let setup = setup(None).await;
    // 70 MB: over the 64,000,000-byte single-chunk limit, so 7 chunks of 10,000,000
    // bytes with the remainder in the last.
    let path = video(setup.dir.path(), 70_000_123);
    let log = MemoryLog::default();
    let receipt = setup
        .drafts
        .send(&request(path.clone()), &log)
        .await
        .unwrap();

    assert_eq!(receipt.status, "SEND_TO_USER_INBOX");
    assert_eq!(setup.fake.inbox(), vec![receipt.external_id.clone()]);
    let init = &setup.fake.inits()[0]["source_info"];
    assert_eq!(init["source"], "FILE_UPLOAD");
    assert_eq!(init["video_size"], 70_000_123);
    assert_eq!(init["chunk_size"], 10_000_000);
    assert_eq!(init["total_chunk_count"], 7);
    assert_eq!(
        setup.fake.init_content_types(),
        vec!["application/json; charset=UTF-8"]
    );
    assert_eq!(setup.fake.put_attempts(), 7);
    assert_eq!(
        setup.fake.uploaded_sha256(&receipt.external_id),
        Some(sha256_of(&path))
    );
    let mut phases = vec!["init-sent", "initialized"];
    phases.extend(["uploading"; 6]);
    phases.extend(["uploaded", "delivered"]);
    assert_eq!(log.phases(), phases);
    assert!(
        log.records()[1..]
            .iter()
            .all(|r| r.external_id.as_deref() == Some(receipt.external_id.as_str()))
    );
    // The resume state: where the upload goes on, without the URL in any message.
    let uploading = &log.records()[4].data;
    assert_eq!(uploading["chunks_done"], 3);
    assert_eq!(uploading["chunk_plan"]["total_chunk_count"], 7);
    assert!(
        uploading["upload_url"]
            .as_str()
            .unwrap()
            .contains("upload_id=")
    );
    assert!(uploading["initialized_at"].as_i64().unwrap() > 0);
}

#[tokio::test]
async fn a_failed_chunk_is_not_retried_inside_the_client_and_the_next_attempt_resumes_there() {
    let setup = setup(None).await;
    setup.fake.set(|b| b.fail_put_at = Some(30_000_000));
    let path = video(setup.dir.path(), 70_000_123);
    let draft = request(path.clone());
    let log = MemoryLog::default();
    let error = setup.drafts.send(&draft, &log).await.unwrap_err();
    assert!(
        matches!(error, ProviderError::Retryable { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("resumes there"), "{error}");
    assert_eq!(
        setup.fake.put_attempts(),
        4,
        "one PUT per chunk, no inner loop"
    );
    assert_eq!(log.last().unwrap().data["chunks_done"], 3);

    let receipt = setup.drafts.send(&draft, &log).await.unwrap();
    assert_eq!(setup.fake.inits().len(), 1);
    assert_eq!(
        setup.fake.put_attempts(),
        4 + 4,
        "chunks 4 to 7 again, not 1 to 3"
    );
    assert_eq!(
        setup.fake.uploaded_sha256(&receipt.external_id),
        Some(sha256_of(&path))
    );
    assert_eq!(setup.fake.inbox(), vec![receipt.external_id]);
}

#[tokio::test]
async fn a_crash_after_init_resumes_the_upload_with_the_same_publish_id() {
    let setup = setup(None).await;
    let path = video(setup.dir.path(), 12_000_000);
    let draft = request(path);
    let log = Arc::new(MemoryLog::crashing_after(PHASE_INITIALIZED));
    crash(&setup, &draft, &log).await;
    let previous = log.last().unwrap();
    assert_eq!(previous.phase, PHASE_INITIALIZED);
    assert_eq!(setup.fake.put_attempts(), 0);

    let receipt = setup.drafts.send(&draft, log.as_ref()).await.unwrap();
    assert_eq!(Some(receipt.external_id.clone()), previous.external_id);
    assert_eq!(setup.fake.init_requests(), 1);
    assert_eq!(setup.fake.put_attempts(), 1);
    assert_eq!(setup.fake.inbox(), vec![receipt.external_id]);
}

#[tokio::test]
async fn a_crash_after_upload_only_polls_and_never_uploads_again() {
    let setup = setup(None).await;
    let path = video(setup.dir.path(), 12_000_000);
    let draft = request(path);
    let log = Arc::new(MemoryLog::crashing_after(PHASE_UPLOADED));
    crash(&setup, &draft, &log).await;
    let previous = log.last().unwrap();
    assert_eq!(previous.phase, PHASE_UPLOADED);
    assert_eq!(setup.fake.put_attempts(), 1);
    // TikTok delivers a completed upload whether or not anyone polls.
    assert_eq!(
        setup.fake.inbox(),
        vec![previous.external_id.clone().unwrap()]
    );

    let resumed = MemoryLog::resuming(previous.clone());
    let receipt = setup.drafts.send(&draft, &resumed).await.unwrap();
    assert_eq!(Some(receipt.external_id), previous.external_id.clone());
    assert_eq!(setup.fake.init_requests(), 1);
    assert_eq!(setup.fake.put_attempts(), 1);
    assert_eq!(setup.fake.inbox(), vec![previous.external_id.unwrap()]);
    assert_eq!(resumed.phases(), vec!["uploaded", "delivered"]);
}

#[tokio::test]
async fn a_502_on_a_status_poll_after_the_last_chunk_never_inits_or_uploads_again() {
    let setup = setup(None).await;
    setup
        .fake
        .faults()
        .inject("/v2/post/publish/status/fetch/", Fault::BadGateway);
    let draft = request(video(setup.dir.path(), 1_000_000));
    let log = MemoryLog::default();
    let error = setup.drafts.send(&draft, &log).await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert_eq!(log.last().unwrap().phase, PHASE_UPLOADED);

    let receipt = setup.drafts.send(&draft, &log).await.unwrap();
    assert_eq!(receipt.status, "SEND_TO_USER_INBOX");
    assert_eq!(setup.fake.init_requests(), 1);
    assert_eq!(setup.fake.put_attempts(), 1);
    assert_eq!(setup.fake.inbox(), vec![receipt.external_id]);
}

#[tokio::test]
async fn a_cut_init_answer_is_followed_by_one_new_init_and_the_orphan_counts_as_pending() {
    for fault in [Fault::Drop, Fault::Cut, Fault::Garble] {
        let setup = setup(None).await;
        let budgets = Arc::new(MemoryBudgets::new());
        let drafts = drafts_with(&setup, fast(), &budgets);
        setup
            .fake
            .faults()
            .inject("/v2/post/publish/inbox/video/init/", fault.clone());
        let draft = request(video(setup.dir.path(), 1_000_000));
        let log = MemoryLog::default();
        let error = drafts.send(&draft, &log).await.unwrap_err();
        assert!(error.is_retryable(), "{fault:?}: {error}");
        assert!(
            !matches!(error, ProviderError::Permanent { .. }),
            "{fault:?}: {error}"
        );
        let lost = log.last().unwrap();
        assert_eq!(
            (lost.phase.as_str(), lost.external_id),
            (PHASE_INIT_SENT, None)
        );

        let receipt = drafts.send(&draft, &log).await.unwrap();
        assert_eq!(setup.fake.init_requests(), 2, "{fault:?}");
        assert_eq!(setup.fake.inbox(), vec![receipt.external_id], "{fault:?}");
        assert_eq!(
            setup.fake.pending(),
            2,
            "{fault:?}: the fake counts the orphan"
        );
        assert_eq!(
            budgets.used(&pending_budget(ACCOUNT), 86_400),
            2,
            "{fault:?}: so does the pending budget"
        );
    }
}

#[tokio::test]
async fn orphans_in_the_pending_budget_defer_the_sixth_init_instead_of_asking_tiktok() {
    let setup = setup(None).await;
    let budgets = Arc::new(MemoryBudgets::new());
    let drafts = drafts_with(&setup, fast(), &budgets);
    let draft = request(video(setup.dir.path(), 1_000_000));
    for _ in 0..2 {
        setup
            .fake
            .faults()
            .inject("/v2/post/publish/inbox/video/init/", Fault::Drop);
    }
    for _ in 0..3 {
        drive(&drafts, &draft, &MemoryLog::default(), 3)
            .await
            .unwrap();
    }
    assert_eq!(setup.fake.inbox().len(), 3);
    assert_eq!(setup.fake.pending(), 5);
    let before = setup.fake.init_requests();
    let error = drafts
        .send(&draft, &MemoryLog::default())
        .await
        .unwrap_err();
    assert!(is_pending_draft_cap(&error), "{error}");
    let ProviderError::Deferred { until, scope, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(scope, "tiktok:pending:main");
    assert!(*until > tiktok_factory::clock::now() + 23 * 3600, "{until}");
    assert_eq!(setup.fake.init_requests(), before, "tiktok was not asked");
}

#[tokio::test]
async fn the_pending_draft_cap_from_tiktok_defers_the_draft_and_blocks_the_account() {
    let setup = setup(None).await;
    setup.fake.set(|b| b.pending_cap = 1);
    let budgets = Arc::new(MemoryBudgets::new());
    let drafts = drafts_with(&setup, fast(), &budgets);
    let path = video(setup.dir.path(), 1_000_000);
    drafts
        .send(&request(path.clone()), &MemoryLog::default())
        .await
        .unwrap();
    let log = MemoryLog::default();
    let error = drafts.send(&request(path.clone()), &log).await.unwrap_err();
    assert!(is_pending_draft_cap(&error), "{error}");
    assert!(matches!(error, ProviderError::Deferred { .. }));
    assert!(
        error
            .to_string()
            .contains("account `main` has reached its pending-draft cap")
    );
    assert_eq!(log.phases(), vec!["init-sent", "init-refused"]);
    assert_eq!(setup.fake.put_attempts(), 1);
    assert_eq!(
        budgets.used(&pending_budget(ACCOUNT), 86_400),
        1,
        "the refusal gave its unit back"
    );
    let blocked = budgets.blocked_until(&pending_budget(ACCOUNT)).unwrap();
    assert!(blocked >= tiktok_factory::clock::now() + 3500);
    // Everyone now waits for the hour without asking TikTok again.
    let requests = setup.fake.init_requests();
    let again = drafts
        .send(&request(path), &MemoryLog::default())
        .await
        .unwrap_err();
    assert!(is_pending_draft_cap(&again));
    assert_eq!(setup.fake.init_requests(), requests);
}

#[tokio::test]
async fn init_errors_are_read_from_the_body_even_with_http_200() {
    let setup = setup(None).await;
    let path = video(setup.dir.path(), 1_000_000);
    let draft = request(path);
    let log = MemoryLog::default();
    let send = || setup.drafts.send(&draft, &log);

    for (status, code) in [(200, "invalid_params"), (400, "invalid_param")] {
        setup.fake.set(|b| b.init_error = Some((status, code)));
        let error = send().await.unwrap_err();
        assert!(!error.is_retryable(), "{error}");
        assert!(error.to_string().contains(code), "{error}");
    }

    setup
        .fake
        .set(|b| b.init_error = Some((503, "internal_error")));
    assert!(send().await.unwrap_err().is_retryable());

    setup.fake.set(|b| {
        b.init_error = Some((200, "spam_risk_too_many_pending_share"));
    });
    assert!(is_pending_draft_cap(&send().await.unwrap_err()));
    assert_eq!(setup.fake.put_attempts(), 0);
}

#[tokio::test]
async fn a_429_with_retry_after_is_retryable_after_that_wait_and_blocks_the_init_budget() {
    let setup = setup(None).await;
    let budgets = Arc::new(MemoryBudgets::new());
    let drafts = drafts_with(&setup, fast(), &budgets);
    setup.fake.set(|b| {
        b.init_error = Some((429, "rate_limit_exceeded"));
        b.retry_after = Some(7);
    });
    let draft = request(video(setup.dir.path(), 1_000_000));
    let limited = drafts
        .send(&draft, &MemoryLog::default())
        .await
        .unwrap_err();
    assert!(matches!(
        limited,
        ProviderError::Retryable { retry_after: Some(wait), .. } if wait == Duration::from_secs(7)
    ));
    let blocked = budgets.blocked_until(&inits_budget(OPEN_ID)).unwrap();
    assert!(blocked >= tiktok_factory::clock::now() + 6, "{blocked}");
}

#[tokio::test]
async fn a_429_without_retry_after_defers_the_draft_a_minute_instead_of_failing_it() {
    let setup = setup(None).await;
    setup.fake.set(|b| b.pending_cap = 100);
    // A client that does not hold itself back, to meet TikTok's own limit.
    let budgets = Arc::new(MemoryBudgets::new());
    let unlimited = drafts_with(
        &setup,
        DraftSettings {
            inits_per_minute: 100,
            pending_per_day: 100,
            ..fast()
        },
        &budgets,
    );
    let draft = request(video(setup.dir.path(), 1_000_000));
    for _ in 0..6 {
        unlimited.send(&draft, &MemoryLog::default()).await.unwrap();
    }
    let started = std::time::Instant::now();
    let error = drive(&unlimited, &draft, &MemoryLog::default(), 3)
        .await
        .unwrap_err();
    let ProviderError::Deferred { until, scope, .. } = &error else {
        panic!("not deferred: {error:?}");
    };
    assert_eq!(scope, &inits_budget(OPEN_ID));
    assert!(*until >= tiktok_factory::clock::now() + 59, "{until}");
    assert!(error.to_string().contains("rate limit"), "{error}");
    assert!(!is_pending_draft_cap(&error));
    assert_eq!(
        setup.fake.init_requests(),
        7,
        "one 429, not three quick retries"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(setup.fake.inbox().len(), 6);
}

#[tokio::test]
async fn the_seventh_init_in_a_minute_is_deferred_by_the_shared_budget_before_tiktok_is_asked() {
    let setup = setup(None).await;
    setup.fake.set(|b| b.pending_cap = 100);
    let budgets = Arc::new(MemoryBudgets::new());
    let settings = DraftSettings {
        pending_per_day: 100,
        ..fast()
    };
    // Two clients (two processes, or two workers) sharing one budget.
    let (one, two) = (
        drafts_with(&setup, settings, &budgets),
        drafts_with(&setup, settings, &budgets),
    );
    let draft = request(video(setup.dir.path(), 1_000_000));
    for i in 0..6 {
        let drafts = if i % 2 == 0 { &one } else { &two };
        drafts.send(&draft, &MemoryLog::default()).await.unwrap();
    }
    let error = two.send(&draft, &MemoryLog::default()).await.unwrap_err();
    let ProviderError::Deferred { scope, until, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(scope, "tiktok:inits:open-id-1");
    assert!(*until > tiktok_factory::clock::now());
    assert_eq!(setup.fake.init_requests(), 6);
}

#[tokio::test]
async fn processing_failure_is_permanent_and_names_the_reason() {
    let setup = setup(None).await;
    setup
        .fake
        .set(|b| b.fail_reason = Some("frame_rate_check_failed".to_owned()));
    let path = video(setup.dir.path(), 1_000_000);
    let log = MemoryLog::default();
    let error = setup.drafts.send(&request(path), &log).await.unwrap_err();
    assert!(!error.is_retryable());
    assert!(
        error.to_string().contains("`frame_rate_check_failed`"),
        "{error}"
    );
    assert_eq!(
        log.phases(),
        vec!["init-sent", "initialized", "uploaded", "failed"]
    );
    assert!(setup.fake.inbox().is_empty());
}

/// Each point of the draft effect where a process can lose track: exactly one draft in
/// the inbox once the engine's retries (and a rerun) are through.
#[tokio::test]
async fn faults_at_every_point_of_a_draft_leave_exactly_one_draft() {
    const INIT: &str = "/v2/post/publish/inbox/video/init/";
    const STATUS: &str = "/v2/post/publish/status/fetch/";
    let cases: Vec<(&str, Vec<(&str, Fault)>)> = vec![
        ("before the init", vec![(INIT, Fault::BadGateway)]),
        ("init processed, answer lost", vec![(INIT, Fault::Drop)]),
        ("init answer garbled", vec![(INIT, Fault::Garble)]),
        (
            "last chunk processed, answer lost",
            vec![("/upload/", Fault::Drop)],
        ),
        ("last chunk answer cut", vec![("/upload/", Fault::Cut)]),
        (
            "chunk refused by the gateway",
            vec![("/upload/", Fault::BadGateway)],
        ),
        ("status answer lost", vec![(STATUS, Fault::Drop)]),
        ("status answer garbled", vec![(STATUS, Fault::Garble)]),
        (
            "everything once",
            vec![
                (INIT, Fault::Drop),
                ("/upload/", Fault::Drop),
                (STATUS, Fault::Cut),
                (STATUS, Fault::BadGateway),
            ],
        ),
    ];
    for (point, faults) in cases {
        let setup = setup(None).await;
        for (route, fault) in faults {
            setup.fake.faults().inject(route, fault);
        }
        let draft = request(video(setup.dir.path(), 1_000_000));
        let log = MemoryLog::default();
        let receipt = drive(&setup.drafts, &draft, &log, 6)
            .await
            .unwrap_or_else(|e| panic!("{point}: {e}"));
        assert_eq!(
            setup.fake.faults().pending(),
            0,
            "{point}: a fault was never met"
        );
        assert_eq!(setup.fake.inbox(), vec![receipt.external_id], "{point}");
        // A rerun of a finished draft asks, and sends nothing.
        let (inits, puts) = (setup.fake.init_requests(), setup.fake.put_attempts());
        setup.drafts.send(&draft, &log).await.unwrap();
        assert_eq!(
            (setup.fake.init_requests(), setup.fake.put_attempts()),
            (inits, puts),
            "{point}"
        );
        assert_eq!(setup.fake.inbox().len(), 1, "{point}");
    }

    // After the answer, before the record: the process dies between TikTok's answer and
    // the ledger write.
    for phase in [PHASE_INITIALIZED, PHASE_UPLOADED, "delivered"] {
        let setup = setup(None).await;
        let draft = request(video(setup.dir.path(), 1_000_000));
        let log = Arc::new(MemoryLog::crashing_before(phase));
        crash(&setup, &draft, &log).await;
        let receipt = drive(&setup.drafts, &draft, log.as_ref(), 3)
            .await
            .unwrap_or_else(|e| panic!("crash before `{phase}`: {e}"));
        assert!(
            setup.fake.inbox() == vec![receipt.external_id.clone()],
            "crash before `{phase}`: inbox {:?}",
            setup.fake.inbox()
        );
    }
}

#[tokio::test]
async fn an_expiring_token_is_refreshed_and_the_rotated_one_is_stored() {
    let fake_account = |fake: &FakeTikTok| Account {
        access_expires_at: 0,
        ..fake.connected_account()
    };
    let setup = setup(None).await;
    let stale = fake_account(&setup.fake);
    setup.store.save(ACCOUNT, &stale).await.unwrap();
    let path = video(setup.dir.path(), 1_000_000);
    setup
        .drafts
        .send(&request(path), &MemoryLog::default())
        .await
        .unwrap();
    assert_eq!(setup.fake.refreshes(), 1);
    let stored = setup.store.load(ACCOUNT).await.unwrap().unwrap();
    assert_ne!(stored.refresh_token, stale.refresh_token);
    assert!(
        setup
            .fake
            .refresh_token_valid(stored.refresh_token.expose())
    );
    assert!(!setup.fake.refresh_token_valid(stale.refresh_token.expose()));
}

#[tokio::test]
async fn a_refused_access_token_is_refreshed_once_and_the_send_goes_on() {
    let setup = setup(None).await;
    let mut account = setup.fake.connected_account();
    account.access_token = Secret::new("act.revoked-elsewhere");
    setup.store.save(ACCOUNT, &account).await.unwrap();
    let path = video(setup.dir.path(), 1_000_000);
    let receipt = setup
        .drafts
        .send(&request(path), &MemoryLog::default())
        .await
        .unwrap();
    assert_eq!(receipt.status, "SEND_TO_USER_INBOX");
    assert_eq!(setup.fake.refreshes(), 1);
}

#[tokio::test]
async fn an_account_from_tiktok_account_json_is_copied_into_the_store() {
    let setup = setup(None).await;
    setup.store.delete(ACCOUNT).await.unwrap();
    let connected = setup.fake.connected_account();
    let json = format!(
        r#"{{"open_id": "{}", "refresh_token": "{}"}}"#,
        connected.open_id,
        connected.refresh_token.expose()
    );
    let seed = Account::from_json(&json).unwrap();
    let drafts = TikTokDrafts::new(setup.fake.config(), setup.store.clone())
        .unwrap()
        .with_settings(fast())
        .with_seed_account(Some(seed));
    let path = video(setup.dir.path(), 1_000_000);
    drafts
        .send(&request(path), &MemoryLog::default())
        .await
        .unwrap();
    let stored = setup.store.load(ACCOUNT).await.unwrap().unwrap();
    assert_eq!(stored.open_id, OPEN_ID);
    assert!(
        setup
            .fake
            .refresh_token_valid(stored.refresh_token.expose())
    );

    let unknown = TikTokDrafts::new(setup.fake.config(), setup.store.clone()).unwrap();
    let mut other = request(video(setup.dir.path(), 10));
    other.account = "nobody".to_owned();
    let error = unknown
        .send(&other, &MemoryLog::default())
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("`TIKTOK_ACCOUNT_JSON`"),
        "{error}"
    );
}

#[tokio::test]
async fn only_video_upload_is_requested_and_no_direct_post_endpoint_is_called() {
    let fake = FakeTikTok::start().await;
    let oauth = OAuth::new(fake.config()).unwrap();
    let (open, _page) = browser();
    let options = LoginOptions {
        port: 0,
        timeout: Duration::from_secs(20),
    };
    let account = oauth.login(&options, open).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SealedAccounts::new(
        open_store(dir.path()).await,
        Key::generate(),
    ));
    store.save(ACCOUNT, &account).await.unwrap();
    let drafts = TikTokDrafts::new(fake.config(), store)
        .unwrap()
        .with_settings(fast());
    drafts
        .send(
            &request(video(dir.path(), 2_000_000)),
            &MemoryLog::default(),
        )
        .await
        .unwrap();

    let scopes: Vec<_> = fake
        .authorize_queries()
        .iter()
        .map(|q| q["scope"].clone())
        .collect();
    assert_eq!(scopes, vec!["video.upload"]);
    let paths = fake.paths();
    assert!(paths.contains(&"/v2/post/publish/inbox/video/init/".to_owned()));
    for path in &paths {
        assert!(
            !matches!(
                path.as_str(),
                "/v2/post/publish/video/init/" | "/v2/post/publish/content/init/"
            ) && !path.starts_with("/v2/post/publish/creator_info/"),
            "a direct-post endpoint was called: {path}"
        );
    }
    // And no code path could call one: the client source never names them.
    let source_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/providers/tiktok");
    for entry in std::fs::read_dir(source_dir).unwrap() {
        let source = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(!source.contains("/v2/post/publish/video/init/"));
        assert!(!source.contains("video.publish"));
    }
}

#[tokio::test]
async fn a_renewed_tiktok_account_json_replaces_a_stored_login_tiktok_rejects() {
    let setup = setup(None).await;
    // The stored login is dead: its refresh token was rotated away elsewhere.
    let dead = Account {
        access_token: Secret::new("act.dead"),
        refresh_token: Secret::new("rft.dead"),
        access_expires_at: 0,
        ..setup.fake.connected_account()
    };
    setup.store.save(ACCOUNT, &dead).await.unwrap();
    let renewed = setup.fake.connected_account();
    let seed = Account::from_json(&format!(
        r#"{{"open_id": "{OPEN_ID}", "refresh_token": "{}"}}"#,
        renewed.refresh_token.expose()
    ))
    .unwrap();
    let drafts = TikTokDrafts::new(setup.fake.config(), setup.store.clone())
        .unwrap()
        .with_settings(fast())
        .with_seed_account(Some(seed.clone()));
    let draft = request(video(setup.dir.path(), 1_000_000));
    drafts.send(&draft, &MemoryLog::default()).await.unwrap();
    let stored = setup.store.load(ACCOUNT).await.unwrap().unwrap();
    assert_ne!(stored.refresh_token, dead.refresh_token);
    assert!(
        setup
            .fake
            .refresh_token_valid(stored.refresh_token.expose())
    );
    assert_eq!(setup.fake.inbox().len(), 1);

    // A secret holding the same dead token is no way out: the error says to log in.
    setup.store.save(ACCOUNT, &dead).await.unwrap();
    let stale_seed = Account {
        refresh_token: dead.refresh_token.clone(),
        ..seed
    };
    let stuck = TikTokDrafts::new(setup.fake.config(), setup.store.clone())
        .unwrap()
        .with_settings(fast())
        .with_seed_account(Some(stale_seed));
    let error = stuck.send(&draft, &MemoryLog::default()).await.unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    assert!(
        error.to_string().contains("factory auth tiktok login"),
        "{error}"
    );
}

#[tokio::test]
async fn revoking_an_account_without_an_access_token_says_there_was_nothing_to_revoke() {
    let fake = FakeTikTok::start().await;
    let oauth = OAuth::new(fake.config()).unwrap();
    let seeded = Account::from_json(r#"{"open_id": "o1", "refresh_token": "rft.1"}"#).unwrap();
    let error = oauth.revoke(&seeded).await.unwrap_err();
    assert!(matches!(error, OAuthError::NothingToRevoke), "{error}");
    assert!(error.to_string().contains("nothing to revoke"), "{error}");
    assert!(fake.paths().is_empty(), "no `token=` request was sent");
}

#[tokio::test]
async fn a_ledger_that_kept_no_upload_state_starts_one_new_upload() {
    let setup = setup(None).await;
    let draft = request(video(setup.dir.path(), 12_000_000));
    let log = Arc::new(MemoryLog::crashing_after(PHASE_INITIALIZED));
    crash(&setup, &draft, &log).await;
    let mut previous = log.last().unwrap();
    previous.data = serde_json::Value::Null;
    let stripped = MemoryLog::resuming(previous);
    let receipt = setup.drafts.send(&draft, &stripped).await.unwrap();
    assert_eq!(setup.fake.init_requests(), 2);
    assert_eq!(setup.fake.inbox(), vec![receipt.external_id]);
    assert_eq!(
        stripped.phases()[..3],
        ["initialized", "failed", "init-sent"]
    );
}

#[tokio::test]
async fn a_retry_after_of_1e20_defers_the_draft_instead_of_panicking() {
    let setup = setup(None).await;
    setup.fake.set(|b| {
        b.init_error = Some((429, "rate_limit_exceeded"));
        b.retry_after_text = Some("1e20");
    });
    let draft = request(video(setup.dir.path(), 1_000_000));
    let error = setup
        .drafts
        .send(&draft, &MemoryLog::default())
        .await
        .unwrap_err();
    let ProviderError::Deferred { until, scope, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(scope, &inits_budget(OPEN_ID));
    let now = tiktok_factory::clock::now();
    assert!((now + 86_000..=now + 86_401).contains(until), "{until}");
}

#[tokio::test]
async fn an_upload_whose_url_has_expired_is_not_resumed_but_started_once_more() {
    let setup = setup(None).await;
    let draft = request(video(setup.dir.path(), 12_000_000));
    let log = Arc::new(MemoryLog::crashing_after(PHASE_INITIALIZED));
    crash(&setup, &draft, &log).await;
    // An hour later (here: a lifetime of zero), the recorded upload URL is dead.
    let later = TikTokDrafts::new(setup.fake.config(), setup.store.clone())
        .unwrap()
        .with_settings(DraftSettings {
            upload_url_lifetime: Duration::ZERO,
            ..fast()
        });
    let previous = log.last().unwrap();
    let resumed = MemoryLog::resuming(previous.clone());
    let receipt = later.send(&draft, &resumed).await.unwrap();
    assert_ne!(Some(receipt.external_id.clone()), previous.external_id);
    assert_eq!(setup.fake.init_requests(), 2);
    assert_eq!(
        setup.fake.put_attempts(),
        1,
        "nothing was sent to the dead URL"
    );
    assert_eq!(setup.fake.inbox(), vec![receipt.external_id]);
    assert_eq!(
        resumed.phases()[..3],
        ["initialized", "failed", "init-sent"]
    );
}

#[tokio::test]
async fn status_polls_of_an_account_share_tiktoks_30_per_minute() {
    let setup = setup(None).await;
    setup.fake.set(|b| b.polls_before_inbox = 5);
    let budgets = Arc::new(MemoryBudgets::new());
    let drafts = drafts_with(
        &setup,
        DraftSettings {
            status_per_minute: 2,
            ..fast()
        },
        &budgets,
    );
    let draft = request(video(setup.dir.path(), 1_000_000));
    let log = MemoryLog::default();
    let error = drafts.send(&draft, &log).await.unwrap_err();
    assert!(
        matches!(error, ProviderError::Retryable { retry_after: Some(wait), .. } if wait > Duration::from_secs(50)),
        "{error:?}"
    );
    assert_eq!(log.last().unwrap().phase, PHASE_UPLOADED);
    let polls = setup
        .fake
        .paths()
        .iter()
        .filter(|p| p.as_str() == "/v2/post/publish/status/fetch/")
        .count();
    assert_eq!(polls, 2, "the third poll waited for the window instead");
    assert_eq!(setup.fake.inbox().len(), 1, "delivered all the same");
}
