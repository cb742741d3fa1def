//! The R2 host against a real S3 server on 127.0.0.1: moto (`moto_server`, installed by
//! `.ci/setup-test-deps.sh`), started and stopped by each test.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tiktok_factory::providers::r2::{R2, R2Config};

use crate::fakes::faults::Fault;
use crate::fakes::proxy::Proxy;
use tiktok_factory::providers::{Host, HostRequest};
use tiktok_factory::secret::Secret;

pub const BUCKET: &str = "factory-media";
const DAY: i64 = 24 * 60 * 60;

/// A moto S3 server on a free loopback port, killed on drop.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    pub async fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let program = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".to_owned());
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start `{program}` ({e}); run `.ci/setup-test-deps.sh` first")
            });
        let moto = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if reqwest::get(&moto.endpoint).await.is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "moto_server did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Bucket set-up is test scaffolding, done over plain HTTP (moto skips auth).
        let created = reqwest::Client::new()
            .put(format!("{}/{BUCKET}", moto.endpoint))
            .send()
            .await
            .unwrap();
        assert!(created.status().is_success(), "{}", created.status());
        moto
    }

    /// The bucket's keys under `prefix`, over plain HTTP (moto lists without auth).
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let xml = reqwest::get(format!(
            "{}/{BUCKET}?list-type=2&prefix={prefix}",
            self.endpoint
        ))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
        xml.split("<Key>")
            .skip(1)
            .filter_map(|part| part.split("</Key>").next())
            .map(str::to_owned)
            .collect()
    }

    pub fn config(&self) -> R2Config {
        R2Config {
            endpoint: self.endpoint.clone(),
            access_key_id: "AKIAFAKE".to_owned(),
            secret_access_key: Secret::new("fake-secret-key"),
            bucket: BUCKET.to_owned(),
            prefix: R2Config::DEFAULT_PREFIX.to_owned(),
            multipart_threshold: R2Config::DEFAULT_THRESHOLD,
            part_size: R2Config::DEFAULT_THRESHOLD,
            retention: R2Config::DEFAULT_RETENTION,
        }
    }

    /// Writes an object without going through the client, as another tool would.
    async fn put_raw(&self, key: &str, body: &'static [u8]) {
        let response = reqwest::Client::new()
            .put(format!("{}/{BUCKET}/{key}", self.endpoint))
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

fn file(dir: &Path, name: &str, size: usize) -> PathBuf {
    let path = dir.join(name);
    let bytes: Vec<u8> = (0..size)
        .map(|i| (i % 251) as u8 ^ (i / 251) as u8)
        .collect();
    std::fs::write(&path, bytes).unwrap();
    path
}

fn request(path: &Path, key: &str, expires_at: i64) -> HostRequest {
    HostRequest {
        path: path.to_owned(),
        key: key.to_owned(),
        content_type: "video/mp4".to_owned(),
        expires_at,
    }
}

fn query_param(url: &str, name: &str) -> Option<String> {
    oauth2::url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[tokio::test]
async fn a_small_file_is_put_presigned_fetched_back_and_deleted() {
    let moto = Moto::start().await;
    let r2 = R2::new(moto.config()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = file(dir.path(), "small.mp4", 300_000);
    let expires_at = now() + 3600;

    let hosted = r2
        .put(&request(&path, "space/1.mp4", expires_at))
        .await
        .unwrap();
    assert_eq!(
        hosted.location,
        format!("r2://{BUCKET}/renders/space/1.mp4")
    );
    assert_eq!(hosted.expires_at, expires_at);
    let valid: i64 = query_param(&hosted.url, "X-Amz-Expires")
        .unwrap()
        .parse()
        .unwrap();
    assert!((3590..=3600).contains(&valid), "{valid}");

    let response = reqwest::get(&hosted.url).await.unwrap();
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(
        header("x-amz-meta-expires-at"),
        Some(expires_at.to_string())
    );
    assert_eq!(header("content-type").as_deref(), Some("video/mp4"));
    assert!(
        header("expires").is_some(),
        "the HTTP Expires header is stored"
    );
    assert!(
        !header("etag").unwrap().contains('-'),
        "a single PUT, not multipart"
    );
    assert_eq!(
        response.bytes().await.unwrap(),
        std::fs::read(&path).unwrap()
    );

    r2.delete(&hosted.location).await.unwrap();
    assert_eq!(reqwest::get(&hosted.url).await.unwrap().status(), 404);
    r2.delete(&hosted.location).await.unwrap();
    assert!(
        r2.delete("r2://another-bucket/renders/x.mp4")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_file_above_the_threshold_goes_up_in_equal_parts() {
    let moto = Moto::start().await;
    let r2 = R2::new(R2Config {
        multipart_threshold: 1024 * 1024,
        part_size: 5 * 1024 * 1024,
        ..moto.config()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = file(dir.path(), "big.mp4", 11 * 1024 * 1024 + 123);
    let expires_at = now() + 600;
    let hosted = r2
        .put(&request(&path, "big.mp4", expires_at))
        .await
        .unwrap();

    let response = reqwest::get(&hosted.url).await.unwrap();
    assert_eq!(response.status(), 200);
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    assert!(
        etag.trim_matches('"').ends_with("-3"),
        "three parts: {etag}"
    );
    assert_eq!(
        response.headers()["x-amz-meta-expires-at"]
            .to_str()
            .unwrap(),
        expires_at.to_string()
    );
    assert_eq!(
        response.bytes().await.unwrap(),
        std::fs::read(&path).unwrap()
    );
}

#[tokio::test]
async fn links_never_outlive_seven_days() {
    let moto = Moto::start().await;
    let r2 = R2::new(moto.config()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = file(dir.path(), "a.mp4", 1000);
    let expires_at = now() + 30 * DAY;
    let hosted = r2.put(&request(&path, "a.mp4", expires_at)).await.unwrap();
    assert_eq!(
        query_param(&hosted.url, "X-Amz-Expires").as_deref(),
        Some("604800")
    );
    assert_eq!(hosted.expires_at, expires_at);
}

#[tokio::test]
async fn expired_lists_what_is_due_under_the_prefix_only() {
    let moto = Moto::start().await;
    let r2 = R2::new(moto.config()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = file(dir.path(), "v.mp4", 1000);
    let start = now();
    let soon = r2
        .put(&request(&path, "soon.mp4", start + 100))
        .await
        .unwrap();
    let later = r2
        .put(&request(&path, "later.mp4", start + 10_000))
        .await
        .unwrap();
    // No `expires-at`: due by its write time plus the 14-day retention.
    moto.put_raw("renders/untagged.mp4", b"x").await;
    moto.put_raw("elsewhere/not-ours.mp4", b"x").await;

    assert_eq!(r2.expired(start).await.unwrap(), Vec::<String>::new());
    assert_eq!(
        r2.expired(start + 200).await.unwrap(),
        vec![soon.location.clone()]
    );
    let mut all = r2.expired(start + 15 * DAY).await.unwrap();
    all.sort();
    let mut expected = vec![
        soon.location,
        later.location,
        format!("r2://{BUCKET}/renders/untagged.mp4"),
    ];
    expected.sort();
    assert_eq!(all, expected);
}

#[tokio::test]
async fn failures_are_classed() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = file(dir.path(), "v.mp4", 1000);

    let missing = R2::new(R2Config {
        bucket: "no-such-bucket".to_owned(),
        ..moto.config()
    })
    .unwrap();
    let error = missing
        .put(&request(&path, "v.mp4", now() + 60))
        .await
        .unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    assert!(error.to_string().contains("`NoSuchBucket`"), "{error}");

    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let down = R2::new(R2Config {
        endpoint: format!("http://127.0.0.1:{port}"),
        ..moto.config()
    })
    .unwrap();
    let error = down
        .put(&request(&path, "v.mp4", now() + 60))
        .await
        .unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert!(!format!("{error} {error:?}").contains("fake-secret-key"));
}

impl Moto {
    /// Keeps every write as a version, so a test can count writes.
    async fn enable_versioning(&self) {
        let response = reqwest::Client::new()
            .put(format!("{}/{BUCKET}?versioning", self.endpoint))
            .body("<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>")
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }

    /// How many times the object at `key` was written.
    async fn versions(&self, key: &str) -> usize {
        let xml = reqwest::get(format!("{}/{BUCKET}?versions&prefix={key}", self.endpoint))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        doc.descendants()
            .filter(|n| n.has_tag_name("Version"))
            .filter(|n| {
                n.children()
                    .any(|c| c.has_tag_name("Key") && c.text() == Some(key))
            })
            .count()
    }
}

#[tokio::test]
async fn a_second_put_of_the_same_content_writes_nothing() {
    let moto = Moto::start().await;
    moto.enable_versioning().await;
    let r2 = R2::new(moto.config()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = file(dir.path(), "v.mp4", 1000);
    let first = r2
        .put(&request(&path, "job/v.mp4", now() + DAY))
        .await
        .unwrap();
    let second = r2
        .put(&request(&path, "job/v.mp4", now() + DAY))
        .await
        .unwrap();
    assert_eq!(first.location, second.location);
    assert_eq!(moto.versions("renders/job/v.mp4").await, 1);

    // Other bytes under the same key replace the object.
    let other = file(dir.path(), "w.mp4", 1200);
    r2.put(&request(&other, "job/v.mp4", now() + DAY))
        .await
        .unwrap();
    assert_eq!(moto.versions("renders/job/v.mp4").await, 2);
    let replaced = r2
        .put(&request(&other, "job/v.mp4", now() + DAY))
        .await
        .unwrap();
    let fetched = reqwest::get(&replaced.url)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(fetched.len(), 1200);
}

#[tokio::test]
async fn the_s3_server_refuses_a_conditional_write_to_a_taken_key_with_412() {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    let moto = Moto::start().await;
    moto.enable_versioning().await;
    moto.put_raw("renders/race.mp4", b"first").await;
    // What a writer racing this one would meet: the conditional write R2 sends for a new
    // object is refused once the key exists, and the object is left alone.
    let client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&moto.endpoint)
            .region(Region::new("auto"))
            .credentials_provider(Credentials::new("AK", "SK", None, None, "test"))
            .force_path_style(true)
            .build(),
    );
    let refused = client
        .put_object()
        .bucket(BUCKET)
        .key("renders/race.mp4")
        .if_none_match("*")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"second"))
        .send()
        .await
        .unwrap_err();
    let status = refused.raw_response().map(|r| r.status().as_u16());
    assert_eq!(status, Some(412), "{refused:?}");
    assert_eq!(moto.versions("renders/race.mp4").await, 1);
}

/// Each point of the host effect where a process can lose track: one object written once,
/// however often the engine (or a rerun) calls again.
#[tokio::test]
async fn faults_at_every_point_of_a_put_leave_one_hosted_object() {
    let moto = Moto::start().await;
    moto.enable_versioning().await;
    let proxy = Proxy::start(&moto.endpoint).await;
    let r2 = R2::new(R2Config {
        endpoint: proxy.url(),
        ..moto.config()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = file(dir.path(), "v.mp4", 1000);
    let cases = [
        ("before the call", Some(Fault::BadGateway)),
        ("after the call, before the answer", Some(Fault::Drop)),
        ("the answer cut", Some(Fault::Cut)),
        ("after the answer, before the record", None),
    ];
    for (n, (point, fault)) in cases.into_iter().enumerate() {
        let key = format!("job{n}/v.mp4");
        let object = format!("renders/{key}");
        if let Some(fault) = &fault {
            proxy
                .faults()
                .inject(&format!("PUT /{BUCKET}/{object}"), fault.clone());
        }
        let host = request(&path, &key, now() + DAY);
        let put = || r2.put(&host);
        let mut hosted = None;
        for _ in 0..3 {
            match put().await {
                Ok(done) => {
                    hosted = Some(done);
                    break;
                }
                Err(error) => assert!(error.is_retryable(), "{point}: {error}"),
            }
        }
        let hosted = hosted.unwrap_or_else(|| panic!("{point}: never hosted"));
        assert_eq!(
            proxy.faults().pending(),
            0,
            "{point}: the fault was not met"
        );
        // The engine lost the answer or the record: it puts again.
        let again = put().await.unwrap();
        assert_eq!(again.location, hosted.location, "{point}");
        assert_eq!(moto.versions(&object).await, 1, "{point}");
    }
}
