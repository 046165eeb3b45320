//! The API through a real HTTP client against a real server on a loopback port, over the
//! embedded engine in memory: every route, and every error as a status with a JSON body.

#[path = "../support/mod.rs"]
mod support;

mod consumers;
mod service;
mod streams;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{assert_error, error_code};

/// A client of a test server.
type Server = support::Api;

async fn start() -> Server {
    start_with(cloudstream_server::Limits {
        max_batch_events: 100,
        max_body_bytes: 2 * 1024 * 1024,
        ..cloudstream_server::Limits::default()
    })
    .await
}

async fn start_with(limits: cloudstream_server::Limits) -> Server {
    let client = cloudstream::open("memory://").await.expect("open memory");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = cloudstream_server::router(client, limits);
    tokio::spawn(cloudstream_server::serve(
        listener,
        router,
        std::future::pending(),
    ));
    support::Api::new(format!("http://{addr}"))
}
