//! The attachment store: blobs by content address (`ab/cd/<sha256>`) in an object store — a local folder by
//! default (`DATA_DIR/attachments`), any S3-compatible bucket with `FERRY_ATTACHMENTS_URL=s3://bucket/prefix`.
//! Rows reference blobs by key, so moving a message never copies its attachments, and every node of a
//! deployment reads the same bucket.

use std::sync::Arc;

use object_store::ObjectStoreExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use sha2::{Digest, Sha256};

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum AttachmentsError {
    #[error("FERRY_ATTACHMENTS_URL must be s3://bucket[/prefix] or file:///path, not {0}")]
    UnsupportedUrl(String),
    #[error("cannot open the attachment store {url}: {source}")]
    Open {
        url: String,
        source: object_store::Error,
    },
    #[error("cannot create the attachment folder {path}: {source}")]
    Folder {
        path: String,
        source: std::io::Error,
    },
}

#[derive(Clone)]
pub struct AttachmentStore {
    store: Arc<dyn ObjectStore>,
    /// Key prefix inside the bucket (empty for a folder).
    prefix: String,
    /// Where blobs go, for logs and `config show` (no credentials).
    location: String,
}

impl std::fmt::Debug for AttachmentStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachmentStore")
            .field("location", &self.location)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    pub storage_key: String,
    pub checksum: String,
    pub byte_size: i64,
}

impl AttachmentStore {
    /// A local folder (created if missing).
    pub fn local(root: impl AsRef<std::path::Path>) -> Result<Self, AttachmentsError> {
        let root = root.as_ref();
        std::fs::create_dir_all(root).map_err(|source| AttachmentsError::Folder {
            path: root.display().to_string(),
            source,
        })?;
        let store =
            LocalFileSystem::new_with_prefix(root).map_err(|source| AttachmentsError::Open {
                url: root.display().to_string(),
                source,
            })?;
        Ok(Self {
            store: Arc::new(store),
            prefix: String::new(),
            location: root.display().to_string(),
        })
    }

    /// The store the configuration names: `FERRY_ATTACHMENTS_URL`, else the data directory's folder.
    pub fn from_config(config: &Config) -> Result<Self, AttachmentsError> {
        let Some(url) = config.attachments_url.as_deref().map(str::trim) else {
            return Self::local(config.attachments_dir());
        };
        if let Some(path) = url.strip_prefix("file://") {
            return Self::local(path);
        }
        let Some(rest) = url.strip_prefix("s3://") else {
            return Err(AttachmentsError::UnsupportedUrl(url.to_owned()));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(AttachmentsError::UnsupportedUrl(url.to_owned()));
        }
        // Credentials and region from the usual AWS_* variables unless ferry's own say otherwise.
        let s3 = &config.s3;
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(endpoint) = &s3.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                // S3-compatible servers (MinIO, moto, Ceph) address buckets by path.
                .with_virtual_hosted_style_request(false);
        }
        if let Some(region) = &s3.region {
            builder = builder.with_region(region);
        }
        if let (Some(id), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key) {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        let store = builder.build().map_err(|source| AttachmentsError::Open {
            url: url.to_owned(),
            source,
        })?;
        Ok(Self {
            store: Arc::new(store),
            prefix: prefix.trim_matches('/').to_owned(),
            location: url.to_owned(),
        })
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    fn path(&self, storage_key: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(storage_key)
        } else {
            ObjectPath::from(format!("{}/{storage_key}", self.prefix))
        }
    }

    /// Writes `bytes` once; writing the same content again is a no-op. Puts are atomic in every backend
    /// (a staged file renamed in a folder, one PUT in a bucket), so a reader never sees half a blob.
    pub async fn put(&self, bytes: &[u8]) -> std::io::Result<StoredBlob> {
        let checksum = hex::encode(Sha256::digest(bytes));
        let storage_key = format!("{}/{}/{}", &checksum[..2], &checksum[2..4], checksum);
        let blob = StoredBlob {
            storage_key,
            checksum,
            byte_size: bytes.len() as i64,
        };
        let path = self.path(&blob.storage_key);
        match self.store.head(&path).await {
            Ok(_) => return Ok(blob),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(std::io::Error::other(e)),
        }
        self.store
            .put(&path, PutPayload::from(bytes.to_vec()))
            .await
            .map_err(std::io::Error::other)?;
        Ok(blob)
    }

    pub async fn get(&self, storage_key: &str) -> std::io::Result<Vec<u8>> {
        let got = self.open(storage_key).await?;
        Ok(got.bytes().await.map_err(std::io::Error::other)?.to_vec())
    }

    /// The blob as a stream of chunks, for a response that need not hold it whole.
    pub async fn stream(
        &self,
        storage_key: &str,
    ) -> std::io::Result<
        impl futures::Stream<Item = std::io::Result<axum::body::Bytes>> + Send + 'static,
    > {
        use futures::TryStreamExt;
        let got = self.open(storage_key).await?;
        Ok(got.into_stream().map_err(std::io::Error::other))
    }

    async fn open(&self, storage_key: &str) -> std::io::Result<object_store::GetResult> {
        if storage_key.contains("..") || storage_key.starts_with('/') {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "bad storage key",
            ));
        }
        self.store
            .get(&self.path(storage_key))
            .await
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => {
                    std::io::Error::new(std::io::ErrorKind::NotFound, e)
                }
                other => std::io::Error::other(other),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn content_addressed_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let store = AttachmentStore::local(dir.path()).unwrap();
        let a = store.put(b"hello").await.unwrap();
        let b = store.put(b"hello").await.unwrap();
        assert_eq!(a, b);
        assert_eq!(a.byte_size, 5);
        assert_eq!(store.get(&a.storage_key).await.unwrap(), b"hello");
        assert!(
            dir.path().join(&a.storage_key).exists(),
            "kept as a plain file"
        );
        assert_ne!(
            store.put(b"other").await.unwrap().storage_key,
            a.storage_key
        );
        assert!(store.get("../secret.key").await.is_err());
        let missing = store.get("00/00/0000").await.unwrap_err();
        assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn only_s3_and_file_urls_are_understood() {
        let mut config = Config::for_data_dir("/tmp/ferry-attachments-test");
        config.attachments_url = Some("gs://bucket/x".into());
        assert!(matches!(
            AttachmentStore::from_config(&config),
            Err(AttachmentsError::UnsupportedUrl(_))
        ));
        config.attachments_url = Some("s3://".into());
        assert!(AttachmentStore::from_config(&config).is_err());
    }
}
