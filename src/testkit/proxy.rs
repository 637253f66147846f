//! A TCP proxy on loopback for fault tests ([`FaultProxy`]): it forwards to an
//! upstream port until told to cut every connection (now, or once a number of
//! bytes went upstream, or came back downstream: a download cut mid-way), to cut each connection that sends more than a number of
//! bytes upstream (large uploads fail, small requests pass), to delay each
//! forwarded chunk, or to answer every new connection with an HTTP 503. Threads and blocking sockets; stopped on drop.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;

use crate::common::lock;

/// What the proxy does to traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forward everything.
    Pass,
    /// Connections are closed at once (existing ones when the mode is set).
    Cut,
    /// New connections get `HTTP/1.1 503 Slow Down` and are closed.
    Unavailable,
    /// New connections get `HTTP/1.1 507 Insufficient Storage` (a full bucket, as
    /// MinIO says it) and are closed.
    Full,
}

struct Shared {
    mode: Mutex<ProxyMode>,
    /// Bytes that may still go upstream before every connection is cut (< 0: no
    /// limit).
    cut_budget: AtomicI64,
    /// The mode once the budget is spent (`Cut` or `Full`).
    after_budget: Mutex<ProxyMode>,
    /// Bytes that may still come back downstream before every connection is cut
    /// and new ones refused (< 0: no limit).
    down_budget: AtomicI64,
    /// A connection that sent more than this upstream is cut (0: no limit).
    conn_limit: AtomicU64,
    /// Delay added before forwarding each chunk, in milliseconds.
    delay_ms: AtomicU64,
    /// Bytes forwarded upstream so far.
    upstream_bytes: AtomicU64,
    /// Open connections (both sides), to cut them.
    conns: Mutex<Vec<TcpStream>>,
    stop: AtomicBool,
}

impl Shared {
    fn cut_all(&self) {
        for c in lock(&self.conns).drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

/// A running proxy (see the module doc).
pub struct FaultProxy {
    /// Its port on 127.0.0.1.
    pub port: u16,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Starts forwarding 127.0.0.1:`port` → 127.0.0.1:`upstream`.
    pub fn start(upstream: u16) -> anyhow::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the proxy")?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            mode: Mutex::new(ProxyMode::Pass),
            cut_budget: AtomicI64::new(-1),
            after_budget: Mutex::new(ProxyMode::Cut),
            down_budget: AtomicI64::new(-1),
            conn_limit: AtomicU64::new(0),
            delay_ms: AtomicU64::new(0),
            upstream_bytes: AtomicU64::new(0),
            conns: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let s = s.clone();
                std::thread::spawn(move || serve(client, upstream, s));
            }
        });
        Ok(FaultProxy { port, shared })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Sets the mode; `Cut` also cuts the open connections.
    pub fn set_mode(&self, mode: ProxyMode) {
        *lock(&self.shared.mode) = mode;
        if mode == ProxyMode::Cut {
            self.shared.cut_all();
        }
    }

    /// Cuts every connection (and refuses new ones) once `bytes` more went upstream.
    pub fn cut_after(&self, bytes: u64) {
        self.after(bytes, ProxyMode::Cut);
    }

    /// Once `bytes` more went upstream, cuts every connection and answers new ones
    /// as `mode` says (e.g. [`ProxyMode::Full`]: the bucket filled up mid-way).
    pub fn after(&self, bytes: u64, mode: ProxyMode) {
        *lock(&self.shared.after_budget) = mode;
        self.shared
            .cut_budget
            .store(bytes.min(i64::MAX as u64) as i64, Ordering::SeqCst);
    }

    /// Cuts every connection (and refuses new ones, [`ProxyMode::Cut`]) once
    /// `bytes` more came back downstream: a download cut mid-way. `set_mode(Pass)`
    /// heals it.
    pub fn cut_after_downloaded(&self, bytes: u64) {
        self.shared
            .down_budget
            .store(bytes.min(i64::MAX as u64) as i64, Ordering::SeqCst);
    }

    /// Cuts each connection once it sent more than `bytes` upstream (0: never).
    pub fn cut_connections_over(&self, bytes: u64) {
        self.shared.conn_limit.store(bytes, Ordering::SeqCst);
    }

    /// Delays each forwarded chunk by `d`.
    pub fn set_delay(&self, d: Duration) {
        self.shared
            .delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// Bytes forwarded upstream so far.
    pub fn upstream_bytes(&self) -> u64 {
        self.shared.upstream_bytes.load(Ordering::SeqCst)
    }

    /// The current mode.
    pub fn mode(&self) -> ProxyMode {
        *lock(&self.shared.mode)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.cut_all();
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(mut client: TcpStream, upstream: u16, s: Arc<Shared>) {
    let mode = *lock(&s.mode);
    match mode {
        ProxyMode::Cut => {
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        ProxyMode::Unavailable | ProxyMode::Full => {
            let (status, code) = if mode == ProxyMode::Full {
                ("507 Insufficient Storage", "XMinioStorageFull")
            } else {
                ("503 Slow Down", "SlowDown")
            };
            client
                .set_read_timeout(Some(Duration::from_millis(200)))
                .ok();
            let mut buf = [0u8; 64 << 10];
            let _ = client.read(&mut buf);
            let body = format!("<Error><Code>{code}</Code><Message>injected</Message></Error>");
            let _ = write!(
                client,
                "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        ProxyMode::Pass => {}
    }
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    {
        let mut conns = lock(&s.conns);
        for c in [&client, &server] {
            if let Ok(c) = c.try_clone() {
                conns.push(c);
            }
        }
    }
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let up = s.clone();
    let t = std::thread::spawn(move || pump(client, server, &up, true));
    pump(s2, c2, &s, false);
    let _ = t.join();
}

fn pump(mut from: TcpStream, mut to: TcpStream, s: &Shared, upstream: bool) {
    let mut buf = vec![0u8; 64 << 10];
    let mut sent = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let delay = s.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        if upstream {
            let left = s.cut_budget.fetch_sub(n as i64, Ordering::SeqCst);
            if left >= 0 && left < n as i64 {
                *lock(&s.mode) = *lock(&s.after_budget);
                s.cut_all();
                break;
            }
            s.upstream_bytes.fetch_add(n as u64, Ordering::SeqCst);
            sent += n as u64;
            let limit = s.conn_limit.load(Ordering::SeqCst);
            if limit > 0 && sent > limit {
                let _ = from.shutdown(Shutdown::Both);
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
        } else {
            let left = s.down_budget.fetch_sub(n as i64, Ordering::SeqCst);
            if left >= 0 && left < n as i64 {
                *lock(&s.mode) = ProxyMode::Cut;
                s.cut_all();
                break;
            }
        }
        if *lock(&s.mode) != ProxyMode::Pass || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
