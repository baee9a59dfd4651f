//! A token every request must carry where one is configured (the page and its API,
//! `/metrics`): `Authorization: Bearer TOKEN` or `?token=TOKEN`.

use crate::config::Secret;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// With a token configured, every request carries it: `Authorization: Bearer TOKEN`
/// or `?token=TOKEN` (which the page passes on to its API calls).
pub async fn require_token(
    State(token): State<Arc<Option<Secret>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = token.as_ref().as_ref().map(Secret::expose) else {
        return next.run(request).await;
    };
    let bearer = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // The page sends it percent-encoded (a base64 token has `/`, `+`, `=`); by hand it
    // may come raw: both decode to the same.
    let in_query = request.uri().query().is_some_and(|query| {
        query.split('&').any(|pair| {
            pair.strip_prefix("token=").is_some_and(|given| {
                percent_encoding::percent_decode_str(given)
                    .decode_utf8()
                    .is_ok_and(|given| same_secret(&given, token))
            })
        })
    });
    let bearer = bearer.is_some_and(|given| same_secret(given, token));
    if bearer || in_query {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({
                "error": "a token is required: ?token=... or Authorization: Bearer ..."
            })),
        )
            .into_response()
    }
}

/// Compares in constant time, so the answer's timing tells nothing of the token.
fn same_secret(given: &str, token: &str) -> bool {
    use subtle::ConstantTimeEq;
    given.len() == token.len() && bool::from(given.as_bytes().ct_eq(token.as_bytes()))
}
