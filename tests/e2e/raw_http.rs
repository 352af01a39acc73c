//! HTTP/1.1 by hand over TCP, for clients reqwest will not imitate: ones that stall in their
//! headers, trickle their body, or hold connections open.

use std::time::Duration;

use serde_json::Value;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};

pub async fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).await.expect("connect to the gateway")
}

/// The head of a `POST /v1/events` with a JSON body of `content_length` bytes.
pub fn post_head(content_length: usize) -> String {
    format!(
        "POST /v1/events HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\nContent-Length: {content_length}\r\n\r\n"
    )
}

/// What came back on a connection: the status (None if it closed without answering) and the
/// JSON body, if any.
#[derive(Debug)]
pub struct Answer {
    pub status: Option<u16>,
    pub body: Option<Value>,
}

/// Reads until the server closes the connection or one full response (by Content-Length) has
/// arrived, waiting at most `bound`. Panics if neither happens within it.
pub async fn read_answer(stream: &mut (impl AsyncRead + Unpin), bound: Duration) -> Answer {
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(answer) = parse(&buf) {
                return answer;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return parse(&buf).unwrap_or(Answer { status: None, body: None }),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(bound, read).await.unwrap_or_else(|_| panic!("no answer and no close within {bound:?}"))
}

fn parse(buf: &[u8]) -> Option<Answer> {
    let text = String::from_utf8_lossy(buf);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0);
    if body.len() < length {
        return None;
    }
    Some(Answer { status: Some(status), body: serde_json::from_str(&body[..length]).ok() })
}

/// Writes `bytes`, ignoring a connection the server already closed.
pub async fn send(stream: &mut (impl AsyncWrite + Unpin), bytes: &[u8]) -> bool {
    stream.write_all(bytes).await.is_ok()
}
