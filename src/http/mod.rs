//! The HTTP API: a thin adapter over `services` and `store`. Each resource module exposes `router()`.

mod accounts;
mod conversations;
mod cutover;
pub mod error;
pub mod extract;
mod health;
mod inboxes;
mod integrations;
pub(crate) mod migrations;
pub mod openapi;
pub mod params;
mod webhooks;

pub use webhooks::LEGACY_INSTANCE_HEADER;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tower_http::trace::TraceLayer;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::services::Ferry;
use crate::store::Page;
use error::ApiError;

/// `/api/v1` with its OpenAPI document: every route is registered together with its description.
fn api() -> OpenApiRouter<Ferry> {
    let v1 = OpenApiRouter::new()
        .merge(accounts::router())
        .merge(inboxes::router())
        .merge(conversations::router())
        .merge(migrations::router())
        .merge(integrations::router())
        .merge(cutover::router());
    OpenApiRouter::with_openapi(openapi::base()).nest("/api/v1", v1)
}

/// The document served at `/api/openapi.json` and printed by `ferry openapi`.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    openapi::finish(api().split_for_parts().1)
}

pub fn router(ferry: Ferry) -> Router {
    let max_body = ferry.config.max_body_bytes;
    let (api, doc) = api().split_for_parts();
    Router::new()
        .merge(api)
        // Swagger UI is compiled into the binary (`vendored`); it reads the document from the same server.
        .merge(SwaggerUi::new("/api/docs").url("/api/openapi.json", openapi::finish(doc)))
        .merge(health::router())
        .merge(webhooks::router())
        .merge(crate::web::router())
        // Only matched routes: their template is the label (unmatched paths would be unbounded).
        .route_layer(axum::middleware::from_fn(crate::metrics::track_http))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not accept that method",
            )
        })
        .layer(DefaultBodyLimit::max(max_body))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(ferry)
}

/// A request's span names its route template, never its URI: webhook URIs hold their secret token.
fn request_span(req: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |path| path.as_str());
    tracing::debug_span!("request", method = %req.method(), route)
}

/// `?limit=&before=`: keyset pagination, newest first.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Rows per page, 1 to 200; default 25.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `meta.next_before` of the previous page: rows with a smaller id.
    pub before: Option<i64>,
}

impl PageQuery {
    pub fn page(&self) -> Result<Page, ApiError> {
        let limit = self.limit.unwrap_or(25);
        if !(1..=Page::MAX_LIMIT).contains(&limit) {
            return Err(ApiError::validation(
                "limit",
                format!("must be between 1 and {}", Page::MAX_LIMIT),
            ));
        }
        Ok(Page {
            before: self.before,
            limit,
        })
    }
}

/// A page of a listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct Listing<T> {
    pub data: Vec<T>,
    pub meta: ListingMeta,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ListingMeta {
    pub limit: i64,
    /// Pass as `before` to get the next page; null on the last page.
    pub next_before: Option<i64>,
}

impl<T> Listing<T> {
    pub fn new(data: Vec<T>, page: Page, id_of: impl Fn(&T) -> i64) -> Self {
        let next_before = (data.len() as i64 == page.limit)
            .then(|| data.last().map(&id_of))
            .flatten();
        Self {
            data,
            meta: ListingMeta {
                limit: page.limit,
                next_before,
            },
        }
    }
}
