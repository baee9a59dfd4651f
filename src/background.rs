//! Async work on a thread of its own, on a single-threaded tokio runtime: the listeners
//! and the container runtimes' clients, while the pipeline itself stays synchronous.

use std::future::Future;

/// Runs `work()` to its end on a new thread named `name`; a runtime that cannot be
/// built is logged, naming the thread.
pub fn spawn_async<F, Fut>(name: &str, work: F) -> std::io::Result<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let label = name.to_string();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(work()),
                Err(error) => tracing::error!("{label}: cannot start: {error}"),
            }
        })?;
    Ok(())
}
