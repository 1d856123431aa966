//! `sensor::metrics::serve` over real HTTP/1.1 on loopback: status, content
//! type and values of `/metrics`, updates between scrapes, 404 elsewhere,
//! and keep-alive (two requests on one connection).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use sensor::metrics::{MetricsSnapshot, RuleMetrics, SinkCounters, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bounds every network wait.
const WAIT: Duration = Duration::from_secs(10);

struct HttpResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The value of the sample line `series` (name and labels as written).
    fn sample(&self, series: &str) -> Option<u64> {
        self.body.lines().find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().unwrap())
        })
    }
}

/// Reads one response (with a Content-Length body) from the stream.
async fn read_response(stream: &mut TcpStream) -> HttpResponse {
    let mut raw = Vec::new();
    let head_end = loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let mut chunk = [0u8; 4096];
        let read = tokio::time::timeout(WAIT, stream.read(&mut chunk))
            .await
            .expect("response head within the bound")
            .unwrap();
        assert!(read > 0, "connection closed before the response head");
        raw.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8(raw[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let mut parts = status_line.splitn(3, ' ');
    assert_eq!(parts.next(), Some("HTTP/1.1"), "{status_line}");
    let status = parts.next().unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (key, value) = line.split_once(':').unwrap();
            (key.trim().to_owned(), value.trim().to_owned())
        })
        .collect();
    let length: usize = headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("content-length"))
        .map(|(_, value)| value.parse().unwrap())
        .expect("a Content-Length header");
    let mut body = raw[head_end + 4..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        let read = tokio::time::timeout(WAIT, stream.read(&mut chunk))
            .await
            .expect("response body within the bound")
            .unwrap();
        assert!(read > 0, "connection closed inside the body");
        body.extend_from_slice(&chunk[..read]);
    }
    assert_eq!(body.len(), length, "more bytes than Content-Length");
    HttpResponse {
        status,
        headers,
        body: String::from_utf8(body).unwrap(),
    }
}

async fn request(stream: &mut TcpStream, method: &str, path: &str) -> HttpResponse {
    let request = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    read_response(stream).await
}

async fn connect(addr: std::net::SocketAddr) -> TcpStream {
    tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("connect within the bound")
        .unwrap()
}

fn snapshot() -> MetricsSnapshot {
    MetricsSnapshot {
        packets_seen: 1_000_000,
        packets_passed: 999_000,
        packets_dropped: 1_000,
        rules: vec![RuleMetrics {
            sig_id: 100001,
            name: r#"TCP "SYN" and FIN set"#.to_owned(),
            hits: 42,
            alerts: 7,
        }],
        json: SinkCounters {
            lines: 7,
            errors: 0,
        },
        rules_loaded: 1,
        ..MetricsSnapshot::default()
    }
}

#[tokio::test]
async fn serves_metrics_and_404_elsewhere() {
    let shared = Arc::new(RwLock::new(snapshot()));
    let (addr, server) = serve("127.0.0.1:0".parse().unwrap(), shared.clone())
        .await
        .unwrap();
    assert_ne!(addr.port(), 0, "the bound port is returned");

    let mut stream = connect(addr).await;
    let scrape = request(&mut stream, "GET", "/metrics").await;
    assert_eq!(scrape.status, 200);
    assert_eq!(
        scrape.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(scrape.sample("sensor_packets_total"), Some(1_000_000));
    assert_eq!(scrape.sample("sensor_packets_dropped_total"), Some(1_000));
    assert_eq!(
        scrape.sample(r#"sensor_rule_hits_total{sig_id="100001",name="TCP \"SYN\" and FIN set"}"#),
        Some(42)
    );
    assert_eq!(
        scrape.sample(r#"sensor_alert_lines_total{sink="json"}"#),
        Some(7)
    );
    assert_eq!(scrape.sample("sensor_rules_loaded"), Some(1));
    assert!(
        scrape
            .body
            .contains("# TYPE sensor_packets_total counter\n")
    );

    // The engine updates the snapshot; the next scrape (same connection,
    // HTTP/1.1 keep-alive) shows it.
    {
        let mut guard = shared.write().unwrap();
        guard.packets_seen += 5;
        guard.syslog.queued = 3;
    }
    let again = request(&mut stream, "GET", "/metrics").await;
    assert_eq!(again.status, 200);
    assert_eq!(again.sample("sensor_packets_total"), Some(1_000_005));
    assert_eq!(again.sample("sensor_syslog_queue_depth"), Some(3));

    let mut other = connect(addr).await;
    let missing = request(&mut other, "GET", "/").await;
    assert_eq!(missing.status, 404);
    let missing = request(&mut other, "GET", "/metricsx").await;
    assert_eq!(missing.status, 404);
    let post = request(&mut other, "POST", "/metrics").await;
    assert_eq!(post.status, 405);

    // Aborting the server closes the open connections too.
    server.abort();
    let _ = server.await;
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(WAIT, stream.read(&mut byte))
        .await
        .expect("connection closed within the bound");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

#[tokio::test]
async fn reports_a_port_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let shared = Arc::new(RwLock::new(MetricsSnapshot::default()));
    let err = serve(taken.local_addr().unwrap(), shared)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
}

/// Idle connections cannot pile up: past the cap a new one is closed at
/// once, and scraping works again as soon as the idle ones go.
#[tokio::test]
async fn connections_are_capped() {
    use tokio::io::AsyncReadExt;
    let shared = Arc::new(RwLock::new(snapshot()));
    let (addr, server) = serve("127.0.0.1:0".parse().unwrap(), shared).await.unwrap();
    let mut idle = Vec::new();
    for _ in 0..64 {
        idle.push(connect(addr).await);
    }
    // Let the server take all of them before the one over the cap.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut over = connect(addr).await;
    let mut byte = [0u8; 1];
    // Well under the server's 10 s header timeout: only the cap closes it.
    let read = tokio::time::timeout(Duration::from_secs(3), over.read(&mut byte))
        .await
        .expect("closed at once, not left hanging");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    drop(idle);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut stream = connect(addr).await;
    assert_eq!(request(&mut stream, "GET", "/metrics").await.status, 200);
    server.abort();
}
