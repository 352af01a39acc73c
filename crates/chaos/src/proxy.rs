//! A small TCP proxy the harness controls: the network fault between a sinker and PostgreSQL
//! or Kafka, without root or kernel features. It can pass bytes, stall them (connections stay
//! open and silent, like a partition with no RST), or cut every open connection (like a
//! firewall reset); new connections are accepted in every mode.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpListener, TcpStream,
    },
    sync::watch,
    task::JoinHandle,
};

#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    stalled: bool,
    /// Bumped by `cut`: connections of an older generation close.
    generation: u64,
    /// Armed by `cut_after`: the next client bytes containing this are delivered, then the
    /// proxy stalls (the answer is held) and cuts everything `hold` later.
    cut_after: Option<(Vec<u8>, Duration)>,
}

pub struct Proxy {
    pub listen: SocketAddr,
    pub target: SocketAddr,
    control: Arc<watch::Sender<State>>,
    accepted: Arc<AtomicU64>,
    cut_connections: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Listens on `listen` (port 0: any free port) and forwards to `target`.
    pub async fn start(listen: SocketAddr, target: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let listen = listener.local_addr()?;
        let (control, _) = watch::channel(State { stalled: false, generation: 0, cut_after: None });
        let control = Arc::new(control);
        let accepted = Arc::new(AtomicU64::new(0));
        let cut_connections = Arc::new(AtomicU64::new(0));
        let task = {
            let (control, accepted, cut) = (control.clone(), accepted.clone(), cut_connections.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    accepted.fetch_add(1, Ordering::Relaxed);
                    let (ctl, cut, control) = (control.subscribe(), cut.clone(), control.clone());
                    tokio::spawn(async move {
                        let _ = client.set_nodelay(true);
                        // The target may be down (a stopped broker): the client sees a close.
                        let Ok(server) = TcpStream::connect(target).await else {
                            return;
                        };
                        let _ = server.set_nodelay(true);
                        connection(client, server, ctl, &control, &cut).await;
                    });
                }
            })
        };
        Ok(Self { listen, target, control, accepted, cut_connections, task })
    }

    /// Stop moving bytes in both directions; connections stay open.
    pub fn stall(&self) {
        self.control.send_modify(|s| s.stalled = true);
    }

    /// Move bytes again (what was held is delivered).
    pub fn pass(&self) {
        self.control.send_modify(|s| s.stalled = false);
    }

    /// Close every open connection now (and stop stalling).
    pub fn cut(&self) {
        cut(&self.control);
    }

    /// The next time a client sends bytes containing `pattern` (e.g. PostgreSQL's `COMMIT`),
    /// deliver them, hold every answer, and cut all connections `hold` later: the server has
    /// done the work, the client never hears about it.
    pub fn cut_after(&self, pattern: &[u8], hold: Duration) {
        self.control.send_modify(|s| s.cut_after = Some((pattern.to_vec(), hold)));
    }

    /// Whether a `cut_after` is still waiting for its pattern.
    pub fn cut_after_armed(&self) -> bool {
        self.control.borrow().cut_after.is_some()
    }

    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Connections closed by `cut`.
    pub fn cut_connections(&self) -> u64 {
        self.cut_connections.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

fn cut(control: &watch::Sender<State>) {
    control.send_modify(|s| {
        s.generation += 1;
        s.stalled = false;
    });
}

async fn connection(
    client: TcpStream,
    server: TcpStream,
    ctl: watch::Receiver<State>,
    control: &Arc<watch::Sender<State>>,
    cut: &AtomicU64,
) {
    let generation = ctl.borrow().generation;
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pump(client_read, server_write, ctl.clone(), generation, Some(control));
    let down = pump(server_read, client_write, ctl, generation, None);
    // Either direction ending (close, error or cut) ends the connection: both halves drop.
    let ended = tokio::select! {
        e = up => e,
        e = down => e,
    };
    if ended == End::Cut {
        cut.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug, PartialEq, Eq)]
enum End {
    Closed,
    Cut,
}

async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut ctl: watch::Receiver<State>,
    generation: u64,
    // Set on the client-to-server direction: where `cut_after` is watched for.
    control: Option<&Arc<watch::Sender<State>>>,
) -> End {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // Hold while stalled; leave when cut.
        loop {
            let state = ctl.borrow_and_update().clone();
            if state.generation != generation {
                return End::Cut;
            }
            if !state.stalled {
                break;
            }
            if ctl.changed().await.is_err() {
                return End::Closed;
            }
        }
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return End::Closed,
                Ok(n) => n,
            },
            // Re-check the mode; a read in progress is cancel-safe (no byte lost).
            changed = ctl.changed() => {
                if changed.is_err() {
                    return End::Closed;
                }
                continue;
            }
        };
        if let Some(control) = control {
            let mut hit = None;
            control.send_if_modified(|s| match &s.cut_after {
                Some((pattern, hold)) if buf[..n].windows(pattern.len()).any(|w| w == pattern.as_slice()) => {
                    hit = Some(*hold);
                    s.cut_after = None;
                    true
                }
                _ => false,
            });
            if let Some(hold) = hit {
                let delivered = to.write_all(&buf[..n]).await.is_ok();
                control.send_modify(|s| s.stalled = true);
                let control = control.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(hold).await;
                    cut(&control);
                });
                if !delivered {
                    return End::Closed;
                }
                continue;
            }
        }
        // Bytes read just before a stall are held until it ends (or dropped by a cut).
        loop {
            let state = ctl.borrow_and_update().clone();
            if state.generation != generation {
                return End::Cut;
            }
            if !state.stalled {
                break;
            }
            if ctl.changed().await.is_err() {
                return End::Closed;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return End::Closed;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn roundtrip(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
        s.write_all(msg).await?;
        let mut buf = vec![0u8; msg.len()];
        s.read_exact(&mut buf).await?;
        Ok(buf)
    }

    #[tokio::test]
    async fn passes_stalls_and_cuts() {
        let target = echo_server().await;
        let proxy = Proxy::start("127.0.0.1:0".parse().expect("addr"), target).await.expect("proxy");
        let mut s = TcpStream::connect(proxy.listen).await.expect("connect");
        assert_eq!(roundtrip(&mut s, b"one").await.expect("pass"), b"one");

        proxy.stall();
        let stalled = tokio::time::timeout(Duration::from_millis(300), roundtrip(&mut s, b"two")).await;
        assert!(stalled.is_err(), "no answer while stalled");
        proxy.pass();
        let mut buf = [0u8; 3];
        s.read_exact(&mut buf).await.expect("held bytes delivered");
        assert_eq!(&buf, b"two");

        proxy.cut();
        let mut rest = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
            .await
            .expect("closed in time")
            .unwrap_or(0);
        assert_eq!(n, 0, "a cut connection is closed");
        assert_eq!(proxy.cut_connections(), 1);

        let mut again = TcpStream::connect(proxy.listen).await.expect("reconnect");
        assert_eq!(roundtrip(&mut again, b"new").await.expect("new"), b"new");
        assert_eq!(proxy.accepted(), 2);
    }

    #[tokio::test]
    async fn cut_after_delivers_the_pattern_then_holds_the_answer_and_cuts() {
        let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
        // a server that records what it received and answers "ok"
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let target = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let seen = seen_tx.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        let _ = seen.send(buf[..n].to_vec());
                        if s.write_all(b"ok").await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let proxy = Proxy::start("127.0.0.1:0".parse().expect("addr"), target).await.expect("proxy");
        let mut s = TcpStream::connect(proxy.listen).await.expect("connect");
        assert_eq!(roundtrip(&mut s, b"hi").await.expect("pass"), b"ok");
        assert_eq!(seen_rx.recv().await.expect("seen"), b"hi");

        proxy.cut_after(b"COMMIT", Duration::from_millis(200));
        assert!(proxy.cut_after_armed());
        s.write_all(b"xCOMMITx").await.expect("write");
        assert_eq!(seen_rx.recv().await.expect("delivered"), b"xCOMMITx");
        assert!(!proxy.cut_after_armed());
        let mut rest = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
            .await
            .expect("closed in time")
            .unwrap_or(0);
        assert_eq!(n, 0, "the answer was never delivered: the connection was cut");
        assert_eq!(proxy.cut_connections(), 1);
    }
}
