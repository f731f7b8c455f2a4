//! The legacy system's DynamoDB tables (`threads` with its `by_last_message` index, and `messages`), read page by
//! page as JSON objects — the same shape as the export directory's lines, so ferry parses both one way — with
//! `LastEvaluatedKey` as an opaque string cursor that a stage can commit and resume from.

use std::collections::HashMap;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, PutRequest, ScalarAttributeType, WriteRequest,
};
use serde_json::{Map, Number, Value};

/// Any failure talking to DynamoDB, as one readable sentence.
#[derive(Debug, Clone)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

fn sdk_error<E: std::error::Error>(what: &str, e: E) -> Error {
    // The SDK's Display says only "service error"; the source chain says what happened.
    let mut text = format!("DynamoDB {what}: {e}");
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    Error(text)
}

/// One page of items and the cursor of the next (None: the query is exhausted). A page may be empty and still
/// have a next cursor.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub items: Vec<Value>,
    pub next: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// None: the AWS default endpoint of the region.
    pub endpoint: Option<String>,
    pub region: String,
    pub threads_table: String,
    pub messages_table: String,
}

#[derive(Clone)]
pub struct LegacyDynamo {
    client: Client,
    threads_table: String,
    messages_table: String,
}

impl LegacyDynamo {
    /// Credentials come from the usual AWS environment variables (or profile).
    pub async fn connect(settings: &Settings) -> Self {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new(settings.region.clone()))
            .http_client(http)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(30))
                    .build(),
            );
        if let Some(endpoint) = &settings.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let config = loader.load().await;
        Self {
            client: Client::new(&config),
            threads_table: settings.threads_table.clone(),
            messages_table: settings.messages_table.clone(),
        }
    }

    /// The account's threads in `thread_id` order.
    pub async fn threads_page(
        &self,
        account_id: &str,
        cursor: Option<&str>,
        limit: i32,
    ) -> Result<Page, Error> {
        let out = self
            .client
            .query()
            .table_name(&self.threads_table)
            .key_condition_expression("account_id = :a")
            .expression_attribute_values(":a", AttributeValue::S(account_id.to_owned()))
            .set_exclusive_start_key(decode_cursor(cursor)?)
            .limit(limit)
            .send()
            .await
            .map_err(|e| sdk_error("query of threads", e))?;
        Ok(page(out.items(), out.last_evaluated_key()))
    }

    /// The account's threads active since `since_secs` (unix seconds), newest first, from the
    /// `by_last_message` index.
    pub async fn recent_threads_page(
        &self,
        account_id: &str,
        since_secs: i64,
        cursor: Option<&str>,
        limit: i32,
    ) -> Result<Page, Error> {
        let out = self
            .client
            .query()
            .table_name(&self.threads_table)
            .index_name("by_last_message")
            .key_condition_expression("account_id = :a AND last_message_at >= :since")
            .expression_attribute_values(":a", AttributeValue::S(account_id.to_owned()))
            .expression_attribute_values(":since", AttributeValue::N(since_secs.to_string()))
            .scan_index_forward(false)
            .set_exclusive_start_key(decode_cursor(cursor)?)
            .limit(limit)
            .send()
            .await
            .map_err(|e| sdk_error("query of recent threads", e))?;
        Ok(page(out.items(), out.last_evaluated_key()))
    }

    /// A thread's messages in `sk` order (oldest first), or newest first.
    pub async fn messages_page(
        &self,
        thread_id: &str,
        cursor: Option<&str>,
        limit: i32,
        newest_first: bool,
    ) -> Result<Page, Error> {
        let out = self
            .client
            .query()
            .table_name(&self.messages_table)
            .key_condition_expression("thread_id = :t")
            .expression_attribute_values(":t", AttributeValue::S(thread_id.to_owned()))
            .scan_index_forward(!newest_first)
            .set_exclusive_start_key(decode_cursor(cursor)?)
            .limit(limit)
            .send()
            .await
            .map_err(|e| sdk_error("query of messages", e))?;
        Ok(page(out.items(), out.last_evaluated_key()))
    }

    /// Creates both tables and the index (tests, benchmarks and demos against a local server).
    pub async fn create_tables(&self) -> Result<(), Error> {
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .expect("key schema")
        };
        let attr = |name: &str, kind: ScalarAttributeType| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(kind)
                .build()
                .expect("attribute definition")
        };
        self.client
            .create_table()
            .table_name(&self.threads_table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key("account_id", KeyType::Hash))
            .key_schema(key("thread_id", KeyType::Range))
            .attribute_definitions(attr("account_id", ScalarAttributeType::S))
            .attribute_definitions(attr("thread_id", ScalarAttributeType::S))
            .attribute_definitions(attr("last_message_at", ScalarAttributeType::N))
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name("by_last_message")
                    .key_schema(key("account_id", KeyType::Hash))
                    .key_schema(key("last_message_at", KeyType::Range))
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::All)
                            .build(),
                    )
                    .build()
                    .expect("index"),
            )
            .send()
            .await
            .map_err(|e| sdk_error("create table threads", e))?;
        self.client
            .create_table()
            .table_name(&self.messages_table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key("thread_id", KeyType::Hash))
            .key_schema(key("sk", KeyType::Range))
            .attribute_definitions(attr("thread_id", ScalarAttributeType::S))
            .attribute_definitions(attr("sk", ScalarAttributeType::S))
            .send()
            .await
            .map_err(|e| sdk_error("create table messages", e))?;
        Ok(())
    }

    pub async fn put_threads(&self, items: &[Value]) -> Result<(), Error> {
        self.put_items(&self.threads_table, items).await
    }

    pub async fn put_messages(&self, items: &[Value]) -> Result<(), Error> {
        self.put_items(&self.messages_table, items).await
    }

    /// BatchWriteItem in chunks of 25, re-sending what the server left unprocessed.
    async fn put_items(&self, table: &str, items: &[Value]) -> Result<(), Error> {
        for chunk in items.chunks(25) {
            let mut requests = chunk
                .iter()
                .map(|item| {
                    let Value::Object(map) = item else {
                        return Err(Error("an item must be a JSON object".into()));
                    };
                    let put = PutRequest::builder()
                        .set_item(Some(
                            map.iter()
                                .filter(|(_, v)| !v.is_null())
                                .map(|(k, v)| (k.clone(), to_attribute(v)))
                                .collect(),
                        ))
                        .build()
                        .map_err(|e| Error(e.to_string()))?;
                    Ok(WriteRequest::builder().put_request(put).build())
                })
                .collect::<Result<Vec<_>, _>>()?;
            while !requests.is_empty() {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(table, requests)
                    .send()
                    .await
                    .map_err(|e| sdk_error("batch write", e))?;
                requests = out
                    .unprocessed_items()
                    .and_then(|m| m.get(table))
                    .cloned()
                    .unwrap_or_default();
            }
        }
        Ok(())
    }
}

fn page(
    items: &[HashMap<String, AttributeValue>],
    last: Option<&HashMap<String, AttributeValue>>,
) -> Page {
    Page {
        items: items.iter().map(item_to_json).collect(),
        next: last.map(encode_cursor),
    }
}

/// An item as the plain JSON object the export directory holds (`S` → string, `N` → number, …).
pub fn item_to_json(item: &HashMap<String, AttributeValue>) -> Value {
    Value::Object(
        item.iter()
            .map(|(k, v)| (k.clone(), from_attribute(v)))
            .collect(),
    )
}

fn from_attribute(v: &AttributeValue) -> Value {
    match v {
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => n
            .parse::<i64>()
            .map(Value::from)
            .ok()
            .or_else(|| {
                n.parse::<f64>()
                    .ok()
                    .and_then(Number::from_f64)
                    .map(Value::Number)
            })
            .unwrap_or_else(|| Value::String(n.clone())),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::L(list) => Value::Array(list.iter().map(from_attribute).collect()),
        AttributeValue::M(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), from_attribute(v)))
                .collect(),
        ),
        AttributeValue::Ss(set) => Value::Array(set.iter().cloned().map(Value::String).collect()),
        _ => Value::Null,
    }
}

fn to_attribute(v: &Value) -> AttributeValue {
    match v {
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Null => AttributeValue::Null(true),
        Value::Array(list) => AttributeValue::L(list.iter().map(to_attribute).collect()),
        Value::Object(map) => AttributeValue::M(
            map.iter()
                .map(|(k, v)| (k.clone(), to_attribute(v)))
                .collect(),
        ),
    }
}

/// `LastEvaluatedKey` as a string: key attributes are strings or numbers, kept with their type.
fn encode_cursor(key: &HashMap<String, AttributeValue>) -> String {
    let mut map = Map::new();
    for (k, v) in key {
        let typed = match v {
            AttributeValue::N(n) => serde_json::json!({ "N": n }),
            AttributeValue::S(s) => serde_json::json!({ "S": s }),
            other => serde_json::json!({ "S": format!("{other:?}") }),
        };
        map.insert(k.clone(), typed);
    }
    Value::Object(map).to_string()
}

fn decode_cursor(cursor: Option<&str>) -> Result<Option<HashMap<String, AttributeValue>>, Error> {
    let Some(cursor) = cursor else {
        return Ok(None);
    };
    let bad = || Error(format!("not a DynamoDB cursor: {cursor:?}"));
    let Value::Object(map) = serde_json::from_str::<Value>(cursor).map_err(|_| bad())? else {
        return Err(bad());
    };
    map.into_iter()
        .map(|(k, v)| {
            let value = match (v.get("S"), v.get("N")) {
                (Some(Value::String(s)), _) => AttributeValue::S(s.clone()),
                (_, Some(Value::String(n))) => AttributeValue::N(n.clone()),
                _ => return Err(bad()),
            };
            Ok((k, value))
        })
        .collect::<Result<HashMap<_, _>, _>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_with_their_types() {
        let key: HashMap<String, AttributeValue> = [
            ("account_id".to_owned(), AttributeValue::S("acc-1".into())),
            (
                "last_message_at".to_owned(),
                AttributeValue::N("1700000000".into()),
            ),
        ]
        .into();
        let back = decode_cursor(Some(&encode_cursor(&key))).unwrap().unwrap();
        assert_eq!(back, key);
        assert!(decode_cursor(Some("{\"a\": 1}")).is_err());
        assert!(decode_cursor(Some("nonsense")).is_err());
    }

    #[test]
    fn items_become_plain_json() {
        let item: HashMap<String, AttributeValue> = [
            ("body".to_owned(), AttributeValue::S("hi".into())),
            (
                "sent_at".to_owned(),
                AttributeValue::N("1700000000123".into()),
            ),
            ("starred".to_owned(), AttributeValue::Bool(true)),
            (
                "media".to_owned(),
                AttributeValue::L(vec![AttributeValue::M(
                    [("url".to_owned(), AttributeValue::S("u".into()))].into(),
                )]),
            ),
        ]
        .into();
        assert_eq!(
            item_to_json(&item),
            serde_json::json!({"body": "hi", "sent_at": 1700000000123_i64, "starred": true, "media": [{"url": "u"}]})
        );
        assert_eq!(
            from_attribute(&to_attribute(&item_to_json(&item))),
            item_to_json(&item)
        );
    }
}
