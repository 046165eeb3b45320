//! Protection through real clients against a real listener: bearer tokens with scopes
//! (through reqwest and through the `http://` client backend), TLS with a certificate made
//! for the test, and the deadline on a request's headers.

mod support;

use std::time::Duration;

use cloudstream_server::{token_hash, Config, ServeOptions, Server, Tokens};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DEVICE: &str = "device-token";
const READER: &str = "reader-token";
const ADMIN: &str = "admin-token";
const TELEMETRY_ADMIN: &str = "telemetry-admin-token";

fn tokens() -> Tokens {
    let file = format!(
        "{} write telemetry\n{} read telemetry,audit*\n{} admin *\n{} admin telemetry\n",
        token_hash(DEVICE),
        token_hash(READER),
        token_hash(ADMIN),
        token_hash(TELEMETRY_ADMIN)
    );
    Tokens::parse(&file).expect("tokens file")
}

/// A server over a fresh in-memory engine; returns its address.
async fn start(config: Config, options: ServeOptions) -> std::net::SocketAddr {
    let client = cloudstream::open("memory://").await.expect("open memory");
    let server = Server::open(client, config).await.expect("server");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _keep = server.clone();
        cloudstream_server::serve_with(listener, server.router(), options, std::future::pending())
            .await
    });
    addr
}

#[tokio::test]
async fn tokens_grant_scopes_per_stream() {
    let config = Config {
        tokens: Some(tokens()),
        ..Config::default()
    };
    let addr = start(config, ServeOptions::default()).await;
    let api = support::Api::new(format!("http://{addr}"));
    let (http, url) = (&api.http, |path: &str| api.url(path));
    use reqwest::Method as M;

    // Open routes stay open.
    let (status, _) = api.request(M::GET, url("/healthz"), None, None).await;
    assert_eq!(status, StatusCode::OK);

    // No token, or an unknown one: 401 with a JSON body and a challenge.
    let response = http.get(url("/v1/streams")).send().await.expect("send");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["www-authenticate"].to_str().ok(),
        Some("Bearer")
    );
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, _) = api
        .request(M::GET, url("/v1/streams"), Some("wrong"), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Only admin creates streams.
    for (token, expected) in [(DEVICE, 403), (READER, 403), (ADMIN, 201)] {
        let (status, body) = api
            .request(
                M::PUT,
                url("/v1/streams/telemetry"),
                Some(token),
                Some(json!({})),
            )
            .await;
        assert_eq!(status.as_u16(), expected, "{token}: {body}");
        if expected == 403 {
            assert_eq!(body["error"]["code"], "forbidden");
        }
    }
    api.request(
        M::PUT,
        url("/v1/streams/other"),
        Some(ADMIN),
        Some(json!({})),
    )
    .await;

    // The device writes but does not read; the reader reads but does not write.
    let event = json!({"payload": "21.5"});
    let events = url("/v1/streams/telemetry/events");
    let records = url("/v1/streams/telemetry/records");
    let (status, _) = api
        .request(M::POST, events.clone(), Some(DEVICE), Some(event.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = api
        .request(M::GET, records.clone(), Some(DEVICE), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = api.request(M::GET, records, Some(READER), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["records"][0]["payload"], "21.5");
    let (status, _) = api
        .request(M::POST, events, Some(READER), Some(event.clone()))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A grant covers only its streams; listing shows only those.
    let (status, _) = api
        .request(
            M::POST,
            url("/v1/streams/other/events"),
            Some(DEVICE),
            Some(event),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, body) = api
        .request(M::GET, url("/v1/streams"), Some(DEVICE), None)
        .await;
    assert_eq!(body["streams"], json!(["telemetry"]));
    let (_, body) = api
        .request(M::GET, url("/v1/streams"), Some(ADMIN), None)
        .await;
    assert_eq!(body["streams"], json!(["other", "telemetry"]));

    // A reader commits its own consumers but deletes none, and cannot touch a webhook's.
    let checkpoint = url("/v1/streams/telemetry/consumers/mine/checkpoint");
    let (status, _) = api
        .request(
            M::PUT,
            checkpoint,
            Some(READER),
            Some(json!({"0": "earliest"})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api
        .request(
            M::DELETE,
            url("/v1/streams/telemetry/consumers/mine"),
            Some(READER),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api
        .request(
            M::POST,
            url("/v1/streams/telemetry/consumers/webhook-x/fetch"),
            Some(READER),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api
        .request(
            M::DELETE,
            url("/v1/streams/telemetry/consumers/mine"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // A webhook writes its dead-letter stream, so registering one needs admin there too.
    let hook = url("/v1/streams/telemetry/webhooks/h");
    let spec = json!({"url": "http://127.0.0.1:9/hook"});
    let (status, body) = api
        .request(
            M::PUT,
            hook.clone(),
            Some(TELEMETRY_ADMIN),
            Some(spec.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("telemetry.dlq"),
        "{body}"
    );
    let (status, _) = api
        .request(M::PUT, hook.clone(), Some(ADMIN), Some(spec))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = api.request(M::DELETE, hook, Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // Metrics name every stream: admin only. Health stays open.
    let metrics = |token| {
        let mut request = http.get(url("/metrics"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    assert_eq!(
        metrics(None).await.expect("metrics").status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        metrics(Some(READER)).await.expect("metrics").status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        metrics(Some(ADMIN)).await.expect("metrics").status(),
        StatusCode::OK
    );

    // The client backend carries the token from its URL.
    let device = cloudstream::open(&format!("http://{addr}?token={DEVICE}"))
        .await
        .expect("open as device");
    let stream = device
        .stream("telemetry")
        .open()
        .await
        .expect("open stream");
    stream
        .send(cloudstream::Event::new("22.0"))
        .await
        .expect("device sends");
    let err = stream
        .read(cloudstream::ReadFrom::Earliest, 10)
        .await
        .expect_err("device cannot read");
    assert!(matches!(err, cloudstream::Error::Forbidden(_)), "{err:?}");
    let err = cloudstream::open(&format!("http://{addr}?token=wrong"))
        .await
        .expect_err("unknown token");
    assert!(
        matches!(err, cloudstream::Error::Unauthenticated(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn tls_serves_https_with_the_given_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write key");
    let options = ServeOptions {
        tls: Some(cloudstream_server::tls_config(&cert_path, &key_path).expect("tls config")),
        ..ServeOptions::default()
    };
    let addr = start(Config::default(), options).await;
    let port = addr.port();

    let trusted = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).expect("pem"),
        )
        .build()
        .expect("client");
    let response = trusted
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
        .expect("https request");
    assert_eq!(response.status(), StatusCode::OK);

    // A client that does not trust the certificate is refused; plain HTTP gets no answer.
    let untrusted = reqwest::Client::new();
    assert!(untrusted
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
        .is_err());
    assert!(reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .is_err());

    // The client backend over https, trusting the certificate through ca_file.
    let client = cloudstream::open(&format!(
        "https://localhost:{port}?ca_file={}",
        cert_path.display()
    ))
    .await
    .expect("open https://");
    let stream = client.stream("secure").create().await.expect("create");
    let receipt = stream
        .send(cloudstream::Event::new("sealed"))
        .await
        .expect("send");
    let records = stream
        .read(cloudstream::ReadFrom::At(receipt), 1)
        .await
        .expect("read");
    assert_eq!(&records[0].event.payload[..], b"sealed");
    let bad = cloudstream::open(&format!(
        "https://localhost:{port}?ca_file={}",
        dir.path().join("missing.pem").display()
    ))
    .await
    .expect_err("missing ca file");
    assert!(
        matches!(bad, cloudstream::Error::InvalidUrl { .. }),
        "{bad:?}"
    );
}

#[tokio::test]
async fn a_client_trickling_headers_is_cut_off() {
    let options = ServeOptions {
        tls: None,
        header_timeout: Some(Duration::from_millis(300)),
        ..ServeOptions::default()
    };
    let addr = start(Config::default(), options).await;
    let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    // Never finishes its headers: the server closes the connection after the deadline.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf))
        .await
        .expect("the server closed the connection within 5 s");
    assert!(read.is_err() || !String::from_utf8_lossy(&buf).contains("200 OK"));

    // A prompt client on another connection is served.
    let mut quick = tokio::net::TcpStream::connect(addr).await.expect("connect");
    quick
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = String::new();
    quick.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Connections over the cap get a 503 with a JSON body and are closed, so a flood of idle
/// connections can never take the descriptors the provider needs; once one closes, the next
/// client is served.
#[tokio::test]
async fn connections_over_the_cap_are_refused_with_a_503() {
    let options = ServeOptions {
        max_connections: Some(2),
        ..ServeOptions::default()
    };
    let addr = start(Config::default(), options).await;
    let first = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let _second = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut third = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), third.read_to_string(&mut answer))
        .await
        .expect("answered at once")
        .expect("read");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains(r#""code":"too_many_connections""#),
        "{answer}"
    );
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut quick = tokio::net::TcpStream::connect(addr).await.expect("connect");
        quick
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut answer = String::new();
        quick.read_to_string(&mut answer).await.expect("read");
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a slot frees when a connection closes: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn whoami_tells_a_token_what_it_may_do() {
    use reqwest::Method as M;
    let config = Config {
        tokens: Some(tokens()),
        ..Config::default()
    };
    let addr = start(config, ServeOptions::default()).await;
    let api = support::Api::new(format!("http://{addr}"));
    let url = api.url("/v1/whoami");
    let (status, body) = api.request(M::GET, url.clone(), Some(READER), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({
            "tokens_required": true,
            "grants": [{"scope": "read", "streams": ["telemetry", "audit*"]}],
        })
    );
    let (status, body) = api.request(M::GET, url.clone(), Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["grants"],
        json!([{"scope": "admin", "streams": ["*"]}])
    );
    let (status, _) = api.request(M::GET, url, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A server without tokens lets everyone do everything.
    let open = start(Config::default(), ServeOptions::default()).await;
    let api = support::Api::new(format!("http://{open}"));
    let (status, body) = api.get("/v1/whoami").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"tokens_required": false, "grants": null}));
}

#[tokio::test]
async fn the_console_page_is_public_and_locked_down() {
    let config = Config {
        tokens: Some(tokens()),
        ..Config::default()
    };
    let addr = start(config, ServeOptions::default()).await;
    let http = reqwest::Client::new();
    for path in ["/", "/console/", "/console/js/app.js", "/console/style.css"] {
        let response = http
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let csp = response.headers()["content-security-policy"]
            .to_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe"),
            "{csp}"
        );
    }
    // The API behind it still wants the token.
    let response = http
        .get(format!("http://{addr}/v1/streams"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = http
        .get(format!("http://{addr}/console/nowhere.js"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}
