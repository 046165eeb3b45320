//! A real `cloudstream serve` on a loopback port over the embedded engine in a directory,
//! for the tests of what the server runs itself (webhooks, deliveries), and polling with a
//! deadline rather than sleeping.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

/// How long a test waits for something that should happen.
pub(crate) const DEADLINE: Duration = Duration::from_secs(10);

/// Polls `check` until it returns something, failing the test after [`DEADLINE`].
pub(crate) async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A cloudstream server on a loopback port, over the engine in a directory.
pub(crate) struct Served {
    api: super::Api,
    server: cloudstream_server::Server,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Starts a server over `local://data` set up by `config`.
pub(crate) async fn serve(data: &Path, config: cloudstream_server::Config) -> Served {
    let url = format!("local://{}", data.display());
    // A previous server's engine may still be closing (its lock not yet released).
    let deadline = Instant::now() + DEADLINE;
    let client = loop {
        match cloudstream::open(&url).await {
            Ok(client) => break client,
            Err(e) if Instant::now() < deadline => {
                eprintln!("opening {url}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("open {url}: {e}"),
        }
    };
    let server = cloudstream_server::Server::open(client, config)
        .await
        .expect("open server");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(cloudstream_server::serve(
        listener,
        server.router(),
        async move {
            let _ = stopped.await;
        },
    ));
    Served {
        api: super::Api::new(format!("http://{addr}")),
        server,
        stop,
        task,
    }
}

/// The schema-checked client (`url`, `call`, `get`, `put`, `delete`, ...).
impl std::ops::Deref for Served {
    type Target = super::Api;
    fn deref(&self) -> &super::Api {
        &self.api
    }
}

impl Served {
    pub(crate) async fn create_stream(&self, name: &str) {
        let (status, body) = self
            .call(self.http.put(self.url(&format!("/v1/streams/{name}"))))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    pub(crate) async fn send(&self, stream: &str, payload: &str) {
        let (status, body) = self
            .call(
                self.http
                    .post(self.url(&format!("/v1/streams/{stream}/events")))
                    .json(&json!({ "payload": payload })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    /// The view at `path` once `check` holds for it.
    pub(crate) async fn view_when(
        &self,
        path: &str,
        what: &str,
        check: fn(&Value) -> bool,
    ) -> Value {
        eventually(what, move || async move {
            let (status, view) = self.get(path).await;
            assert_eq!(status, StatusCode::OK, "{view}");
            check(&view).then_some(view)
        })
        .await
    }

    /// Stops the server as a command line would: graceful shutdown of the HTTP server, then
    /// the jobs it runs (each commits what it did), then drops it with the engine.
    pub(crate) async fn stop(self) {
        let Served {
            api,
            server,
            stop,
            task,
        } = self;
        drop(api);
        let _ = stop.send(());
        tokio::time::timeout(DEADLINE, task)
            .await
            .expect("the server stops")
            .expect("server task")
            .expect("serve");
        server.shutdown().await;
        drop(server);
    }
}
