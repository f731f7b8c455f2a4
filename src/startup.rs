//! Binding and serving. Binding is separate from serving so callers (and tests, on port 0) learn the address;
//! connections are served under the bounds of `connections`.

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::connections::Limits;
use crate::services::Ferry;

pub struct Application {
    listener: TcpListener,
    ferry: Ferry,
}

impl Application {
    pub async fn bind(ferry: Ferry) -> std::io::Result<Self> {
        crate::connections::raise_file_limit(ferry.config.max_connections as usize);
        let listener = TcpListener::bind(ferry.config.bind).await?;
        Ok(Self { listener, ferry })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests finish.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let limits = Limits::of(&self.ferry.config);
        let app = crate::http::router(self.ferry);
        crate::connections::serve(self.listener, app, limits, shutdown).await
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
