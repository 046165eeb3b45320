//! `cloudstream serve`: the REST API from the binary.

use super::*;

/// `cloudstream serve` answers the REST API on the address it is given; a real HTTP client
/// (curl, as a user would) sends an event and reads it back.
#[test]
fn serves_the_rest_api() {
    let cli = Cli::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut server = cli
        .command(&["serve", "--listen", &listen])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let base = format!("http://{listen}");
    let curl = |args: &[&str]| -> String {
        let out = Command::new("curl")
            .args([
                "-s",
                "--retry",
                "50",
                "--retry-connrefused",
                "--retry-delay",
                "0",
            ])
            .args(args)
            .output()
            .expect("curl");
        String::from_utf8(out.stdout).expect("utf8")
    };
    let created = curl(&[
        "-X",
        "PUT",
        &format!("{base}/v1/streams/s"),
        "-d",
        r#"{"horizon":"48h"}"#,
        "-H",
        "content-type: application/json",
    ]);
    assert!(created.contains(r#""name":"s""#), "{created}");
    let sent = curl(&[
        &format!("{base}/v1/streams/s/events"),
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"payload":"hello"}"#,
    ]);
    assert!(sent.contains(r#""position":"0:0""#), "{sent}");
    let read = curl(&[&format!("{base}/v1/streams/s/records")]);
    assert!(read.contains(r#""payload":"hello""#), "{read}");
    // The command line itself against the server: --url http://...
    cli.ok(&["--url", &base, "send", "s", "from-the-cli"]);
    let read = cli.ok(&["--url", &base, "read", "s", "--from", "earliest"]);
    assert!(
        read.contains("hello") && read.contains("from-the-cli"),
        "{read}"
    );
    let consumed = cli.ok(&["--url", &base, "consume", "s", "--consumer", "c"]);
    assert!(consumed.contains("from-the-cli"), "{consumed}");
    let described = cli.ok(&["--url", &base, "describe", "s"]);
    assert!(described.contains('c'), "{described}");
    server.kill().expect("stop server");
    let _ = server.wait();
}
