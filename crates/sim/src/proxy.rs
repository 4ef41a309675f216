//! A TCP proxy that injects link faults, for tests: it sits between a device and its broker and
//! can forward, drop every connection (and refuse new ones), blackhole (accept, hold, and
//! forward nothing — what a dead mobile link or a NAT that forgot the flow looks like), or let
//! only the device's bytes through (what the broker sends back is lost).
//!
//! Loopback only in our tests; nothing here is MQTT-specific.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkMode {
    /// Bytes flow both ways.
    Forward,
    /// Open connections are reset and new ones closed at once.
    Drop,
    /// Connections are accepted and held, but no byte goes through. Leaving this mode closes
    /// the held connections (the flow is gone), so clients must reconnect.
    Blackhole,
    /// The device's bytes reach the broker; the broker's are read and thrown away (acks and
    /// results published back are lost on the way). Leaving this mode closes the connections.
    UpOnly,
}

#[derive(Debug, Default)]
pub struct ProxyStats {
    pub accepted: AtomicU64,
    pub bytes_up: AtomicU64,
    pub bytes_down: AtomicU64,
}

/// A running proxy; dropping it stops accepting (open connections end with their peers).
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    mode: watch::Sender<LinkMode>,
    stats: Arc<ProxyStats>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        let _ = self.mode.send(LinkMode::Drop);
    }
}

impl FaultProxy {
    /// Listens on `listen` (e.g. `127.0.0.1:0`) and forwards to `upstream`.
    pub async fn start(listen: &str, upstream: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (mode, rx) = watch::channel(LinkMode::Forward);
        let stats = Arc::new(ProxyStats::default());
        let st = stats.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                st.accepted.fetch_add(1, Ordering::Relaxed);
                let rx = rx.clone();
                let st = st.clone();
                tokio::spawn(async move {
                    let _ = handle(client, upstream, rx, st).await;
                });
            }
        });
        Ok(Self {
            addr,
            mode,
            stats,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn set(&self, mode: LinkMode) {
        tracing::info!(?mode, "proxy link mode");
        let _ = self.mode.send(mode);
    }

    pub fn mode(&self) -> LinkMode {
        *self.mode.borrow()
    }

    pub fn stats(&self) -> &ProxyStats {
        &self.stats
    }
}

async fn hold_until_change(rx: &mut watch::Receiver<LinkMode>, from: LinkMode) {
    while *rx.borrow_and_update() == from {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

async fn handle(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut rx: watch::Receiver<LinkMode>,
    stats: Arc<ProxyStats>,
) -> std::io::Result<()> {
    let mut mode = *rx.borrow_and_update();
    match mode {
        LinkMode::Drop => return Ok(()),
        LinkMode::Blackhole => {
            hold_until_change(&mut rx, LinkMode::Blackhole).await;
            return Ok(());
        }
        LinkMode::Forward | LinkMode::UpOnly => {}
    }
    let _ = client.set_nodelay(true);
    let mut server = TcpStream::connect(upstream).await?;
    let _ = server.set_nodelay(true);
    let (mut cr, mut cw) = client.split();
    let (mut sr, mut sw) = server.split();
    let mut up = vec![0u8; 16 * 1024];
    let mut down = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() { return Ok(()); }
                let now = *rx.borrow_and_update();
                match now {
                    // What was thrown away broke the stream: the flow ends.
                    _ if mode == LinkMode::UpOnly && now != LinkMode::UpOnly => return Ok(()),
                    LinkMode::Forward | LinkMode::UpOnly => mode = now,
                    LinkMode::Drop => return Ok(()),
                    LinkMode::Blackhole => {
                        hold_until_change(&mut rx, LinkMode::Blackhole).await;
                        return Ok(());
                    }
                }
            }
            n = cr.read(&mut up) => {
                let n = n?;
                if n == 0 { return Ok(()); }
                sw.write_all(&up[..n]).await?;
                stats.bytes_up.fetch_add(n as u64, Ordering::Relaxed);
            }
            n = sr.read(&mut down) => {
                let n = n?;
                if n == 0 { return Ok(()); }
                if mode == LinkMode::UpOnly { continue; }
                cw.write_all(&down[..n]).await?;
                stats.bytes_down.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }
}
