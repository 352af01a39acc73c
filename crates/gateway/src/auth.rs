//! Bearer-token authentication for the write endpoint.

use axum::http::{header, HeaderMap};
use subtle::ConstantTimeEq;

use crate::config::ApiKey;

/// Whether the request may write. With no keys configured, every request may.
///
/// Every configured key is compared, each in constant time, so the answer's timing does not
/// say which key (or which prefix) was close.
pub fn allowed(keys: &[ApiKey], headers: &HeaderMap) -> bool {
    if keys.is_empty() {
        return true;
    }
    let Some(token) = bearer(headers) else {
        return false;
    };
    keys.iter()
        .fold(subtle::Choice::from(0), |any, key| any | key.0.as_bytes().ct_eq(token.as_bytes()))
        .into()
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
    }
}
