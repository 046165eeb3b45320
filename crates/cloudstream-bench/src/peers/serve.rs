//! `cloudstream serve` over its embedded engine (`sync=always`), driven over HTTP/1.1 as
//! any client would: one keep-alive connection per producer and consumer, JSON bodies.

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use super::{Kind, Tools};
use crate::peer::{assigned, Consumer, Peer, Producer};
use crate::process::{free_port, Server};

pub(super) const KIND: Kind = Kind {
    name: "cloudstream-serve",
    about: "cloudstream serve over HTTP/1.1 (local://, sync=always)",
    durability: "fdatasync before the answer (sync=always)",
    start: |dir, tools| Box::pin(start(dir, tools)),
};

struct Served {
    server: Server,
    addr: String,
}

async fn start(dir: &Path, tools: &Tools) -> Result<Box<dyn Peer>> {
    let addr = format!("127.0.0.1:{}", free_port()?);
    let args = [
        "--url".to_owned(),
        format!("local://{}/data?sync=always", dir.display()),
        "serve".to_owned(),
        "--listen".to_owned(),
        addr.clone(),
    ];
    let mut server = Server::start(KIND.name, &tools.cloudstream, &args, dir, &tools.logs)?;
    server.wait_for(&addr).await?;
    Ok(Box::new(Served { server, addr }))
}

/// One HTTP/1.1 keep-alive connection.
struct Connection {
    sender: SendRequest<Full<Bytes>>,
    host: String,
}

impl Connection {
    async fn open(addr: &str) -> Result<Connection> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(tcp)).await?;
        // Ends with the sender; a failure shows in the next request.
        tokio::spawn(connection);
        Ok(Connection {
            sender,
            host: addr.to_owned(),
        })
    }

    /// `method path` with a JSON body; the status and the body.
    async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes)> {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, &self.host)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(body))?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        Ok((status, response.into_body().collect().await?.to_bytes()))
    }
}

/// The JSON of an event whose payload is text (the harness's payloads are).
fn event(key: Option<&str>, payload: &Bytes) -> Value {
    let text = String::from_utf8_lossy(payload);
    match key {
        Some(key) => json!({ "payload": text, "key": key }),
        None => json!({ "payload": text }),
    }
}

#[async_trait]
impl Peer for Served {
    fn kind(&self) -> &'static Kind {
        &KIND
    }

    fn pid(&self) -> Option<u32> {
        Some(self.server.pid())
    }

    async fn create(&self, stream: &str, partitions: u32) -> Result<()> {
        let body = json!({ "partitions": partitions }).to_string();
        let (status, answer) = Connection::open(&self.addr)
            .await?
            .call(Method::PUT, &format!("/v1/streams/{stream}"), body.into())
            .await?;
        ensure!(
            status.is_success(),
            "creating {stream}: {status} {answer:?}"
        );
        Ok(())
    }

    async fn producer(&self, stream: &str, _partitions: u32) -> Result<Box<dyn Producer>> {
        Ok(Box::new(Sender {
            connection: Connection::open(&self.addr).await?,
            one: format!("/v1/streams/{stream}/events"),
            many: format!("/v1/streams/{stream}/events/batch"),
            made: None,
        }))
    }

    async fn consumer(
        &self,
        stream: &str,
        partitions: u32,
        index: u32,
        of: u32,
    ) -> Result<Box<dyn Consumer>> {
        let from = assigned(partitions, index, of)
            .map(|p| (p, "earliest".to_owned()))
            .collect();
        Ok(Box::new(Reader {
            connection: Connection::open(&self.addr).await?,
            stream: stream.to_owned(),
            from,
        }))
    }

    async fn stop(self: Box<Self>) -> Result<()> {
        self.server.stop().await
    }
}

struct Sender {
    connection: Connection,
    one: String,
    many: String,
    /// The last body made, and what it was made of (a closed loop sends the same payloads
    /// again and again: made once, as a client sending a fixed message would).
    made: Option<(Made, Bytes)>,
}

/// What a body was made of.
#[derive(Debug, PartialEq, Eq)]
struct Made {
    key: Option<String>,
    payloads: Vec<Bytes>,
    batch: bool,
}

impl Sender {
    /// The JSON body for `payloads`, made again only if they changed.
    fn body(&mut self, key: Option<&str>, payloads: &[Bytes], batch: bool) -> Result<Bytes> {
        let made = Made {
            key: key.map(str::to_owned),
            payloads: payloads.to_vec(),
            batch,
        };
        if let Some((last, body)) = &self.made {
            if *last == made {
                return Ok(body.clone());
            }
        }
        let body = if batch {
            let events: Vec<Value> = payloads.iter().map(|p| event(key, p)).collect();
            Bytes::from(serde_json::to_vec(&events)?)
        } else {
            Bytes::from(event(key, &payloads[0]).to_string())
        };
        self.made = Some((made, body.clone()));
        Ok(body)
    }
}

#[async_trait]
impl Producer for Sender {
    async fn send(&mut self, key: Option<&str>, payload: Bytes) -> Result<()> {
        let body = self.body(key, std::slice::from_ref(&payload), false)?;
        let (status, answer) = self.connection.call(Method::POST, &self.one, body).await?;
        ensure!(status == StatusCode::CREATED, "send: {status} {answer:?}");
        Ok(())
    }

    async fn send_batch(&mut self, key: Option<&str>, payloads: Vec<Bytes>) -> Result<()> {
        let body = self.body(key, &payloads, true)?;
        let (status, answer) = self.connection.call(Method::POST, &self.many, body).await?;
        ensure!(status.is_success(), "send_batch: {status} {answer:?}");
        let answer: Value = serde_json::from_slice(&answer)?;
        let results = answer["results"]
            .as_array()
            .context("a batch answer without results")?;
        ensure!(
            results.len() == payloads.len(),
            "{} results for {} events",
            results.len(),
            payloads.len()
        );
        if let Some(error) = results.iter().find(|r| r.get("error").is_some()) {
            bail!("send_batch: an event failed: {error}");
        }
        Ok(())
    }
}

/// Reads its partitions in turn with `GET /records`, each from after its last position.
struct Reader {
    connection: Connection,
    stream: String,
    from: Vec<(u32, String)>,
}

#[async_trait]
impl Consumer for Reader {
    async fn poll(&mut self) -> Result<Vec<Bytes>> {
        let mut out = Vec::new();
        for wait in [0, 100] {
            for (partition, from) in &mut self.from {
                let path = format!(
                    "/v1/streams/{}/records?partition={partition}&from={from}&max=10000&wait_ms={wait}&payload=text",
                    self.stream
                );
                let (status, body) = self
                    .connection
                    .call(Method::GET, &path, Bytes::new())
                    .await?;
                ensure!(status == StatusCode::OK, "read: {status} {body:?}");
                let body: Value = serde_json::from_slice(&body)?;
                let records = body["records"]
                    .as_array()
                    .context("a read without records")?;
                if let Some(last) = records.last() {
                    *from = format!(
                        "after:{}",
                        last["position"]
                            .as_str()
                            .context("a record without a position")?
                    );
                }
                out.extend(
                    records
                        .iter()
                        .map(|r| Bytes::from(r["payload"].as_str().unwrap_or_default().to_owned())),
                );
                if wait > 0 {
                    break;
                }
            }
            if !out.is_empty() {
                break;
            }
        }
        Ok(out)
    }
}
