//! Bearer-token authentication for the write endpoint.

use axum::http::{header, HeaderMap};
use subtle::ConstantTimeEq;

use crate::config::ApiKey;

/// The name of the client the request authenticates as, or `None` when it may not write.
/// With no keys configured every request may, as client "anonymous"; otherwise the client is
/// "key-<n>", the position of its key in --api-keys (so keys never travel further).
///
/// Every configured key is compared, each in constant time, so the answer's timing does not
/// say which key (or which prefix) was close.
pub fn client(keys: &[ApiKey], headers: &HeaderMap) -> Option<&'static str> {
    const NAMES: [&str; 16] = [
        "key-0", "key-1", "key-2", "key-3", "key-4", "key-5", "key-6", "key-7", "key-8", "key-9", "key-10", "key-11",
        "key-12", "key-13", "key-14", "key-15+",
    ];
    if keys.is_empty() {
        return Some("anonymous");
    }
    let token = bearer(headers).unwrap_or("");
    let mut matched = None;
    for (i, key) in keys.iter().enumerate() {
        if bool::from(key.0.as_bytes().ct_eq(token.as_bytes())) {
            matched = Some(NAMES[i.min(NAMES.len() - 1)]);
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
        assert_eq!(client(&keys, &headers(Some("Bearer k2"))), Some("key-1"));
        assert_eq!(client(&[], &headers(None)), Some("anonymous"));
    }
}
