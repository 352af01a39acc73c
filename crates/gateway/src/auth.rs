//! Bearer-token authentication for the write endpoint.

use std::fmt;

use axum::http::{header, HeaderMap};
use subtle::ConstantTimeEq;

use crate::config::ApiKey;

/// Who a request authenticates as: the rate-limit bucket it draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    /// No API keys are configured: every request is this one client.
    Anonymous,
    /// The key at this position in --api-keys (so keys themselves never travel further).
    Key(usize),
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Anonymous => f.write_str("anonymous"),
            Self::Key(i) => write!(f, "key-{i}"),
        }
    }
}

/// The client the request authenticates as, or `None` when it may not write. With no keys
/// configured every request may, as [`Client::Anonymous`].
///
/// Every configured key is compared, each in constant time, so the answer's timing does not
/// say which key (or which prefix) was close.
pub fn client(keys: &[ApiKey], headers: &HeaderMap) -> Option<Client> {
    if keys.is_empty() {
        return Some(Client::Anonymous);
    }
    let token = bearer(headers).unwrap_or("");
    let mut matched = None;
    for (i, key) in keys.iter().enumerate() {
        if bool::from(key.0.as_bytes().ct_eq(token.as_bytes())) {
            matched = Some(Client::Key(i));
        }
    }
    matched
}

/// Whether the request may write.
pub fn allowed(keys: &[ApiKey], headers: &HeaderMap) -> bool {
    client(keys, headers).is_some()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(auth: Option<&'static str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = auth {
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn open_without_keys_closed_with_them() {
        assert!(allowed(&[], &headers(None)));
        let keys = [ApiKey("k1".into()), ApiKey("k2".into())];
        assert!(allowed(&keys, &headers(Some("Bearer k2"))));
        assert!(allowed(&keys, &headers(Some("bearer k1"))));
        assert!(!allowed(&keys, &headers(Some("Bearer k3"))));
        assert!(!allowed(&keys, &headers(Some("Basic k1"))));
        assert!(!allowed(&keys, &headers(Some("Bearer "))));
        assert!(!allowed(&keys, &headers(None)));
        assert_eq!(client(&keys, &headers(Some("Bearer k2"))), Some(Client::Key(1)));
        assert_eq!(client(&[], &headers(None)), Some(Client::Anonymous));
        assert_eq!(Client::Key(1).to_string(), "key-1");
    }

    #[test]
    fn every_key_is_its_own_client() {
        let keys: Vec<ApiKey> = (0..40).map(|i| ApiKey(format!("key-{i}"))).collect();
        for i in 0..40 {
            let value = HeaderValue::from_str(&format!("Bearer key-{i}")).expect("header");
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, value);
            assert_eq!(client(&keys, &h), Some(Client::Key(i)), "key {i}");
        }
    }
}
