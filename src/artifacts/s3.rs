//! The artifact store on S3 (R2 in production, any S3-compatible service): the shared
//! copy behind the local folder, which stays as a cache (ffmpeg needs local files).
//!
//! ```text
//! <prefix><stage>/<key>/manifest.json   written once (`If-None-Match: *`): the entry
//! <prefix><stage>/<key>/blobs/<sha256>  its files, by content
//! <prefix>effects/<key>.json            the side-effect ledger; the first intent is a claim
//! <prefix>jobs/<job-id>.json            finished jobs
//! ```
//!
//! Files go up by content before the manifest that names them, so a manifest is never
//! seen before its files; two writers of one entry race on the manifest alone, and the
//! loser takes the winner's entry. Every download is checked against the manifest's
//! digests before it is used.

use std::path::Path;
use std::str::FromStr;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;

use super::ArtifactError;
use crate::secret::Secret;

/// `--artifacts s3://bucket/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    /// Empty, or ending in `/`.
    pub prefix: String,
}

impl FromStr for S3Url {
    type Err = ArtifactError;

    fn from_str(text: &str) -> Result<Self, ArtifactError> {
        let rest = text
            .strip_prefix("s3://")
            .ok_or_else(|| ArtifactError::BadUrl(crate::store::scrub(text)))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(ArtifactError::BadUrl(crate::store::scrub(text)));
        }
        let prefix = prefix.trim_matches('/');
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
        })
    }
}

impl std::fmt::Display for S3Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// The object [`Remote::honours_create_only`] writes.
const PROBE: &str = ".factory/create-only-probe";

/// A bucket and prefix, with a client.
#[derive(Debug, Clone)]
pub struct Remote {
    client: aws_sdk_s3::Client,
    url: S3Url,
    /// Whether the service honours create-only writes, once probed.
    create_only: std::sync::Arc<tokio::sync::OnceCell<bool>>,
}

/// The first variable of `names` that is set.
fn first_var(names: &[&'static str]) -> Option<Secret> {
    names.iter().find_map(|n| Secret::from_env(n))
}

impl Remote {
    /// The endpoint from `R2_ENDPOINT` (or `R2_ACCOUNT_ID`) or `AWS_ENDPOINT_URL`, the
    /// keys from `R2_ACCESS_KEY_ID` / `R2_SECRET_ACCESS_KEY` or their `AWS_` names.
    pub fn from_env(url: S3Url) -> Result<Self, ArtifactError> {
        let endpoint = match (
            first_var(&["R2_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]),
            Secret::from_env("R2_ACCOUNT_ID"),
        ) {
            (Some(endpoint), _) => endpoint.expose().to_owned(),
            (None, Some(account)) => {
                format!("https://{}.r2.cloudflarestorage.com", account.expose())
            }
            (None, None) => {
                return Err(ArtifactError::Config(
                    "no S3 endpoint: set `R2_ENDPOINT` (or `R2_ACCOUNT_ID`, or `AWS_ENDPOINT_URL`)"
                        .to_owned(),
                ));
            }
        };
        let key = first_var(&["R2_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"]).ok_or_else(|| {
            ArtifactError::Config(
                "no S3 access key: set `R2_ACCESS_KEY_ID` (or `AWS_ACCESS_KEY_ID`)".to_owned(),
            )
        })?;
        let secret =
            first_var(&["R2_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"]).ok_or_else(|| {
                ArtifactError::Config(
                    "no S3 secret key: set `R2_SECRET_ACCESS_KEY` (or `AWS_SECRET_ACCESS_KEY`)"
                        .to_owned(),
                )
            })?;
        Ok(Self::new(url, &endpoint, key.expose(), &secret))
    }

    pub fn new(url: S3Url, endpoint: &str, access_key_id: &str, secret: &Secret) -> Self {
        Self {
            client: crate::providers::r2::client(endpoint, access_key_id, secret),
            url,
            create_only: std::sync::Arc::default(),
        }
    }

    pub fn url(&self) -> &S3Url {
        &self.url
    }

    fn key(&self, relative: &str) -> String {
        format!("{}{relative}", self.url.prefix)
    }

    fn failed(&self, relative: &str, message: impl std::fmt::Display) -> ArtifactError {
        ArtifactError::Remote {
            location: format!("s3://{}/{}", self.url.bucket, self.key(relative)),
            message: message.to_string(),
        }
    }

    /// An object's bytes; `None` when there is none.
    pub async fn get(&self, relative: &str) -> Result<Option<Vec<u8>>, ArtifactError> {
        let got = self
            .client
            .get_object()
            .bucket(&self.url.bucket)
            .key(self.key(relative))
            .send()
            .await;
        match got {
            Ok(out) => {
                let bytes = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| self.failed(relative, e))?;
                Ok(Some(bytes.into_bytes().to_vec()))
            }
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(self.failed(relative, describe(&e))),
        }
    }

    /// Writes an object; with `create_only`, only when there is none yet (`If-None-Match:
    /// *`). `false` when the service refused because one is there.
    pub async fn put(
        &self,
        relative: &str,
        body: ByteStream,
        create_only: bool,
    ) -> Result<bool, ArtifactError> {
        self.send_put(relative, body, create_only).await
    }

    /// Whether the service honours create-only writes. The effect ledger's first intent
    /// is a claim that only one runner may win; a service that ignores `If-None-Match`
    /// lets two runners both win it. Probed once per process: one object written
    /// create-only twice, where the second must be refused.
    pub async fn honours_create_only(&self) -> Result<bool, ArtifactError> {
        let honoured = self
            .create_only
            .get_or_try_init(|| async {
                self.send_put(PROBE, ByteStream::from_static(b"probe"), true)
                    .await?;
                let again = self
                    .send_put(PROBE, ByteStream::from_static(b"probe"), true)
                    .await?;
                Ok::<_, ArtifactError>(!again)
            })
            .await?;
        Ok(*honoured)
    }

    /// Where the create-only probe is written.
    pub fn probe_location(&self) -> String {
        format!("s3://{}/{}", self.url.bucket, self.key(PROBE))
    }

    async fn send_put(
        &self,
        relative: &str,
        body: ByteStream,
        create_only: bool,
    ) -> Result<bool, ArtifactError> {
        let put = self
            .client
            .put_object()
            .bucket(&self.url.bucket)
            .key(self.key(relative))
            .set_if_none_match(create_only.then(|| "*".to_owned()))
            .body(body)
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(e) if create_only && is_taken(&e) => Ok(false),
            Err(e) => Err(self.failed(relative, describe(&e))),
        }
    }

    pub async fn put_file(
        &self,
        relative: &str,
        path: &Path,
        create_only: bool,
    ) -> Result<bool, ArtifactError> {
        let body = ByteStream::from_path(path)
            .await
            .map_err(|e| self.failed(relative, e))?;
        self.put(relative, body, create_only).await
    }

    /// Whether an object is there.
    pub async fn exists(&self, relative: &str) -> Result<bool, ArtifactError> {
        let head = self
            .client
            .head_object()
            .bucket(&self.url.bucket)
            .key(self.key(relative))
            .send()
            .await;
        match head {
            Ok(_) => Ok(true),
            Err(e) if is_missing(&e) => Ok(false),
            Err(e) => Err(self.failed(relative, describe(&e))),
        }
    }

    pub async fn delete(&self, relative: &str) -> Result<(), ArtifactError> {
        self.client
            .delete_object()
            .bucket(&self.url.bucket)
            .key(self.key(relative))
            .send()
            .await
            .map_err(|e| self.failed(relative, describe(&e)))?;
        Ok(())
    }

    /// The keys below `relative` (a folder), relative to the prefix.
    pub async fn list(&self, relative: &str) -> Result<Vec<String>, ArtifactError> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.url.bucket)
                .prefix(self.key(relative))
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| self.failed(relative, describe(&e)))?;
            for object in page.contents() {
                if let Some(key) = object.key() {
                    keys.push(key[self.url.prefix.len()..].to_owned());
                }
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => return Ok(keys),
            }
        }
    }
}

fn status<E>(e: &SdkError<E>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

fn is_missing<E: ProvideErrorMetadata>(e: &SdkError<E>) -> bool {
    status(e) == Some(404) || matches!(e.code(), Some("NoSuchKey" | "NotFound"))
}

/// The service refused a create-only write: the object is there (412), or another write
/// of it is in flight (409, R2 and S3 alike).
fn is_taken<E: ProvideErrorMetadata>(e: &SdkError<E>) -> bool {
    matches!(status(e), Some(412 | 409)) || e.code() == Some("PreconditionFailed")
}

fn describe<E: std::error::Error + 'static>(e: &SdkError<E>) -> String {
    aws_sdk_s3::error::DisplayErrorContext(e).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_s3_url_names_a_bucket_and_a_prefix() {
        let url: S3Url = "s3://media/factory/artifacts/".parse().unwrap();
        assert_eq!(url.bucket, "media");
        assert_eq!(url.prefix, "factory/artifacts/");
        let bare: S3Url = "s3://media".parse().unwrap();
        assert_eq!(bare.prefix, "");
        assert!("s3:///x".parse::<S3Url>().is_err());
        assert!("/tmp/x".parse::<S3Url>().is_err());
    }
}
