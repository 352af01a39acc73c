//! Authentication for the write endpoints: which key a request presents, which client that
//! is, and whether the key may be used from the request's origin.
//!
//! A key is presented as `Authorization: Bearer <key>`, as the username of HTTP Basic (how
//! Segment's SDKs send their write key: `base64("<key>:")`, the password ignored), or, for
//! clients that cannot set headers (`navigator.sendBeacon`, an `<img>` pixel), as the query
//! parameter `?api_key=<key>`; the header wins when both are there (the Segment endpoints also
//! take a body `writeKey`, last). Keys are compared in constant time and never logged; nothing
//! in the gateway logs a request's query string.

use std::{borrow::Cow, fmt};

use axum::http::{header, HeaderMap, HeaderValue};
use base64::Engine as _;
use subtle::ConstantTimeEq;

use crate::{error::ApiError, keys::Keys};

/// The query parameter a key may be given in.
pub const QUERY_PARAMETER: &str = "api_key";

/// Who a request authenticates as: the rate-limit bucket it draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    /// No API keys are configured: every request is this one client.
    Anonymous,
    /// The key at this position in the key table (`keys::Keys`), so keys themselves never
    /// travel further.
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

/// The key a request presents: in its `Authorization` header (see [`header_key`]), else its
/// `api_key` query parameter.
pub fn presented<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<Cow<'a, str>> {
    header_key(headers).or_else(|| query_key(query))
}

/// The key in the `Authorization` header: a bearer token, or the username of HTTP Basic.
pub fn header_key(headers: &HeaderMap) -> Option<Cow<'_, str>> {
    if let Some(token) = bearer(headers) {
        return Some(Cow::Borrowed(token));
    }
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let credentials = String::from_utf8(decoded).ok()?;
    let username = credentials.split_once(':').map_or(credentials.as_str(), |(user, _password)| user);
    Some(Cow::Owned(username.to_owned()))
}

/// The `api_key` query parameter (percent-decoded), the first one. Such a key is in the URL:
/// never log a query string that may carry one.
pub fn query_key(query: Option<&str>) -> Option<Cow<'_, str>> {
    form_urlencoded::parse(query?.as_bytes()).find(|(name, _)| name == QUERY_PARAMETER).map(|(_, value)| value)
}

/// The client a presented key authenticates as, or `None` when it may not write. With no keys
/// configured every request may, as [`Client::Anonymous`].
///
/// Every configured key is compared, each in constant time, so the answer's timing does not
/// say which key (or which prefix) was close.
pub fn client(keys: &Keys, presented: Option<&str>) -> Option<Client> {
    if keys.is_empty() {
        return Some(Client::Anonymous);
    }
    let token = presented.unwrap_or("");
    let mut matched = None;
    for (i, key) in keys.entries().iter().enumerate() {
        if bool::from(key.secret.0.as_bytes().ct_eq(token.as_bytes())) {
            matched = Some(Client::Key(i));
        }
    }
    matched
}

/// Authenticates a request: 401 `unauthorized` without a valid key, 403 `origin_not_allowed`
/// when its key has `allowed_origins` and the request's `Origin` is not one of them (a request
/// without `Origin` is not a browser's and passes; see `keys`).
pub fn authorize(keys: &Keys, presented: Option<&str>, origin: Option<&HeaderValue>) -> Result<Client, ApiError> {
    let client = client(keys, presented).ok_or(ApiError::Unauthorized { segment: false })?;
    let allowed = keys.get(client).and_then(|entry| entry.allowed_origins.as_ref());
    if let (Some(allowed), Some(origin)) = (allowed, origin) {
        if !allowed.allows(origin.as_bytes()) {
            return Err(ApiError::OriginNotAllowed);
        }
    }
    Ok(client)
}

/// [`authorize`] from a request's headers and query string.
pub fn authorize_request(keys: &Keys, headers: &HeaderMap, query: Option<&str>) -> Result<Client, ApiError> {
    let presented = presented(headers, query);
    authorize(keys, presented.as_deref(), headers.get(header::ORIGIN))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::ApiKey, keys::FileKey, origin::AllowedOrigins};

    fn headers(auth: Option<&'static str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = auth {
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(v));
        }
        h
    }

    fn plain(keys: &[&str]) -> Keys {
        let keys: Vec<ApiKey> = keys.iter().map(|k| ApiKey((*k).to_owned())).collect();
        Keys::new(&keys, Vec::new(), None).expect("keys")
    }

    fn allowed(keys: &Keys, headers: &HeaderMap) -> bool {
        authorize_request(keys, headers, None).is_ok()
    }

    #[test]
    fn open_without_keys_closed_with_them() {
        assert!(allowed(&plain(&[]), &headers(None)));
        let keys = plain(&["k1", "k2"]);
        assert!(allowed(&keys, &headers(Some("Bearer k2"))));
        assert!(allowed(&keys, &headers(Some("bearer k1"))));
        assert!(!allowed(&keys, &headers(Some("Bearer k3"))));
        assert!(!allowed(&keys, &headers(Some("Basic k1"))));
        assert!(!allowed(&keys, &headers(Some("Bearer "))));
        assert!(!allowed(&keys, &headers(None)));
        assert_eq!(client(&keys, Some("k2")), Some(Client::Key(1)));
        assert_eq!(client(&plain(&[]), None), Some(Client::Anonymous));
        assert_eq!(Client::Key(1).to_string(), "key-1");
    }

    #[test]
    fn keys_come_from_bearer_basic_or_the_query() {
        let basic = |user_pass: &str| {
            let encoded = base64::engine::general_purpose::STANDARD.encode(user_pass);
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Basic {encoded}")).expect("header"));
            header_key(&h).map(Cow::into_owned)
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
        let keys = plain(&["k1", "wk-1"]);
        assert_eq!(client(&keys, basic("wk-1:").as_deref()), Some(Client::Key(1)));
        assert_eq!(client(&keys, None), None);
        assert_eq!(client(&keys, Some("")), None);
        assert_eq!(client(&plain(&[]), None), Some(Client::Anonymous));
    }

    #[test]
    fn every_key_is_its_own_client() {
        let names: Vec<String> = (0..40).map(|i| format!("key-{i}")).collect();
        let keys = plain(&names.iter().map(String::as_str).collect::<Vec<_>>());
        for (i, name) in names.iter().enumerate() {
            let value = HeaderValue::from_str(&format!("Bearer {name}")).expect("header");
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, value);
            assert_eq!(authorize_request(&keys, &h, None).ok(), Some(Client::Key(i)), "key {i}");
        }
    }

    #[test]
    fn a_key_may_come_from_the_query_and_the_header_wins() {
        let keys = plain(&["k1", "k 2+"]);
        let none = headers(None);
        assert_eq!(authorize_request(&keys, &none, Some("api_key=k1")).ok(), Some(Client::Key(0)));
        assert_eq!(authorize_request(&keys, &none, Some("x=1&api_key=k%202%2B")).ok(), Some(Client::Key(1)));
        assert_eq!(authorize_request(&keys, &none, Some("api_key=k+2%2B")).ok(), Some(Client::Key(1)));
        assert_eq!(authorize_request(&keys, &none, Some("api_key=")).map_err(|e| e.code()), Err("unauthorized"));
        assert_eq!(authorize_request(&keys, &none, Some("apikey=k1")).map_err(|e| e.code()), Err("unauthorized"));
        let bearer = headers(Some("Bearer k1"));
        assert_eq!(authorize_request(&keys, &bearer, Some("api_key=nope")).ok(), Some(Client::Key(0)));
        let wrong = headers(Some("Bearer nope"));
        assert!(authorize_request(&keys, &wrong, Some("api_key=k1")).is_err(), "the header wins");
        let basic = headers(Some("Basic abc"));
        assert_eq!(authorize_request(&keys, &basic, Some("api_key=k1")).ok(), Some(Client::Key(0)));
    }

    #[test]
    fn a_key_with_origins_is_refused_from_others_and_accepted_without_origin() {
        let web = FileKey {
            name: "web".into(),
            secret: ApiKey("pk".into()),
            allowed_origins: Some(AllowedOrigins::parse(&["https://shop.example"], "x").expect("origins")),
            rate: None,
        };
        let keys = Keys::new(&[ApiKey("server".into())], vec![web], None).expect("keys");
        let shop = HeaderValue::from_static("https://shop.example");
        let evil = HeaderValue::from_static("https://evil.example");
        assert_eq!(authorize(&keys, Some("pk"), Some(&shop)).ok(), Some(Client::Key(1)));
        assert_eq!(authorize(&keys, Some("pk"), Some(&evil)).map_err(|e| e.code()), Err("origin_not_allowed"));
        assert_eq!(authorize(&keys, Some("pk"), None).ok(), Some(Client::Key(1)), "no Origin: not a browser");
        assert_eq!(authorize(&keys, Some("server"), Some(&evil)).ok(), Some(Client::Key(0)), "no origins: any");
        assert_eq!(authorize(&keys, Some("bad"), Some(&shop)).map_err(|e| e.code()), Err("unauthorized"));
    }
}
