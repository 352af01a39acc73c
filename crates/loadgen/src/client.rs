//! Sending one request and classifying what came back.

use std::time::Duration;

use anyhow::Context as _;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};

use crate::config::Header;

/// What one request got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// An HTTP answer; for non-2xx, the `error.code` of a sluice error body when there is one.
    Status { code: u16, error_code: Option<String> },
    /// No complete answer within --timeout.
    Timeout,
    /// The request failed below HTTP (connection refused, reset, ...).
    Error(String),
}

impl Answer {
    /// The status as written in the report and the ids file: `202`, `timeout`, `error`.
    pub fn label(&self) -> String {
        match self {
            Answer::Status { code, .. } => code.to_string(),
            Answer::Timeout => "timeout".to_owned(),
            Answer::Error(_) => "error".to_owned(),
        }
    }
}

/// The endpoint and a connection pool to it.
#[derive(Clone)]
pub struct Target {
    client: reqwest::Client,
    url: reqwest::Url,
    timeout: Duration,
}

impl Target {
    pub fn new(url: reqwest::Url, headers: &[Header], timeout: Duration) -> anyhow::Result<Self> {
        let mut defaults = HeaderMap::new();
        defaults.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for header in headers {
            defaults.insert(header.name.clone(), header.value.clone());
        }
        let client = reqwest::Client::builder()
            .default_headers(defaults)
            // A benchmark talks to its target directly, whatever HTTP_PROXY says.
            .no_proxy()
            .tcp_nodelay(true)
            .build()
            .context("cannot build the http client")?;
        Ok(Self { client, url, timeout })
    }

    /// Posts one body and reads the whole answer, within the timeout.
    pub async fn send(&self, body: Vec<u8>) -> Answer {
        let exchange = async {
            let response = self.client.post(self.url.clone()).body(body).send().await?;
            let code = response.status().as_u16();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((code, body))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => Answer::Timeout,
            Ok(Err(error)) => Answer::Error(describe(error)),
            Ok(Ok((code, body))) => {
                let error_code = if (200..300).contains(&code) { None } else { error_code(&body) };
                Answer::Status { code, error_code }
            }
        }
    }
}

/// The `error.code` of a `{"error": {"code": ...}}` body.
pub fn error_code(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get("error")?.get("code")?.as_str().map(str::to_owned)
}

/// The error and its causes on one line, without the url (the same for every request).
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_come_from_sluice_error_bodies() {
        assert_eq!(
            error_code(br#"{"error":{"code":"throttled","message":"slow down"}}"#),
            Some("throttled".to_owned())
        );
        assert_eq!(error_code(b"<html>bad gateway</html>"), None);
        assert_eq!(error_code(br#"{"error":"flat"}"#), None);
    }

    #[test]
    fn labels() {
        assert_eq!(Answer::Status { code: 202, error_code: None }.label(), "202");
        assert_eq!(Answer::Timeout.label(), "timeout");
        assert_eq!(Answer::Error("x".to_owned()).label(), "error");
    }
}
