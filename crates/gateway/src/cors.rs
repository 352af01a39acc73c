//! CORS for the ingest endpoints, as one layer around them (`app::router`): every route inside
//! the ingest router gets the same answers.
//!
//! - A request without `Origin` (a server, an SDK, curl) passes untouched. With
//!   `--cors-allow-origins` set its answer carries `Vary: Origin`.
//! - With `--cors-allow-origins` set, a request whose `Origin` is not allowed is refused with
//!   403 `origin_not_allowed` and no CORS headers, preflight or not, before the handler sees it:
//!   nothing is produced. A browser sends simple requests (`sendBeacon`, a `text/plain` post)
//!   without asking first, so refusing only preflights would let any page write.
//! - Unset, the gateway behaves as before CORS existed: no CORS headers, a preflight reaches the
//!   router (405), and a JSON post with an `Origin` (a same-origin page, a proxy that forwards
//!   it) is served. Only a *simple* request with an `Origin` is refused (403): one a page on any
//!   site could send without a preflight (`text/plain`, a form type, no content type), which
//!   `text/plain` being read as JSON would otherwise turn into writes from every web page.
//! - A preflight (`OPTIONS` with `Access-Control-Request-Method`) from an allowed origin is
//!   answered 204 with what the browser needs: the origin, `POST`, the headers a client may
//!   set (`content-type`, `content-encoding`, `authorization`) and how long to cache that.
//! - Every other answer to an allowed origin, errors included, carries
//!   `Access-Control-Allow-Origin` (the request's origin, also with `*`) and exposes
//!   `Retry-After`, so a page can read a 429's or a 503's advice.
//!
//! Credentials: the gateway never sends `Access-Control-Allow-Credentials`. It uses no cookies
//! or HTTP authentication; the only credential is the write key the page sends itself (in
//! `Authorization`, which the preflight allows, or in `?api_key=`). So `*` lets any page post
//! with a key it has, and a page sending with `credentials: "include"` cannot read the answer
//! (its request still arrives; `sendBeacon` sends that way and never reads answers).

use axum::{
    extract::{Request, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{app::AppState, body_read, error::ApiError};

/// `Access-Control-Allow-Methods` of a preflight.
pub const ALLOW_METHODS: &str = "POST";
/// `Access-Control-Allow-Headers` of a preflight: what a page may set on its requests.
pub const ALLOW_HEADERS: &str = "content-type, content-encoding, authorization";
/// `Access-Control-Max-Age` of a preflight, in seconds (browsers cap it: Chromium at 2 h).
pub const MAX_AGE_SECS: u32 = 86_400;
/// `Access-Control-Expose-Headers` of every answer to an allowed origin.
pub const EXPOSE_HEADERS: &str = "retry-after";

/// The layer; see the module documentation.
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let configured = state.cors.is_some();
    let Some(origin) = request.headers().get(header::ORIGIN).cloned() else {
        let mut response = next.run(request).await;
        if configured {
            vary_origin(response.headers_mut());
        }
        return response;
    };
    let Some(cors) = state.cors.as_deref() else {
        if is_simple(request.headers()) && !is_preflight(&request) {
            return refuse(&state, request);
        }
        return next.run(request).await;
    };
    if !cors.allows(origin.as_bytes()) {
        return refuse(&state, request);
    }
    let mut response = if is_preflight(&request) {
        preflight()
    } else {
        let mut response = next.run(request).await;
        response.headers_mut().insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSE_HEADERS));
        response
    };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    vary_origin(headers);
    response
}

fn is_preflight(request: &Request) -> bool {
    request.method() == Method::OPTIONS && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// Whether a browser may send this request across origins without a preflight: its content
/// type is one of the CORS-safelisted ones (or absent).
fn is_simple(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return true;
    };
    let essence = value.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    matches!(essence.as_str(), "text/plain" | "application/x-www-form-urlencoded" | "multipart/form-data")
}

fn preflight() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(ALLOW_METHODS));
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(ALLOW_HEADERS));
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(MAX_AGE_SECS));
    response
}

/// 403 `origin_not_allowed`, counted like the handlers' errors; the body is drained unread.
fn refuse(state: &AppState, request: Request) -> Response {
    let error = ApiError::OriginNotAllowed;
    // The origin is a page's address, not a secret; the URI (which may hold a key) is not logged.
    tracing::debug!(code = error.code(), origin = ?request.headers().get(header::ORIGIN), method = %request.method(),
        "request refused");
    let (parts, body) = request.into_parts();
    body_read::refuse_unread(body, &parts.headers, state.config.body_read_timeout);
    state.metrics.count_error(&error);
    error.into_response()
}

/// Adds `Origin` to `Vary`, keeping what is there.
fn vary_origin(headers: &mut HeaderMap) {
    let already = headers
        .get_all(header::VARY)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.split(',').any(|name| name.trim().eq_ignore_ascii_case("origin"))));
    if !already {
        headers.append(header::VARY, HeaderValue::from_static("origin"));
    }
}
