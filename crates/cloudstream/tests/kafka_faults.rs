//! Kafka failures a healthy broker never shows, injected between the client and a real
//! tansu broker: this test starts its own broker (SQLite storage in a temporary directory)
//! advertising a loopback proxy's address, so every connection of the client goes through the proxy. The proxy reads the
//! Kafka framing (a 4-byte length, then the request's API key and correlation id) and, when
//! told, forwards a `Produce` request but drops the connection instead of the answer: the
//! records are stored, the client never hears so, and its idempotent producer must send
//! them again without a duplicate, and the call must still answer with every record's
//! position.
//!
//! Broker binary: `CLOUDSTREAM_TANSU` (default `~/.cache/cloudstream/tools/tansu/bin/tansu`,
//! where `scripts/servers.sh` installs it).

#![cfg(feature = "kafka")]

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloudstream::conformance::unique_name;
use cloudstream::{Event, ReadFrom};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

const PRODUCE: i16 = 0;

/// A broker process, killed when dropped, and its storage (removed then).
struct Broker(Child, #[allow(dead_code)] tempfile::TempDir);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tansu() -> String {
    std::env::var("CLOUDSTREAM_TANSU").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_default();
        format!("{home}/.cache/cloudstream/tools/tansu/bin/tansu")
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts tansu on `port`, advertising `advertised`; fails if it does not listen.
async fn start_broker(port: u16, advertised: u16) -> Broker {
    let dir = tempfile::tempdir().expect("tempdir");
    let child = Command::new(tansu())
        .current_dir(dir.path())
        .args([
            "broker",
            "--listener-url",
            &format!("tcp://127.0.0.1:{port}"),
            "--advertised-listener-url",
            &format!("tcp://127.0.0.1:{advertised}"),
            "--storage-engine",
            "sqlite://faults.db",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start tansu at {} ({e}); scripts/servers.sh installs it",
                tansu()
            )
        });
    let broker = Broker(child, dir);
    for _ in 0..200 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return broker;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("tansu did not listen on 127.0.0.1:{port}");
}

/// Reads one Kafka frame (length prefix and body).
async fn frame(from: &mut OwnedReadHalf) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    from.read_exact(&mut len).await.ok()?;
    let len = i32::from_be_bytes(len);
    let mut body = vec![0u8; usize::try_from(len).ok()?];
    from.read_exact(&mut body).await.ok()?;
    Some(body)
}

async fn send(to: &mut OwnedWriteHalf, body: &[u8]) -> Option<()> {
    to.write_all(&(body.len() as i32).to_be_bytes())
        .await
        .ok()?;
    to.write_all(body).await.ok()
}

/// Relays one client connection; drops it instead of a `Produce` answer while `drops` is
/// above zero.
async fn relay(client: TcpStream, upstream: u16, drops: Arc<AtomicU32>) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // Correlation id → API key of the requests under way.
    let pending: Arc<Mutex<HashMap<i32, i16>>> = Arc::default();
    let requests = {
        let pending = pending.clone();
        async move {
            while let Some(body) = frame(&mut client_read).await {
                if body.len() >= 8 {
                    let api = i16::from_be_bytes([body[0], body[1]]);
                    let id = i32::from_be_bytes([body[4], body[5], body[6], body[7]]);
                    pending.lock().expect("lock").insert(id, api);
                }
                send(&mut server_write, &body).await?;
            }
            None::<()>
        }
    };
    let answers = async move {
        while let Some(body) = frame(&mut server_read).await {
            let id = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
            let api = pending.lock().expect("lock").remove(&id);
            if api == Some(PRODUCE)
                && drops
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
            {
                return None; // the records are stored; the client never hears so
            }
            send(&mut client_write, &body).await?;
        }
        None::<()>
    };
    tokio::select! {
        _ = requests => {}
        _ = answers => {}
    }
}

/// A produce whose answer is lost (the connection drops after the broker stored the
/// records) is sent again by the idempotent producer, and the broker keeps one copy: every
/// event is read back once, in order.
#[tokio::test]
async fn a_produce_whose_answer_is_lost_is_stored_once() {
    let proxy = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let proxy_port = proxy.local_addr().expect("addr").port();
    let broker_port = free_port();
    let _broker = start_broker(broker_port, proxy_port).await;
    let drops = Arc::new(AtomicU32::new(0));
    {
        let drops = drops.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = proxy.accept().await {
                tokio::spawn(relay(conn, broker_port, drops.clone()));
            }
        });
    }
    let client = cloudstream::open(&format!("kafka://127.0.0.1:{proxy_port}"))
        .await
        .expect("open");
    let stream = client
        .stream(&unique_name("lost-answer"))
        .horizon(Duration::from_secs(3600))
        .create()
        .await
        .expect("create");
    let batch = |from: usize, n: usize| {
        (from..from + n)
            .map(|i| Event::new(format!("e{i}")).with_key("k"))
            .collect::<Vec<_>>()
    };
    assert!(stream
        .send_batch(batch(0, 20))
        .await
        .iter()
        .all(Result::is_ok));
    drops.store(1, Ordering::SeqCst);
    let results = stream.send_batch(batch(20, 100)).await;
    assert_eq!(
        drops.load(Ordering::SeqCst),
        0,
        "no produce answer was dropped"
    );
    // The broker recognised the resent batch as a duplicate without naming its offsets;
    // the receipts were found by reading back.
    for (i, r) in results.iter().enumerate() {
        let receipt = r.as_ref().expect("stored");
        assert_eq!(
            receipt.sequence.as_u64(),
            Some(20 + i as u64),
            "receipt {i}"
        );
    }
    let mut records = Vec::new();
    let mut from = ReadFrom::Earliest;
    while records.len() < 130 {
        let got = stream.read(from, 1000).await.expect("read");
        let Some(last) = got.last() else { break };
        from = ReadFrom::After(last.position);
        records.extend(got);
    }
    let payloads: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8_lossy(r.payload()).into_owned())
        .collect();
    let expected: Vec<String> = (0..120).map(|i| format!("e{i}")).collect();
    assert_eq!(payloads, expected, "every event once, in order");
}
