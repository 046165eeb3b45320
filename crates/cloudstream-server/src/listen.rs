//! The accept loop: HTTP/1.1 over TCP, or over TLS (rustls) when given a certificate, with a
//! deadline on the request head (a client that opens a connection and trickles its headers
//! is cut off) and on the TLS handshake, and a graceful shutdown that lets requests in
//! progress finish.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// How connections are served.
#[derive(Clone, Default)]
pub struct ServeOptions {
    /// TLS with this certificate; plain HTTP when `None`.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// Longest a client may take to send a request's head (and to finish the TLS handshake)
    /// before the connection is closed; default 10 s.
    pub header_timeout: Option<Duration>,
    /// Most connections open at once; one more is answered 503 and closed. Default: the
    /// process's descriptor limit less 256 kept for the provider's files (64 to 16,384), so
    /// that a flood of connections can never take the descriptors a segment roll needs.
    pub max_connections: Option<usize>,
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("tls", &self.tls.is_some())
            .field("header_timeout", &self.header_timeout)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Descriptors kept for the provider (segment files, checkpoints) below the process limit.
const RESERVED_DESCRIPTORS: u64 = 256;

/// Raises the process's soft limit of open descriptors to its hard limit, as servers
/// commonly do at start (the soft default, often 1,024, is below what a busy server needs);
/// returns the soft limit in effect afterwards.
pub fn raise_descriptor_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    let Some(soft) = limit.current else {
        return u64::MAX;
    };
    if limit.maximum.is_none_or(|hard| hard > soft) {
        let mut raised = limit;
        raised.current = limit.maximum;
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return limit.maximum.unwrap_or(u64::MAX);
        }
    }
    soft
}

/// The default connection cap: the descriptor limit less [`RESERVED_DESCRIPTORS`].
fn default_max_connections() -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    soft.saturating_sub(RESERVED_DESCRIPTORS).clamp(64, 16_384) as usize
}

/// Connections over the cap answered at once; more are closed without an answer.
const MAX_REFUSALS: usize = 32;

/// Answers a connection over the cap with a 503 and closes it: the answer written, the
/// write side shut, and what the client sent read and dropped for up to a second.
async fn refuse(mut tcp: tokio::net::TcpStream, _refusal: tokio::sync::OwnedSemaphorePermit) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let answer = async {
        tcp.write_all(&over_capacity()).await?;
        tcp.shutdown().await?;
        let mut sink = [0; 4096];
        while tcp.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), answer).await;
}

/// The answer to a connection over the cap.
fn over_capacity() -> Vec<u8> {
    let body = r#"{"error":{"code":"too_many_connections","message":"the server holds as many connections as it may; retry later"}}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         connection: close\r\nretry-after: 1\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// How long a shutdown waits for the requests in progress.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A TLS configuration from a PEM certificate chain and a PEM private key, offering
/// HTTP/1.1 by ALPN.
pub fn tls_config(
    cert: &Path,
    key: &Path,
) -> Result<Arc<tokio_rustls::rustls::ServerConfig>, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read certificates from {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("no certificate in {}", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read a private key from {}: {e}", key.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("no TLS protocol version available: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("certificate and key do not make a TLS configuration: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `router` on `listener` until `shutdown` completes, then waits up to 5 s for the
/// requests in progress and closes every connection left.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let header_timeout = options.header_timeout.unwrap_or(DEFAULT_HEADER_TIMEOUT);
    let slots = Arc::new(tokio::sync::Semaphore::new(
        options
            .max_connections
            .unwrap_or_else(default_max_connections),
    ));
    let refusals = Arc::new(tokio::sync::Semaphore::new(MAX_REFUSALS));
    let tls = options.tls.map(TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, _peer) = tokio::select! {
            // Reap finished connections as they end.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors and the like: wait a little rather than spin.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            // Answered in a task of its own (a few at a time: each holds a descriptor), the
            // request read and dropped so the close is not a reset; over TLS, just closed.
            if tls.is_none() {
                match Arc::clone(&refusals).try_acquire_owned() {
                    Ok(refusal) => {
                        tokio::spawn(refuse(tcp, refusal));
                    }
                    // Too many refusals at once: the answer if it fits the socket's buffer
                    // now, then the close.
                    Err(_) => {
                        let _ = tcp.try_write(&over_capacity());
                    }
                }
            }
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let router = router.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        connections.spawn(async move {
            let _slot = slot;
            match tls {
                None => connection(tcp, router, header_timeout, watcher).await,
                Some(acceptor) => {
                    match tokio::time::timeout(header_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            connection(stream, router, header_timeout, watcher).await;
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    // Requests in progress get a grace period; what still runs after it (a live tail never
    // ends by itself) is cut, so that nothing holds the provider once this returns.
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
    connections.abort_all();
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Serves one connection: HTTP/1.1 with keep-alive and the header deadline.
async fn connection<S>(
    stream: S,
    router: Router,
    header_timeout: Duration,
    watcher: hyper_util::server::graceful::Watcher,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
