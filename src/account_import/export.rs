//! The export directory (`FERRY_LEGACY_EXPORT_DIR`): `accounts.json`, `channels/<ref>.json`,
//! `threads/<ref>.jsonl`, `messages/<thread_id>.jsonl` (ordered by `sk`) and `media/…`. Cursors are byte
//! offsets into the JSON-lines files, so a page reads only its own lines.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::Deserialize;

use super::source::*;

pub struct ExportSource {
    root: PathBuf,
}

#[derive(Deserialize)]
struct ExportAccount {
    account_id: String,
}

impl ExportSource {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `name` as one path component (ids come from the data; they must not walk out of the directory).
    fn file(&self, dir: &str, name: &str, ext: &str) -> Result<PathBuf, SourceError> {
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(SourceError::Invalid(format!(
                "{name:?} cannot name a file in the export"
            )));
        }
        Ok(self.root.join(dir).join(format!("{name}.{ext}")))
    }

    async fn all_threads(&self, legacy_ref: &str) -> Result<Vec<LegacyThread>, SourceError> {
        Ok(
            read_lines(self.file("threads", legacy_ref, "jsonl")?, 0, usize::MAX)
                .await?
                .0,
        )
    }
}

fn unreadable(path: &Path, e: impl std::fmt::Display) -> SourceError {
    SourceError::Unavailable(format!("cannot read {}: {e}", path.display()))
}

/// Up to `limit` items from byte `offset`; the next offset, or None at the end of the file. A missing file
/// holds nothing.
async fn read_lines<T: serde::de::DeserializeOwned + Send + 'static>(
    path: PathBuf,
    offset: u64,
    limit: usize,
) -> Result<(Vec<T>, Option<u64>), SourceError> {
    tokio::task::spawn_blocking(move || {
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), None)),
            Err(e) => return Err(unreadable(&path, e)),
        };
        let mut reader = BufReader::new(file);
        reader
            .seek(SeekFrom::Start(offset))
            .map_err(|e| unreadable(&path, e))?;
        let mut items = Vec::new();
        let mut at = offset;
        let mut line = String::new();
        while items.len() < limit {
            line.clear();
            let n = reader
                .read_line(&mut line)
                .map_err(|e| unreadable(&path, e))?;
            if n == 0 {
                return Ok((items, None));
            }
            at += n as u64;
            if line.trim().is_empty() {
                continue;
            }
            items.push(serde_json::from_str(&line).map_err(|e| {
                SourceError::Invalid(format!("{} at byte {}: {e}", path.display(), at - n as u64))
            })?);
        }
        // Exactly at the end: say so now rather than with an empty page.
        let more = reader
            .fill_buf()
            .map(|b| !b.is_empty())
            .map_err(|e| unreadable(&path, e))?;
        Ok((items, more.then_some(at)))
    })
    .await
    .map_err(|e| SourceError::Unavailable(format!("reader task: {e}")))?
}

fn offset_of(cursor: Option<&str>) -> Result<u64, SourceError> {
    cursor
        .map(|c| {
            c.parse()
                .map_err(|_| SourceError::Invalid(format!("not an export cursor: {c:?}")))
        })
        .transpose()
        .map(Option::unwrap_or_default)
}

#[async_trait]
impl LegacySource for ExportSource {
    fn kind(&self) -> &'static str {
        "export"
    }

    async fn account_exists(&self, legacy_ref: &str) -> Result<bool, SourceError> {
        let path = self.root.join("accounts.json");
        let text = tokio::fs::read_to_string(&path)
            .await
            .map_err(|e| unreadable(&path, e))?;
        let accounts: Vec<ExportAccount> = serde_json::from_str(&text)
            .map_err(|e| SourceError::Invalid(format!("{}: {e}", path.display())))?;
        Ok(accounts.iter().any(|a| a.account_id == legacy_ref))
    }

    async fn channels(&self, legacy_ref: &str) -> Result<ConfigsAnswer, SourceError> {
        let path = self.file("channels", legacy_ref, "json")?;
        let text = tokio::fs::read_to_string(&path)
            .await
            .map_err(|e| unreadable(&path, e))?;
        serde_json::from_str(&text)
            .map_err(|e| SourceError::Invalid(format!("{}: {e}", path.display())))
    }

    async fn recent_threads_page(
        &self,
        legacy_ref: &str,
        since_secs: i64,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<LegacyThread>, SourceError> {
        // The index's order: newest activity first (ties by thread id, for a stable resume).
        let mut threads: Vec<LegacyThread> = self
            .all_threads(legacy_ref)
            .await?
            .into_iter()
            .filter(|t| t.last_message_at >= since_secs)
            .collect();
        threads.sort_by(|a, b| {
            (b.last_message_at, &a.thread_id).cmp(&(a.last_message_at, &b.thread_id))
        });
        let skip = offset_of(cursor)? as usize;
        let items: Vec<_> = threads.iter().skip(skip).take(limit).cloned().collect();
        let end = skip + items.len();
        Ok(Page {
            next: (end < threads.len()).then(|| end.to_string()),
            items,
        })
    }

    async fn threads_page(
        &self,
        legacy_ref: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<LegacyThread>, SourceError> {
        let (items, next) = read_lines(
            self.file("threads", legacy_ref, "jsonl")?,
            offset_of(cursor)?,
            limit,
        )
        .await?;
        Ok(Page {
            items,
            next: next.map(|n| n.to_string()),
        })
    }

    async fn messages_page(
        &self,
        thread_id: &str,
        cursor: Option<&str>,
        limit: usize,
        newest_first: bool,
    ) -> Result<Page<LegacyMessage>, SourceError> {
        let path = self.file("messages", thread_id, "jsonl")?;
        if !newest_first {
            let (items, next) = read_lines(path, offset_of(cursor)?, limit).await?;
            return Ok(Page {
                items,
                next: next.map(|n| n.to_string()),
            });
        }
        let (mut all, _) = read_lines::<LegacyMessage>(path, 0, usize::MAX).await?;
        all.reverse();
        let skip = offset_of(cursor)? as usize;
        let items: Vec<_> = all.iter().skip(skip).take(limit).cloned().collect();
        let end = skip + items.len();
        Ok(Page {
            next: (end < all.len()).then(|| end.to_string()),
            items,
        })
    }

    async fn media(&self, url: &str) -> Result<(Vec<u8>, Option<String>), MediaError> {
        let relative = url
            .strip_prefix("file://")
            .ok_or_else(|| MediaError::Invalid(format!("not an export media URL: {url}")))?;
        if relative.split(['/', '\\']).any(|part| part == "..") || relative.starts_with('/') {
            return Err(MediaError::Invalid(format!(
                "media URL outside the export: {url}"
            )));
        }
        match tokio::fs::read(self.root.join(relative)).await {
            Ok(bytes) => Ok((bytes, None)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(MediaError::Missing),
            Err(e) => Err(MediaError::Unavailable(e.to_string())),
        }
    }
}
