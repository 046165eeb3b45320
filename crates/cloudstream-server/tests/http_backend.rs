//! The `http://` client backend against a real `cloudstream-server` on a loopback port, in
//! front of the embedded engine on disk: the whole conformance suite, so everything the
//! library does (consumers, groups, triggers, tails) works against a remote server.

use cloudstream::Client;

/// What keeps a test's server alive: its data directory and its task.
struct Running {
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn make() -> (Client, Running) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = cloudstream::open(&format!("local://{}", dir.path().display()))
        .await
        .expect("open engine");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = cloudstream_server::router(engine, cloudstream_server::Limits::default());
    let task = tokio::spawn(cloudstream_server::serve(
        listener,
        router,
        std::future::pending(),
    ));
    let client = cloudstream::open(&format!("http://{addr}"))
        .await
        .expect("open http://");
    (client, Running { _dir: dir, task })
}

cloudstream::conformance_tests!(make);

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let err = cloudstream::open(&format!("http://{addr}"))
        .await
        .expect_err("nothing listens");
    assert!(matches!(err, cloudstream::Error::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn the_remote_provider_shows_through() {
    let (client, _running) = make().await;
    let caps = client.backend().capabilities();
    assert_eq!(client.backend().name(), "http");
    assert!(
        caps.durable && caps.leases && caps.dense_sequences,
        "{caps:?}"
    );
    let err = client
        .stream("nope")
        .open()
        .await
        .expect_err("no such stream");
    assert!(
        matches!(&err, cloudstream::Error::StreamNotFound { stream } if stream == "nope"),
        "{err:?}"
    );
}
