//! The OpenAPI document against the running app: every documented operation exists, and real answers have the
//! documented shape (no field missing, none undocumented, types as said).

use ferry::domain::ChannelType;
use serde_json::{Value, json};

use crate::helpers::{Db, inbox_of, seeded, spawn_app};

pub async fn the_document_matches_the_routes_and_the_answers(db: Db) {
    let app = spawn_app(db).await;
    let (status, doc) = app.get("/api/openapi.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        doc,
        serde_json::to_value(ferry::http::openapi_document()).unwrap()
    );

    // Every documented operation is routed with its method: without a token it asks for one (401), where an
    // undocumented or mistyped path would answer 404 and a wrong method 405.
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .split('/')
            .map(|s| if s.starts_with('{') { "1" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        for method in item.as_object().unwrap().keys() {
            let method: reqwest::Method = method.to_uppercase().parse().unwrap();
            let response = app
                .client
                .request(method.clone(), format!("{}{concrete}", app.base))
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 401, "{method} {path}");
            operations += 1;
        }
    }
    assert!(operations >= 30, "{operations}");

    let (report, token) = seeded(&app, 12, 0.3).await;
    let raw_token = token.clone();
    let token = Some(token.as_str());
    let account = report.account_id;
    let source = inbox_of(&report, ChannelType::Evolution);
    let destination = inbox_of(&report, ChannelType::WhatsappCloud);
    let (_, conversations) = app
        .get(
            &format!("/api/v1/accounts/{account}/inboxes/{source}/conversations"),
            token,
        )
        .await;
    let conversation = conversations["data"][0]["id"].as_i64().unwrap();
    let (status, integration) = app
        .post_json(
            &format!("/api/v1/accounts/{account}/integrations"),
            token,
            &json!({"inbox_id": destination, "provider": "whatsapp_cloud", "phone_number_id": "1234",
                    "app_secret": "s3cret", "verify_token": "v"}),
        )
        .await;
    assert_eq!(status, 201, "{integration}");
    let integration = integration["id"].as_i64().unwrap();
    let (status, migration) = app
        .post_json(
            &format!("/api/v1/accounts/{account}/inboxes/{source}/migrations"),
            token,
            &json!({"destination_inbox_id": destination}),
        )
        .await;
    assert_eq!(status, 201, "{migration}");
    let migration = migration["id"].as_i64().unwrap();

    let a = format!("/api/v1/accounts/{account}");
    let m = format!("{a}/inboxes/{source}/migrations");
    let mut checked = 0;
    for (method, path, template, body) in [
        ("get", a.clone(), "/api/v1/accounts/{account_id}", None),
        (
            "get",
            format!("{a}/migration-status"),
            "/api/v1/accounts/{account_id}/migration-status",
            None,
        ),
        (
            "get",
            format!("{a}/check-migration-status"),
            "/api/v1/accounts/{account_id}/check-migration-status",
            None,
        ),
        (
            "get",
            format!("{a}/inboxes"),
            "/api/v1/accounts/{account_id}/inboxes",
            None,
        ),
        (
            "get",
            format!("{a}/inboxes/{source}"),
            "/api/v1/accounts/{account_id}/inboxes/{inbox_id}",
            None,
        ),
        (
            "patch",
            format!("{a}/inboxes/{source}"),
            "/api/v1/accounts/{account_id}/inboxes/{inbox_id}",
            Some(json!({"phone_number": null})),
        ),
        (
            "post",
            format!("{a}/inboxes"),
            "/api/v1/accounts/{account_id}/inboxes",
            Some(json!({"name": "Email", "channel_type": "email"})),
        ),
        (
            "get",
            format!("{a}/contacts?limit=5"),
            "/api/v1/accounts/{account_id}/contacts",
            None,
        ),
        (
            "get",
            format!("{a}/inboxes/{source}/conversations"),
            "/api/v1/accounts/{account_id}/inboxes/{inbox_id}/conversations",
            None,
        ),
        (
            "get",
            format!("{a}/conversations/{conversation}"),
            "/api/v1/accounts/{account_id}/conversations/{conversation_id}",
            None,
        ),
        (
            "get",
            format!("{a}/conversations/{conversation}/messages"),
            "/api/v1/accounts/{account_id}/conversations/{conversation_id}/messages",
            None,
        ),
        (
            "get",
            m.clone(),
            "/api/v1/accounts/{account_id}/inboxes/{inbox_id}/migrations",
            None,
        ),
        (
            "post",
            m.clone(),
            "/api/v1/accounts/{account_id}/inboxes/{inbox_id}/migrations",
            Some(json!({"destination_inbox_id": destination, "dry_run": true})),
        ),
        (
            "get",
            format!("{m}/preview?destination_inbox_id={destination}"),
            "/api/v1/accounts/{account_id}/inboxes/{inbox_id}/migrations/preview",
            None,
        ),
        (
            "get",
            format!("{m}/eligible_destinations"),
            "/api/v1/accounts/{account_id}/inboxes/{inbox_id}/migrations/eligible_destinations",
            None,
        ),
        (
            "get",
            format!("{m}/{migration}"),
            "/api/v1/accounts/{account_id}/inboxes/{inbox_id}/migrations/{id}",
            None,
        ),
        (
            "post",
            format!("{m}/{migration}/cancel"),
            "/api/v1/accounts/{account_id}/inboxes/{inbox_id}/migrations/{id}/cancel",
            None,
        ),
        (
            "post",
            format!("{m}/{migration}/retry"),
            "/api/v1/accounts/{account_id}/inboxes/{inbox_id}/migrations/{id}/retry",
            None,
        ),
        (
            "get",
            format!("{a}/integrations"),
            "/api/v1/accounts/{account_id}/integrations",
            None,
        ),
        (
            "get",
            format!("{a}/integrations/{integration}"),
            "/api/v1/accounts/{account_id}/integrations/{id}",
            None,
        ),
        (
            "post",
            format!("{a}/integrations/{integration}/reveal"),
            "/api/v1/accounts/{account_id}/integrations/{id}/reveal",
            None,
        ),
        (
            "post",
            format!("{a}/integrations/{integration}/rotate"),
            "/api/v1/accounts/{account_id}/integrations/{id}/rotate",
            Some(json!({"overlap_seconds": 60})),
        ),
        (
            "post",
            format!("{a}/integrations/{integration}/disable"),
            "/api/v1/accounts/{account_id}/integrations/{id}/disable",
            None,
        ),
        // Answers of other statuses are documented too.
        (
            "get",
            format!("{a}/inboxes/999999"),
            "/api/v1/accounts/{account_id}/inboxes/{inbox_id}",
            None,
        ),
        (
            "get",
            format!("{a}/contacts?limit=0"),
            "/api/v1/accounts/{account_id}/contacts",
            None,
        ),
        (
            "post",
            m.clone(),
            "/api/v1/accounts/{account_id}/inboxes/{inbox_id}/migrations",
            Some(json!({"destination_inbox_id": source})),
        ),
    ] {
        let mut request = app
            .client
            .request(
                method.to_uppercase().parse().unwrap(),
                format!("{}{path}", app.base),
            )
            .header("api_access_token", &raw_token);
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16().to_string();
        let answer: Value = response.json().await.unwrap();
        let operation = &doc["paths"][template][method];
        let documented = &operation["responses"][&status];
        assert!(
            documented.is_object(),
            "{method} {path} answered {status}, which is not documented: {answer}"
        );
        let schema = &documented["content"]["application/json"]["schema"];
        let problems = check(&doc, schema, &answer, "$");
        assert!(
            problems.is_empty(),
            "{method} {path} ({status}) differs from its documentation:\n{}\n{answer:#}",
            problems.join("\n")
        );
        checked += 1;
    }
    assert_eq!(checked, 26);

    let response = app
        .client
        .get(format!("{}/api/docs/", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("swagger-ui"));
    // Served from the binary: the page needs nothing from the internet.
    let script = app
        .client
        .get(format!("{}/api/docs/swagger-ui-bundle.js", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), 200);
    assert!(script.text().await.unwrap().len() > 100_000);
}

/// The differences between `value` and `schema`: missing required fields, fields the schema does not name, and
/// wrong types. Covers what utoipa emits: `$ref`, `allOf`, `oneOf`, `type` (one or a list), `properties`,
/// `required`, `items`, `enum`.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str) -> Vec<String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/");
        return check(doc, &doc["components"]["schemas"][name], value, at);
    }
    if let Some(any) = schema["oneOf"].as_array().or(schema["anyOf"].as_array()) {
        return if any.iter().any(|s| check(doc, s, value, at).is_empty()) {
            Vec::new()
        } else {
            vec![format!(
                "{at}: {value} fits none of {}",
                Value::Array(any.clone())
            )]
        };
    }
    let mut problems = Vec::new();
    let mut named: Vec<String> = Vec::new();
    let mut parts = vec![schema.clone()];
    if let Some(all) = schema["allOf"].as_array() {
        parts.extend(all.iter().map(|s| resolve(doc, s)));
    }
    for part in &parts {
        if let Some(props) = part["properties"].as_object() {
            named.extend(props.keys().cloned());
        }
    }
    for part in &parts {
        if let Some(types) = types_of(part) {
            let kind = match value {
                Value::Null => "null",
                Value::Bool(_) => "boolean",
                Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
                Value::Number(_) => "number",
                Value::String(_) => "string",
                Value::Array(_) => "array",
                Value::Object(_) => "object",
            };
            let fits = types
                .iter()
                .any(|t| t == kind || (t == "number" && kind == "integer"));
            if !fits {
                problems.push(format!("{at}: {kind} where the schema says {types:?}"));
                continue;
            }
        }
        if let Some(allowed) = part["enum"].as_array()
            && !allowed.contains(value)
        {
            problems.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
        if let (Some(items), Some(array)) = (part.get("items"), value.as_array()) {
            for (i, v) in array.iter().enumerate() {
                problems.extend(check(doc, items, v, &format!("{at}[{i}]")));
            }
        }
        if let (Some(props), Some(object)) = (part["properties"].as_object(), value.as_object()) {
            for required in part["required"].as_array().into_iter().flatten() {
                let key = required.as_str().unwrap();
                if !object.contains_key(key) {
                    problems.push(format!("{at}.{key}: required but missing"));
                }
            }
            for (key, v) in object {
                if let Some(s) = props.get(key) {
                    problems.extend(check(doc, s, v, &format!("{at}.{key}")));
                }
            }
        }
    }
    if !named.is_empty()
        && let Some(object) = value.as_object()
    {
        for key in object.keys() {
            if !named.contains(key) {
                problems.push(format!("{at}.{key}: not documented"));
            }
        }
    }
    problems
}

fn resolve(doc: &Value, schema: &Value) -> Value {
    match schema["$ref"].as_str() {
        Some(r) => resolve(
            doc,
            &doc["components"]["schemas"][r.trim_start_matches("#/components/schemas/")],
        ),
        None => schema.clone(),
    }
}

fn types_of(schema: &Value) -> Option<Vec<String>> {
    match &schema["type"] {
        Value::String(t) => Some(vec![t.clone()]),
        Value::Array(ts) => Some(
            ts.iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect(),
        ),
        _ => None,
    }
}

/// `ferry openapi` needs no database and prints what is committed; a reader that stops early (`| head`) ends it
/// quietly.
pub async fn cli_prints_the_committed_document() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("openapi")
        .env("FERRY_DATABASE_URL", "postgres://nowhere.invalid/none")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    let committed: Value = serde_json::from_str(include_str!("../../docs/openapi.json")).unwrap();
    assert!(
        printed == committed,
        "ferry openapi differs from docs/openapi.json"
    );

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("openapi")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read a little, then hang up, as `head` does.
    let mut first = [0u8; 16];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    // Ended by SIGPIPE, as `cat` would be, or done writing in time: never a panic.
    use std::os::unix::process::ExitStatusExt;
    assert!(
        output.status.success() || output.status.signal() == Some(13),
        "{output:?}"
    );
    assert!(output.stderr.is_empty(), "{output:?}");
}

/// This module's tests, with the services they need beside the database.
pub fn suite() -> Vec<crate::Test> {
    [
        on_both_databases!([]; the_document_matches_the_routes_and_the_answers),
        without_database!("cli", []; cli_prints_the_committed_document),
    ]
    .concat()
}
