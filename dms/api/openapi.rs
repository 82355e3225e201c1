//! `GET /openapi.json`: the OpenAPI document, generated from the handlers' own annotations
//! (`utoipa`) by the router that serves them (`utoipa-axum`, see [`super::router`]): a route
//! exists only as an annotated handler registered there, so the document cannot miss one.
//! [`ApiDoc`] holds what is not per route (info, security scheme, tags, shared schemas);
//! `tests/it/api_read.rs` checks that everything documented is served.

use axum::Json;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "DMS",
        description = "Market-data maintenance service: OHLCV bars for backtests. \
            Reads need `Authorization: Bearer <read or admin token>` when a read token is \
            configured; mutating endpoints need the admin token when one is configured.",
    ),
    components(schemas(super::error::ErrorBody, super::error::ErrorDetail)),
    modifiers(&Bearer),
    tags(
        (name = "read", description = "Bars and what is known about them"),
        (name = "ops", description = "Health, metrics, cache, this document"),
        (name = "write", description = "Changing data (admin token)"),
    ),
)]
pub struct ApiDoc;

/// Declares the `bearer` security scheme the paths refer to.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The OpenAPI document of this API.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "ops",
    responses(
        (status = 200, description = "OpenAPI 3 document", content_type = "application/json", body = Object),
        (status = 401, description = "A read token is configured and none was sent", body = super::error::ErrorBody),
        (status = 403, description = "The token is not accepted", body = super::error::ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub async fn openapi_json(
    axum::extract::State(state): axum::extract::State<super::AppState>,
) -> Response {
    Json(state.openapi()).into_response()
}
