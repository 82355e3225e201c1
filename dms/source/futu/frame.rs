//! Futu's packet framing: a 44-byte little-endian header followed by the body.
//!
//! ```text
//! offset size field
//!  0      2   "FT"
//!  2      4   proto id            u32 LE
//!  6      1   body format         0 = protobuf (the only one DMS speaks), 1 = JSON
//!  7      1   header version      0
//!  8      4   serial number       u32 LE, echoed by the reply
//! 12      4   body length         u32 LE
//! 16     20   SHA-1 of the body
//! 36      8   reserved, zero
//! 44      n   body
//! ```
//!
//! Decoding works on a growing buffer (`decode` returns `Ok(None)` until a whole packet is
//! there), checks the flag and format before waiting for a body, caps the body length so a
//! corrupt header cannot make DMS allocate gigabytes, and verifies the SHA-1 of every body.
//! Encryption (research §1.4) is not implemented: DMS sends `packetEncAlgo = -1`.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use sha1::{Digest, Sha1};

pub const HEADER_LEN: usize = 44;

/// The largest body accepted. A 1000-bar K-line page is about 120 KiB and a quota detail list
/// for 2000 securities about 100 KiB; anything near this cap is a corrupt header.
pub const MAX_BODY_LEN: usize = 16 << 20;

const FLAG: [u8; 2] = *b"FT";
const FMT_PROTOBUF: u8 = 0;
const HEADER_VERSION: u8 = 0;

/// One packet: a protocol id, the serial number pairing a reply with its request, a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub proto_id: u32,
    pub serial: u32,
    pub body: Bytes,
}

/// Why bytes from OpenD are not a packet. After any of these the stream cannot be trusted to
/// be in sync, so the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("bad header flag {0:02x?} (expected \"FT\")")]
    BadFlag([u8; 2]),
    #[error("unsupported body format {format} on proto {proto_id} (only protobuf is spoken)")]
    Format { proto_id: u32, format: u8 },
    #[error("body of {len} bytes on proto {proto_id} exceeds the {MAX_BODY_LEN}-byte cap")]
    TooLong { proto_id: u32, len: usize },
    #[error("body sha-1 mismatch on proto {proto_id} serial {serial}")]
    Sha1Mismatch { proto_id: u32, serial: u32 },
}

/// Appends one packet to `dst`.
///
/// # Panics
/// If `body` is longer than [`MAX_BODY_LEN`]: request bodies are built by DMS and tiny.
pub fn encode(dst: &mut BytesMut, proto_id: u32, serial: u32, body: &[u8]) {
    assert!(body.len() <= MAX_BODY_LEN, "request body too long");
    dst.reserve(HEADER_LEN + body.len());
    dst.put_slice(&FLAG);
    dst.put_u32_le(proto_id);
    dst.put_u8(FMT_PROTOBUF);
    dst.put_u8(HEADER_VERSION);
    dst.put_u32_le(serial);
    dst.put_u32_le(body.len() as u32);
    dst.put_slice(&Sha1::digest(body));
    dst.put_bytes(0, 8);
    dst.put_slice(body);
}

/// Takes one whole packet off the front of `buf`, or returns `Ok(None)` (and leaves `buf`
/// alone) when more bytes are needed.
pub fn decode(buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let mut h = &buf[..HEADER_LEN];
    let flag = [h.get_u8(), h.get_u8()];
    if flag != FLAG {
        return Err(FrameError::BadFlag(flag));
    }
    let proto_id = h.get_u32_le();
    let format = h.get_u8();
    // The header version byte ("currently 0") is not checked: nothing in the layout depends
    // on it, and a bump alone should not cut DMS off.
    let _version = h.get_u8();
    let serial = h.get_u32_le();
    let len = h.get_u32_le() as usize;
    let mut sha1 = [0u8; 20];
    h.copy_to_slice(&mut sha1);
    if format != FMT_PROTOBUF {
        return Err(FrameError::Format { proto_id, format });
    }
    if len > MAX_BODY_LEN {
        return Err(FrameError::TooLong { proto_id, len });
    }
    if buf.len() < HEADER_LEN + len {
        buf.reserve(HEADER_LEN + len - buf.len());
        return Ok(None);
    }
    buf.advance(HEADER_LEN);
    let body = buf.split_to(len).freeze();
    if Sha1::digest(&body)[..] != sha1[..] {
        return Err(FrameError::Sha1Mismatch { proto_id, serial });
    }
    Ok(Some(Frame {
        proto_id,
        serial,
        body,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Research §3.1: the SDK's 3103 body (72 bytes).
    const HISTORY_KL_BODY: &str = "0a46080110021a090801120530303730302213323032342d30312d30322030303a30303a30302a13323032342d30312d30342032333a35393a353930e80738ff075000a206020800";

    #[test]
    fn encodes_the_sdk_header_test_vector() {
        // Research §1.2: proto 3103, serial 0x1104, the 72-byte body above.
        let header = hex("4654 1f0c0000 00 00 04110000 48000000
                          3d9dabdc0441dd8c79b97b7ec38d69f3f9a8dfbc 0000000000000000");
        let body = hex(HISTORY_KL_BODY);
        let mut out = BytesMut::new();
        encode(&mut out, 3103, 0x1104, &body);
        assert_eq!(&out[..HEADER_LEN], &header[..]);
        assert_eq!(&out[HEADER_LEN..], &body[..]);

        let mut buf = out.clone();
        let f = decode(&mut buf).unwrap().unwrap();
        assert_eq!(
            (f.proto_id, f.serial, &f.body[..]),
            (3103, 0x1104, &body[..])
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn decodes_the_sdk_init_connect_reply_packet() {
        // Research §5.3: an InitConnect reply framed by Python's struct module.
        let packet = hex(
            "4654e90300000000010000002c000000e860acbfd6e06e7e677fbfbf6f4d83dd531fa6130000000000000000
             08001200222608f30710cec2f105188180f09d99ddbf9261221030313233343536373839616263646566280a",
        );
        let mut buf = BytesMut::from(&packet[..]);
        let f = decode(&mut buf).unwrap().unwrap();
        assert_eq!((f.proto_id, f.serial, f.body.len()), (1001, 1, 44));
    }

    #[test]
    fn waits_for_whole_packets_and_keeps_what_follows() {
        let mut all = BytesMut::new();
        encode(&mut all, 1004, 7, b"\x08\x01");
        encode(&mut all, 3103, 8, b"");
        let bytes = all.freeze();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        // Feed one byte at a time: nothing decodes early, nothing is lost.
        for b in bytes.iter() {
            buf.put_u8(*b);
            while let Some(f) = decode(&mut buf).unwrap() {
                got.push((f.proto_id, f.serial, f.body));
            }
        }
        assert_eq!(
            got,
            vec![
                (1004, 7, Bytes::from_static(b"\x08\x01")),
                (3103, 8, Bytes::new())
            ]
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn rejects_a_bad_flag_a_json_body_an_oversized_length_and_a_bad_hash() {
        let mut good = BytesMut::new();
        encode(&mut good, 3103, 9, b"abc");

        let mut b = good.clone();
        b[0] = b'X';
        assert_eq!(decode(&mut b), Err(FrameError::BadFlag([b'X', b'T'])));

        let mut b = good.clone();
        b[6] = 1;
        assert!(matches!(
            decode(&mut b),
            Err(FrameError::Format { format: 1, .. })
        ));

        // The length is checked from the header alone, before any body arrives.
        let mut b = BytesMut::from(&good[..HEADER_LEN]);
        b[12..16].copy_from_slice(&(MAX_BODY_LEN as u32 + 1).to_le_bytes());
        assert!(matches!(decode(&mut b), Err(FrameError::TooLong { .. })));

        let mut b = good.clone();
        let last = b.len() - 1;
        b[last] ^= 0xff;
        assert_eq!(
            decode(&mut b),
            Err(FrameError::Sha1Mismatch {
                proto_id: 3103,
                serial: 9
            })
        );
    }
}
