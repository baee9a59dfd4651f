//! The daemon's own web server: the page (`/`), its JSON API (`/api/v1/...`), on
//! 127.0.0.1 by default. Listening elsewhere requires a token.

mod api;

pub use api::ApiState;

use crate::config::Secret;
use axum::response::Html;
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
        .layer(axum::middleware::from_fn_with_state(
            token,
            crate::http::token::require_token,
        ));
    crate::http::serve_in_thread("web server", listener, router)
}
