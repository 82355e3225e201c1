//! A fake Futu OpenD on `127.0.0.1:0`, for driving `FutuSource` end to end.
//!
//! It shares no code with the client: the framing (the "FT" flag, the 44-byte little-endian
//! header, the reserved bytes, the body SHA-1) and the protobuf messages are transcribed here a
//! second time from the protocol notes, so a mistake in the client's codec shows up as a
//! disagreement instead of being mirrored. The messages declare every field `optional`, so the
//! fake can check that the client sent the fields proto2 calls `required`.
//!
//! What it serves: InitConnect (1001), GetGlobalState (1002), KeepAlive (1004),
//! Qot_RequestHistoryKL (3103) from scripted K-lines in market-local time, paged by its own
//! `nextReqKey`, and Qot_RequestHistoryKLQuota (3104) with a quota it consumes as OpenD does.
//! It enforces OpenD's first-page rate limit when told to, sends a 1003 notification before
//! every reply but keepalive acknowledgements (same serial, other proto id, so matching must use
//! both), and on command refuses, drops the connection, corrupts a body hash or stays silent.
//!
//! Every decoded request is recorded with its connection, serial and arrival time, and every
//! breach of the protocol (bad header, bad hash, a serial that does not increase, a request
//! before InitConnect, a missing required field) is recorded as a violation.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use dms::config::{Config, FutuConfig};

pub const INIT_CONNECT: u32 = 1001;
pub const GET_GLOBAL_STATE: u32 = 1002;
pub const NOTIFY: u32 = 1003;
pub const KEEP_ALIVE: u32 = 1004;
pub const HISTORY_KL: u32 = 3103;
pub const HISTORY_KL_QUOTA: u32 = 3104;

/// OpenD's Chinese texts for the two limits (research §4.3).
pub const RATE_LIMIT_MSG: &str = "获取历史K线频率太高，请求失败，每30秒最多60次。";
pub const QUOTA_MSG: &str = "历史K线额度不足，请求失败。额度会滚动释放，直至30天后全部释放。";

const MAX_BODY: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// The fake's own protobuf transcription.

mod pb {
    use prost::Message;

    #[derive(Clone, PartialEq, Message)]
    pub struct Security {
        #[prost(int32, optional, tag = "1")]
        pub market: Option<i32>,
        #[prost(string, optional, tag = "2")]
        pub code: Option<String>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct InitC2s {
        #[prost(int32, optional, tag = "1")]
        pub client_ver: Option<i32>,
        #[prost(string, optional, tag = "2")]
        pub client_id: Option<String>,
        #[prost(bool, optional, tag = "3")]
        pub recv_notify: Option<bool>,
        #[prost(int32, optional, tag = "4")]
        pub packet_enc_algo: Option<i32>,
        #[prost(int32, optional, tag = "5")]
        pub push_proto_fmt: Option<i32>,
        #[prost(string, optional, tag = "6")]
        pub programming_language: Option<String>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct InitS2c {
        #[prost(int32, optional, tag = "1")]
        pub server_ver: Option<i32>,
        #[prost(uint64, optional, tag = "2")]
        pub login_user_id: Option<u64>,
        #[prost(uint64, optional, tag = "3")]
        pub conn_id: Option<u64>,
        #[prost(string, optional, tag = "4")]
        pub conn_aes_key: Option<String>,
        #[prost(int32, optional, tag = "5")]
        pub keep_alive_interval: Option<i32>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct GlobalC2s {
        #[prost(uint64, optional, tag = "1")]
        pub user_id: Option<u64>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct ProgramStatus {
        #[prost(int32, optional, tag = "1")]
        pub r#type: Option<i32>,
        #[prost(string, optional, tag = "2")]
        pub str_ext_desc: Option<String>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct GlobalS2c {
        #[prost(int32, optional, tag = "1")]
        pub market_hk: Option<i32>,
        #[prost(int32, optional, tag = "2")]
        pub market_us: Option<i32>,
        #[prost(int32, optional, tag = "3")]
        pub market_sh: Option<i32>,
        #[prost(int32, optional, tag = "4")]
        pub market_sz: Option<i32>,
        #[prost(int32, optional, tag = "5")]
        pub market_hk_future: Option<i32>,
        #[prost(bool, optional, tag = "6")]
        pub qot_logined: Option<bool>,
        #[prost(bool, optional, tag = "7")]
        pub trd_logined: Option<bool>,
        #[prost(int32, optional, tag = "8")]
        pub server_ver: Option<i32>,
        #[prost(int32, optional, tag = "9")]
        pub server_build_no: Option<i32>,
        #[prost(int64, optional, tag = "10")]
        pub time: Option<i64>,
        #[prost(message, optional, tag = "12")]
        pub program_status: Option<ProgramStatus>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct KeepAliveMsg {
        #[prost(int64, optional, tag = "1")]
        pub time: Option<i64>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct NotifyS2c {
        #[prost(int32, optional, tag = "1")]
        pub r#type: Option<i32>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct KlC2s {
        #[prost(int32, optional, tag = "1")]
        pub rehab_type: Option<i32>,
        #[prost(int32, optional, tag = "2")]
        pub kl_type: Option<i32>,
        #[prost(message, optional, tag = "3")]
        pub security: Option<Security>,
        #[prost(string, optional, tag = "4")]
        pub begin_time: Option<String>,
        #[prost(string, optional, tag = "5")]
        pub end_time: Option<String>,
        #[prost(int32, optional, tag = "6")]
        pub max_ack_kl_num: Option<i32>,
        #[prost(int64, optional, tag = "7")]
        pub need_kl_fields_flag: Option<i64>,
        #[prost(bytes = "vec", optional, tag = "8")]
        pub next_req_key: Option<Vec<u8>>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct KLine {
        #[prost(string, optional, tag = "1")]
        pub time: Option<String>,
        #[prost(bool, optional, tag = "2")]
        pub is_blank: Option<bool>,
        #[prost(double, optional, tag = "3")]
        pub high_price: Option<f64>,
        #[prost(double, optional, tag = "4")]
        pub open_price: Option<f64>,
        #[prost(double, optional, tag = "5")]
        pub low_price: Option<f64>,
        #[prost(double, optional, tag = "6")]
        pub close_price: Option<f64>,
        #[prost(int64, optional, tag = "8")]
        pub volume: Option<i64>,
        #[prost(double, optional, tag = "13")]
        pub timestamp: Option<f64>,
        #[prost(double, optional, tag = "14")]
        pub hp_volume: Option<f64>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct KlS2c {
        #[prost(message, optional, tag = "1")]
        pub security: Option<Security>,
        #[prost(message, repeated, tag = "2")]
        pub kl_list: Vec<KLine>,
        #[prost(bytes = "vec", optional, tag = "3")]
        pub next_req_key: Option<Vec<u8>>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct QuotaC2s {
        #[prost(bool, optional, tag = "2")]
        pub b_get_detail: Option<bool>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct QuotaDetail {
        #[prost(message, optional, tag = "1")]
        pub security: Option<Security>,
        #[prost(string, optional, tag = "2")]
        pub request_time: Option<String>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct QuotaS2c {
        #[prost(int32, optional, tag = "1")]
        pub used_quota: Option<i32>,
        #[prost(int32, optional, tag = "2")]
        pub remain_quota: Option<i32>,
        #[prost(message, repeated, tag = "3")]
        pub detail_list: Vec<QuotaDetail>,
    }

    /// `Request { c2s = 1 }`.
    #[derive(Clone, PartialEq, Message)]
    pub struct Req<C: Message + Default + std::fmt::Debug> {
        #[prost(message, optional, tag = "1")]
        pub c2s: Option<C>,
    }

    /// `Response { retType = 1, retMsg = 2, errCode = 3, s2c = 4 }`.
    #[derive(Clone, PartialEq, Message)]
    pub struct Resp<S: Message + Default + std::fmt::Debug> {
        #[prost(int32, optional, tag = "1")]
        pub ret_type: Option<i32>,
        #[prost(string, optional, tag = "2")]
        pub ret_msg: Option<String>,
        #[prost(int32, optional, tag = "3")]
        pub err_code: Option<i32>,
        #[prost(message, optional, tag = "4")]
        pub s2c: Option<S>,
    }
}

// ---------------------------------------------------------------------------------------------
// What tests script and read back.

/// One scripted K-line, in market-local time as OpenD sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeKLine {
    pub time: String,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: i64,
    pub hp_volume: Option<f64>,
    pub blank: bool,
}

impl FakeKLine {
    pub fn new(time: &str, open: f64, high: f64, low: f64, close: f64, volume: i64) -> FakeKLine {
        FakeKLine {
            time: time.to_string(),
            open,
            high,
            low,
            close,
            volume,
            hp_volume: None,
            blank: false,
        }
    }
}

/// A decoded 3103 request.
#[derive(Debug, Clone, PartialEq)]
pub struct KlRequest {
    pub rehab_type: i32,
    pub kl_type: i32,
    /// `HK.00700`.
    pub code: String,
    pub begin_time: String,
    pub end_time: String,
    pub max_ack_kl_num: Option<i32>,
    pub next_req_key: Option<Vec<u8>>,
}

/// A decoded request body.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    InitConnect {
        client_ver: i32,
        client_id: String,
        recv_notify: Option<bool>,
        packet_enc_algo: Option<i32>,
        push_proto_fmt: Option<i32>,
        programming_language: Option<String>,
    },
    GetGlobalState {
        user_id: u64,
    },
    KeepAlive {
        time: i64,
    },
    HistoryKl(KlRequest),
    HistoryKlQuota {
        get_detail: bool,
    },
    Other,
}

/// One request as the fake received it.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// Connection number, from 1 in accept order.
    pub conn: u32,
    pub proto_id: u32,
    pub serial: u32,
    /// Arrival (tokio clock).
    pub at: Instant,
    pub body: Body,
}

/// What the fake does instead of its normal answer, once, for the next request of `proto_id`.
#[derive(Debug, Clone, PartialEq)]
pub enum Misbehave {
    /// `retType` with `retMsg`.
    Refuse { ret_type: i32, msg: String },
    /// Closes the connection without answering.
    Drop,
    /// Answers normally but with a wrong body SHA-1 in the header.
    CorruptHash,
    /// Never answers (the connection stays open).
    Silence,
}

/// Knobs; see [`FakeOpenD::set`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// InitConnect's `keepAliveInterval`, seconds.
    pub keep_alive_interval: i32,
    /// The most K-lines the fake puts in one reply, whatever `maxAckKLNum` says.
    pub page_cap: usize,
    /// First pages (3103 without `nextReqKey`) allowed per window, as OpenD enforces them.
    pub first_page_limit: Option<(usize, Duration)>,
    /// Send a 1003 notification before every reply (keepalive acknowledgements excepted).
    pub notify_before_replies: bool,
    pub qot_logined: bool,
    pub program_status: i32,
    /// Distinct-securities quota: used, remaining, and the codes already in the window.
    pub quota_used: i32,
    pub quota_remaining: i32,
    pub quota_codes: Vec<String>,
    /// Stop answering anything, keepalives included (a half-open connection).
    pub silent: bool,
    /// Never stop paging: every 3103 reply carries a fresh `nextReqKey`, and the pages cycle
    /// through the scripted K-lines so that none is empty.
    pub endless_paging: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            keep_alive_interval: 10,
            page_cap: 1000,
            first_page_limit: None,
            notify_before_replies: true,
            qot_logined: true,
            program_status: 10,
            quota_used: 0,
            quota_remaining: 100,
            quota_codes: Vec::new(),
            silent: false,
            endless_paging: false,
        }
    }
}

#[derive(Default)]
struct State {
    settings: Settings,
    klines: HashMap<(String, i32), Vec<FakeKLine>>,
    misbehave: VecDeque<(u32, Misbehave)>,
    recorded: Vec<Recorded>,
    violations: Vec<String>,
    first_pages: VecDeque<Instant>,
    connections: u32,
}

struct Shared {
    /// A std `Mutex`: never held across an `.await`.
    state: Mutex<State>,
    /// Bumped to make every open connection close.
    kill: watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running fake; it stops when dropped.
pub struct FakeOpenD {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl Drop for FakeOpenD {
    fn drop(&mut self) {
        self.accept.abort();
        self.shared.kill.send_modify(|n| *n += 1);
    }
}

impl FakeOpenD {
    pub async fn start() -> FakeOpenD {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake opend");
        let addr = listener.local_addr().expect("local addr");
        let (kill, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            kill,
        });
        let s = shared.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                // No Nagle: a reply held back waiting for an ACK would let a paused clock
                // auto-advance while it is in flight.
                let _ = stream.set_nodelay(true);
                let conn = {
                    let mut st = s.lock();
                    st.connections += 1;
                    st.connections
                };
                tokio::spawn(serve(conn, stream, s.clone(), s.kill.subscribe()));
            }
        });
        FakeOpenD {
            addr,
            shared,
            accept,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The default `sources.futu` section pointed at this fake, without retries (so that a
    /// test sees the first error) and with a 10 s timeout.
    pub fn config(&self) -> FutuConfig {
        let mut cfg = Config::default_config().sources.futu;
        cfg.host = "127.0.0.1".into();
        cfg.port = self.port();
        cfg.max_retries = 0;
        cfg.timeout_s = 10;
        cfg
    }

    /// Changes the knobs.
    pub fn set(&self, f: impl FnOnce(&mut Settings)) {
        f(&mut self.shared.lock().settings);
    }

    /// Scripts the K-lines served for `code` (`HK.00700`) at `kl_type`.
    pub fn add_klines(&self, code: &str, kl_type: i32, klines: Vec<FakeKLine>) {
        self.shared
            .lock()
            .klines
            .entry((code.to_string(), kl_type))
            .or_default()
            .extend(klines);
    }

    /// Replaces the K-lines served for `code` at `kl_type` (what the vendor publishes now).
    pub fn set_klines(&self, code: &str, kl_type: i32, klines: Vec<FakeKLine>) {
        self.shared
            .lock()
            .klines
            .insert((code.to_string(), kl_type), klines);
    }

    /// Misbehaves once, on the next request of `proto_id`.
    pub fn misbehave_next(&self, proto_id: u32, m: Misbehave) {
        self.shared.lock().misbehave.push_back((proto_id, m));
    }

    /// Closes every open connection now.
    pub fn drop_connections(&self) {
        self.shared.kill.send_modify(|n| *n += 1);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().recorded.clone()
    }

    pub fn requests_of(&self, proto_id: u32) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.proto_id == proto_id)
            .collect()
    }

    /// The 3103 requests, decoded.
    pub fn kl_requests(&self) -> Vec<KlRequest> {
        self.requests()
            .into_iter()
            .filter_map(|r| match r.body {
                Body::HistoryKl(k) => Some(k),
                _ => None,
            })
            .collect()
    }

    pub fn violations(&self) -> Vec<String> {
        self.shared.lock().violations.clone()
    }

    pub fn connections(&self) -> u32 {
        self.shared.lock().connections
    }

    /// Waits (tokio clock) until `pred` holds for the recorded requests, or panics after
    /// `within`. Polls; never sleeps for a fixed time to let something happen.
    pub async fn wait_for(&self, within: Duration, what: &str, pred: impl Fn(&[Recorded]) -> bool) {
        let deadline = Instant::now() + within;
        loop {
            if pred(&self.shared.lock().recorded) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "fake opend: timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The server.

/// A packet as read: the header fields and the body.
struct Packet {
    proto_id: u32,
    serial: u32,
    body: Vec<u8>,
}

/// Reads one packet, checking the header independently of the client's codec.
async fn read_packet(stream: &mut TcpStream) -> Result<Option<Packet>, String> {
    let mut h = [0u8; 44];
    match stream.read_exact(&mut h).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(format!("read error: {e}")),
    }
    if &h[0..2] != b"FT" {
        return Err(format!("header flag {:?} is not \"FT\"", &h[0..2]));
    }
    let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    let proto_id = u32_at(2);
    if h[6] != 0 {
        return Err(format!(
            "proto {proto_id}: body format {} is not protobuf",
            h[6]
        ));
    }
    if h[7] != 0 {
        return Err(format!(
            "proto {proto_id}: header version {} is not 0",
            h[7]
        ));
    }
    let serial = u32_at(8);
    let len = u32_at(12) as usize;
    if len > MAX_BODY {
        return Err(format!("proto {proto_id}: body length {len} is absurd"));
    }
    if h[36..44] != [0u8; 8] {
        return Err(format!("proto {proto_id}: reserved bytes are not zero"));
    }
    let mut body = vec![0u8; len];
    stream
        .read_exact(&mut body)
        .await
        .map_err(|e| format!("proto {proto_id}: truncated body: {e}"))?;
    let digest: [u8; 20] = Sha1::digest(&body).into();
    if h[16..36] != digest {
        return Err(format!(
            "proto {proto_id} serial {serial}: body sha-1 mismatch"
        ));
    }
    Ok(Some(Packet {
        proto_id,
        serial,
        body,
    }))
}

fn packet(proto_id: u32, serial: u32, body: &[u8], corrupt_hash: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(44 + body.len());
    out.extend_from_slice(b"FT");
    out.extend_from_slice(&proto_id.to_le_bytes());
    out.push(0);
    out.push(0);
    out.extend_from_slice(&serial.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    let mut digest: [u8; 20] = Sha1::digest(body).into();
    if corrupt_hash {
        digest[0] ^= 0xff;
    }
    out.extend_from_slice(&digest);
    out.extend_from_slice(&[0u8; 8]);
    out.extend_from_slice(body);
    out
}

fn ok<S: Message + Default + std::fmt::Debug>(s2c: S) -> Vec<u8> {
    pb::Resp {
        ret_type: Some(0),
        ret_msg: Some(String::new()),
        err_code: Some(0),
        s2c: Some(s2c),
    }
    .encode_to_vec()
}

fn refuse(ret_type: i32, msg: &str) -> Vec<u8> {
    pb::Resp::<pb::KeepAliveMsg> {
        ret_type: Some(ret_type),
        ret_msg: Some(msg.to_string()),
        err_code: Some(1),
        s2c: None,
    }
    .encode_to_vec()
}

fn code_of(s: &pb::Security) -> String {
    let prefix = match s.market.unwrap_or(0) {
        1 => "HK",
        11 => "US",
        21 => "SH",
        22 => "SZ",
        _ => "??",
    };
    format!("{prefix}.{}", s.code.clone().unwrap_or_default())
}

fn security_of(code: &str) -> pb::Security {
    let (prefix, rest) = code.split_once('.').expect("MARKET.CODE");
    let market = match prefix {
        "HK" => 1,
        "US" => 11,
        "SH" => 21,
        "SZ" => 22,
        _ => 0,
    };
    pb::Security {
        market: Some(market),
        code: Some(rest.to_string()),
    }
}

/// Decodes a request body, recording missing required fields as violations.
fn decode(p: &Packet, violations: &mut Vec<String>) -> Body {
    let mut need = |ok: bool, what: &str| {
        if !ok {
            violations.push(format!(
                "proto {}: required field {what} missing",
                p.proto_id
            ));
        }
    };
    macro_rules! c2s {
        ($t:ty) => {
            match pb::Req::<$t>::decode(&p.body[..]) {
                Ok(r) => {
                    need(r.c2s.is_some(), "c2s");
                    r.c2s.unwrap_or_default()
                }
                Err(e) => {
                    need(false, &format!("c2s (undecodable: {e})"));
                    <$t>::default()
                }
            }
        };
    }
    match p.proto_id {
        INIT_CONNECT => {
            let c = c2s!(pb::InitC2s);
            need(c.client_ver.is_some(), "clientVer");
            need(c.client_id.is_some(), "clientID");
            Body::InitConnect {
                client_ver: c.client_ver.unwrap_or_default(),
                client_id: c.client_id.unwrap_or_default(),
                recv_notify: c.recv_notify,
                packet_enc_algo: c.packet_enc_algo,
                push_proto_fmt: c.push_proto_fmt,
                programming_language: c.programming_language,
            }
        }
        GET_GLOBAL_STATE => {
            let c = c2s!(pb::GlobalC2s);
            need(c.user_id.is_some(), "userID");
            Body::GetGlobalState {
                user_id: c.user_id.unwrap_or_default(),
            }
        }
        KEEP_ALIVE => {
            let c = c2s!(pb::KeepAliveMsg);
            need(c.time.is_some(), "time");
            Body::KeepAlive {
                time: c.time.unwrap_or_default(),
            }
        }
        HISTORY_KL => {
            let c = c2s!(pb::KlC2s);
            need(c.rehab_type.is_some(), "rehabType");
            need(c.kl_type.is_some(), "klType");
            need(
                c.security
                    .as_ref()
                    .is_some_and(|s| s.market.is_some() && s.code.is_some()),
                "security",
            );
            need(c.begin_time.is_some(), "beginTime");
            need(c.end_time.is_some(), "endTime");
            Body::HistoryKl(KlRequest {
                rehab_type: c.rehab_type.unwrap_or_default(),
                kl_type: c.kl_type.unwrap_or_default(),
                code: code_of(&c.security.unwrap_or_default()),
                begin_time: c.begin_time.unwrap_or_default(),
                end_time: c.end_time.unwrap_or_default(),
                max_ack_kl_num: c.max_ack_kl_num,
                next_req_key: c.next_req_key,
            })
        }
        HISTORY_KL_QUOTA => {
            let c = c2s!(pb::QuotaC2s);
            Body::HistoryKlQuota {
                get_detail: c.b_get_detail.unwrap_or(false),
            }
        }
        _ => Body::Other,
    }
}

/// What to do with one request.
enum Action {
    Reply(Vec<u8>),
    ReplyCorrupt(Vec<u8>),
    Drop,
    Nothing,
}

async fn serve(
    conn: u32,
    mut stream: TcpStream,
    shared: Arc<Shared>,
    mut kill: watch::Receiver<u64>,
) {
    let mut last_serial: Option<u32> = None;
    let mut initialised = false;
    loop {
        let read = tokio::select! {
            _ = kill.changed() => return,
            r = read_packet(&mut stream) => r,
        };
        let p = match read {
            Ok(Some(p)) => p,
            Ok(None) => return,
            Err(v) => {
                shared.lock().violations.push(format!("conn {conn}: {v}"));
                return;
            }
        };
        let (action, notify) = {
            let mut st = shared.lock();
            let st = &mut *st;
            if let Some(prev) = last_serial
                && p.serial <= prev
            {
                st.violations.push(format!(
                    "conn {conn}: serial {} after {prev} does not increase",
                    p.serial
                ));
            }
            last_serial = Some(p.serial);
            if !initialised && p.proto_id != INIT_CONNECT {
                st.violations.push(format!(
                    "conn {conn}: proto {} before InitConnect",
                    p.proto_id
                ));
            }
            initialised |= p.proto_id == INIT_CONNECT;
            let body = decode(&p, &mut st.violations);
            st.recorded.push(Recorded {
                conn,
                proto_id: p.proto_id,
                serial: p.serial,
                at: Instant::now(),
                body: body.clone(),
            });
            let action = answer(st, conn, &p, &body);
            (action, st.settings.notify_before_replies)
        };
        let reply = match action {
            Action::Nothing => continue,
            Action::Drop => return,
            Action::Reply(b) => packet(p.proto_id, p.serial, &b, false),
            Action::ReplyCorrupt(b) => packet(p.proto_id, p.serial, &b, true),
        };
        let mut out = Vec::new();
        if notify && p.proto_id != KEEP_ALIVE {
            // A push with the request's serial: only the proto id tells them apart.
            let n = ok(pb::NotifyS2c { r#type: Some(2) });
            out.extend(packet(NOTIFY, p.serial, &n, false));
        }
        out.extend(reply);
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// The fake's answer to one request (called with the state locked).
fn answer(st: &mut State, conn: u32, p: &Packet, body: &Body) -> Action {
    if st.settings.silent {
        return Action::Nothing;
    }
    if let Some(i) = st.misbehave.iter().position(|(id, _)| *id == p.proto_id) {
        let (_, m) = st.misbehave.remove(i).expect("present");
        match m {
            Misbehave::Refuse { ret_type, msg } => return Action::Reply(refuse(ret_type, &msg)),
            Misbehave::Drop => return Action::Drop,
            Misbehave::Silence => return Action::Nothing,
            Misbehave::CorruptHash => {
                return match normal_answer(st, conn, body) {
                    Action::Reply(b) => Action::ReplyCorrupt(b),
                    other => other,
                };
            }
        }
    }
    normal_answer(st, conn, body)
}

fn normal_answer(st: &mut State, conn: u32, body: &Body) -> Action {
    let s = &st.settings;
    let now_unix = 1_704_153_600;
    let reply = match body {
        Body::InitConnect { .. } => ok(pb::InitS2c {
            server_ver: Some(1009),
            login_user_id: Some(4242),
            conn_id: Some(7_000_000_000_000_000_000 + u64::from(conn)),
            conn_aes_key: Some("0123456789abcdef".into()),
            keep_alive_interval: Some(s.keep_alive_interval),
        }),
        Body::GetGlobalState { .. } => ok(pb::GlobalS2c {
            market_hk: Some(5),
            market_us: Some(5),
            market_sh: Some(5),
            market_sz: Some(5),
            market_hk_future: Some(5),
            qot_logined: Some(s.qot_logined),
            trd_logined: Some(false),
            server_ver: Some(1009),
            server_build_no: Some(6908),
            time: Some(now_unix),
            program_status: Some(pb::ProgramStatus {
                r#type: Some(s.program_status),
                str_ext_desc: None,
            }),
        }),
        Body::KeepAlive { .. } => ok(pb::KeepAliveMsg {
            time: Some(now_unix),
        }),
        Body::HistoryKlQuota { get_detail } => ok(pb::QuotaS2c {
            used_quota: Some(s.quota_used),
            remain_quota: Some(s.quota_remaining),
            detail_list: if *get_detail {
                s.quota_codes
                    .iter()
                    .map(|c| pb::QuotaDetail {
                        security: Some(security_of(c)),
                        request_time: Some("2024-01-02 10:00:00".into()),
                    })
                    .collect()
            } else {
                Vec::new()
            },
        }),
        Body::HistoryKl(k) => return history(st, k),
        Body::Other => refuse(-1, "unknown protocol"),
    };
    Action::Reply(reply)
}

/// 3103: OpenD's limits first, then a page of the scripted K-lines.
fn history(st: &mut State, k: &KlRequest) -> Action {
    let first = k.next_req_key.is_none();
    if first {
        if let Some((max, window)) = st.settings.first_page_limit {
            let now = Instant::now();
            while st
                .first_pages
                .front()
                .is_some_and(|t| now.duration_since(*t) >= window)
            {
                st.first_pages.pop_front();
            }
            if st.first_pages.len() >= max {
                return Action::Reply(refuse(-1, RATE_LIMIT_MSG));
            }
            st.first_pages.push_back(now);
        }
        if !st.settings.quota_codes.contains(&k.code) {
            if st.settings.quota_remaining <= 0 {
                return Action::Reply(refuse(-1, QUOTA_MSG));
            }
            st.settings.quota_remaining -= 1;
            st.settings.quota_used += 1;
            st.settings.quota_codes.push(k.code.clone());
        }
    }
    let offset = match &k.next_req_key {
        None => 0,
        Some(key) => match std::str::from_utf8(key)
            .ok()
            .and_then(|s| s.strip_prefix("fake-offset:"))
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(n) => n,
            None => return Action::Reply(refuse(-1, "invalid nextReqKey")),
        },
    };
    let all: Vec<&FakeKLine> = st
        .klines
        .get(&(k.code.clone(), k.kl_type))
        .map(|v| {
            v.iter()
                .filter(|b| b.time >= k.begin_time && b.time <= k.end_time)
                .collect()
        })
        .unwrap_or_default();
    let mut n = st.settings.page_cap;
    if let Some(max) = k.max_ack_kl_num.filter(|m| *m > 0) {
        n = n.min(max as usize);
    }
    let endless = st.settings.endless_paging && !all.is_empty();
    let page: Vec<pb::KLine> = all
        .iter()
        .cycle()
        .skip(if endless { offset % all.len() } else { offset })
        .take(if endless {
            n
        } else {
            n.min(all.len().saturating_sub(offset))
        })
        .map(|b| pb::KLine {
            time: Some(b.time.clone()),
            is_blank: Some(b.blank),
            high_price: (!b.blank).then_some(b.high),
            open_price: (!b.blank).then_some(b.open),
            low_price: (!b.blank).then_some(b.low),
            close_price: (!b.blank).then_some(b.close),
            volume: (!b.blank).then_some(b.volume),
            timestamp: None,
            hp_volume: b.hp_volume,
        })
        .collect();
    let next = offset + page.len();
    Action::Reply(ok(pb::KlS2c {
        security: Some(security_of(&k.code)),
        kl_list: page,
        next_req_key: (endless || next < all.len())
            .then(|| format!("fake-offset:{next}").into_bytes()),
    }))
}
