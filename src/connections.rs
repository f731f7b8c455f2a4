//! Serving HTTP/1 connections under bounds, so that idle or slow clients exhaust neither the file descriptors
//! nor the health checks (issue 17):
//!
//! - at most `FERRY_MAX_CONNECTIONS` connections are served in full;
//! - past them, a reserve of [`RESERVE`] more answers `/healthz` and `/readyz` and 503 `busy` to everything
//!   else, one request each; when the reserve is full too, its oldest connection that has not sent a request
//!   yet makes room for the new one (a probe sends its request at once; an idle client does not);
//! - anything beyond is closed as soon as it is accepted;
//! - a request's headers must arrive within `FERRY_HEADER_READ_TIMEOUT_SECONDS` (also how long an idle
//!   keep-alive connection stays open), its body within `FERRY_BODY_READ_TIMEOUT_SECONDS` of them.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};
use tower::ServiceExt;
use tower_http::timeout::{DeadlineBody, TimeoutError};

use crate::config::Config;
use crate::http::error::ApiError;

/// Connections past `FERRY_MAX_CONNECTIONS` that still answer health checks.
pub const RESERVE: usize = 32;

/// Descriptors the process needs besides its client connections: database pools, attachment files, Redis,
/// outbound requests.
const OTHER_FILES: usize = 256;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
}

impl Limits {
    pub fn of(config: &Config) -> Self {
        Self {
            max_connections: config.max_connections as usize,
            header_read_timeout: Duration::from_secs(config.header_read_timeout_seconds),
            body_read_timeout: Duration::from_secs(config.body_read_timeout_seconds),
        }
    }
}

/// Whether reading a body failed because its client did not send it within `FERRY_BODY_READ_TIMEOUT_SECONDS`
/// (anywhere in the error's chain of sources).
pub fn is_read_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<TimeoutError>() {
            return true;
        }
        next = e.source();
    }
    false
}

/// Raises the soft limit of open files to the hard limit (many systems start services at 1024, far below what
/// they allow), and warns when even that leaves too little room for `max_connections` and the reserve.
pub fn raise_file_limit(max_connections: usize) {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit only read and write the struct passed; RLIMIT_NOFILE is valid.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return;
            }
            if limit.rlim_cur < limit.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: limit.rlim_max,
                    rlim_max: limit.rlim_max,
                };
                // Refused on some systems (macOS, for an unlimited hard limit): the soft limit stays.
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit = raised;
                }
            }
        }
        let needed = (max_connections + RESERVE + OTHER_FILES) as libc::rlim_t;
        if limit.rlim_cur < needed {
            tracing::warn!(
                open_files = limit.rlim_cur,
                needed,
                "the open-file limit is below FERRY_MAX_CONNECTIONS plus what ferry needs besides; \
                 raise it (LimitNOFILE=, ulimit -n) or lower FERRY_MAX_CONNECTIONS"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = max_connections;
}

/// Accepts and serves connections until `shutdown` resolves; then stops accepting, lets every connection
/// finish its request in flight, and returns once all are closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let reserve = Reserve::new(RESERVE);
    // `stopping` tells connections to finish; every connection holds a receiver of `open` until it ends.
    let (stopping_tx, stopping) = watch::channel(false);
    let (open_tx, open) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let access = match slots.clone().try_acquire_owned() {
            Ok(slot) => Access::Full(slot),
            Err(_) => match reserve.enter() {
                Some(place) => {
                    crate::metrics::connection_past_cap("reserve");
                    Access::HealthOnly(place)
                }
                None => {
                    crate::metrics::connection_past_cap("closed");
                    drop(stream);
                    continue;
                }
            },
        };
        let connection = Connection {
            app: app.clone(),
            peer,
            limits,
            stopping: stopping.clone(),
            _open: open.clone(),
        };
        tokio::spawn(connection.serve(stream, access));
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    drop(open);
    open_tx.closed().await;
    Ok(())
}

/// A failed accept: the client gave up already (nothing to do), or the process is out of file descriptors or
/// memory, which only time cures: a pause, so that the loop does not spin.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed; pausing");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

enum Access {
    /// One of the `FERRY_MAX_CONNECTIONS`, held until the connection closes.
    Full(OwnedSemaphorePermit),
    /// A place in the reserve: health checks only, one request.
    HealthOnly(Place),
}

struct Connection {
    app: Router,
    peer: SocketAddr,
    limits: Limits,
    stopping: watch::Receiver<bool>,
    /// Dropped when the connection ends: the server waits for every one at shutdown.
    _open: watch::Receiver<()>,
}

impl Connection {
    async fn serve(mut self, stream: TcpStream, access: Access) {
        let _ = stream.set_nodelay(true);
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout);
        // Held until the connection ends.
        let (_slot, health_only, evicted) = match access {
            Access::Full(slot) => (Some(slot), None, None),
            Access::HealthOnly(mut place) => {
                builder.keep_alive(false);
                let evicted = place.evicted.take();
                (None, Some(Arc::new(place)), evicted)
            }
        };
        let (app, peer, limits) = (self.app.clone(), self.peer, self.limits);
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let mut request =
                request.map(|body| Body::new(DeadlineBody::new(limits.body_read_timeout, body)));
            // The peer's address throttles sign-in guesses when no trusted proxy names the client.
            request.extensions_mut().insert(ConnectInfo(peer));
            let (app, health_only) = (app.clone(), health_only.clone());
            async move {
                let Some(place) = health_only else {
                    return app.oneshot(request).await;
                };
                place.serving();
                let mut response = if matches!(request.uri().path(), "/healthz" | "/readyz") {
                    app.oneshot(request).await?
                } else {
                    busy()
                };
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                Ok::<_, Infallible>(response)
            }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(connection);
        let evicted = async {
            match evicted {
                // A dropped sender means the connection's request arrived: it is no longer evictable.
                Some(evicted) => {
                    if evicted.await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::pin!(evicted);
        let mut finishing = false;
        loop {
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(e) = served {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    break;
                }
                _ = self.stopping.wait_for(|stopping| *stopping), if !finishing => {
                    finishing = true;
                    connection.as_mut().graceful_shutdown();
                }
                // Its place went to a newer connection: closed without an answer, as it asked nothing yet.
                () = &mut evicted => break,
            }
        }
    }
}

/// The answer to everything but health checks on a connection past the cap.
fn busy() -> Response {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "busy",
        "the server is at its connection limit (FERRY_MAX_CONNECTIONS); retry later",
    )
    .into_response()
}

/// The reserve's places: connections waiting for their request, oldest first, and how many are serving one.
struct Reserve {
    capacity: usize,
    state: Arc<Mutex<ReserveState>>,
}

#[derive(Default)]
struct ReserveState {
    next_id: u64,
    waiting: VecDeque<(u64, oneshot::Sender<()>)>,
    serving: usize,
}

/// A connection's place in the reserve, given back when dropped.
struct Place {
    id: u64,
    state: Arc<Mutex<ReserveState>>,
    /// Resolves when a newer connection took this place while it had not sent a request.
    evicted: Option<oneshot::Receiver<()>>,
    is_serving: AtomicBool,
}

impl Reserve {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            state: Arc::default(),
        }
    }

    /// A place for a new connection: a free one, or the one of the oldest connection still waiting to send its
    /// request (that one is closed). None when every place is serving a request.
    fn enter(&self) -> Option<Place> {
        let mut state = self.state.lock().expect("not poisoned");
        if state.waiting.len() + state.serving >= self.capacity {
            let (_, oldest) = state.waiting.pop_front()?;
            let _ = oldest.send(());
        }
        let id = state.next_id;
        state.next_id += 1;
        let (evict, evicted) = oneshot::channel();
        state.waiting.push_back((id, evict));
        Some(Place {
            id,
            state: self.state.clone(),
            evicted: Some(evicted),
            is_serving: AtomicBool::new(false),
        })
    }
}

impl ReserveState {
    /// Takes `id` off the waiting list; false when it is not there (it was evicted).
    fn leave_waiting(&mut self, id: u64) -> bool {
        match self.waiting.iter().position(|(waiting, _)| *waiting == id) {
            Some(at) => {
                self.waiting.remove(at);
                true
            }
            None => false,
        }
    }
}

impl Place {
    /// Its request arrived: no longer a candidate for eviction.
    fn serving(&self) {
        let mut state = self.state.lock().expect("not poisoned");
        if state.leave_waiting(self.id) {
            state.serving += 1;
            self.is_serving.store(true, Ordering::SeqCst);
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut state = self.state.lock().expect("not poisoned");
        if *self.is_serving.get_mut() {
            state.serving -= 1;
        } else {
            state.leave_waiting(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_makes_room_by_closing_its_oldest_idle_connection() {
        let reserve = Reserve::new(2);
        let mut first = reserve.enter().unwrap();
        let second = reserve.enter().unwrap();
        second.serving();
        let mut third = reserve.enter().expect("the idle first one makes room");
        assert!(first.evicted.as_mut().unwrap().try_recv().is_ok());
        drop(first);
        third.serving();
        assert!(third.evicted.as_mut().unwrap().try_recv().is_err());
        assert!(reserve.enter().is_none(), "both places serve a request");
        drop(second);
        assert!(
            reserve.enter().is_some(),
            "a finished request frees its place"
        );
    }

    #[tokio::test]
    async fn a_body_that_stalls_past_its_deadline_is_a_read_timeout() {
        let stalled = Body::from_stream(futures::stream::pending::<Result<Vec<u8>, Infallible>>());
        let body = Body::new(DeadlineBody::new(Duration::from_millis(10), stalled));
        let error = axum::body::to_bytes(body, usize::MAX).await.unwrap_err();
        assert!(is_read_timeout(&error), "{error}");
        assert!(!is_read_timeout(&axum::Error::new("reset by peer")));
    }
}
