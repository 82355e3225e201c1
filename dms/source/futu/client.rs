//! The connection to OpenD: one TCP connection, many requests in flight, reconnect on demand.
//!
//! # Design
//!
//! [`Client`] is a cheap handle; the socket belongs to one *connection task* (an actor, as in
//! mini-redis), so no lock is ever held across an `.await`:
//!
//! ```text
//!  Client::call ──Command──▶ connection task ──frames──▶ OpenD
//!       ▲                     │ owns: write half, serial counter,
//!       └──── oneshot ────────┤       pending map (proto id, serial) → caller,
//!                             │       keepalive timer, liveness clock
//!                             ◀──Event── reader task ◀── read half
//! ```
//!
//! - The connection task connects lazily: the first call (or the first after a loss) opens the
//!   TCP connection and performs InitConnect (1001) before anything else is sent. Calls that
//!   arrive meanwhile wait in the command queue, so there is only ever one connect in progress.
//! - Every packet, keepalives included, takes the next value of one `u32` serial counter that
//!   lives as long as the client, so serials strictly increase on a connection and across
//!   reconnects (OpenD ignores a request whose serial does not increase).
//! - The reader task decodes frames (flag, body-length cap, SHA-1) and forwards them. Replies are
//!   matched to callers by `(proto id, serial)`; anything unmatched — 1003 notifications and
//!   other pushes, keepalive acknowledgements, replies to callers that gave up — is skipped.
//! - KeepAlive (1004) is sent every 0.8 × the `keepAliveInterval` InitConnect returned. When
//!   nothing at all has arrived for 3.3 × that interval (the SDK's 33 s for the usual 10 s), the
//!   connection is considered dead.
//! - When the reader sees EOF, an I/O error or a corrupt frame, or a write fails, the connection
//!   is dropped and every request in flight fails with [`SourceError::Transient`] naming the
//!   cause. The next call reconnects.
//! - Every call is bounded by the configured timeout, from queueing to reply (connect and
//!   InitConnect included). A caller that times out leaves an entry in the pending map; the
//!   entries of callers that are gone are swept on each keepalive tick.
//!
//! The connection task ends, closing the socket, when the last `Client` handle is dropped.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, Interval, MissedTickBehavior, timeout_at};

use super::error::Refusal;
use super::frame::{self, Frame};
use super::proto::{self, Proto, Request, Response, ids, init_connect, keep_alive};
use crate::domain::SourceKind;
use crate::source::{SourceError, gate};

/// Used when OpenD returns a non-positive `keepAliveInterval`.
const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(10);

/// How to reach OpenD and identify DMS to it.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub host: String,
    pub port: u16,
    /// Bounds every call from queueing to reply, connect and InitConnect included.
    pub timeout: Duration,
    /// InitConnect `clientID`: any id unique to this client.
    pub client_id: String,
    /// InitConnect `clientVer` (`major * 100 + minor`).
    pub client_ver: i32,
}

/// What InitConnect told us about the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    pub conn_id: u64,
    pub server_ver: i32,
    pub login_user_id: u64,
    pub keep_alive: Duration,
}

/// Why a call failed: either it never got a usable answer, or OpenD answered `retType != 0`.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    Failed(SourceError),
    Refused(Refusal),
}

impl CallError {
    /// `symbol` names the security for an "unknown security" refusal.
    pub fn into_source_error(self, symbol: Option<&str>) -> SourceError {
        match self {
            CallError::Failed(e) => e,
            CallError::Refused(r) => r.into_error(symbol),
        }
    }
}

impl From<SourceError> for CallError {
    fn from(e: SourceError) -> CallError {
        CallError::Failed(e)
    }
}

/// A handle on the connection to OpenD. Share it (behind an `Arc`) rather than making several:
/// each `Client` has its own connection, and OpenD limits connections.
pub struct Client {
    cfg: Arc<ClientConfig>,
    /// The connection task's queue, created on the first call so that a `Client` can be built
    /// outside a Tokio runtime.
    commands: OnceLock<mpsc::Sender<Command>>,
}

impl Client {
    pub fn new(cfg: ClientConfig) -> Client {
        Client {
            cfg: Arc::new(cfg),
            commands: OnceLock::new(),
        }
    }

    fn commands(&self) -> &mpsc::Sender<Command> {
        self.commands.get_or_init(|| {
            let (tx, rx) = mpsc::channel(256);
            let task = ConnectionTask {
                cfg: self.cfg.clone(),
                commands: rx,
                serial: 0,
                live: None,
            };
            tokio::spawn(task.run());
            tx
        })
    }

    /// Sends one request and waits for its reply. `build` makes the request from the
    /// connection's details (GetGlobalState wants the login user id); it runs on the connection
    /// task once the connection is up.
    pub async fn call<P: Proto>(
        &self,
        build: impl FnOnce(&ConnInfo) -> P::C2s + Send + 'static,
    ) -> Result<(P::S2c, Arc<ConnInfo>), CallError> {
        let (tx, rx) = oneshot::channel();
        let command = Command {
            proto_id: P::ID,
            name: P::NAME,
            build: Box::new(move |info| Request { c2s: build(info) }.encode_to_vec()),
            reply: tx,
        };
        let exchange = async {
            self.commands()
                .send(command)
                .await
                .map_err(|_| task_stopped())?;
            rx.await.map_err(|_| task_stopped())?
        };
        let reply = match tokio::time::timeout(self.cfg.timeout, exchange).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(timeout(format!(
                    "{} timed out after {}s",
                    P::NAME,
                    self.cfg.timeout.as_secs_f64()
                ))
                .into());
            }
        };
        let response = Response::<P::S2c>::decode(reply.body)
            .map_err(|e| malformed(format!("cannot parse {} reply: {e}", P::NAME)))?;
        if response.ret_type != proto::ret_type::SUCCEED {
            return Err(CallError::Refused(Refusal {
                proto: P::NAME,
                ret_type: response.ret_type,
                ret_msg: response.ret_msg.unwrap_or_default(),
                err_code: response.err_code,
            }));
        }
        let s2c = response.s2c.ok_or_else(|| SourceError::Remote {
            src: SourceKind::Futu,
            message: format!("{} reply has no s2c", P::NAME),
        })?;
        Ok((s2c, reply.conn))
    }
}

/// `message` is shown after `futu: `.
fn transient(message: String) -> SourceError {
    SourceError::transient(SourceKind::Futu, message)
}

fn timeout(message: String) -> SourceError {
    SourceError::Timeout {
        src: SourceKind::Futu,
        message,
    }
}

fn malformed(message: String) -> SourceError {
    SourceError::Malformed {
        src: SourceKind::Futu,
        message,
    }
}

fn task_stopped() -> SourceError {
    transient("the connection task stopped".to_string())
}

type BuildBody = Box<dyn FnOnce(&ConnInfo) -> Vec<u8> + Send>;

/// A request for the connection task.
struct Command {
    proto_id: u32,
    name: &'static str,
    build: BuildBody,
    reply: oneshot::Sender<Result<Reply, SourceError>>,
}

/// A reply body, with the connection it came on.
struct Reply {
    body: Bytes,
    conn: Arc<ConnInfo>,
}

/// From the reader task.
enum Event {
    Frame(Frame),
    /// The connection is unusable; the reason is the error message for callers.
    Closed(String),
}

/// A request waiting for its reply.
struct Pending {
    name: &'static str,
    reply: oneshot::Sender<Result<Reply, SourceError>>,
}

/// The connection task's state: at most one live connection.
struct ConnectionTask {
    cfg: Arc<ClientConfig>,
    commands: mpsc::Receiver<Command>,
    /// The last serial used. One counter for the client's life: serials increase across
    /// reconnects as well (wrapping after 2³² packets, skipping 0).
    serial: u32,
    live: Option<Live>,
}

/// An established connection (InitConnect done).
struct Live {
    info: Arc<ConnInfo>,
    writer: OwnedWriteHalf,
    /// This connection's reader; a fresh channel per connection, so nothing from an old
    /// connection can be mistaken for a reply on a new one.
    events: mpsc::Receiver<Event>,
    _reader: AbortOnDrop,
    pending: HashMap<(u32, u32), Pending>,
    keepalive: Interval,
    last_rx: Instant,
    dead_after: Duration,
}

/// Aborts the reader task when the connection is dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

enum Step {
    Command(Command),
    Event(Event),
    KeepAlive,
    Shutdown,
}

impl ConnectionTask {
    async fn run(mut self) {
        loop {
            let step = match self.live.as_mut() {
                None => match self.commands.recv().await {
                    Some(c) => Step::Command(c),
                    None => Step::Shutdown,
                },
                Some(live) => tokio::select! {
                    // Replies and closures first: a command must not be written to a
                    // connection already known to be gone.
                    biased;
                    e = live.events.recv() => Step::Event(e.unwrap_or_else(|| {
                        Event::Closed("the connection reader stopped".into())
                    })),
                    _ = live.keepalive.tick() => Step::KeepAlive,
                    c = self.commands.recv() => c.map_or(Step::Shutdown, Step::Command),
                },
            };
            match step {
                Step::Command(c) => self.on_command(c).await,
                Step::Event(Event::Frame(f)) => self.on_frame(f),
                Step::Event(Event::Closed(reason)) => self.disconnect(reason),
                Step::KeepAlive => self.on_keepalive().await,
                Step::Shutdown => {
                    if let Some(live) = &self.live {
                        tracing::debug!(
                            source = "futu",
                            conn_id = live.info.conn_id,
                            "closing the connection to opend"
                        );
                    }
                    return;
                }
            }
        }
    }

    fn next_serial(&mut self) -> u32 {
        self.serial = self.serial.wrapping_add(1).max(1);
        self.serial
    }

    async fn on_command(&mut self, c: Command) {
        if c.reply.is_closed() {
            // The caller timed out while this waited in the queue.
            return;
        }
        if self.live.is_none() {
            match self.connect().await {
                Ok(live) => self.live = Some(live),
                Err(e) => {
                    tracing::warn!(source = "futu", host = %self.cfg.host, port = self.cfg.port, error = %e, "cannot connect to opend");
                    let _ = c.reply.send(Err(e));
                    return;
                }
            }
        }
        let serial = self.next_serial();
        let deadline = gate::instant_after(self.cfg.timeout);
        let Some(live) = self.live.as_mut() else {
            return;
        };
        let body = (c.build)(&live.info);
        match write_frame(
            &mut live.writer,
            c.proto_id,
            serial,
            &body,
            deadline,
            c.name,
        )
        .await
        {
            Ok(()) => {
                tracing::debug!(
                    source = "futu",
                    proto = c.name,
                    proto_id = c.proto_id,
                    serial,
                    conn_id = live.info.conn_id,
                    "request sent"
                );
                live.pending.insert(
                    (c.proto_id, serial),
                    Pending {
                        name: c.name,
                        reply: c.reply,
                    },
                );
            }
            Err(failed) => {
                let _ = c.reply.send(Err(failed.error()));
                // A failed or timed-out write may have left half a packet on the wire.
                self.disconnect(failed.reason);
            }
        }
    }

    fn on_frame(&mut self, f: Frame) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        live.last_rx = Instant::now();
        if let Some(p) = live.pending.remove(&(f.proto_id, f.serial)) {
            tracing::debug!(
                source = "futu",
                proto = p.name,
                serial = f.serial,
                bytes = f.body.len(),
                "reply received"
            );
            let _ = p.reply.send(Ok(Reply {
                body: f.body,
                conn: live.info.clone(),
            }));
            return;
        }
        match f.proto_id {
            ids::KEEP_ALIVE => {
                tracing::trace!(source = "futu", serial = f.serial, "keepalive acknowledged")
            }
            ids::NOTIFY => {
                tracing::debug!(source = "futu", serial = f.serial, "skipped a notification")
            }
            proto_id => tracing::debug!(
                source = "futu",
                proto_id,
                serial = f.serial,
                "skipped a push or a reply nobody waits for"
            ),
        }
    }

    async fn on_keepalive(&mut self) {
        let serial = self.next_serial();
        let deadline = gate::instant_after(self.cfg.timeout);
        let Some(live) = self.live.as_mut() else {
            return;
        };
        live.pending.retain(|_, p| !p.reply.is_closed());
        let silent = live.last_rx.elapsed();
        if silent > live.dead_after {
            self.disconnect(format!(
                "nothing received from opend for {}s, connection considered dead",
                silent.as_secs()
            ));
            return;
        }
        let body = Request {
            c2s: keep_alive::C2s { time: unix_now() },
        }
        .encode_to_vec();
        let written = write_frame(
            &mut live.writer,
            ids::KEEP_ALIVE,
            serial,
            &body,
            deadline,
            "KeepAlive",
        )
        .await;
        match written {
            Ok(()) => tracing::trace!(source = "futu", serial, "keepalive sent"),
            Err(failed) => self.disconnect(failed.reason),
        }
    }

    /// Drops the connection and fails every request in flight with `reason`.
    fn disconnect(&mut self, reason: String) {
        let Some(mut live) = self.live.take() else {
            return;
        };
        let in_flight = live.pending.len();
        for (_, p) in live.pending.drain() {
            let _ = p.reply.send(Err(transient(reason.clone())));
        }
        tracing::warn!(
            source = "futu",
            conn_id = live.info.conn_id,
            in_flight,
            reason = %reason,
            "connection to opend lost; the next request reconnects"
        );
    }

    /// Opens a connection and performs InitConnect.
    async fn connect(&mut self) -> Result<Live, SourceError> {
        let cfg = self.cfg.clone();
        let deadline = gate::instant_after(cfg.timeout);
        let secs = cfg.timeout.as_secs_f64();
        let stream =
            match timeout_at(deadline, TcpStream::connect((cfg.host.as_str(), cfg.port))).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    return Err(transient(format!(
                        "cannot connect to opend at {}:{}: {e}",
                        cfg.host, cfg.port
                    )));
                }
                Err(_) => {
                    return Err(timeout(format!(
                        "connect to opend at {}:{} timed out after {secs}s",
                        cfg.host, cfg.port
                    )));
                }
            };
        // Requests are small and latency matters more than packet count.
        let _ = stream.set_nodelay(true);
        let (rd, mut writer) = stream.into_split();
        let (tx, mut events) = mpsc::channel(64);
        let reader = AbortOnDrop(tokio::spawn(read_loop(rd, tx)));

        let serial = self.next_serial();
        let body = Request {
            c2s: init_connect::C2s {
                client_ver: cfg.client_ver,
                client_id: cfg.client_id.clone(),
                recv_notify: Some(false),
                packet_enc_algo: Some(proto::PACKET_ENC_ALGO_NONE),
                push_proto_fmt: Some(proto::PROTO_FMT_PROTOBUF),
                programming_language: Some("Rust".into()),
                ai_type: None,
            },
        }
        .encode_to_vec();
        write_frame(
            &mut writer,
            ids::INIT_CONNECT,
            serial,
            &body,
            deadline,
            "InitConnect",
        )
        .await
        .map_err(|f| f.error())?;
        let reply = loop {
            match timeout_at(deadline, events.recv()).await {
                Ok(Some(Event::Frame(f)))
                    if f.proto_id == ids::INIT_CONNECT && f.serial == serial =>
                {
                    break f;
                }
                Ok(Some(Event::Frame(f))) => tracing::debug!(
                    source = "futu",
                    proto_id = f.proto_id,
                    serial = f.serial,
                    "skipped a packet before InitConnect's reply"
                ),
                Ok(Some(Event::Closed(reason))) => return Err(transient(reason)),
                Ok(None) => return Err(transient("the connection reader stopped".into())),
                Err(_) => {
                    return Err(timeout(format!("InitConnect timed out after {secs}s")));
                }
            }
        };
        let response = Response::<init_connect::S2c>::decode(reply.body)
            .map_err(|e| malformed(format!("cannot parse InitConnect reply: {e}")))?;
        if response.ret_type != proto::ret_type::SUCCEED {
            return Err(Refusal {
                proto: init_connect::Proto::NAME,
                ret_type: response.ret_type,
                ret_msg: response.ret_msg.unwrap_or_default(),
                err_code: response.err_code,
            }
            .into_error(None));
        }
        let s2c = response.s2c.ok_or_else(|| SourceError::Remote {
            src: SourceKind::Futu,
            message: "InitConnect reply has no s2c".into(),
        })?;
        let keep_alive = match s2c.keep_alive_interval {
            s if s > 0 => Duration::from_secs(s as u64),
            s => {
                tracing::warn!(
                    source = "futu",
                    keep_alive_interval = s,
                    "opend sent no usable keepalive interval; using 10s"
                );
                DEFAULT_KEEP_ALIVE
            }
        };
        let period = keep_alive.mul_f64(0.8);
        let mut keepalive = tokio::time::interval_at(gate::instant_after(period), period);
        keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let info = ConnInfo {
            conn_id: s2c.conn_id,
            server_ver: s2c.server_ver,
            login_user_id: s2c.login_user_id,
            keep_alive,
        };
        tracing::info!(
            source = "futu",
            host = %cfg.host,
            port = cfg.port,
            conn_id = info.conn_id,
            server_ver = info.server_ver,
            keep_alive_s = keep_alive.as_secs(),
            "connected to opend"
        );
        Ok(Live {
            info: Arc::new(info),
            writer,
            events,
            _reader: reader,
            pending: HashMap::new(),
            keepalive,
            last_rx: Instant::now(),
            dead_after: keep_alive.mul_f64(3.3),
        })
    }
}

/// Why a frame could not be written; the connection is unusable after it.
struct WriteFailed {
    reason: String,
    timed_out: bool,
}

impl WriteFailed {
    fn error(&self) -> SourceError {
        if self.timed_out {
            timeout(self.reason.clone())
        } else {
            transient(self.reason.clone())
        }
    }
}

async fn write_frame(
    writer: &mut OwnedWriteHalf,
    proto_id: u32,
    serial: u32,
    body: &[u8],
    deadline: Instant,
    name: &str,
) -> Result<(), WriteFailed> {
    let mut buf = BytesMut::new();
    frame::encode(&mut buf, proto_id, serial, body);
    match timeout_at(deadline, writer.write_all(&buf)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(WriteFailed {
            reason: format!("cannot send {name} to opend: {e}"),
            timed_out: false,
        }),
        Err(_) => Err(WriteFailed {
            reason: format!("sending {name} to opend timed out"),
            timed_out: true,
        }),
    }
}

/// Reads frames until the connection ends, then reports why.
async fn read_loop(mut rd: OwnedReadHalf, tx: mpsc::Sender<Event>) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let reason = loop {
        match frame::decode(&mut buf) {
            Ok(Some(f)) => {
                if tx.send(Event::Frame(f)).await.is_err() {
                    return;
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => break e.to_string(),
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) if buf.is_empty() => break "connection closed by opend".to_string(),
            Ok(0) => break "connection closed by opend in the middle of a packet".to_string(),
            Ok(_) => {}
            Err(e) => break format!("connection to opend lost: {e}"),
        }
    };
    let _ = tx.send(Event::Closed(reason)).await;
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
