//! Objects in S3: raw and processed buckets (or one bucket with both prefixes).

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use weir_core::backend::{BackendError, ObjectStore};

use crate::error::backend_error;

/// Objects larger than this go up in parts.
pub const MULTIPART_THRESHOLD: usize = 16 << 20;
/// The size of each part but the last (S3's minimum is 5 MiB).
pub const PART_SIZE: usize = 8 << 20;

/// PUTs of one `put_all` in flight at once.
const PUTS_IN_FLIGHT: usize = 64;

/// Server-side encryption of written objects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Encryption {
    /// The bucket's default.
    #[default]
    BucketDefault,
    /// SSE-S3 (AES-256), as the seed's buckets.
    Aes256,
    /// SSE-KMS, with a key id or alias (or the AWS-managed key).
    Kms(Option<String>),
}

/// Objects by key in S3. A key's first segment is its stage (`raw/…`,
/// `processed/…`); each stage has its bucket (the same bucket for both is
/// fine), and the key is kept whole inside it, as the seed's
/// `s3://bucket/raw/event_type=…` layout.
#[derive(Debug, Clone)]
pub struct S3ObjectStore {
    client: Client,
    raw_bucket: String,
    processed_bucket: String,
    /// Any other first segment (`dead-letters/…`).
    other_bucket: String,
    encryption: Encryption,
}

impl S3ObjectStore {
    pub fn new(
        client: Client,
        raw_bucket: impl Into<String>,
        processed_bucket: impl Into<String>,
        encryption: Encryption,
    ) -> Self {
        let raw_bucket = raw_bucket.into();
        Self {
            client,
            other_bucket: raw_bucket.clone(),
            raw_bucket,
            processed_bucket: processed_bucket.into(),
            encryption,
        }
    }

    /// The bucket a key lives in.
    pub fn bucket_of(&self, key: &str) -> &str {
        match key.split('/').next() {
            Some("raw") => &self.raw_bucket,
            Some("processed") => &self.processed_bucket,
            _ => &self.other_bucket,
        }
    }

    /// The keys under `prefix` in one bucket; by `level`, only one level
    /// down, with the deeper levels as their prefixes.
    async fn list_bucket(
        &self,
        bucket: &str,
        prefix: &str,
        level: bool,
    ) -> Result<Vec<String>, BackendError> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_delimiter(level.then(|| "/".to_owned()))
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| backend_error(format!("listing s3://{bucket}/{prefix}"), e))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            keys.extend(
                page.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix().map(str::to_owned)),
            );
            token = page.next_continuation_token().map(str::to_owned);
            if token.is_none() {
                return Ok(keys);
            }
        }
    }

    /// The keys under `prefix` (or its level) in every bucket they can be
    /// in: the one the prefix routes to, when it names its first segment.
    async fn list_buckets(&self, prefix: &str, level: bool) -> Result<Vec<String>, BackendError> {
        let mut buckets = Vec::new();
        if prefix.contains('/') {
            buckets.push(self.bucket_of(prefix));
        } else {
            for bucket in [&self.raw_bucket, &self.processed_bucket, &self.other_bucket] {
                if !buckets.contains(&bucket.as_str()) {
                    buckets.push(bucket);
                }
            }
        }
        let mut keys = Vec::new();
        for bucket in buckets {
            for key in self.list_bucket(bucket, prefix, level).await? {
                // A key listed in a bucket it does not route to is not ours.
                if self.bucket_of(&key) == bucket {
                    keys.push(key);
                }
            }
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    async fn put_multipart(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
    ) -> Result<(), BackendError> {
        let what = || format!("writing s3://{bucket}/{key} in parts");
        let mut create = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key);
        create = match &self.encryption {
            Encryption::BucketDefault => create,
            Encryption::Aes256 => create.server_side_encryption(ServerSideEncryption::Aes256),
            Encryption::Kms(id) => create
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .set_ssekms_key_id(id.clone()),
        };
        let upload = create.send().await.map_err(|e| backend_error(what(), e))?;
        let upload_id = upload
            .upload_id()
            .ok_or_else(|| BackendError::retryable(what(), "S3 gave no upload id"))?
            .to_owned();
        let mut parts = Vec::new();
        let result: Result<(), BackendError> = async {
            for (i, chunk) in body.chunks(PART_SIZE).enumerate() {
                let number = i as i32 + 1;
                let part = self
                    .client
                    .upload_part()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .body(ByteStream::from(chunk.to_vec()))
                    .send()
                    .await
                    .map_err(|e| backend_error(what(), e))?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(part.e_tag().map(str::to_owned))
                        .build(),
                );
            }
            self.client
                .complete_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| backend_error(what(), e))?;
            Ok(())
        }
        .await;
        if result.is_err() {
            // Parts of an abandoned upload are billed until aborted.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }
}

impl ObjectStore for S3ObjectStore {
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), BackendError> {
        let bucket = self.bucket_of(key).to_owned();
        if body.len() > MULTIPART_THRESHOLD {
            return self.put_multipart(&bucket, key, body).await;
        }
        let mut put = self
            .client
            .put_object()
            .bucket(&bucket)
            .key(key)
            .content_type("application/x-ndjson")
            .body(ByteStream::from(body));
        put = match &self.encryption {
            Encryption::BucketDefault => put,
            Encryption::Aes256 => put.server_side_encryption(ServerSideEncryption::Aes256),
            Encryption::Kms(id) => put
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .set_ssekms_key_id(id.clone()),
        };
        put.send()
            .await
            .map_err(|e| backend_error(format!("writing s3://{bucket}/{key}"), e))?;
        Ok(())
    }

    /// Concurrently, 64 at most (`PUTS_IN_FLIGHT`): a batch's objects are
    /// independent PUTs (a service catching up writes several batches'
    /// objects at once, hundreds of them).
    async fn put_all(&self, objects: Vec<(String, Vec<u8>)>) -> Result<(), BackendError> {
        let mut tasks = tokio::task::JoinSet::new();
        let mut first_error = None;
        let mut note = |done: Result<Result<(), BackendError>, tokio::task::JoinError>| {
            let result = done
                .map_err(|e| BackendError::retryable("writing objects", e.to_string()))
                .and_then(|r| r);
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        };
        for (key, body) in objects {
            if tasks.len() >= PUTS_IN_FLIGHT
                && let Some(done) = tasks.join_next().await
            {
                note(done);
            }
            let store = self.clone();
            tasks.spawn(async move { store.put(&key, body).await });
        }
        while let Some(done) = tasks.join_next().await {
            note(done);
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        let bucket = self.bucket_of(key);
        let what = || format!("reading s3://{bucket}/{key}");
        match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(object) => {
                let bytes = object
                    .body
                    .collect()
                    .await
                    .map_err(|e| BackendError::retryable(what(), e))?;
                Ok(Some(bytes.into_bytes().to_vec()))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(backend_error(what(), e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, BackendError> {
        self.list_buckets(prefix, false).await
    }

    /// S3's listing with a delimiter, in the one bucket a level below a
    /// stage routes to.
    async fn list_level(&self, prefix: &str) -> Result<Vec<String>, BackendError> {
        self.list_buckets(prefix, true).await
    }

    async fn delete(&self, key: &str) -> Result<(), BackendError> {
        let bucket = self.bucket_of(key);
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| backend_error(format!("deleting s3://{bucket}/{key}"), e))?;
        Ok(())
    }
}
