//! The OpenAPI document, built from the handlers' annotations: served at
//! `/v1/openapi.json` and kept in `docs/openapi.json` (a test fails when they differ;
//! `UPDATE_OPENAPI=1 cargo test --test it http_api::openapi` rewrites the file).

use super::{AppState, inbound, jobs, leads, outbox, suppressions};
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
        .routes(routes!(
            suppressions::list,
            suppressions::add,
            suppressions::remove
        ))
        .routes(routes!(jobs::list))
        .routes(routes!(jobs::pause))
        .routes(routes!(jobs::resume))
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

/// The document, with the answers every route may give besides its own (described once,
/// in `components.responses`): 421 `WrongHost` (a `Host` that is not `[http] public_url`'s)
/// and, on routes that need the token, 429 `TooManyFailures` (too many wrong tokens from
/// the client's address).
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::openapi::{
        Ref, RefOr, ResponseBuilder, content::ContentBuilder, header::HeaderBuilder,
    };
    let mut api = routes().split_for_parts().1;
    let error = || {
        ContentBuilder::new()
            .schema(Some(RefOr::Ref(Ref::from_schema_name("ErrorBody"))))
            .build()
    };
    let components = api.components.get_or_insert_with(Default::default);
    components.responses.insert(
        "WrongHost".into(),
        ResponseBuilder::new()
            .description("`Host` is neither [http] public_url's host nor an IP address")
            .content("application/json", error())
            .build()
            .into(),
    );
    components.responses.insert(
        "TooManyFailures".into(),
        ResponseBuilder::new()
            .description(
                "too many wrong tokens from this address: try again after Retry-After seconds",
            )
            .header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(Some(utoipa::openapi::schema::Object::with_type(
                        utoipa::openapi::schema::Type::Integer,
                    )))
                    .description(Some("seconds to wait"))
                    .build(),
            )
            .content("application/json", error())
            .build()
            .into(),
    );
    for item in api.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            let responses = &mut op.responses.responses;
            responses
                .entry("421".into())
                .or_insert_with(|| RefOr::Ref(Ref::from_response_name("WrongHost")));
            if op.security.is_some() {
                responses
                    .entry("429".into())
                    .or_insert_with(|| RefOr::Ref(Ref::from_response_name("TooManyFailures")));
            }
        }
    }
    api
}

/// `GET /v1/openapi.json`.
pub async fn serve() -> axum::response::Response {
    axum::Json(openapi()).into_response()
}
