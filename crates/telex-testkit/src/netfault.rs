//! Network faults between nodes: a TCP proxy per ordered pair of nodes (`from` dials `to`
//! through it, via `--peer-route`), whose link can pass, be cut, swallow traffic, or delay it.
//!
//! The proxies run on their own thread and runtime, so a test that blocks its own runtime
//! (waiting on a child process, say) does not stall the cluster's traffic.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// What a link does to the bytes crossing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Bytes pass unchanged.
    Pass,
    /// Open connections are closed and new ones are closed at once (a refused connection).
    Cut,
    /// Connections stay open but nothing arrives (a black hole: peers wait for timeouts).
    Drop,
    /// Bytes arrive this much later, in order.
    Delay(Duration),
}

struct Proxy {
    listen: SocketAddr,
    target: Arc<Mutex<Option<SocketAddr>>>,
    link: watch::Sender<Link>,
}

/// Proxies between the nodes of one cluster, keyed by (from, to) node ids.
pub struct NetFaults {
    proxies: BTreeMap<(u64, u64), Proxy>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl NetFaults {
    /// One proxy for every ordered pair of distinct nodes in `nodes`.
    pub fn new(nodes: &[u64]) -> NetFaults {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("netfault")
            .enable_all()
            .build()
            .expect("proxy runtime");
        let mut proxies = BTreeMap::new();
        for &from in nodes {
            for &to in nodes.iter().filter(|&&to| to != from) {
                // Bound here (not with `block_on`: the caller may be inside a runtime).
                let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind proxy");
                listener.set_nonblocking(true).unwrap();
                let listen = listener.local_addr().unwrap();
                let target = Arc::new(Mutex::new(None));
                let (link, watch) = watch::channel(Link::Pass);
                let t = target.clone();
                runtime.spawn(async move {
                    let listener = TcpListener::from_std(listener).expect("proxy listener");
                    accept(listener, t, watch).await
                });
                proxies.insert((from, to), Proxy { listen, target, link });
            }
        }
        NetFaults { proxies, runtime: Some(runtime) }
    }

    /// The `--peer-route` flags for node `from`: every peer through its proxy.
    pub fn routes_for(&self, from: u64) -> Vec<String> {
        let mut flags = Vec::new();
        for ((f, to), p) in &self.proxies {
            if *f == from {
                flags.push("--peer-route".to_string());
                flags.push(format!("{to}={}", p.listen));
            }
        }
        flags
    }

    /// The address node `from` should use to reach `to` (for `--join`).
    pub fn addr(&self, from: u64, to: u64) -> SocketAddr {
        self.proxies[&(from, to)].listen
    }

    /// Tells every proxy towards node `to` where that node listens.
    pub fn set_node_addr(&self, to: u64, addr: SocketAddr) {
        for ((_, t), p) in &self.proxies {
            if *t == to {
                *p.target.lock().unwrap() = Some(addr);
            }
        }
    }

    /// Sets the link from `from` to `to` (one direction of traffic initiated by `from`).
    pub fn set(&self, from: u64, to: u64, link: Link) {
        self.proxies[&(from, to)].link.send_replace(link);
    }

    /// Sets both directions between every node of `a` and every node of `b`.
    pub fn between(&self, a: &[u64], b: &[u64], link: Link) {
        for &x in a {
            for &y in b {
                self.set(x, y, link);
                self.set(y, x, link);
            }
        }
    }

    /// Cuts `side` off from `rest`, both ways.
    pub fn partition(&self, side: &[u64], rest: &[u64]) {
        self.between(side, rest, Link::Cut);
    }

    /// Every link passes again.
    pub fn heal(&self) {
        for p in self.proxies.values() {
            p.link.send_replace(Link::Pass);
        }
    }
}

impl Drop for NetFaults {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn accept(listener: TcpListener, target: Arc<Mutex<Option<SocketAddr>>>, link: watch::Receiver<Link>) {
    while let Ok((inbound, _)) = listener.accept().await {
        let to = *target.lock().unwrap();
        let (Some(to), l) = (to, *link.borrow()) else { continue };
        if l == Link::Cut {
            continue;
        }
        let link = link.clone();
        tokio::spawn(async move {
            let Ok(Ok(outbound)) = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(to)).await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (ri, wi) = inbound.into_split();
            let (ro, wo) = outbound.into_split();
            tokio::select! {
                _ = pump(ri, wo, link.clone()) => {}
                _ = pump(ro, wi, link) => {}
            }
        });
    }
}

/// Copies one direction, applying the link's current state to every chunk; returns (closing
/// both halves of the connection) when either side closes or the link is cut.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    to: tokio::net::tcp::OwnedWriteHalf,
    mut link: watch::Receiver<Link>,
) {
    // Delayed chunks go through a bounded queue to a writer, so delay keeps bytes in order
    // without stalling the reader.
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>(1024);
    let writer = tokio::spawn(write_due(to, rx));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            r = from.read(&mut buf) => match r { Ok(0) | Err(_) => break, Ok(n) => n },
            changed = link.changed() => {
                if changed.is_err() || *link.borrow() == Link::Cut { break }
                continue;
            }
        };
        let due = match *link.borrow() {
            Link::Pass => Instant::now(),
            Link::Delay(d) => Instant::now() + d,
            Link::Drop => continue,
            Link::Cut => break,
        };
        if tx.send((due, buf[..n].to_vec())).await.is_err() {
            break;
        }
    }
    writer.abort();
}

async fn write_due(mut to: tokio::net::tcp::OwnedWriteHalf, mut rx: mpsc::Receiver<(Instant, Vec<u8>)>) {
    while let Some((due, bytes)) = rx.recv().await {
        tokio::time::sleep_until(due.into()).await;
        if to.write_all(&bytes).await.is_err() {
            return;
        }
    }
}
