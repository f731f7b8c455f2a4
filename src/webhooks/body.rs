//! Webhook bodies, read as they stream in under two limits: one body's size (`FERRY_WEBHOOK_MAX_BODY_BYTES`: a
//! larger body is refused without being held) and the memory every body being handled may hold at once
//! (`FERRY_WEBHOOK_BODY_MEMORY_BYTES`: a body waits for its share, so twenty 16 MB files arriving together
//! cannot exhaust the server's memory). A body that cannot get its share in time is answered 503, which every
//! provider retries; one that does not arrive within `FERRY_BODY_READ_TIMEOUT_SECONDS` of its headers (a client
//! that stalls or trickles) is answered 408, and its connection closed.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The budget is counted in KiB.
const UNIT: usize = 1024;
/// What handling a body costs beyond its bytes: the JSON tree holds a copy of every string, an inline file's
/// base64 is copied once more into its message, and then decoded (three quarters of its size).
const HANDLING_FACTOR: usize = 4;
/// How long a body waits for its share of memory before it is answered 503.
const WAIT: Duration = Duration::from_secs(30);
/// What is read and discarded of a refused body at most (bytes, time), so that a client still sending it gets
/// the 413 instead of a connection reset under its feet.
const DRAIN_BYTES: u64 = 64 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct BodyBudget {
    permits: Arc<Semaphore>,
    units: usize,
    max_body: usize,
    wait: Duration,
}

/// A body read whole, holding its share of the budget until dropped.
pub struct Body {
    pub bytes: Bytes,
    _share: Option<OwnedSemaphorePermit>,
}

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Declared (Content-Length) or found larger than the limit; `size` is what is known of it.
    #[error("the body ({size} bytes{more}) exceeds FERRY_WEBHOOK_MAX_BODY_BYTES ({limit})", more = if *.at_least { " or more" } else { "" })]
    TooLarge {
        size: u64,
        at_least: bool,
        limit: usize,
    },
    #[error("too many large webhook bodies are being handled; retry later")]
    Busy,
    #[error("the body could not be read: {0}")]
    Unreadable(String),
    #[error("the body did not arrive within FERRY_BODY_READ_TIMEOUT_SECONDS")]
    TimedOut,
}

impl BodyBudget {
    pub fn new(memory_bytes: usize, max_body: usize) -> Self {
        // One largest body must always fit, or it could never be handled.
        let units = (memory_bytes.max(max_body.saturating_mul(HANDLING_FACTOR)) / UNIT).max(1);
        Self {
            permits: Arc::new(Semaphore::new(units.min(Semaphore::MAX_PERMITS))),
            units,
            max_body,
            wait: WAIT,
        }
    }

    pub fn max_body(&self) -> usize {
        self.max_body
    }

    /// Units of the budget not held by a body now (for tests and metrics).
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }

    fn units_for(&self, bytes: usize) -> u32 {
        let units = (bytes.saturating_mul(HANDLING_FACTOR) / UNIT + 1).min(self.units);
        u32::try_from(units).unwrap_or(u32::MAX)
    }

    async fn share(
        &self,
        units: u32,
        deadline: tokio::time::Instant,
    ) -> Result<OwnedSemaphorePermit, BodyError> {
        tokio::time::timeout_at(deadline, self.permits.clone().acquire_many_owned(units))
            .await
            .map_err(|_| BodyError::Busy)?
            .map_err(|_| BodyError::Busy)
    }

    /// Reads `body` whole: its declared size reserved up front, an undeclared one reserved as it grows.
    pub async fn read(
        &self,
        headers: &HeaderMap,
        body: axum::body::Body,
    ) -> Result<Body, BodyError> {
        let declared = headers
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let too_large = |size, at_least| BodyError::TooLarge {
            size,
            at_least,
            limit: self.max_body,
        };
        if let Some(size) = declared.filter(|&size| size > self.max_body as u64) {
            drain(body.into_data_stream()).await;
            return Err(too_large(size, false));
        }
        let deadline = tokio::time::Instant::now() + self.wait;
        let mut reserved = declared.map_or(64 * UNIT, |size| size as usize);
        let mut share = self.share(self.units_for(reserved), deadline).await?;
        let mut buffer = Vec::with_capacity(declared.unwrap_or(0) as usize);
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                if crate::connections::is_read_timeout(&e) {
                    BodyError::TimedOut
                } else {
                    BodyError::Unreadable(e.to_string())
                }
            })?;
            let size = buffer.len() + chunk.len();
            if size > self.max_body {
                drain(stream).await;
                return Err(too_large(size as u64, true));
            }
            if size > reserved {
                // An undeclared body: double its share as it grows.
                let grown = (reserved * 2).max(size).min(self.max_body);
                (share, reserved) = self.grow(share, grown, deadline).await?;
            }
            buffer.extend_from_slice(&chunk);
        }
        Ok(Body {
            bytes: Bytes::from(buffer),
            _share: Some(share),
        })
    }

    /// The share of a body grown to `bytes`, taken at once when it is free. Otherwise the body gives back what
    /// it holds and waits for a largest body's share: bodies that each held a part while waiting for more could
    /// wait for each other forever.
    async fn grow(
        &self,
        mut share: OwnedSemaphorePermit,
        bytes: usize,
        deadline: tokio::time::Instant,
    ) -> Result<(OwnedSemaphorePermit, usize), BodyError> {
        let more = self
            .units_for(bytes)
            .saturating_sub(share.num_permits() as u32);
        if more == 0 {
            return Ok((share, bytes));
        }
        match self.permits.clone().try_acquire_many_owned(more) {
            Ok(extra) => {
                share.merge(extra);
                Ok((share, bytes))
            }
            Err(_) => {
                drop(share);
                let largest = self.share(self.units_for(self.max_body), deadline).await?;
                Ok((largest, self.max_body))
            }
        }
    }
}

/// Reads and discards what is left of a refused body, within `DRAIN_BYTES` and `DRAIN_TIME`.
async fn drain(mut stream: axum::body::BodyDataStream) {
    let discard = async {
        let mut seen = 0u64;
        while let Some(Ok(chunk)) = stream.next().await {
            seen += chunk.len() as u64;
            if seen > DRAIN_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, discard).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(length: Option<usize>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(n) = length {
            h.insert(axum::http::header::CONTENT_LENGTH, n.into());
        }
        h
    }

    fn chunked_stream(
        parts: usize,
        size: usize,
    ) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        futures::stream::iter((0..parts).map(move |_| Ok(Bytes::from(vec![b'x'; size]))))
    }

    fn chunked(parts: usize, size: usize) -> axum::body::Body {
        axum::body::Body::from_stream(chunked_stream(parts, size))
    }

    #[tokio::test]
    async fn bodies_hold_their_share_until_dropped_and_oversized_ones_are_refused() {
        let budget = BodyBudget::new(1024 * 1024, 200 * 1024);
        let all = budget.available();
        let body = budget
            .read(&headers(Some(100 * 1024)), chunked(100, 1024))
            .await
            .unwrap();
        assert_eq!(body.bytes.len(), 100 * 1024);
        assert!(
            budget.available() <= all - 300,
            "a declared body reserves its handling up front"
        );
        drop(body);
        assert_eq!(budget.available(), all);

        let undeclared = budget
            .read(&headers(None), chunked(150, 1024))
            .await
            .unwrap();
        assert_eq!(undeclared.bytes.len(), 150 * 1024);
        assert!(budget.available() < all - 150);
        drop(undeclared);

        let err = budget
            .read(&headers(Some(300 * 1024)), chunked(1, 1))
            .await
            .err()
            .unwrap();
        assert!(
            matches!(err, BodyError::TooLarge { size, at_least: false, .. } if size == 300 * 1024),
            "{err}"
        );
        let err = budget
            .read(&headers(None), chunked(300, 1024))
            .await
            .err()
            .unwrap();
        assert!(
            matches!(err, BodyError::TooLarge { at_least: true, .. }),
            "{err}"
        );
        assert_eq!(budget.available(), all, "a refused body holds nothing");
    }

    #[tokio::test]
    async fn undeclared_bodies_growing_together_never_wait_for_each_other() {
        // Room for one largest body only; two chunked bodies grow at once. Each waiting while holding a part
        // of the budget would leave both waiting until the deadline.
        let budget = BodyBudget {
            wait: Duration::from_secs(5),
            ..BodyBudget::new(0, 256 * 1024)
        };
        let all = budget.available();
        // Chunks arriving one at a time, so that both bodies are growing at once; each body is handled (and
        // dropped) as soon as it is read, as a request is.
        let interleaved = || {
            axum::body::Body::from_stream(chunked_stream(250, 1024).then(|chunk| async move {
                tokio::task::yield_now().await;
                chunk
            }))
        };
        let read = || async {
            budget
                .read(&headers(None), interleaved())
                .await
                .map(|body| body.bytes.len())
        };
        let (a, b) = tokio::join!(read(), read());
        assert_eq!((a.unwrap(), b.unwrap()), (250 * 1024, 250 * 1024));
        assert_eq!(budget.available(), all, "every share given back");
    }

    #[tokio::test]
    async fn a_body_waits_for_memory_then_gives_up_busy() {
        // Room for one 200 KiB body's handling at a time.
        let budget = BodyBudget {
            wait: Duration::from_millis(100),
            ..BodyBudget::new(600 * 1024, 200 * 1024)
        };
        let first = budget
            .read(&headers(Some(200 * 1024)), chunked(200, 1024))
            .await
            .unwrap();
        let err = budget
            .read(&headers(Some(200 * 1024)), chunked(200, 1024))
            .await
            .err()
            .unwrap();
        assert!(matches!(err, BodyError::Busy), "{err}");
        drop(first);
        assert!(
            budget
                .read(&headers(Some(200 * 1024)), chunked(200, 1024))
                .await
                .is_ok()
        );
    }
}
