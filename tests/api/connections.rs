//! What one client connection may hold: the size of its request head, the time it takes to
//! send one, and how many connections are served at once.

use std::time::Duration;

use pgua::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{TestApp, spawn_app_with};

/// Long enough that only a server that never answers hits it.
const NO_ANSWER: Duration = Duration::from_secs(60);

async fn connect(app: &TestApp) -> TcpStream {
    let addr = app.base.trim_start_matches("http://");
    TcpStream::connect(addr).await.unwrap()
}

/// `GET /healthz` with `extra` header lines, on a kept-alive connection.
fn healthz(extra: &str) -> String {
    format!("GET /healthz HTTP/1.1\r\nhost: test\r\n{extra}\r\n")
}

/// Reads one response: its status and body (by `content-length`); `None` at end of stream.
async fn read_response(stream: &mut TcpStream) -> Option<(u16, serde_json::Value)> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let status = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the body ended early: {head}");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = serde_json::from_slice(&buf[head_end..head_end + length])
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&buf)));
    Some((status, body))
}

async fn answered(app: &TestApp) -> bool {
    app.get("/healthz", &[]).await.str("status") == "ok"
}

#[tokio::test]
async fn a_head_past_max_header_bytes_gets_431_json_and_the_server_keeps_answering() {
    let app = spawn_app_with(Config::default()).await;
    let mut stream = connect(&app).await;
    let pad = format!("x-pad: {}\r\n", "a".repeat(32 * 1024));
    stream.write_all(healthz(&pad).as_bytes()).await.unwrap();
    let (status, body) = tokio::time::timeout(NO_ANSWER, read_response(&mut stream))
        .await
        .unwrap()
        .expect("an answer before the close");
    assert_eq!(status, 431, "{body}");
    assert_eq!(body["error"], "request headers are too large", "{body}");
    // The connection is closed after it; the server is not.
    let closed = tokio::time::timeout(NO_ANSWER, read_response(&mut stream)).await;
    assert!(
        matches!(closed, Ok(None)),
        "the connection stays open after a 431"
    );
    assert!(answered(&app).await);
    // A head within the limit, on the same kind of connection, is served.
    let mut stream = connect(&app).await;
    let pad = format!("x-pad: {}\r\n", "a".repeat(8 * 1024));
    stream.write_all(healthz(&pad).as_bytes()).await.unwrap();
    let (status, body) = read_response(&mut stream).await.unwrap();
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("ok")),
        "{body}"
    );
}

#[tokio::test]
async fn a_stalled_head_and_an_idle_connection_are_closed_after_the_header_timeout() {
    let mut config = Config::default();
    config.http.header_read_timeout_secs = 1;
    let app = spawn_app_with(config).await;
    let mut stalled = connect(&app).await;
    stalled
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: te")
        .await
        .unwrap();
    let mut idle = connect(&app).await;
    idle.write_all(healthz("").as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut idle).await.unwrap().0, 200);
    for stream in [&mut stalled, &mut idle] {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(NO_ANSWER, stream.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the server keeps a stalled connection open");
        assert!(
            rest.is_empty(),
            "nothing is answered to a half head: {}",
            String::from_utf8_lossy(&rest)
        );
    }
    assert!(answered(&app).await);
}

#[tokio::test]
async fn past_max_connections_a_connection_waits_and_is_answered_once_one_closes() {
    let mut config = Config::default();
    config.http.max_connections = 2;
    let app = spawn_app_with(config).await;
    let mut first = connect(&app).await;
    let mut second = connect(&app).await;
    for stream in [&mut first, &mut second] {
        stream.write_all(healthz("").as_bytes()).await.unwrap();
        assert_eq!(read_response(stream).await.unwrap().0, 200);
    }
    // The kernel completes the third handshake (it is in the listen backlog) and takes its
    // request, but the server does not accept it while two connections are open.
    let mut third = connect(&app).await;
    third.write_all(healthz("").as_bytes()).await.unwrap();
    let waiting = tokio::time::timeout(Duration::from_millis(500), read_response(&mut third)).await;
    assert!(waiting.is_err(), "a third connection was served at once");
    drop(first);
    let (status, body) = tokio::time::timeout(NO_ANSWER, read_response(&mut third))
        .await
        .expect("the third connection is served once the first closes")
        .expect("an answer");
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("ok")),
        "{body}"
    );
    // The second is still served: the limit refused nobody.
    second.write_all(healthz("").as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut second).await.unwrap().0, 200);
}
