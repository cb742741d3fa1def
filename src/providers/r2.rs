//! Cloudflare R2 through its S3 API: the short-lived hosted copy of a rendered video that
//! the draft notice links to.
//!
//! The client is set up the way R2 needs and nothing else: static credentials (no
//! environment or profile lookups), region `auto`, path-style addressing, and checksums
//! only where S3 requires them — the SDK's default CRC32 headers are refused by R2.
//! Multipart parts are all the same size with a smaller last one, R2's rule.
//!
//! Each object carries its expiry twice: `expires-at` metadata (unix seconds), which
//! [`R2::expired`] reads, and the HTTP `Expires` header for caches.
//!
//! A put is idempotent: the object's `sha256` metadata says what it holds, so a put that
//! finds the key with the same digest (a HEAD) writes nothing, and a new object is written
//! with `If-None-Match: *`, so two writers racing for one key write it once. The SDK's own
//! retries are off: the engine's one retry policy repeats the whole put, which starts
//! with that HEAD.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::{ByteStream, DateTime, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use super::{Host, HostRequest, Hosted, ProviderError, http};
use crate::clock::now as unix_now;
use crate::secret::Secret;

pub const SERVICE: &str = "r2";
/// R2 refuses presigned URLs valid for longer.
pub const MAX_PRESIGN: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Metadata key (`x-amz-meta-expires-at`) holding the unix second the copy must be gone by.
pub const EXPIRES_AT_META: &str = "expires-at";
/// Metadata key (`x-amz-meta-sha256`) holding the hex SHA-256 of the object's bytes.
pub const SHA256_META: &str = "sha256";

const MIB: u64 = 1024 * 1024;
/// R2's smallest part (except the last).
const MIN_PART: u64 = 5 * MIB;
const MAX_PARTS: u64 = 10_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum R2ConfigError {
    #[error("`{0}` is not set")]
    Missing(&'static str),
    #[error("neither `R2_ENDPOINT` nor `R2_ACCOUNT_ID` is set; one names the R2 endpoint")]
    NoEndpoint,
    #[error("the multipart part size must be at least 5 MiB, got {0} bytes")]
    PartTooSmall(u64),
}

#[derive(Debug, Clone)]
pub struct R2Config {
    pub endpoint: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub bucket: String,
    /// Every key this app writes starts with it, and [`R2::expired`] looks only there.
    pub prefix: String,
    /// Files of this size or more go up in parts.
    pub multipart_threshold: u64,
    /// Part size for multipart uploads (at least 5 MiB; raised for files that would
    /// otherwise need more than 10,000 parts).
    pub part_size: u64,
    /// How long an object without `expires-at` metadata is kept after it was written.
    pub retention: Duration,
}

impl R2Config {
    pub const DEFAULT_THRESHOLD: u64 = 16 * MIB;
    pub const DEFAULT_PREFIX: &str = "renders/";
    pub const DEFAULT_RETENTION: Duration = Duration::from_secs(14 * 24 * 60 * 60);

    /// Reads `R2_ENDPOINT` (or builds it from `R2_ACCOUNT_ID`), `R2_ACCESS_KEY_ID`,
    /// `R2_SECRET_ACCESS_KEY` and `R2_BUCKET`; the rest takes the defaults.
    pub fn from_env() -> Result<Self, R2ConfigError> {
        let var = |name: &'static str| {
            Secret::from_env(name)
                .map(|s| s.expose().to_owned())
                .ok_or(R2ConfigError::Missing(name))
        };
        let endpoint = match (var("R2_ENDPOINT"), var("R2_ACCOUNT_ID")) {
            (Ok(endpoint), _) => endpoint,
            (Err(_), Ok(account)) => format!("https://{account}.r2.cloudflarestorage.com"),
            (Err(_), Err(_)) => return Err(R2ConfigError::NoEndpoint),
        };
        Ok(Self {
            endpoint,
            access_key_id: var("R2_ACCESS_KEY_ID")?,
            secret_access_key: Secret::from_env("R2_SECRET_ACCESS_KEY")
                .ok_or(R2ConfigError::Missing("R2_SECRET_ACCESS_KEY"))?,
            bucket: var("R2_BUCKET")?,
            prefix: Self::DEFAULT_PREFIX.to_owned(),
            multipart_threshold: Self::DEFAULT_THRESHOLD,
            part_size: Self::DEFAULT_THRESHOLD,
            retention: Self::DEFAULT_RETENTION,
        })
    }
}

/// An S3 client as every part of the factory talks to R2 or another S3-compatible
/// service: path-style, region `auto`, checksums only where required, no retries of its
/// own (the engine has one retry policy). The artifact store's S3 backend uses it too.
pub fn client(
    endpoint: &str,
    access_key_id: &str,
    secret_access_key: &Secret,
) -> aws_sdk_s3::Client {
    let credentials = Credentials::new(
        access_key_id,
        secret_access_key.expose(),
        None,
        None,
        "r2-static",
    );
    let s3 = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("auto"))
        .credentials_provider(credentials)
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        // One retry policy, the engine's: retries here would stack under it.
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .build(),
        )
        .build();
    aws_sdk_s3::Client::from_conf(s3)
}

pub struct R2 {
    client: aws_sdk_s3::Client,
    config: R2Config,
}

impl R2 {
    pub fn new(config: R2Config) -> Result<Self, R2ConfigError> {
        if config.part_size < MIN_PART {
            return Err(R2ConfigError::PartTooSmall(config.part_size));
        }
        Ok(Self {
            client: client(
                &config.endpoint,
                &config.access_key_id,
                &config.secret_access_key,
            ),
            config,
        })
    }

    fn object_key(&self, key: &str) -> String {
        format!("{}{}", self.config.prefix, key.trim_start_matches('/'))
    }

    fn location(&self, object_key: &str) -> String {
        format!("r2://{}/{object_key}", self.config.bucket)
    }

    fn key_of<'a>(&self, location: &'a str) -> Result<&'a str, ProviderError> {
        location
            .strip_prefix("r2://")
            .and_then(|rest| rest.split_once('/'))
            .filter(|(bucket, key)| *bucket == self.config.bucket && !key.is_empty())
            .map(|(_, key)| key)
            .ok_or_else(|| {
                ProviderError::permanent(
                    SERVICE,
                    format!(
                        "`{location}` is not an object in bucket `{}`",
                        self.config.bucket
                    ),
                )
            })
    }

    /// The `sha256` metadata of the object at `key`: `Ok(None)` when there is no object,
    /// `Ok(Some(None))` for an object without the digest.
    async fn stored_digest(&self, key: &str) -> Result<Option<Option<String>>, ProviderError> {
        match self
            .client
            .head_object()
            .bucket(&self.config.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(head) => Ok(Some(
                head.metadata()
                    .and_then(|m| m.get(SHA256_META))
                    .map(|v| v.trim().to_ascii_lowercase()),
            )),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            Err(error) => Err(classify("HeadObject", error)),
        }
    }

    /// Writes the object; `Ok(false)` when the conditional write found the key taken.
    async fn write(
        &self,
        key: &str,
        request: &HostRequest,
        size: u64,
        digest: &str,
        only_if_absent: bool,
    ) -> Result<bool, ProviderError> {
        let written = if size >= self.config.multipart_threshold {
            self.put_multipart(key, request, size, digest, only_if_absent)
                .await
        } else {
            self.put_single(key, request, size, digest, only_if_absent)
                .await
        };
        match written {
            Ok(()) => Ok(true),
            Err(Refused::Taken) => Ok(false),
            Err(Refused::Error(error)) => Err(error),
        }
    }

    async fn put_single(
        &self,
        key: &str,
        request: &HostRequest,
        size: u64,
        digest: &str,
        only_if_absent: bool,
    ) -> Result<(), Refused> {
        let body = ByteStream::from_path(&request.path)
            .await
            .map_err(|e| read_error(&request.path, &e))?;
        self.client
            .put_object()
            .bucket(&self.config.bucket)
            .key(key)
            .body(body)
            .content_length(i64::try_from(size).unwrap_or(i64::MAX))
            .content_type(&request.content_type)
            .expires(DateTime::from_secs(request.expires_at))
            .metadata(EXPIRES_AT_META, request.expires_at.to_string())
            .metadata(SHA256_META, digest)
            .set_if_none_match(only_if_absent.then(|| "*".to_owned()))
            .send()
            .await
            .map_err(|e| refused("PutObject", e))?;
        Ok(())
    }

    async fn put_multipart(
        &self,
        key: &str,
        request: &HostRequest,
        size: u64,
        digest: &str,
        only_if_absent: bool,
    ) -> Result<(), Refused> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.config.bucket)
            .key(key)
            .content_type(&request.content_type)
            .expires(DateTime::from_secs(request.expires_at))
            .metadata(EXPIRES_AT_META, request.expires_at.to_string())
            .metadata(SHA256_META, digest)
            .send()
            .await
            .map_err(|e| classify("CreateMultipartUpload", e))?;
        let upload_id = created.upload_id().ok_or_else(|| {
            ProviderError::retryable(SERVICE, "CreateMultipartUpload returned no upload id")
        })?;
        match self
            .upload_parts(key, upload_id, &request.path, size, only_if_absent)
            .await
        {
            Ok(()) => Ok(()),
            Err(error) => {
                // Best effort: R2 also drops incomplete uploads after 7 days on its own.
                let _ = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.config.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .send()
                    .await;
                Err(error)
            }
        }
    }

    async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        path: &Path,
        size: u64,
        only_if_absent: bool,
    ) -> Result<(), Refused> {
        let part_size = self.config.part_size.max(size.div_ceil(MAX_PARTS));
        let mut parts = Vec::new();
        let mut offset = 0;
        let mut number = 1;
        while offset < size {
            let len = part_size.min(size - offset);
            let body = ByteStream::read_from()
                .path(path)
                .offset(offset)
                .length(Length::Exact(len))
                .build()
                .await
                .map_err(|e| read_error(path, &e))?;
            let uploaded = self
                .client
                .upload_part()
                .bucket(&self.config.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .content_length(i64::try_from(len).unwrap_or(i64::MAX))
                .body(body)
                .send()
                .await
                .map_err(|e| classify("UploadPart", e))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(uploaded.e_tag().map(str::to_owned))
                    .build(),
            );
            offset += len;
            number += 1;
        }
        self.client
            .complete_multipart_upload()
            .bucket(&self.config.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .set_if_none_match(only_if_absent.then(|| "*".to_owned()))
            .send()
            .await
            .map_err(|e| refused("CompleteMultipartUpload", e))?;
        Ok(())
    }

    /// A GET link valid until `expires_at`, but never longer than R2's 7 days.
    async fn presign(&self, key: &str, expires_at: i64) -> Result<String, ProviderError> {
        let left = u64::try_from(expires_at.saturating_sub(unix_now())).unwrap_or(0);
        let valid = Duration::from_secs(left.max(1)).min(MAX_PRESIGN);
        let presigning = PresigningConfig::expires_in(valid)
            .map_err(|e| ProviderError::permanent(SERVICE, e.to_string()))?;
        let request = self
            .client
            .get_object()
            .bucket(&self.config.bucket)
            .key(key)
            .presigned(presigning)
            .await
            .map_err(|e| classify("presign GetObject", e))?;
        Ok(request.uri().to_owned())
    }

    /// When the object at `key` is due: its `expires-at` metadata, or, without one,
    /// `last_modified` plus the retention. `None` when the object is already gone.
    async fn due_at(
        &self,
        key: &str,
        last_modified: Option<&DateTime>,
    ) -> Result<Option<i64>, ProviderError> {
        let head = match self
            .client
            .head_object()
            .bucket(&self.config.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(head) => head,
            Err(error) if error.as_service_error().is_some_and(|e| e.is_not_found()) => {
                return Ok(None);
            }
            Err(error) => return Err(classify("HeadObject", error)),
        };
        let from_meta = head
            .metadata()
            .and_then(|m| m.get(EXPIRES_AT_META))
            .and_then(|v| v.trim().parse::<i64>().ok());
        let retention = i64::try_from(self.config.retention.as_secs()).unwrap_or(i64::MAX);
        Ok(Some(from_meta.unwrap_or_else(|| {
            last_modified
                .or(head.last_modified())
                .map_or(0, DateTime::secs)
                .saturating_add(retention)
        })))
    }
}

#[async_trait]
impl Host for R2 {
    async fn put(&self, request: &HostRequest) -> Result<Hosted, ProviderError> {
        let size = tokio::fs::metadata(&request.path)
            .await
            .map_err(|e| read_error(&request.path, &e))?
            .len();
        let key = self.object_key(&request.key);
        let digest = super::local::sha256_hex(&request.path).await?;
        match self.stored_digest(&key).await? {
            Some(Some(stored)) if stored == digest => {}
            // Something else under our key (another version, or a copy from before
            // digests were kept): replaced.
            Some(_) => {
                self.write(&key, request, size, &digest, false).await?;
            }
            None => {
                if !self.write(&key, request, size, &digest, true).await? {
                    // Another writer got there first: fine if it wrote the same bytes.
                    if self.stored_digest(&key).await?.flatten().as_deref() != Some(&digest) {
                        return Err(ProviderError::retryable(
                            SERVICE,
                            format!(
                                "`{key}` was written by someone else at the same time with other content"
                            ),
                        ));
                    }
                }
            }
        }
        Ok(Hosted {
            location: self.location(&key),
            url: self.presign(&key, request.expires_at).await?,
            expires_at: request.expires_at,
        })
    }

    async fn delete(&self, location: &str) -> Result<(), ProviderError> {
        let key = self.key_of(location)?;
        match self
            .client
            .delete_object()
            .bucket(&self.config.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if error.code() == Some("NoSuchKey") => Ok(()),
            Err(error) => Err(classify("DeleteObject", error)),
        }
    }

    async fn expired(&self, now: i64) -> Result<Vec<String>, ProviderError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.config.bucket)
            .prefix(&self.config.prefix)
            .into_paginator()
            .send();
        let mut due = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify("ListObjectsV2", e))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                if self
                    .due_at(key, object.last_modified())
                    .await?
                    .is_some_and(|at| at <= now)
                {
                    due.push(self.location(key));
                }
            }
        }
        Ok(due)
    }
}

/// A write that did not happen: the key was taken (412 to `If-None-Match: *`), or an error.
enum Refused {
    Taken,
    Error(ProviderError),
}

impl From<ProviderError> for Refused {
    fn from(error: ProviderError) -> Self {
        Self::Error(error)
    }
}

fn refused<E>(operation: &str, error: SdkError<E>) -> Refused
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = error.raw_response().map(|r| r.status().as_u16());
    // 409 is what R2 and S3 answer to a conditional write racing another one.
    if matches!(status, Some(412 | 409)) || error.code() == Some("PreconditionFailed") {
        Refused::Taken
    } else {
        Refused::Error(classify(operation, error))
    }
}

/// Classes an SDK failure: throttling, 5xx and network trouble are worth retrying;
/// other 4xx answers are not, and carry the S3 error code.
fn classify<E>(operation: &str, error: SdkError<E>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &error {
        SdkError::TimeoutError(_) => {
            ProviderError::retryable(SERVICE, format!("{operation} timed out"))
        }
        SdkError::DispatchFailure(failure) => {
            let message = format!(
                "{operation}: cannot reach R2: {}",
                DisplayErrorContext(&error)
            );
            if failure.is_user() {
                ProviderError::permanent(SERVICE, message)
            } else {
                ProviderError::retryable(SERVICE, message)
            }
        }
        // The request went out and its answer could not be read: it may have taken
        // effect. A put reconciles by its HEAD on the next attempt.
        SdkError::ResponseError(_)
            if error.raw_response().is_none_or(|r| r.status().is_success()) =>
        {
            ProviderError::unconfirmed(
                SERVICE,
                format!(
                    "{operation}: the answer was cut off or unreadable: {}",
                    http::Scrubber::from_env().clean(&DisplayErrorContext(&error).to_string())
                ),
            )
        }
        SdkError::ServiceError(_) | SdkError::ResponseError(_) => {
            let status = error
                .raw_response()
                .map_or(0, |response| response.status().as_u16());
            let code = error.code().unwrap_or("unknown");
            // Without an S3 error code (an answer the SDK could not read) the context is
            // the only clue; it names the bucket and key, never the credentials.
            // Server text: scrubbed of every configured credential, then cut.
            let scrubber = http::Scrubber::from_env();
            let detail = match error.message() {
                Some(message) => format!(": {}", scrubber.clean(message)),
                None => format!(
                    ": {}",
                    scrubber.clean(&DisplayErrorContext(&error).to_string())
                ),
            };
            let message = format!("{operation} failed with `{code}` (HTTP {status}){detail}");
            let throttled = matches!(
                code,
                "SlowDown" | "Throttling" | "ThrottlingException" | "RequestTimeout"
            );
            if status == 429 || status >= 500 || status == 0 || throttled {
                ProviderError::retryable(SERVICE, message)
            } else {
                ProviderError::permanent(SERVICE, message)
            }
        }
        _ => ProviderError::permanent(SERVICE, format!("{operation} could not be sent")),
    }
}

fn read_error(path: &Path, error: &dyn std::fmt::Display) -> ProviderError {
    ProviderError::permanent(
        SERVICE,
        format!("cannot read `{}`: {error}", path.display()),
    )
}

/// Checks before spending.
impl R2 {
    /// Whether the endpoint answers and the bucket is there for these credentials (a
    /// `HEAD` on the bucket, which writes nothing). A refused connection or an unknown
    /// host is permanent here: nothing will upload until the setting changes. A timeout
    /// or a 5xx is retryable, a passing outage.
    pub async fn check_bucket(&self) -> Result<(), ProviderError> {
        let bucket = &self.config.bucket;
        match self.client.head_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(()),
            Err(SdkError::TimeoutError(_)) => Err(ProviderError::retryable(
                SERVICE,
                format!("`{}` did not answer in time", self.config.endpoint),
            )),
            Err(SdkError::DispatchFailure(failure)) if failure.is_timeout() => {
                Err(ProviderError::retryable(
                    SERVICE,
                    format!("`{}` did not answer in time", self.config.endpoint),
                ))
            }
            Err(SdkError::DispatchFailure(_)) => Err(ProviderError::permanent(
                SERVICE,
                format!(
                    "cannot reach `{}`; check `R2_ENDPOINT` or `R2_ACCOUNT_ID`",
                    self.config.endpoint
                ),
            )),
            Err(e) => {
                let status = e.raw_response().map_or(0, |r| r.status().as_u16());
                match status {
                    404 => Err(ProviderError::permanent(
                        SERVICE,
                        format!(
                            "there is no bucket `{bucket}` at `{}`",
                            self.config.endpoint
                        ),
                    )),
                    401 | 403 => Err(ProviderError::permanent(
                        SERVICE,
                        format!(
                            "the credentials were refused for bucket `{bucket}` (HTTP {status}); check `R2_ACCESS_KEY_ID` and `R2_SECRET_ACCESS_KEY`"
                        ),
                    )),
                    _ => Err(classify("HeadBucket", e)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r2() -> R2 {
        R2::new(R2Config {
            endpoint: "http://127.0.0.1:9".to_owned(),
            access_key_id: "AK".to_owned(),
            secret_access_key: Secret::new("SK"),
            bucket: "media".to_owned(),
            prefix: R2Config::DEFAULT_PREFIX.to_owned(),
            multipart_threshold: R2Config::DEFAULT_THRESHOLD,
            part_size: R2Config::DEFAULT_THRESHOLD,
            retention: R2Config::DEFAULT_RETENTION,
        })
        .unwrap()
    }

    #[test]
    fn locations_name_the_bucket_and_are_checked_on_the_way_back() {
        let r2 = r2();
        let key = r2.object_key("/space/1.mp4");
        assert_eq!(key, "renders/space/1.mp4");
        let location = r2.location(&key);
        assert_eq!(location, "r2://media/renders/space/1.mp4");
        assert_eq!(r2.key_of(&location).unwrap(), key);
        assert!(r2.key_of("r2://other/renders/x.mp4").is_err());
        assert!(r2.key_of("/tmp/x.mp4").is_err());
        assert!(r2.key_of("r2://media/").is_err());
    }

    #[test]
    fn parts_smaller_than_r2_allows_are_refused() {
        let mut config = r2().config;
        config.part_size = MIN_PART - 1;
        assert_eq!(
            R2::new(config).err(),
            Some(R2ConfigError::PartTooSmall(MIN_PART - 1))
        );
    }
}
