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

/// A server on a loopback port over the embedded engine in a temporary directory.
async fn serve_engine() -> (std::net::SocketAddr, Running) {
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
    (addr, Running { _dir: dir, task })
}

async fn make() -> (Client, Running) {
    let (addr, running) = serve_engine().await;
    let client = cloudstream::open(&format!("http://{addr}"))
        .await
        .expect("open http://");
    (client, running)
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

/// A loopback proxy in front of `upstream` that lets the first answer to an append to
/// stream `lost` reach nobody: the request is stored, its answer lost in transit.
async fn losing_proxy(upstream: std::net::SocketAddr) -> std::net::SocketAddr {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind proxy");
    let addr = listener.local_addr().expect("addr");
    let armed = Arc::new(AtomicBool::new(true));
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                continue;
            };
            let (mut from_client, mut to_client) = client.into_split();
            let (mut from_server, mut to_server) = server.into_split();
            let lose = Arc::new(AtomicBool::new(false));
            let (armed, lose_up) = (Arc::clone(&armed), Arc::clone(&lose));
            tokio::spawn(async move {
                let mut buf = vec![0; 64 * 1024];
                while let Ok(n @ 1..) = from_client.read(&mut buf).await {
                    let text = String::from_utf8_lossy(&buf[..n]);
                    if text.contains("/v1/streams/lost/partitions/")
                        && armed.swap(false, Ordering::SeqCst)
                    {
                        lose_up.store(true, Ordering::SeqCst);
                    }
                    if to_server.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
            tokio::spawn(async move {
                let mut buf = vec![0; 64 * 1024];
                while let Ok(n @ 1..) = from_server.read(&mut buf).await {
                    if lose.load(Ordering::SeqCst) {
                        // The answer goes nowhere; the client sees its connection drop.
                        let _ = to_client.shutdown().await;
                        return;
                    }
                    if to_client.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// An append whose answer is lost in transit was stored all the same. With an id on every
/// event the client sends it again, and the server answers with the first copy's position:
/// one record, and the caller sees success. Without ids it reports the failure, since
/// sending again could store the events twice.
#[tokio::test]
async fn an_append_whose_answer_was_lost_is_retried_safely_with_ids() {
    let (upstream, _server) = serve_engine().await;
    let proxy = losing_proxy(upstream).await;
    let client = cloudstream::open(&format!("http://{proxy}"))
        .await
        .expect("open http://");
    let stream = client.stream("lost").create().await.expect("create");
    let receipt = stream
        .send(cloudstream::Event::new("paid").with_id("payment-7"))
        .await
        .expect("retried after the lost answer");
    let records = stream
        .read(cloudstream::ReadFrom::Earliest, 10)
        .await
        .expect("read");
    assert_eq!(records.len(), 1, "stored once: {records:?}");
    assert_eq!(records[0].position, receipt);

    let again = stream
        .send(cloudstream::Event::new("no id"))
        .await
        .expect("the proxy loses only the first answer");
    assert_ne!(again, receipt);
}
