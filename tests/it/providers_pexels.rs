//! The Pexels footage source against the fake, through the retry policy.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tiktok_factory::providers::pexels::{Pexels, PexelsOptions};
use tiktok_factory::providers::{
    Clip, FootageRequest, FootageSource, MemoryBudgets, ProviderError, Timeouts,
};
use tiktok_factory::secret::Secret;

use crate::fakes::faults::Fault;
use crate::fakes::pexels::{self, KEY, Scenario, clip};
use crate::fakes::{Fake, quick_retries, unix, unix_in};

const SEARCH: &str = "/videos/search";

pub fn client_with(fake: &Fake<Scenario>, key: &str, max_rate_wait: Duration) -> Pexels {
    let options = PexelsOptions {
        base_url: fake.base_url.clone(),
        timeouts: Timeouts {
            connect: Duration::from_secs(2),
            request: Duration::from_millis(500),
        },
        download_timeout: Duration::from_millis(500),
        per_page: 15,
        max_rate_wait,
    };
    Pexels::new(Secret::new(key), options).unwrap()
}

fn client(fake: &Fake<Scenario>) -> Pexels {
    client_with(fake, KEY, Duration::from_secs(5))
}

pub fn request(clips: u32, avoid: &[&str]) -> FootageRequest {
    FootageRequest {
        query: "black hole".into(),
        clips,
        min_clip_seconds: 5.0,
        avoid: avoid.iter().map(|s| (*s).to_owned()).collect(),
        variant: 0,
    }
}

pub async fn fetch(
    client: &Pexels,
    request: &FootageRequest,
    dir: &Path,
) -> Result<Vec<Clip>, ProviderError> {
    quick_retries().run(|_| client.fetch(request, dir)).await
}

fn ids(clips: &[Clip]) -> Vec<&str> {
    clips.iter().map(|c| c.source_id.as_str()).collect()
}

fn assert_complete(dir: &Path, clips: &[Clip]) {
    for clip_file in clips {
        assert_eq!(
            std::fs::read(&clip_file.path).unwrap(),
            clip(),
            "{clip_file:?}"
        );
        assert!((clip_file.duration - 2.0).abs() < 0.2, "{clip_file:?}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn fetches_portrait_clips_nearest_1080_with_credit() {
    let fake = pexels::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clips = fetch(&client(&fake), &request(2, &[]), dir.path())
        .await
        .unwrap();

    assert_eq!(ids(&clips), ["pexels:1001", "pexels:1004"]);
    let credit = clips[0].credit.clone().unwrap();
    assert_eq!(credit.creator, "Creator 10010");
    assert_eq!(credit.creator_url, "https://www.pexels.com/@creator-10010");
    assert_eq!(credit.url, "https://www.pexels.com/video/clip-1001/");
    assert_complete(dir.path(), &clips);

    let seen = fake.seen();
    let search = &seen[0];
    assert_eq!(
        (search.method.as_str(), search.path.as_str()),
        ("GET", SEARCH)
    );
    assert_eq!(search.header("authorization"), Some(KEY));
    assert_eq!(search.query_param("query").as_deref(), Some("black hole"));
    assert_eq!(
        search.query_param("orientation").as_deref(),
        Some("portrait")
    );
    assert_eq!(search.query_param("per_page").as_deref(), Some("15"));
    let files: Vec<&str> = seen[1..].iter().map(|s| s.path.as_str()).collect();
    assert_eq!(files, ["/files/1001-hd.mp4", "/files/1004-qhd.mp4"]);
    assert!(
        seen[1..]
            .iter()
            .all(|s| s.header("authorization").is_none()),
        "the key must not go to the file host"
    );
}

#[tokio::test]
async fn avoids_clips_used_elsewhere_by_reading_the_next_page_once() {
    let fake = pexels::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clips = fetch(&client(&fake), &request(3, &["pexels:1001"]), dir.path())
        .await
        .unwrap();
    assert_eq!(ids(&clips), ["pexels:1004", "pexels:2001", "pexels:2002"]);
    let searches: Vec<_> = fake
        .seen()
        .into_iter()
        .filter(|s| s.path == SEARCH)
        .collect();
    assert_eq!(searches.len(), 2);
    assert_eq!(searches[1].query_param("page").as_deref(), Some("2"));
    assert_eq!(searches[1].header("authorization"), Some(KEY));
}

#[tokio::test]
async fn uses_an_avoided_clip_only_to_make_up_the_number() {
    let fake = pexels::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clips = fetch(&client(&fake), &request(4, &["pexels:1001"]), dir.path())
        .await
        .unwrap();
    assert_eq!(
        ids(&clips),
        ["pexels:1004", "pexels:2001", "pexels:2002", "pexels:1001"]
    );
}

#[tokio::test]
async fn returns_what_there_is_and_never_a_video_twice() {
    let fake = pexels::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clips = fetch(&client(&fake), &request(10, &[]), dir.path())
        .await
        .unwrap();
    assert_eq!(
        ids(&clips),
        ["pexels:1001", "pexels:1004", "pexels:2001", "pexels:2002"]
    );
    assert_eq!(fake.requests_to(SEARCH), 2, "the next page is read once");
}

#[tokio::test]
async fn nothing_found_is_permanent() {
    let fake = pexels::start().await;
    let dir = tempfile::tempdir().unwrap();
    let request = FootageRequest {
        query: "nothing at all".into(),
        ..request(2, &[])
    };
    let error = fetch(&client(&fake), &request, dir.path())
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::Permanent { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("`nothing at all`"), "{error}");
    assert_eq!(fake.requests(), 1);
}

#[tokio::test]
async fn a_rejected_key_fails_at_once_naming_the_variable() {
    let fake = pexels::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bearer = format!("Bearer {KEY}");
    let client = client_with(&fake, &bearer, Duration::from_secs(5));
    let error = fetch(&client, &request(1, &[]), dir.path())
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::Permanent { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("`PEXELS_API_KEY`"), "{error}");
    assert_eq!(fake.requests(), 1);
}

#[tokio::test]
async fn transient_search_failures_are_retried() {
    let cases = [
        ("500", Scenario::Status(500)),
        ("503", Scenario::Status(503)),
        ("truncated body", Scenario::Truncated),
        ("invalid json", Scenario::NotJson),
        ("slow", Scenario::Slow(Duration::from_secs(2))),
    ];
    for (name, scenario) in cases {
        let fake = pexels::start().await;
        fake.push(scenario);
        let dir = tempfile::tempdir().unwrap();
        let clips = fetch(&client(&fake), &request(1, &[]), dir.path()).await;
        assert!(clips.is_ok(), "{name}: {clips:?}");
        assert_eq!(fake.requests_to(SEARCH), 2, "{name}");
    }
}

#[tokio::test]
async fn an_exhausted_quota_is_waited_out() {
    let fake = pexels::start().await;
    let client = client(&fake);
    let reset_at = unix_in(Duration::from_secs(1));
    fake.push(Scenario::QuotaExhausted { reset_at });
    let dir = tempfile::tempdir().unwrap();
    fetch(&client, &request(1, &[]), dir.path()).await.unwrap();
    let rate = client.rate_limit();
    assert_eq!((rate.limit, rate.remaining), (Some(20_000), Some(0)));
    assert_eq!(rate.reset, Some(i64::try_from(reset_at).unwrap()));

    // A clone shares the quota it learnt and waits for the reset before searching.
    let dir = tempfile::tempdir().unwrap();
    fetch(&client.clone(), &request(1, &[]), dir.path())
        .await
        .unwrap();
    let searches: Vec<_> = fake
        .seen()
        .into_iter()
        .filter(|s| s.path == SEARCH)
        .collect();
    assert_eq!(searches.len(), 2);
    assert!(
        searches[1].at >= unix(reset_at),
        "searched before the reset"
    );
    assert_eq!(client.rate_limit().remaining, Some(19_000));
}

#[tokio::test]
async fn a_reset_too_far_off_defers_the_footage_without_a_request() {
    let fake = pexels::start().await;
    let client = client_with(&fake, KEY, Duration::from_secs(1));
    let reset_at = unix_in(Duration::from_secs(600));
    fake.push(Scenario::QuotaExhausted { reset_at });
    let dir = tempfile::tempdir().unwrap();
    fetch(&client, &request(1, &[]), dir.path()).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let error = fetch(&client, &request(1, &[]), dir.path())
        .await
        .unwrap_err();
    let ProviderError::Deferred { until, scope, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(*until, i64::try_from(reset_at).unwrap());
    assert_eq!(scope, client.budget_key());
    assert_eq!(
        fake.requests_to(SEARCH),
        1,
        "no request while the quota is out"
    );
}

#[tokio::test]
async fn a_429_waits_for_the_remembered_reset() {
    let fake = pexels::start().await;
    let client = client(&fake);
    let reset_at = unix_in(Duration::from_secs(2));
    fake.push(Scenario::QuotaReset {
        remaining: 3,
        reset_at,
    });
    let dir = tempfile::tempdir().unwrap();
    fetch(&client, &request(1, &[]), dir.path()).await.unwrap();

    fake.push(Scenario::TooManyRequests);
    let dir = tempfile::tempdir().unwrap();
    fetch(&client, &request(1, &[]), dir.path()).await.unwrap();
    let searches: Vec<_> = fake
        .seen()
        .into_iter()
        .filter(|s| s.path == SEARCH)
        .collect();
    assert_eq!(searches.len(), 3);
    assert!(searches[2].at >= unix(reset_at), "retried before the reset");
}

#[tokio::test]
async fn a_429_with_an_unknown_reset_defers_for_the_hour_instead_of_retrying_blindly() {
    let fake = pexels::start().await;
    fake.push(Scenario::TooManyRequests);
    let budgets = Arc::new(MemoryBudgets::new());
    let client = client(&fake).with_budgets(budgets.clone());
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let error = fetch(&client, &request(1, &[]), dir.path())
        .await
        .unwrap_err();
    let ProviderError::Deferred { until, scope, .. } = &error else {
        panic!("{error:?}");
    };
    let now = tiktok_factory::clock::now();
    assert!(
        (now + 3590..=now + 3600).contains(until),
        "{until} vs {now}"
    );
    assert!(
        scope.starts_with("pexels:") && !scope.contains(KEY),
        "{scope}"
    );
    assert_eq!(fake.requests_to(SEARCH), 1, "one 429, no blind retries");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(budgets.blocked_until(scope), Some(*until));

    // Another client of the same key and budgets (another process) does not ask either.
    let other = client_with(&fake, KEY, Duration::from_secs(5)).with_budgets(budgets);
    let again = fetch(&other, &request(1, &[]), dir.path())
        .await
        .unwrap_err();
    assert!(matches!(again, ProviderError::Deferred { .. }), "{again:?}");
    assert_eq!(fake.requests_to(SEARCH), 1);
}

#[tokio::test]
async fn a_search_answer_lost_or_garbled_on_the_way_is_retried() {
    for fault in [Fault::Drop, Fault::Cut, Fault::Garble, Fault::BadGateway] {
        let fake = pexels::start().await;
        fake.faults.inject(SEARCH, fault.clone());
        let dir = tempfile::tempdir().unwrap();
        let clips = fetch(&client(&fake), &request(1, &[]), dir.path()).await;
        assert!(clips.is_ok(), "{fault:?}: {clips:?}");
        // A gateway's 502 never reached the service; the other faults did.
        let reached = if fault == Fault::BadGateway { 1 } else { 2 };
        assert_eq!(fake.requests_to(SEARCH), reached, "{fault:?}");
        assert_eq!(fake.faults.met().len(), 1, "{fault:?}");
    }
}

#[tokio::test]
async fn a_cut_off_download_resumes_with_range() {
    let fake = pexels::start().await;
    fake.push(Scenario::Normal).push(Scenario::Truncated);
    let dir = tempfile::tempdir().unwrap();
    let clips = fetch(&client(&fake), &request(2, &[]), dir.path())
        .await
        .unwrap();
    assert_complete(dir.path(), &clips);

    let first_file: Vec<_> = fake
        .seen()
        .into_iter()
        .filter(|s| s.path == "/files/1001-hd.mp4")
        .collect();
    assert_eq!(first_file.len(), 2);
    assert_eq!(first_file[0].header("range"), None);
    let half = clip().len() / 2;
    assert_eq!(
        first_file[1].header("range"),
        Some(format!("bytes={half}-").as_str())
    );
}

#[tokio::test]
async fn a_server_ignoring_range_restarts_the_file_cleanly() {
    let fake = pexels::start().await;
    fake.push(Scenario::Normal)
        .push(Scenario::Truncated)
        .push(Scenario::Normal)
        .push(Scenario::IgnoreRange);
    let dir = tempfile::tempdir().unwrap();
    let clips = fetch(&client(&fake), &request(1, &[]), dir.path())
        .await
        .unwrap();
    assert_complete(dir.path(), &clips);
    let ranged = fake
        .seen()
        .iter()
        .filter(|s| s.header("range").is_some())
        .count();
    assert_eq!(ranged, 1);
}

#[tokio::test]
async fn a_finished_part_is_kept_when_the_server_answers_416() {
    let fake = pexels::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pexels-1001.mp4.part"), clip()).unwrap();
    let clips = fetch(&client(&fake), &request(1, &[]), dir.path())
        .await
        .unwrap();
    assert_complete(dir.path(), &clips);
    assert_eq!(fake.requests(), 2);
    let range = format!("bytes={}-", clip().len());
    assert_eq!(fake.seen()[1].header("range"), Some(range.as_str()));
}

#[tokio::test]
async fn an_unreadable_file_is_downloaded_again_from_scratch() {
    let fake = pexels::start().await;
    fake.push(Scenario::Normal).push(Scenario::Garbage);
    let dir = tempfile::tempdir().unwrap();
    let clips = fetch(&client(&fake), &request(1, &[]), dir.path())
        .await
        .unwrap();
    assert_complete(dir.path(), &clips);
    let files: Vec<_> = fake
        .seen()
        .into_iter()
        .filter(|s| s.path.starts_with("/files/"))
        .collect();
    assert_eq!(files.len(), 2);
    assert_eq!(
        files[1].header("range"),
        None,
        "a bad file must not be resumed"
    );
}

#[tokio::test]
async fn a_missing_file_fails_permanently() {
    let fake = pexels::start().await;
    fake.push(Scenario::Normal).push(Scenario::Status(404));
    let dir = tempfile::tempdir().unwrap();
    let error = fetch(&client(&fake), &request(1, &[]), dir.path())
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::Permanent { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn probe_key_makes_one_small_search() {
    let fake = pexels::start().await;
    let rate = client(&fake).probe_key().await.unwrap();
    assert_eq!(rate.remaining, Some(19_000));
    assert_eq!(fake.requests(), 1);
    assert_eq!(fake.seen()[0].query_param("per_page").as_deref(), Some("1"));
}
