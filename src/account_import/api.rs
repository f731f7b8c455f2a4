//! The live legacy system: its HTTP API (account existence, channel configs, media) and its DynamoDB tables.

use std::time::Duration;

use async_trait::async_trait;
use ferry_legacy_dynamodb::{LegacyDynamo, Settings};

use super::media_token;
use super::source::*;

pub struct ApiSource {
    base: String,
    token: Option<String>,
    media_secret: Option<Vec<u8>>,
    http: reqwest::Client,
    dynamo: LegacyDynamo,
}

impl ApiSource {
    pub async fn new(
        base: &str,
        token: Option<String>,
        media_secret: Option<Vec<u8>>,
        timeout: Duration,
        dynamo: &Settings,
    ) -> Self {
        crate::install_tls();
        Self {
            base: base.trim_end_matches('/').to_owned(),
            token,
            media_secret,
            http: reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout.min(Duration::from_secs(5)))
                .build()
                .expect("HTTP client"),
            dynamo: LegacyDynamo::connect(dynamo).await,
        }
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    fn url(&self, segments: &[&str]) -> String {
        let mut url = url::Url::parse(&format!("{}/", self.base)).expect("legacy API URL");
        url.path_segments_mut()
            .expect("base URL")
            .pop_if_empty()
            .extend(segments);
        url.into()
    }
}

fn unavailable(e: reqwest::Error) -> SourceError {
    let what = if e.is_timeout() {
        "timed out".to_owned()
    } else {
        e.to_string()
    };
    SourceError::Unavailable(format!("legacy API: {what}"))
}

fn limit_of(limit: usize) -> i32 {
    limit.clamp(1, 1000) as i32
}

fn dynamo_error(e: ferry_legacy_dynamodb::Error) -> SourceError {
    SourceError::Unavailable(e.0)
}

#[async_trait]
impl LegacySource for ApiSource {
    fn kind(&self) -> &'static str {
        "dynamodb"
    }

    async fn account_exists(&self, legacy_ref: &str) -> Result<bool, SourceError> {
        let answer = self
            .authorized(self.http.get(self.url(&["accounts", legacy_ref])))
            .send()
            .await
            .map_err(unavailable)?;
        match answer.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            other => Err(SourceError::Unavailable(format!(
                "legacy API answered {other} to GET /accounts/{legacy_ref}"
            ))),
        }
    }

    async fn channels(&self, legacy_ref: &str) -> Result<ConfigsAnswer, SourceError> {
        let answer = self
            .authorized(self.http.post(self.url(&["configs-migration"])))
            .json(&serde_json::json!({ "account_id": legacy_ref }))
            .send()
            .await
            .map_err(unavailable)?;
        let status = answer.status();
        if !status.is_success() {
            return Err(SourceError::Unavailable(format!(
                "legacy API answered {status} to POST /configs-migration"
            )));
        }
        answer
            .json()
            .await
            .map_err(|e| SourceError::Invalid(format!("configs-migration answer: {e}")))
    }

    async fn recent_threads_page(
        &self,
        legacy_ref: &str,
        since_secs: i64,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<LegacyThread>, SourceError> {
        let page = self
            .dynamo
            .recent_threads_page(legacy_ref, since_secs, cursor, limit_of(limit))
            .await
            .map_err(dynamo_error)?;
        Ok(Page {
            items: parse_items("thread", page.items)?,
            next: page.next,
        })
    }

    async fn threads_page(
        &self,
        legacy_ref: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<LegacyThread>, SourceError> {
        let page = self
            .dynamo
            .threads_page(legacy_ref, cursor, limit_of(limit))
            .await
            .map_err(dynamo_error)?;
        Ok(Page {
            items: parse_items("thread", page.items)?,
            next: page.next,
        })
    }

    async fn messages_page(
        &self,
        thread_id: &str,
        cursor: Option<&str>,
        limit: usize,
        newest_first: bool,
    ) -> Result<Page<LegacyMessage>, SourceError> {
        let page = self
            .dynamo
            .messages_page(thread_id, cursor, limit_of(limit), newest_first)
            .await
            .map_err(dynamo_error)?;
        Ok(Page {
            items: parse_items("message", page.items)?,
            next: page.next,
        })
    }

    async fn media(&self, url: &str) -> Result<(Vec<u8>, Option<String>), MediaError> {
        let secret = self.media_secret.as_deref().ok_or_else(|| {
            MediaError::Invalid("FERRY_LEGACY_MEDIA_JWT_SECRET is not set".into())
        })?;
        let token = media_token::issue(secret, chrono::Utc::now().timestamp());
        let answer = self
            .http
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| MediaError::Unavailable(e.to_string()))?;
        match answer.status().as_u16() {
            200..=299 => {}
            code @ (401 | 403) => return Err(MediaError::Refused(code)),
            404 | 410 => return Err(MediaError::Missing),
            code => return Err(MediaError::Unavailable(format!("HTTP {code}"))),
        }
        let content_type = answer
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = answer
            .bytes()
            .await
            .map_err(|e| MediaError::Unavailable(e.to_string()))?;
        Ok((bytes.to_vec(), content_type))
    }
}
