//! API-key authentication for the write endpoints: where a key may come from (a bearer token,
//! the username of HTTP Basic, the `api_key` query parameter) and which client it is.

use std::fmt;

use axum::http::{header, HeaderMap};
use base64::Engine as _;
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
    client_for_key(keys, bearer(headers))
}

/// The client `key` authenticates as, wherever the key came from; see [`client`]. `None` (no
/// key sent) matches nothing when keys are configured.
pub fn client_for_key(keys: &[ApiKey], key: Option<&str>) -> Option<Client> {
    if keys.is_empty() {
        return Some(Client::Anonymous);
    }
    let token = key.unwrap_or("");
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

/// The key in the `Authorization` header: a bearer token, or the username of HTTP Basic (how
/// Segment's SDKs send their write key: `base64("<key>:")`; the password is ignored).
pub fn header_key(headers: &HeaderMap) -> Option<String> {
    if let Some(token) = bearer(headers) {
        return Some(token.to_owned());
    }
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let credentials = String::from_utf8(decoded).ok()?;
    let username = credentials.split_once(':').map_or(credentials.as_str(), |(user, _password)| user);
    Some(username.to_owned())
}

/// The `api_key` query parameter (percent-decoded), for clients that cannot set headers. The
/// first one counts. Such a key is in the URL: never log a query string that may carry one.
pub fn query_key(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes()).find(|(name, _)| name == "api_key").map(|(_, value)| value.into_owned())
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
    fn keys_come_from_bearer_basic_or_the_query() {
        let basic = |user_pass: &str| {
            let encoded = base64::engine::general_purpose::STANDARD.encode(user_pass);
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Basic {encoded}")).expect("header"));
            header_key(&h)
        };
        assert_eq!(basic("wk-1:").as_deref(), Some("wk-1"));
        assert_eq!(basic("wk-1:ignored").as_deref(), Some("wk-1"));
        assert_eq!(basic("wk-1").as_deref(), Some("wk-1"));
        assert_eq!(header_key(&headers(Some("Bearer k1"))).as_deref(), Some("k1"));
        assert_eq!(header_key(&headers(Some("Basic !!not-base64"))), None);
        assert_eq!(header_key(&headers(Some("Digest k1"))), None);
        assert_eq!(header_key(&headers(None)), None);
        assert_eq!(query_key(Some("a=1&api_key=k%2B1&api_key=second")).as_deref(), Some("k+1"));
        assert_eq!(query_key(Some("apikey=k1")), None);
        assert_eq!(query_key(None), None);
        let keys = [ApiKey("k1".into()), ApiKey("wk-1".into())];
        assert_eq!(client_for_key(&keys, basic("wk-1:").as_deref()), Some(Client::Key(1)));
        assert_eq!(client_for_key(&keys, None), None);
        assert_eq!(client_for_key(&keys, Some("")), None);
        assert_eq!(client_for_key(&[], None), Some(Client::Anonymous));
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
