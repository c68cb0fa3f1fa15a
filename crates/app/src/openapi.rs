//! The OpenAPI document: each domain crate's fragment, merged, plus what every route
//! shares (the bearer scheme, `X-Request-Id`, rate-limit headers, the 500 answer).

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ObjectBuilder, RefOr, ResponseBuilder, Type};
use utoipa::{Modify, OpenApi};

use synctalk_kernel::error::{ErrorBody, ErrorResponse};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "SyncTalk",
        description = "A real-time chat backend. REST under `/api/v1`; every error has the shape \
`{\"error\": {\"code\", \"message\", \"fields\"?, \"retry_after_ms\"?}}` (codes in the README). \
Authenticate with `Authorization: Bearer <access_token>` from register, login or refresh.",
        license(name = "MIT"),
        contact(name = "SyncTalk maintainers")
    ),
    servers((url = "/", description = "The server that serves this document")),
    paths(routes::health, routes::ready, routes::metrics, routes::openapi_json),
    components(schemas(ErrorResponse, ErrorBody, routes::Health)),
    modifiers(&Shared),
    tags((name = "app", description = "Health, readiness, metrics and this document"))
)]
struct AppApi;

/// The whole document, as served at `/api/v1/openapi.json` and committed in
/// `openapi/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = AppApi::openapi();
    doc.merge(synctalk_auth::AuthApi::openapi());
    doc.merge(synctalk_users::UsersApi::openapi());
    doc.merge(synctalk_guilds::GuildsApi::openapi());
    doc.merge(synctalk_channels::ChannelsApi::openapi());
    doc.merge(synctalk_messaging::MessagingApi::openapi());
    doc.merge(synctalk_notifications::NotificationsApi::openapi());
    Shared.modify(&mut doc);
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// The document as committed: pretty JSON with a final newline.
pub fn document_json() -> String {
    let mut text = document()
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".to_owned());
    text.push('\n');
    text
}

struct Shared;

impl Modify for Shared {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        for (path, item) in doc.paths.paths.iter_mut() {
            let api = path.starts_with("/api/v1");
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
                &mut item.head,
                &mut item.options,
                &mut item.trace,
            ]
            .into_iter()
            .flatten()
            {
                decorate(op, api);
            }
        }
    }
}

fn header(description: &str, schema: Type) -> RefOr<utoipa::openapi::header::Header> {
    RefOr::T(
        HeaderBuilder::new()
            .schema(Some(ObjectBuilder::new().schema_type(schema)))
            .description(Some(description))
            .build(),
    )
}

fn decorate(op: &mut Operation, api: bool) {
    let error_ref = RefOr::Ref(utoipa::openapi::Ref::from_schema_name("ErrorResponse"));
    let mut standard = vec![(
        "500",
        "Internal error: no details, see the logs under the X-Request-Id",
    )];
    // A required JSON body (an optional one, read as raw bytes, takes any type).
    if op.request_body.as_ref().is_some_and(
        |b| matches!(b, RefOr::T(b) if b.required == Some(utoipa::openapi::Required::True)),
    ) {
        standard.push((
            "413",
            "`payload_too_large`: the body is larger than the limit",
        ));
        standard.push((
            "415",
            "`unsupported_media_type`: the body must be `application/json`",
        ));
    }
    for (status, description) in standard {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| {
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(error_ref.clone()))
                            .build(),
                    )
                    .into()
            });
    }
    for response in op.responses.responses.values_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        response.headers.insert(
            "X-Request-Id".to_owned(),
            header("Identifies the request in the logs", Type::String),
        );
        if api {
            response.headers.insert(
                "X-RateLimit-Limit".to_owned(),
                header(
                    "Requests allowed per window (the bucket size)",
                    Type::Integer,
                ),
            );
            response.headers.insert(
                "X-RateLimit-Remaining".to_owned(),
                header("Requests left in the bucket", Type::Integer),
            );
            response.headers.insert(
                "X-RateLimit-Reset-After".to_owned(),
                header("Seconds until the bucket is full again", Type::Number),
            );
        }
    }
    for status in ["429", "503"] {
        if let Some(RefOr::T(response)) = op.responses.responses.get_mut(status) {
            response.headers.insert(
                "Retry-After".to_owned(),
                header("Seconds to wait before retrying", Type::Integer),
            );
        }
    }
}
