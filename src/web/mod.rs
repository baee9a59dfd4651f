//! The daemon's own web server: the page (`/`), its JSON API (`/api/v1/...`), on
//! 127.0.0.1 by default. Listening elsewhere requires a token.

mod api;

pub use api::ApiState;

use crate::config::Secret;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;

const PAGE: &str = include_str!("page.html");

/// Binds now (so the caller learns of a taken port) and serves from a thread.
pub fn start(listen: SocketAddr, token: Option<Secret>, state: ApiState) -> anyhow::Result<()> {
    let token = token.filter(|token| !token.is_empty());
    if !listen.ip().is_loopback() && token.is_none() {
        anyhow::bail!(
            "the web server listens on {listen}, beyond this host, without a token; set [web] token (or token_file) or listen on 127.0.0.1"
        );
    }
    let listener = crate::http::bind(
        listen,
        "the web server",
        "choose another [web] listen address",
    )?;
    let token = Arc::new(token);
    let router = axum::Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/api/v1/live", get(api::live))
        .route("/api/v1/status", get(api::status))
        .route("/api/v1/totals", get(api::totals))
        .route("/api/v1/history", get(api::history))
        .route("/api/v1/usage", get(api::usage))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(token, require_token));
    crate::http::serve_in_thread("web server", listener, router)
}

/// With a token configured, every request carries it: `Authorization: Bearer TOKEN`
/// or `?token=TOKEN` (which the page passes on to its API calls).
async fn require_token(
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
