//! Runs an axum router on `127.0.0.1:0` on a runtime of its own (so that blocking test code
//! and the server under test never starve it), for the fakes the server talks to.

/// A running fake server; it stops when dropped.
pub struct Serving {
    pub port: u16,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Serves `app` on a free loopback port with `threads` worker threads.
pub fn serve(name: &str, app: axum::Router, threads: usize) -> Serving {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port for the fake");
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let port = listener.local_addr().expect("an address").port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads.max(1))
                .enable_all()
                .build()
                .expect("a runtime for the fake");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        })
        .expect("spawning the fake");
    Serving { port, _stop: stop }
}
