//! A loopback TCP proxy in front of a server (an `influxd`) that injects the faults a client
//! must survive without losing track of what the server may hold: answers withheld after the
//! request went through (the write lands, the client times out), connections reset before or
//! after the request reached the server, and refused connections.
//!
//! It works at the TCP level, with no HTTP parsing: the [`Mode`] in force when bytes arrive
//! decides what happens to them, so a mode applies from the next request on, on new and pooled
//! connections alike. Plain threads and blocking sockets, so it works under any test runtime
//! (paused tokio time included). Everything stops when the [`StallProxy`] is dropped.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};

/// What the proxy does with the traffic of every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Pass everything through.
    Forward,
    /// Forward requests; swallow the answer and keep the connection open, silent, until the
    /// client gives up. The server has processed the request: a write has landed.
    StallAnswers,
    /// Forward requests; when the answer arrives, reset the client's connection instead of
    /// passing it on. The server has processed the request.
    ResetAfterRequest,
    /// Reset the client's connection as soon as it sends request bytes, forwarding none of
    /// them: the server sees nothing.
    ResetMidRequest,
    /// Close the listening socket (connections are refused) and every open connection.
    Refuse,
}

/// Counts of what the proxy did, for assertions.
#[derive(Debug, Default)]
struct Counters {
    connections: AtomicUsize,
    /// Answers swallowed by `StallAnswers` (one per stalled connection).
    stalled: AtomicUsize,
    /// Connections reset by `ResetAfterRequest` or `ResetMidRequest`.
    resets: AtomicUsize,
}

struct Shared {
    upstream: SocketAddr,
    state: Mutex<State>,
    changed: Condvar,
    counters: Counters,
}

struct State {
    mode: Mode,
    stopping: bool,
    /// Whether the accept loop holds its listening socket (false while refusing).
    listening: bool,
    /// Open connections, to close them on `Refuse` and on drop.
    conns: Vec<Weak<Conn>>,
}

/// One proxied connection, shared by its two pumping threads.
struct Conn {
    client: TcpStream,
    upstream: TcpStream,
    /// Set when the client side is being reset: the other thread must not send a FIN first.
    reset: AtomicBool,
}

impl Conn {
    /// Resets the client connection: linger 0 so that the last close sends RST, then wakes
    /// both threads so that they let go of the socket.
    fn reset(&self, counters: &Counters) {
        self.reset.store(true, Ordering::SeqCst);
        linger_zero(&self.client);
        counters.resets.fetch_add(1, Ordering::SeqCst);
        let _ = self.upstream.shutdown(Shutdown::Both);
        let _ = self.client.shutdown(Shutdown::Read);
    }
}

/// A running proxy, stopped on drop.
pub struct StallProxy {
    shared: Arc<Shared>,
    pub addr: SocketAddr,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl StallProxy {
    /// Starts a proxy to `upstream` on a free loopback port, in [`Mode::Forward`].
    pub fn start(upstream: SocketAddr) -> StallProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy listener");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            upstream,
            state: Mutex::new(State {
                mode: Mode::Forward,
                stopping: false,
                listening: true,
                conns: Vec::new(),
            }),
            changed: Condvar::new(),
            counters: Counters::default(),
        });
        let s = shared.clone();
        let accept = std::thread::Builder::new()
            .name("stall-proxy".into())
            .spawn(move || accept_loop(s, listener, addr))
            .expect("proxy thread");
        StallProxy {
            shared,
            addr,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn mode(&self) -> Mode {
        self.shared.lock().mode
    }

    /// Switches the mode; it applies to the next bytes any connection sends or receives.
    /// Entering `Refuse` closes every open connection and the listener before returning;
    /// leaving it listens again on the same port before returning.
    pub fn set_mode(&self, mode: Mode) {
        let refuse = mode == Mode::Refuse;
        let mut state = self.shared.lock();
        state.mode = mode;
        if refuse {
            close_all(&mut state);
        }
        let wake = refuse && state.listening;
        drop(state);
        self.shared.changed.notify_all();
        if wake {
            // Wake the accept loop, which then drops the listener.
            let _ = TcpStream::connect(self.addr);
        }
        let mut state = self.shared.lock();
        while !state.stopping && state.listening == refuse {
            state = (self.shared.changed.wait(state)).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.counters.connections.load(Ordering::SeqCst)
    }

    /// Answers swallowed so far by [`Mode::StallAnswers`].
    pub fn stalled(&self) -> usize {
        self.shared.counters.stalled.load(Ordering::SeqCst)
    }

    /// Connections reset so far.
    pub fn resets(&self) -> usize {
        self.shared.counters.resets.load(Ordering::SeqCst)
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        {
            let mut state = self.shared.lock();
            state.stopping = true;
            close_all(&mut state);
        }
        self.shared.changed.notify_all();
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn mode(&self) -> Mode {
        self.lock().mode
    }
}

fn close_all(state: &mut State) {
    for c in state.conns.drain(..).filter_map(|w| w.upgrade()) {
        let _ = c.client.shutdown(Shutdown::Both);
        let _ = c.upstream.shutdown(Shutdown::Both);
    }
}

fn accept_loop(shared: Arc<Shared>, listener: TcpListener, addr: SocketAddr) {
    let mut listener = Some(listener);
    loop {
        let Some(l) = &listener else {
            // Refusing: wait for another mode, then listen on the same port again.
            let mut state = shared.lock();
            while !state.stopping && state.mode == Mode::Refuse {
                state = shared
                    .changed
                    .wait(state)
                    .unwrap_or_else(|p| p.into_inner());
            }
            if state.stopping {
                return;
            }
            listener = Some(TcpListener::bind(addr).expect("proxy listens again on its port"));
            state.listening = true;
            drop(state);
            shared.changed.notify_all();
            continue;
        };
        let Ok((client, _)) = l.accept() else {
            continue;
        };
        let mut state = shared.lock();
        if state.stopping {
            return;
        }
        if state.mode == Mode::Refuse {
            // The wake-up connection from `set_mode` (or a client racing it): stop listening.
            drop(client);
            listener = None;
            state.listening = false;
            drop(state);
            shared.changed.notify_all();
            continue;
        }
        drop(state);
        shared.counters.connections.fetch_add(1, Ordering::SeqCst);
        let Ok(upstream) = TcpStream::connect(shared.upstream) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let conn = Arc::new(Conn {
            client,
            upstream,
            reset: AtomicBool::new(false),
        });
        let mut state = shared.lock();
        state.conns.retain(|w| w.strong_count() > 0);
        state.conns.push(Arc::downgrade(&conn));
        drop(state);
        let (s, c) = (shared.clone(), conn.clone());
        std::thread::spawn(move || client_to_upstream(&s, &c));
        let s = shared.clone();
        std::thread::spawn(move || upstream_to_client(&s, &conn));
    }
}

/// Makes the last close of `s` send a reset (RST) instead of an orderly FIN.
fn linger_zero(s: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a plain setsockopt on an open socket with a correctly sized value.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

fn client_to_upstream(shared: &Shared, conn: &Conn) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match (&conn.client).read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if shared.mode() == Mode::ResetMidRequest {
            conn.reset(&shared.counters);
            return;
        }
        if (&conn.upstream).write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = conn.upstream.shutdown(Shutdown::Write);
}

fn upstream_to_client(shared: &Shared, conn: &Conn) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut stalled = false;
    loop {
        let n = match (&conn.upstream).read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if stalled {
            continue;
        }
        match shared.mode() {
            Mode::StallAnswers => {
                // Swallow this answer and everything after it on this connection.
                stalled = true;
                shared.counters.stalled.fetch_add(1, Ordering::SeqCst);
            }
            Mode::ResetAfterRequest => {
                conn.reset(&shared.counters);
                return;
            }
            _ => {
                if (&conn.client).write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    if !stalled && !conn.reset.load(Ordering::SeqCst) {
        let _ = conn.client.shutdown(Shutdown::Write);
    }
}
