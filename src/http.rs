//! Serving an axum router from a thread of its own, on a listener bound beforehand so
//! that a taken address is reported at start. Used by the Prometheus endpoint and the
//! web server; the pipeline itself stays synchronous.

use std::net::SocketAddr;

/// Binds `listen`; `what` names the server in errors ("the web server").
pub fn bind(listen: SocketAddr, what: &str, fix: &str) -> anyhow::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(listen)
        .map_err(|e| anyhow::anyhow!("{what} cannot listen on {listen}: {e}; {fix}"))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves `router` on `listener` until the process ends.
pub fn serve_in_thread(
    name: &str,
    listener: std::net::TcpListener,
    router: axum::Router,
) -> anyhow::Result<()> {
    let label = name.to_string();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    tracing::error!("{label}: cannot start: {error}");
                    return;
                }
            };
            runtime.block_on(async move {
                let served = match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => axum::serve(listener, router).await,
                    Err(error) => Err(error),
                };
                if let Err(error) = served {
                    tracing::error!("{label} stopped: {error}");
                }
            });
        })?;
    Ok(())
}
