//! The OpenAPI document of `/api/v1`: each handler describes itself with `#[utoipa::path]` and is
//! registered through `utoipa_axum::routes!`, so a route cannot exist without its documentation. `finish`
//! adds what every operation shares: the two ways to authenticate and the error answers of the extractors.

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, ResponseBuilder};
use utoipa::{OpenApi as _, ToSchema};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "ferry",
        description = "Moves WhatsApp-like customer conversations without losing a message: inbox migration, \
                       token webhook routing and on-demand account import. Every route is scoped to the path's \
                       account and checked against the caller's role in it; errors always have the shape \
                       `{\"error\": {\"code\", \"message\", \"details\"?}}`.",
        license(name = "MIT")
    ),
    security(("api_access_token" = []), ("bearer" = [])),
    components(schemas(ErrorBody, ErrorDetail)),
    tags(
        (name = "accounts", description = "The account and its on-demand import from the legacy system"),
        (name = "inboxes", description = "Inboxes (channels) of an account"),
        (name = "conversations", description = "Contacts, conversations and messages, newest first"),
        (name = "inbox migrations", description = "Moving one inbox's history into another, administrators only"),
        (name = "integrations", description = "Provider connections and their secret webhook tokens, administrators only"),
        (name = "legacy cut-over", description = "From by-instance-name webhook routing to tokens, installation administrators only"),
    )
)]
struct ApiDoc;

/// Every error answer.
#[derive(serde::Serialize, ToSchema)]
#[allow(dead_code)] // Documentation of `ApiError`'s JSON, which is built by hand.
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(serde::Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    /// A stable snake_case code, e.g. `not_found`, `validation_failed`, `invalid_token`.
    #[schema(example = "not_found")]
    code: String,
    /// A sentence for people.
    #[schema(example = "inbox not found")]
    message: String,
    /// More about the error where it helps, e.g. `{"field": "limit"}`.
    #[schema(value_type = Option<Object>)]
    details: Option<serde_json::Value>,
}

/// The document's skeleton: info, security schemes, tags, the error schema.
pub fn base() -> OpenApi {
    let mut doc = ApiDoc::openapi();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "api_access_token",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "api_access_token",
            "A user's API token (`ferry users token`), the Chatwoot convention",
        ))),
    );
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "The same API token as `Authorization: Bearer <token>`",
                ))
                .build(),
        ),
    );
    doc
}

/// Adds the answers every operation can give, unless the operation describes them itself.
pub fn finish(mut doc: OpenApi) -> OpenApi {
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.post,
            &mut item.patch,
            &mut item.put,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            shared_errors(op);
        }
    }
    doc
}

fn shared_errors(op: &mut Operation) {
    let has_params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
    let has_body = op.request_body.is_some();
    let has_query =
        op.parameters.iter().flatten().any(
            |p| matches!(p, utoipa::openapi::RefOr::T(p) if p.parameter_in == ParameterIn::Query),
        );
    let mut add = |status: &str, description: &str| {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| error_response(description).into());
    };
    add(
        "401",
        "No API token (`unauthorized`) or one that is not valid (`invalid_token`)",
    );
    if has_params {
        add(
            "400",
            "A path or query parameter of the wrong type (`invalid_path`, `invalid_query`)",
        );
        add(
            "404",
            "No such account for this user, or no such record in it (`not_found`)",
        );
    }
    if has_query {
        add(
            "422",
            "A query parameter out of its range (`validation_failed`)",
        );
    }
    if has_body {
        add("400", "The body is not JSON (`malformed_json`)");
        add(
            "413",
            "The body is larger than `FERRY_MAX_BODY_BYTES` (`payload_too_large`)",
        );
        add(
            "415",
            "The body was not sent as `application/json` (`unsupported_media_type`)",
        );
        add(
            "422",
            "Unknown fields, wrong types or values out of range (`validation_failed`)",
        );
    }
    add(
        "500",
        "Something failed on the server (`internal_error`); the cause is in its log",
    );
}

pub fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_operation_documents_authentication_failures_and_its_errors() {
        let doc = crate::http::openapi_document();
        let mut operations = 0;
        for (path, item) in &doc.paths.paths {
            assert!(path.starts_with("/api/v1/"), "{path}");
            for op in [&item.get, &item.post, &item.patch].into_iter().flatten() {
                operations += 1;
                let codes: Vec<&str> = op.responses.responses.keys().map(String::as_str).collect();
                assert!(codes.contains(&"401"), "{path}: {codes:?}");
                assert!(
                    codes.iter().any(|c| c.starts_with('2')),
                    "{path}: {codes:?}"
                );
                assert!(op.operation_id.is_some(), "{path}");
                assert!(op.tags.as_ref().is_some_and(|t| !t.is_empty()), "{path}");
                if op.request_body.is_some() {
                    assert!(codes.contains(&"422"), "{path}: {codes:?}");
                }
            }
        }
        assert!(operations >= 30, "only {operations} operations documented");
    }

    #[test]
    fn the_committed_document_is_the_one_the_code_serves() {
        let committed: serde_json::Value =
            serde_json::from_str(include_str!("../../docs/openapi.json")).unwrap();
        let current = serde_json::to_value(crate::http::openapi_document()).unwrap();
        assert!(
            committed == current,
            "docs/openapi.json differs from the handlers' documentation: run \
             `cargo run -- openapi > docs/openapi.json` and commit it"
        );
    }

    #[test]
    fn names_are_unique_so_nothing_is_documented_twice_or_lost() {
        let doc = crate::http::openapi_document();
        let mut ids = std::collections::HashSet::new();
        for item in doc.paths.paths.values() {
            for op in [&item.get, &item.post, &item.patch].into_iter().flatten() {
                let id = op.operation_id.clone().unwrap_or_default();
                assert!(ids.insert(id.clone()), "operation id {id} twice");
            }
        }
        // Two request bodies of one name would be one schema: every body referenced must describe its own fields.
        let text = serde_json::to_string(&doc).unwrap();
        for name in [
            "CreateInboxBody",
            "CreateMigrationBody",
            "CreateIntegrationBody",
        ] {
            assert!(
                text.contains(&format!("#/components/schemas/{name}")),
                "{name}"
            );
        }
    }
}
