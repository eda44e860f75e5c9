//! The OpenAPI document, built from the handlers' annotations: served at
//! `/v1/openapi.json` and kept in `docs/openapi.json` (a test fails when they differ;
//! `UPDATE_OPENAPI=1 cargo test --test http_api openapi` rewrites the file).

use super::{AppState, inbound, leads, outbox};
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The API's routes with their descriptions.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(base())
        .routes(routes!(leads::import, leads::list))
        .routes(routes!(leads::show))
        .routes(routes!(leads::replied))
        .routes(routes!(leads::block))
        .routes(routes!(leads::unblock))
        .routes(routes!(leads::retry))
        .routes(routes!(leads::event))
        .routes(routes!(inbound::inbound))
        .routes(routes!(outbox::list))
        .routes(routes!(outbox::ack))
        .routes(routes!(outbox::status))
}

fn base() -> utoipa::openapi::OpenApi {
    use utoipa::openapi::{InfoBuilder, OpenApiBuilder};
    let mut api = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("fluidtalk-runner")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "The runner's HTTP API: leads, replies, events, the inbound relay and the outbox. \
                     Every route needs `Authorization: Bearer <FLUIDTALK_RUNNER_TOKEN>`. Errors are \
                     `{\"error\": {\"kind\", \"message\", \"field\"?, \"index\"?}}`.",
                ))
                .build(),
        )
        .build();
    let components = api.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    api
}

/// The document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

/// `GET /v1/openapi.json`.
pub async fn serve() -> axum::response::Response {
    axum::Json(openapi()).into_response()
}
