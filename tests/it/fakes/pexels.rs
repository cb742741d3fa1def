//! Pexels video search and the file host its links point to. Files are a real, tiny mp4
//! made with ffmpeg once per test run.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use serde_json::{Value, json};

use super::{Fake, Seen, Shared, bytes, json, truncated, with_header};

pub const KEY: &str = "pexels-fake-563492ad6f91700001000001";

/// How the next request (search or file download) is answered.
#[derive(Debug, Clone)]
pub enum Scenario {
    /// The normal answer, to let a later scenario hit the request after it.
    Normal,
    /// A normal search answer, but reporting the quota as exhausted until `reset_at`
    /// (unix seconds).
    QuotaExhausted {
        reset_at: u64,
    },
    /// A normal search answer whose quota resets at `reset_at`.
    QuotaReset {
        remaining: u64,
        reset_at: u64,
    },
    /// 429, with no rate-limit headers, as documented.
    TooManyRequests,
    /// Any status with a `{"error": …}` body.
    Status(u16),
    /// A 401 that echoes the credentials it received, to prove clients scrub them.
    EchoKey,
    Slow(Duration),
    /// The normal answer (search JSON or file bytes) cut off mid-body.
    Truncated,
    NotJson,
    /// A file request answered in full with 200, ignoring `Range`.
    IgnoreRange,
    /// A file request answered with bytes that are not video.
    Garbage,
}

pub async fn start() -> Fake<Scenario> {
    // Made before serving, so no request waits on ffmpeg and trips a client timeout.
    clip();
    Fake::start(KEY, "", |shared| {
        Router::new().fallback(handle).with_state(shared)
    })
    .await
}

/// The clip every file link serves: two seconds of 108×192 video, moov atom at the end so
/// a truncated copy does not probe.
pub fn clip() -> &'static [u8] {
    static CLIP: OnceLock<Vec<u8>> = OnceLock::new();
    CLIP.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clip.mp4");
        let status = std::process::Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=108x192:rate=10:duration=2",
            ])
            .args(["-c:v", "mpeg4", "-y"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success(), "ffmpeg could not make the test clip");
        std::fs::read(path).unwrap()
    })
}

async fn handle(
    State(shared): State<Arc<Shared<Scenario>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let seen = Seen::new(method.clone(), &uri, headers, body);
    shared.record(seen.clone());
    match uri.path() {
        "/videos/search" | "/videos/search/" => search(&shared, &seen).await,
        path if path.starts_with("/files/") => file(&shared, &seen).await,
        _ => error(404, "Not Found"),
    }
}

async fn search(shared: &Shared<Scenario>, seen: &Seen) -> Response {
    // The raw key, exactly; a `Bearer ` prefix is the classic mistake.
    let auth = seen.header("authorization").unwrap_or_default();
    if auth != shared.key {
        return error(401, "Unauthorized");
    }
    let query = seen.query_param("query").unwrap_or_default();
    if query.trim().is_empty() {
        return error(400, "query is required");
    }
    if let Some(orientation) = seen.query_param("orientation")
        && !matches!(orientation.as_str(), "landscape" | "portrait" | "square")
    {
        return error(400, "invalid orientation");
    }
    let per_page: u64 = seen
        .query_param("per_page")
        .map_or(Some(15), |v| v.parse().ok())
        .unwrap_or(0);
    if !(1..=80).contains(&per_page) {
        return error(400, "per_page must be between 1 and 80");
    }
    let page: u64 = seen
        .query_param("page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let results = results(&shared.base_url, &query, page, per_page);
    let ok = |remaining: u64, reset: u64| rate_headers(json(200, &results), remaining, reset);
    match shared.next() {
        None | Some(Scenario::Normal) => ok(19_000, now() + 3600),
        Some(Scenario::QuotaExhausted { reset_at }) => ok(0, reset_at),
        Some(Scenario::QuotaReset {
            remaining,
            reset_at,
        }) => ok(remaining, reset_at),
        Some(Scenario::TooManyRequests) => error(429, "Too Many Requests"),
        Some(Scenario::Status(status)) => error(status, "the fake says no"),
        Some(Scenario::EchoKey) => error(401, &format!("bad key {auth}")),
        Some(Scenario::Slow(wait)) => {
            tokio::time::sleep(wait).await;
            ok(19_000, now() + 3600)
        }
        Some(Scenario::Truncated) => {
            truncated(200, "application/json", results.to_string().as_bytes())
        }
        Some(Scenario::NotJson) => bytes(200, "text/html", b"<html>maintenance</html>".to_vec()),
        Some(other) => panic!("{other:?} is a file scenario, but a search came first"),
    }
}

async fn file(shared: &Shared<Scenario>, seen: &Seen) -> Response {
    let clip = clip();
    // `bytes=N-` is the only form clients here send.
    let start = seen
        .header("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    let whole = || bytes(200, "video/mp4", clip.to_vec());
    let ranged = |start: usize| -> Response {
        if start >= clip.len() {
            let response = bytes(416, "text/plain", Vec::new());
            return with_header(
                response,
                "content-range",
                &format!("bytes */{}", clip.len()),
            );
        }
        let response = bytes(206, "video/mp4", clip[start..].to_vec());
        let range = format!("bytes {start}-{}/{}", clip.len() - 1, clip.len());
        with_header(response, "content-range", &range)
    };
    let normal = || match start {
        Some(start) => ranged(start),
        None => whole(),
    };
    match shared.next() {
        None | Some(Scenario::Normal) => normal(),
        Some(Scenario::IgnoreRange) => whole(),
        Some(Scenario::Garbage) => bytes(200, "video/mp4", vec![0x42; clip.len()]),
        Some(Scenario::Truncated) => match start {
            Some(start) => {
                let mut response = truncated(206, "video/mp4", &clip[start..]);
                let range = format!("bytes {start}-{}/{}", clip.len() - 1, clip.len());
                response
                    .headers_mut()
                    .insert("content-range", range.parse().unwrap());
                response
            }
            None => truncated(200, "video/mp4", clip),
        },
        Some(Scenario::Status(status)) => error(status, "file unavailable"),
        Some(Scenario::Slow(wait)) => {
            tokio::time::sleep(wait).await;
            normal()
        }
        Some(other) => panic!("{other:?} is a search scenario, but a file request came"),
    }
}

/// Page 1: one good video with many files, one too short, one landscape only, one whose
/// only portrait file is large, one with no dimensions. Page 2: two more good videos.
/// A query containing `nothing` (or the made-up word `xyzzy`, which a visual query
/// keeps where it drops `nothing`) finds nothing.
fn results(base: &str, query: &str, page: u64, per_page: u64) -> Value {
    let user = |id: u64| json!({ "id": id, "name": format!("Creator {id}"), "url": format!("https://www.pexels.com/@creator-{id}") });
    let file = |id: u64, quality: Value, w: Value, h: Value, file_type: &str, name: &str| {
        json!({ "id": id, "quality": quality, "file_type": file_type, "width": w, "height": h,
                "fps": null, "link": format!("{base}/files/{name}") })
    };
    let video = |id: u64, duration: u64, files: Vec<Value>| {
        json!({ "id": id, "width": 1080, "height": 1920, "duration": duration,
                "url": format!("https://www.pexels.com/video/clip-{id}/"),
                "image": format!("{base}/images/{id}.jpg"), "full_res": null, "tags": [], "avg_color": null,
                "user": user(id * 10), "video_files": files,
                "video_pictures": [{ "id": 1, "picture": format!("{base}/images/{id}-0.jpg"), "nr": 0 }] })
    };
    let videos = if query.contains("nothing") || query.contains("xyzzy") {
        vec![]
    } else if page == 1 {
        vec![
            video(
                1001,
                12,
                vec![
                    file(
                        1,
                        json!("hd"),
                        json!(1920),
                        json!(1080),
                        "video/mp4",
                        "1001-landscape.mp4",
                    ),
                    file(
                        2,
                        json!("hls"),
                        Value::Null,
                        Value::Null,
                        "application/x-mpegURL",
                        "1001.m3u8",
                    ),
                    file(
                        3,
                        json!("sd"),
                        json!(720),
                        json!(1280),
                        "video/mp4",
                        "1001-sd.mp4",
                    ),
                    file(
                        4,
                        Value::Null,
                        json!(1080),
                        json!(1920),
                        "video/mp4",
                        "1001-hd.mp4",
                    ),
                    file(
                        5,
                        json!("uhd"),
                        json!(2160),
                        json!(3840),
                        "video/mp4",
                        "1001-uhd.mp4",
                    ),
                ],
            ),
            video(
                1002,
                3,
                vec![file(
                    6,
                    json!("hd"),
                    json!(1080),
                    json!(1920),
                    "video/mp4",
                    "1002.mp4",
                )],
            ),
            video(
                1003,
                15,
                vec![file(
                    7,
                    json!("hd"),
                    json!(1920),
                    json!(1080),
                    "video/mp4",
                    "1003.mp4",
                )],
            ),
            video(
                1004,
                20,
                vec![
                    file(
                        8,
                        json!("uhd"),
                        json!(2160),
                        json!(3840),
                        "video/mp4",
                        "1004-uhd.mp4",
                    ),
                    file(
                        9,
                        json!("uhd"),
                        json!(1440),
                        json!(2560),
                        "video/mp4",
                        "1004-qhd.mp4",
                    ),
                ],
            ),
            video(
                1005,
                9,
                vec![file(
                    10,
                    Value::Null,
                    Value::Null,
                    Value::Null,
                    "video/mp4",
                    "1005.mp4",
                )],
            ),
        ]
    } else if page == 2 {
        vec![
            video(
                2001,
                10,
                vec![file(
                    11,
                    json!("hd"),
                    json!(1080),
                    json!(1920),
                    "video/mp4",
                    "2001.mp4",
                )],
            ),
            video(
                2002,
                9,
                vec![file(
                    12,
                    json!("sd"),
                    json!(540),
                    json!(960),
                    "video/mp4",
                    "2002.mp4",
                )],
            ),
        ]
    } else {
        vec![]
    };
    let next_page = (page == 1 && !videos.is_empty()).then(|| {
        format!(
            "https://api.pexels.com/videos/search/?page=2&per_page={per_page}&query={}",
            query.replace(' ', "+")
        )
    });
    json!({
        "page": page, "per_page": per_page, "total_results": 7,
        "url": format!("https://www.pexels.com/search/videos/{query}/"),
        "videos": videos,
        "next_page": next_page,
    })
}

fn rate_headers(response: Response, remaining: u64, reset: u64) -> Response {
    let response = with_header(response, "x-ratelimit-limit", "20000");
    let response = with_header(response, "x-ratelimit-remaining", &remaining.to_string());
    with_header(response, "x-ratelimit-reset", &reset.to_string())
}

fn error(status: u16, message: &str) -> Response {
    json(status, &json!({ "error": message }))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
