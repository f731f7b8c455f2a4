//! The attachment store: blobs by content address (`ab/cd/<sha256>`) under a root folder. Rows reference
//! blobs by key, so moving a message never copies its attachments.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Debug, Clone)]
pub struct AttachmentStore {
    root: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    pub storage_key: String,
    pub checksum: String,
    pub byte_size: i64,
}

impl AttachmentStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes `bytes` once; writing the same content again is a no-op. The file is written to a temporary
    /// name and renamed, so a reader never sees half a blob.
    pub async fn put(&self, bytes: &[u8]) -> std::io::Result<StoredBlob> {
        let checksum = hex::encode(Sha256::digest(bytes));
        let storage_key = format!("{}/{}/{}", &checksum[..2], &checksum[2..4], checksum);
        let path = self.root.join(&storage_key);
        if tokio::fs::try_exists(&path).await? {
            return Ok(StoredBlob {
                storage_key,
                checksum,
                byte_size: bytes.len() as i64,
            });
        }
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let tmp = path.with_extension(format!("tmp{}", rand::random::<u32>()));
        tokio::fs::write(&tmp, bytes).await?;
        tokio::fs::rename(&tmp, &path).await?;
        Ok(StoredBlob {
            storage_key,
            checksum,
            byte_size: bytes.len() as i64,
        })
    }

    pub async fn get(&self, storage_key: &str) -> std::io::Result<Vec<u8>> {
        if storage_key.contains("..") || storage_key.starts_with('/') {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "bad storage key",
            ));
        }
        tokio::fs::read(self.root.join(storage_key)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn content_addressed_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let store = AttachmentStore::new(dir.path());
        let a = store.put(b"hello").await.unwrap();
        let b = store.put(b"hello").await.unwrap();
        assert_eq!(a, b);
        assert_eq!(a.byte_size, 5);
        assert_eq!(store.get(&a.storage_key).await.unwrap(), b"hello");
        assert_ne!(
            store.put(b"other").await.unwrap().storage_key,
            a.storage_key
        );
        assert!(store.get("../secret.key").await.is_err());
    }
}
