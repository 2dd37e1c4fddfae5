//! # Vigil server
//!
//! `vigil serve`: Vigil as a long-lived service. Tools and people submit SQL, watch results
//! and manage running queries over a JSON API under `/v1`.
//!
//! - [`ServerConfig`]: address, token and limits, from flags and the environment.
//! - [`Service`]: the engine and the queries it runs.
//! - [`routes`]: the API; [`routes::ROUTES`] is the single list the router and the OpenAPI
//!   document are built from.
//! - A web console at `/`, its files embedded in the binary, reading the same API.
//! - [`ResultHub`](results::ResultHub): each query's rows fanned out to its watchers without
//!   ever waiting for them.
#![warn(missing_docs)]

mod auth;
mod config;
mod console;
mod durable;
mod error;
pub mod queries;
mod restart;
pub mod results;
pub mod routes;
pub mod rules;
mod service;

use std::future::Future;
use std::sync::Arc;

pub use config::ServerConfig;
pub use error::{ApiError, ErrorBody, ServerError};
pub use restart::CatalogRestore;
pub use service::{EngineFactory, STOP_TIMEOUT, Service, StatementResult};

/// A server bound to its address, not yet serving.
pub struct Server {
    listener: tokio::net::TcpListener,
    service: Arc<Service>,
}

impl Server {
    /// Checks the configuration and binds its address.
    pub async fn bind(
        config: ServerConfig,
        new_engine: EngineFactory,
    ) -> Result<Self, ServerError> {
        config.check()?;
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .map_err(|source| ServerError::Io {
                context: format!("binding {}", config.bind),
                source,
            })?;
        Ok(Self {
            listener,
            service: Arc::new(Service::new(config, new_engine)),
        })
    }

    /// The address it listens on (useful with port 0).
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The service, to submit statements before serving (rule files).
    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// Serves until `shutdown` completes; then stops accepting, stops every query cleanly
    /// (flushing its windows and sink) and returns.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let service = Arc::clone(&self.service);
        let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
        let signal_service = Arc::clone(&service);
        // Queries are stopped first: their results streams end, so open connections finish
        // and the graceful shutdown of the HTTP server does not wait on them forever.
        let graceful = async move {
            shutdown.await;
            signal_service.queries.stop_all(STOP_TIMEOUT).await;
            let _ = stopping.send(());
        };
        let app = routes::router(service);
        axum::serve(self.listener, app)
            .with_graceful_shutdown(graceful)
            .await
            .map_err(|source| ServerError::Io {
                context: "serving".into(),
                source,
            })?;
        let _ = stopped.await;
        Ok(())
    }
}
