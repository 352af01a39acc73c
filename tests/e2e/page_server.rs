//! A tiny static web server for the browser test: it serves one page from its own origin
//! (`http://127.0.0.1:<port>`) and records what that page sends back to it.
//!
//! `GET /page` is the page; `POST /report` and `GET /bye` are recorded (path and body) and
//! answered; anything else is a 404. One request per connection (`Connection: close`).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

use crate::helpers::eventually;

/// One request the page made: `GET /bye`, `POST /report` and their bodies.
#[derive(Debug, Clone)]
pub struct Hit {
    pub method: String,
    pub path: String,
    pub body: String,
}

pub struct PageServer {
    pub port: u16,
    page: Arc<Mutex<String>>,
    hits: Arc<Mutex<Vec<Hit>>>,
    task: JoinHandle<()>,
}

impl PageServer {
    /// Listens on a free local port; the page is set with [`PageServer::set_page`] (it may need
    /// to name other servers' ports, and theirs this one's).
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the page server");
        let port = listener.local_addr().expect("addr").port();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let page = Arc::new(Mutex::new(String::new()));
        let (recorded, served) = (hits.clone(), page.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let page = served.lock().expect("page").clone();
                tokio::spawn(serve(stream, page, recorded.clone()));
            }
        });
        Self { port, page, hits, task }
    }

    /// What `GET /page` answers from now on.
    pub fn set_page(&self, page: String) {
        *self.page.lock().expect("page") = page;
    }

    /// This server's origin, as a browser writes it.
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits for the page to request `path`, and returns the body it sent.
    pub async fn wait_for(&self, method: &str, path: &str, timeout: Duration) -> String {
        let what = format!("the page's {method} {path} on {}", self.origin());
        eventually(timeout, &what, || async {
            let hits = self.hits.lock().expect("hits");
            hits.iter().find(|h| h.method == method && h.path == path).map(|h| h.body.clone())
        })
        .await
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, page: String, hits: Arc<Mutex<Vec<Hit>>>) {
    let Some((method, path, body)) = read_request(&mut stream).await else { return };
    let (status, content_type, answer) = match (method.as_str(), path.as_str()) {
        ("GET", "/page") => ("200 OK", "text/html; charset=utf-8", page),
        ("POST", "/report") | ("GET", "/bye") => {
            hits.lock().expect("hits").push(Hit { method: method.clone(), path: path.clone(), body });
            ("200 OK", "text/html; charset=utf-8", "<!doctype html><title>bye</title>".to_owned())
        }
        _ => ("404 Not Found", "text/plain", "not found".to_owned()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n",
        answer.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Reads one request's method, path and body (by Content-Length), within 10 s.
async fn read_request(stream: &mut TcpStream) -> Option<(String, String, String)> {
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if body.len() >= length {
                    let mut request_line = head.lines().next()?.split(' ');
                    let method = request_line.next()?.to_owned();
                    let path = request_line.next()?.to_owned();
                    return Some((method, path, body[..length].to_owned()));
                }
            }
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read).await.ok().flatten()
}
