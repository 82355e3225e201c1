//! Futu OpenD wire messages, written by hand as prost structs (no `protoc` at build time).
//!
//! Transcribed from the official SDK's proto2 files (`InitConnect.proto`, `KeepAlive.proto`,
//! `GetGlobalState.proto`, `Qot_Common.proto`, `Qot_RequestHistoryKL.proto`,
//! `Qot_RequestHistoryKLQuota.proto`, `Common.proto`) as summarised in
//! `shared/research/futu.md` §2–§3. Only the fields DMS reads or writes are declared: prost skips
//! unknown fields, so a newer OpenD adding fields is harmless.
//!
//! Conventions of these files that matter here:
//! - proto2 `required` scalars are plain fields (always encoded), `optional` ones are `Option`s;
//!   prost does not reject a message missing a `required` field, so code reading replies checks
//!   what it relies on.
//! - every enum is declared `int32` on the wire ("enums only define values"); the numbers live
//!   in the small constant modules below and unknown values are tolerated.
//! - every protocol wraps its payload in the same envelope: [`Request`] `{ c2s }` and
//!   [`Response`] `{ retType = -400 by default, retMsg, errCode, s2c }`.

use prost::Message;

/// A protocol: its id in the packet header and its payload types.
pub trait Proto {
    const ID: u32;
    /// For logs and error messages.
    const NAME: &'static str;
    type C2s: Message + Default + Clone + std::fmt::Debug;
    type S2c: Message + Default + std::fmt::Debug;
}

/// Protocol ids (`nProtoID`).
pub mod ids {
    pub const INIT_CONNECT: u32 = 1001;
    pub const GET_GLOBAL_STATE: u32 = 1002;
    /// Unsolicited system notification; only ever skipped.
    pub const NOTIFY: u32 = 1003;
    pub const KEEP_ALIVE: u32 = 1004;
    pub const REQUEST_HISTORY_KL: u32 = 3103;
    pub const REQUEST_HISTORY_KL_QUOTA: u32 = 3104;
}

/// `Common.RetType` (the whole enum, so that codes in OpenD's logs can be looked up here).
#[allow(dead_code)]
pub mod ret_type {
    pub const SUCCEED: i32 = 0;
    pub const FAILED: i32 = -1;
    pub const TIME_OUT: i32 = -100;
    pub const DISCONNECT: i32 = -200;
    pub const UNKNOWN: i32 = -400;
    pub const INVALID: i32 = -500;
}

/// `Qot_Common.KLType`.
pub mod kl_type {
    pub const MIN_1: i32 = 1;
    pub const DAY: i32 = 2;
    pub const WEEK: i32 = 3;
    pub const MONTH: i32 = 4;
    pub const MIN_5: i32 = 6;
    pub const MIN_15: i32 = 7;
    pub const MIN_30: i32 = 8;
    pub const MIN_60: i32 = 9;
}

/// `Qot_Common.RehabType`.
pub mod rehab_type {
    pub const NONE: i32 = 0;
    pub const FORWARD: i32 = 1;
    pub const BACKWARD: i32 = 2;
}

/// `Qot_Common.QotMarket`, the markets DMS maps codes for.
pub mod qot_market {
    pub const HK_SECURITY: i32 = 1;
    pub const US_SECURITY: i32 = 11;
    pub const CNSH_SECURITY: i32 = 21;
    pub const CNSZ_SECURITY: i32 = 22;
}

/// `Common.PacketEncAlgo::None`: no encryption.
pub const PACKET_ENC_ALGO_NONE: i32 = -1;
/// `Common.ProtoFmt::Protobuf`.
pub const PROTO_FMT_PROTOBUF: i32 = 0;
/// `Qot_Common.KLFields`: every field (High 1 | Open 2 | Low 4 | Close 8 | LastClose 16 |
/// Volume 32 | Turnover 64 | TurnoverRate 128 | PE 256 | ChangeRate 512), what the official SDK
/// asks for.
pub const KL_FIELDS_ALL: i64 = 1023;
/// `Common.ProgramStatusType::Ready`: OpenD accepts business requests.
pub const PROGRAM_STATUS_READY: i32 = 10;

/// The name of a `Common.ProgramStatusType` value, for health reports.
pub fn program_status_name(t: i32) -> &'static str {
    match t {
        0 => "none",
        1 => "loaded",
        2 => "logging in",
        3 => "needs picture verification code",
        4 => "needs phone verification code",
        5 => "login failed",
        6 => "client version too old, update required",
        7 => "preparing necessary data",
        8 => "necessary data missing",
        9 => "disclaimer not agreed",
        10 => "ready",
        11 => "forced logout",
        12 => "disclaimer pull failed",
        _ => "unknown",
    }
}

/// `message Request { required C2S c2s = 1; }`, shared by every protocol.
#[derive(Clone, PartialEq, Message)]
pub struct Request<C: Message + Default + std::fmt::Debug> {
    #[prost(message, required, tag = "1")]
    pub c2s: C,
}

/// `message Response { required int32 retType = 1 [default = -400]; optional string retMsg = 2;
/// optional int32 errCode = 3; optional S2C s2c = 4; }`, shared by every protocol.
#[derive(Clone, PartialEq, Message)]
pub struct Response<S: Message + Default + std::fmt::Debug> {
    #[prost(int32, required, tag = "1", default = "-400")]
    pub ret_type: i32,
    #[prost(string, optional, tag = "2")]
    pub ret_msg: Option<String>,
    /// "Only for logging" per the official proto comment.
    #[prost(int32, optional, tag = "3")]
    pub err_code: Option<i32>,
    #[prost(message, optional, tag = "4")]
    pub s2c: Option<S>,
}

/// `Qot_Common` and `Common` messages used by several protocols.
pub mod common {
    use prost::Message;

    /// `Qot_Common.Security`: `{1, "00700"}`, `{11, "AAPL"}`.
    #[derive(Clone, PartialEq, Eq, Hash, Message)]
    pub struct Security {
        #[prost(int32, required, tag = "1")]
        pub market: i32,
        #[prost(string, required, tag = "2")]
        pub code: String,
    }

    /// `Qot_Common.QotHeader`.
    #[derive(Clone, PartialEq, Message)]
    pub struct QotHeader {
        /// `Trd_Common.SecurityFirm`.
        #[prost(int32, optional, tag = "1")]
        pub security_firm: Option<i32>,
    }

    /// `Qot_Common.KLine`. `time` is market-local wall time, `yyyy-MM-dd HH:mm:ss`.
    #[derive(Clone, PartialEq, Message)]
    pub struct KLine {
        #[prost(string, required, tag = "1")]
        pub time: String,
        /// A placeholder point carrying only its time.
        #[prost(bool, required, tag = "2")]
        pub is_blank: bool,
        #[prost(double, optional, tag = "3")]
        pub high_price: Option<f64>,
        #[prost(double, optional, tag = "4")]
        pub open_price: Option<f64>,
        #[prost(double, optional, tag = "5")]
        pub low_price: Option<f64>,
        #[prost(double, optional, tag = "6")]
        pub close_price: Option<f64>,
        #[prost(double, optional, tag = "7")]
        pub last_close_price: Option<f64>,
        #[prost(int64, optional, tag = "8")]
        pub volume: Option<i64>,
        #[prost(double, optional, tag = "9")]
        pub turnover: Option<f64>,
        #[prost(double, optional, tag = "10")]
        pub turnover_rate: Option<f64>,
        #[prost(double, optional, tag = "11")]
        pub pe: Option<f64>,
        #[prost(double, optional, tag = "12")]
        pub change_rate: Option<f64>,
        /// Unix seconds of `time`.
        #[prost(double, optional, tag = "13")]
        pub timestamp: Option<f64>,
        /// High-precision volume; preferred over `volume` when present.
        #[prost(double, optional, tag = "14")]
        pub hp_volume: Option<f64>,
    }

    /// `Common.ProgramStatus`.
    #[derive(Clone, PartialEq, Message)]
    pub struct ProgramStatus {
        /// `Common.ProgramStatusType`.
        #[prost(int32, required, tag = "1")]
        pub r#type: i32,
        #[prost(string, optional, tag = "2")]
        pub str_ext_desc: Option<String>,
    }
}

/// InitConnect (1001): the first request on every connection.
pub mod init_connect {
    use prost::Message;

    #[derive(Clone, PartialEq, Message)]
    pub struct C2s {
        /// `major * 100 + minor`.
        #[prost(int32, required, tag = "1")]
        pub client_ver: i32,
        #[prost(string, required, tag = "2")]
        pub client_id: String,
        /// Whether OpenD pushes 1003 notifications on this connection.
        #[prost(bool, optional, tag = "3")]
        pub recv_notify: Option<bool>,
        /// `Common.PacketEncAlgo`.
        #[prost(int32, optional, tag = "4")]
        pub packet_enc_algo: Option<i32>,
        /// `Common.ProtoFmt` of pushes.
        #[prost(int32, optional, tag = "5")]
        pub push_proto_fmt: Option<i32>,
        #[prost(string, optional, tag = "6")]
        pub programming_language: Option<String>,
        #[prost(int32, optional, tag = "7")]
        pub ai_type: Option<i32>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct S2c {
        #[prost(int32, required, tag = "1")]
        pub server_ver: i32,
        #[prost(uint64, required, tag = "2")]
        pub login_user_id: u64,
        #[prost(uint64, required, tag = "3")]
        pub conn_id: u64,
        /// Sent even when encryption is off; unused by DMS.
        #[prost(string, required, tag = "4")]
        pub conn_aes_key: String,
        /// Seconds.
        #[prost(int32, required, tag = "5")]
        pub keep_alive_interval: i32,
        #[prost(string, optional, tag = "6")]
        pub aes_cb_civ: Option<String>,
        #[prost(int32, optional, tag = "7")]
        pub user_attribution: Option<i32>,
    }

    pub struct Proto;
    impl super::Proto for Proto {
        const ID: u32 = super::ids::INIT_CONNECT;
        const NAME: &'static str = "InitConnect";
        type C2s = C2s;
        type S2c = S2c;
    }
}

/// GetGlobalState (1002): login and market state, the health check.
pub mod global_state {
    use prost::Message;

    use super::common::ProgramStatus;

    #[derive(Clone, PartialEq, Message)]
    pub struct C2s {
        /// Deprecated; DMS sends the login user id from InitConnect like the SDK.
        #[prost(uint64, required, tag = "1")]
        pub user_id: u64,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct S2c {
        #[prost(int32, required, tag = "1")]
        pub market_hk: i32,
        #[prost(int32, required, tag = "2")]
        pub market_us: i32,
        #[prost(int32, required, tag = "3")]
        pub market_sh: i32,
        #[prost(int32, required, tag = "4")]
        pub market_sz: i32,
        #[prost(int32, required, tag = "5")]
        pub market_hk_future: i32,
        #[prost(bool, required, tag = "6")]
        pub qot_logined: bool,
        #[prost(bool, required, tag = "7")]
        pub trd_logined: bool,
        #[prost(int32, required, tag = "8")]
        pub server_ver: i32,
        #[prost(int32, required, tag = "9")]
        pub server_build_no: i32,
        /// Server Unix seconds.
        #[prost(int64, required, tag = "10")]
        pub time: i64,
        #[prost(double, optional, tag = "11")]
        pub local_time: Option<f64>,
        #[prost(message, optional, tag = "12")]
        pub program_status: Option<ProgramStatus>,
        #[prost(string, optional, tag = "13")]
        pub qot_svr_ip_addr: Option<String>,
        #[prost(string, optional, tag = "14")]
        pub trd_svr_ip_addr: Option<String>,
        #[prost(int32, optional, tag = "15")]
        pub market_us_future: Option<i32>,
        #[prost(uint64, optional, tag = "16")]
        pub conn_id: Option<u64>,
    }

    pub struct Proto;
    impl super::Proto for Proto {
        const ID: u32 = super::ids::GET_GLOBAL_STATE;
        const NAME: &'static str = "GetGlobalState";
        type C2s = C2s;
        type S2c = S2c;
    }
}

/// KeepAlive (1004). Sent by the connection task, never through `Client::call`.
pub mod keep_alive {
    use prost::Message;

    #[derive(Clone, PartialEq, Message)]
    pub struct C2s {
        /// Client Unix seconds at send time.
        #[prost(int64, required, tag = "1")]
        pub time: i64,
    }

    // The reply (`S2C { required int64 time = 1; }`, server Unix seconds) is not decoded: any
    // packet from OpenD proves the connection alive.
}

/// Qot_RequestHistoryKL (3103): historical K-lines, paged with `nextReqKey`.
pub mod history_kl {
    use prost::Message;

    use super::common::{KLine, QotHeader, Security};

    #[derive(Clone, PartialEq, Message)]
    pub struct C2s {
        /// `Qot_Common.RehabType`.
        #[prost(int32, required, tag = "1")]
        pub rehab_type: i32,
        /// `Qot_Common.KLType`.
        #[prost(int32, required, tag = "2")]
        pub kl_type: i32,
        #[prost(message, required, tag = "3")]
        pub security: Security,
        /// Market-local `yyyy-MM-dd HH:mm:ss`.
        #[prost(string, required, tag = "4")]
        pub begin_time: String,
        #[prost(string, required, tag = "5")]
        pub end_time: String,
        /// Bars in this reply; DMS always pages with at most 1000.
        #[prost(int32, optional, tag = "6")]
        pub max_ack_kl_num: Option<i32>,
        /// `Qot_Common.KLFields` bit set.
        #[prost(int64, optional, tag = "7")]
        pub need_kl_fields_flag: Option<i64>,
        /// The previous reply's key; absent on the first page.
        #[prost(bytes = "vec", optional, tag = "8")]
        pub next_req_key: Option<Vec<u8>>,
        /// US pre/after hours (≤ 60-minute bars only).
        #[prost(bool, optional, tag = "9")]
        pub extended_time: Option<bool>,
        /// `Common.Session`.
        #[prost(int32, optional, tag = "10")]
        pub session: Option<i32>,
        #[prost(message, optional, tag = "100")]
        pub header: Option<QotHeader>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct S2c {
        #[prost(message, required, tag = "1")]
        pub security: Security,
        #[prost(message, repeated, tag = "2")]
        pub kl_list: Vec<KLine>,
        /// Present if and only if there is more data.
        #[prost(bytes = "vec", optional, tag = "3")]
        pub next_req_key: Option<Vec<u8>>,
        #[prost(string, optional, tag = "4")]
        pub name: Option<String>,
    }

    pub struct Proto;
    impl super::Proto for Proto {
        const ID: u32 = super::ids::REQUEST_HISTORY_KL;
        const NAME: &'static str = "Qot_RequestHistoryKL";
        type C2s = C2s;
        type S2c = S2c;
    }
}

/// Qot_RequestHistoryKLQuota (3104): how many distinct securities the account may still
/// download within the rolling window, and which ones it already did.
pub mod history_kl_quota {
    use prost::Message;

    use super::common::{QotHeader, Security};

    #[derive(Clone, PartialEq, Message)]
    pub struct C2s {
        #[prost(bool, optional, tag = "2")]
        pub b_get_detail: Option<bool>,
        #[prost(message, optional, tag = "100")]
        pub header: Option<QotHeader>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct DetailItem {
        #[prost(message, required, tag = "1")]
        pub security: Security,
        /// `yyyy-MM-dd HH:mm:ss`.
        #[prost(string, required, tag = "2")]
        pub request_time: String,
        #[prost(int64, optional, tag = "3")]
        pub request_time_stamp: Option<i64>,
        #[prost(string, optional, tag = "4")]
        pub name: Option<String>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct S2c {
        #[prost(int32, required, tag = "1")]
        pub used_quota: i32,
        #[prost(int32, required, tag = "2")]
        pub remain_quota: i32,
        #[prost(message, repeated, tag = "3")]
        pub detail_list: Vec<DetailItem>,
    }

    pub struct Proto;
    impl super::Proto for Proto {
        const ID: u32 = super::ids::REQUEST_HISTORY_KL_QUOTA;
        const NAME: &'static str = "Qot_RequestHistoryKLQuota";
        type C2s = C2s;
        type S2c = S2c;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Research §2.1: the InitConnect body the official SDK sends.
    const INIT_CONNECT_SDK: &str =
        "0a2608ac02120850794e6f726d616c180120ffffffffffffffffff0128003206507974686f6e3800";

    /// Research §3.1: the SDK's 3103 request for HK.00700 daily, forward-adjusted.
    const HISTORY_KL_SDK: &str = "0a46080110021a090801120530303730302213323032342d30312d30322030303a30303a30302a13323032342d30312d30342032333a35393a353930e80738ff075000a206020800";

    #[test]
    fn init_connect_matches_the_sdk_bytes_both_ways() {
        let body = hex(INIT_CONNECT_SDK);
        let req = Request::<init_connect::C2s>::decode(&body[..]).unwrap();
        let expected = init_connect::C2s {
            client_ver: 300,
            client_id: "PyNormal".into(),
            recv_notify: Some(true),
            packet_enc_algo: Some(-1),
            push_proto_fmt: Some(0),
            programming_language: Some("Python".into()),
            ai_type: Some(0),
        };
        assert_eq!(req.c2s, expected);
        assert_eq!(Request { c2s: expected }.encode_to_vec(), body);
    }

    #[test]
    fn history_kl_request_matches_the_sdk_bytes_both_ways() {
        let body = hex(HISTORY_KL_SDK);
        let req = Request::<history_kl::C2s>::decode(&body[..]).unwrap();
        let expected = history_kl::C2s {
            rehab_type: rehab_type::FORWARD,
            kl_type: kl_type::DAY,
            security: common::Security {
                market: qot_market::HK_SECURITY,
                code: "00700".into(),
            },
            begin_time: "2024-01-02 00:00:00".into(),
            end_time: "2024-01-04 23:59:59".into(),
            max_ack_kl_num: Some(1000),
            need_kl_fields_flag: Some(KL_FIELDS_ALL),
            next_req_key: None,
            extended_time: None,
            session: Some(0),
            header: Some(common::QotHeader {
                security_firm: Some(0),
            }),
        };
        assert_eq!(req.c2s, expected);
        assert_eq!(Request { c2s: expected }.encode_to_vec(), body);
    }

    #[test]
    fn an_empty_response_defaults_to_ret_type_minus_400() {
        let r = Response::<history_kl_quota::S2c>::decode(&[][..]).unwrap();
        assert_eq!(r.ret_type, ret_type::UNKNOWN);
        assert_eq!(r.s2c, None);
    }

    #[test]
    fn the_sdk_init_connect_reply_decodes() {
        // Research §5.3: body of the InitConnect reply built with the SDK's pb2 modules.
        let body = hex(
            "08001200222608f30710cec2f105188180f09d99ddbf9261221030313233343536373839616263646566280a",
        );
        let r = Response::<init_connect::S2c>::decode(&body[..]).unwrap();
        assert_eq!(r.ret_type, ret_type::SUCCEED);
        let s2c = r.s2c.unwrap();
        assert_eq!(s2c.conn_id, 7_000_000_000_000_000_001);
        assert_eq!(s2c.keep_alive_interval, 10);
        assert_eq!(s2c.conn_aes_key, "0123456789abcdef");
    }
}
