//! HEPv3 packets: `HEP3`, the packet's total length (u16, network order),
//! then chunks of vendor id (u16, 0 for the generic chunks), type (u16),
//! length (u16, the chunk's 6-byte header included) and value. The generic
//! chunks written: 0x0001 address family, 0x0002 IP protocol, 0x0003/0x0004
//! IPv4 source/destination, 0x0005/0x0006 IPv6 source/destination,
//! 0x0007/0x0008 source/destination port, 0x0009/0x000a timestamp seconds
//! and microseconds, 0x000b protocol type (1 SIP, 100 log), 0x000c capture
//! agent id, 0x000e authentication key, 0x000f payload, 0x0011 correlation
//! id (the Call-ID), 0x0013 node name.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Protocol type of a SIP message.
pub const SIP: u8 = 1;
/// Protocol type of a log event (a policy decision, in JSON).
pub const LOG: u8 = 100;

/// IP protocol of UDP.
pub const UDP: u8 = 17;
/// IP protocol of TCP (TLS too: the capture is of the SIP inside).
pub const TCP: u8 = 6;

const FAMILY: u16 = 0x0001;
const PROTOCOL: u16 = 0x0002;
const SRC_V4: u16 = 0x0003;
const DST_V4: u16 = 0x0004;
const SRC_V6: u16 = 0x0005;
const DST_V6: u16 = 0x0006;
const SRC_PORT: u16 = 0x0007;
const DST_PORT: u16 = 0x0008;
const SECONDS: u16 = 0x0009;
const MICROS: u16 = 0x000a;
const KIND: u16 = 0x000b;
const CAPTURE_ID: u16 = 0x000c;
const AUTH_KEY: u16 = 0x000e;
const PAYLOAD: u16 = 0x000f;
const CORRELATION: u16 = 0x0011;
const NODE_NAME: u16 = 0x0013;

/// The header before the chunks: `HEP3` and the total length.
const HEADER: usize = 6;
/// A chunk's header: vendor, type, length.
const CHUNK: usize = 6;

/// One packet, as written or read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The IP protocol the message travelled on ([`UDP`], [`TCP`]).
    pub protocol: u8,
    /// Where it came from.
    pub src: SocketAddr,
    /// Where it went.
    pub dst: SocketAddr,
    /// When it was sent or received.
    pub time: SystemTime,
    /// [`SIP`] or [`LOG`].
    pub kind: u8,
    /// The capture agent id.
    pub capture_id: u32,
    /// The capture server's password, if any.
    pub auth_key: Option<&'a [u8]>,
    /// The message or log text.
    pub payload: &'a [u8],
    /// The Call-ID, if any.
    pub correlation: Option<&'a [u8]>,
    /// The node name, if any.
    pub node_name: Option<&'a [u8]>,
}

/// Why bytes are not a HEPv3 packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not starting with `HEP3`, or shorter than its header.
    #[error("not a HEPv3 packet")]
    NotHep3,
    /// The total length or a chunk's length does not fit.
    #[error("bad length at byte {0}")]
    Length(usize),
    /// A chunk of a known type with a value of the wrong size.
    #[error("chunk {kind:#06x} of {len} bytes")]
    Chunk { kind: u16, len: usize },
    /// A required chunk is missing.
    #[error("no chunk {0:#06x}")]
    Missing(u16),
}

/// Whether the packet would exceed the 65,535 bytes its length field holds.
pub fn too_large(p: &Packet<'_>) -> bool {
    encoded_len(p) > usize::from(u16::MAX)
}

fn encoded_len(p: &Packet<'_>) -> usize {
    let addresses = match (unify(p.src.ip(), p.dst.ip()), ()) {
        ((IpAddr::V4(_), _), ()) => 2 * (CHUNK + 4),
        _ => 2 * (CHUNK + 16),
    };
    let optional = |v: Option<&[u8]>| v.map_or(0, |v| CHUNK + v.len());
    HEADER
        + 2 * (CHUNK + 1)
        + addresses
        + 2 * (CHUNK + 2)
        + 2 * (CHUNK + 4)
        + (CHUNK + 1)
        + (CHUNK + 4)
        + optional(p.auth_key)
        + CHUNK
        + p.payload.len()
        + optional(p.correlation)
        + optional(p.node_name)
}

/// Both addresses in one family: IPv4 when both are, else IPv6 (an IPv4
/// address mapped).
fn unify(a: IpAddr, b: IpAddr) -> (IpAddr, IpAddr) {
    match (a, b) {
        (IpAddr::V4(_), IpAddr::V4(_)) => (a, b),
        _ => (IpAddr::V6(v6(a)), IpAddr::V6(v6(b))),
    }
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// Appends `p` encoded to `out`. The caller checks [`too_large`] first: a
/// packet over 65,535 bytes has its length field saturated.
pub fn encode(p: &Packet<'_>, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(b"HEP3\0\0");
    let chunk = |out: &mut Vec<u8>, kind: u16, value: &[u8]| {
        out.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(&kind.to_be_bytes());
        let len = u16::try_from(CHUNK + value.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(value);
    };
    let (src, dst) = unify(p.src.ip(), p.dst.ip());
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            chunk(out, FAMILY, &[2]);
            chunk(out, PROTOCOL, &[p.protocol]);
            chunk(out, SRC_V4, &s.octets());
            chunk(out, DST_V4, &d.octets());
        }
        _ => {
            chunk(out, FAMILY, &[10]);
            chunk(out, PROTOCOL, &[p.protocol]);
            chunk(out, SRC_V6, &v6(src).octets());
            chunk(out, DST_V6, &v6(dst).octets());
        }
    }
    chunk(out, SRC_PORT, &p.src.port().to_be_bytes());
    chunk(out, DST_PORT, &p.dst.port().to_be_bytes());
    let since = p.time.duration_since(UNIX_EPOCH).unwrap_or_default();
    chunk(out, SECONDS, &u32::try_from(since.as_secs()).unwrap_or(u32::MAX).to_be_bytes());
    chunk(out, MICROS, &since.subsec_micros().to_be_bytes());
    chunk(out, KIND, &[p.kind]);
    chunk(out, CAPTURE_ID, &p.capture_id.to_be_bytes());
    if let Some(key) = p.auth_key {
        chunk(out, AUTH_KEY, key);
    }
    chunk(out, PAYLOAD, p.payload);
    if let Some(id) = p.correlation {
        chunk(out, CORRELATION, id);
    }
    if let Some(name) = p.node_name {
        chunk(out, NODE_NAME, name);
    }
    let total = u16::try_from(out.len() - start).unwrap_or(u16::MAX);
    out[start + 4..start + 6].copy_from_slice(&total.to_be_bytes());
}

/// Reads one packet from the start of `bytes` (a capture server's view, for
/// collectors and the tests); returns it and its length. Chunks
/// of other vendors or unknown types are skipped.
pub fn decode(bytes: &[u8]) -> Result<(Packet<'_>, usize), DecodeError> {
    if bytes.len() < HEADER || &bytes[..4] != b"HEP3" {
        return Err(DecodeError::NotHep3);
    }
    let total = usize::from(u16::from_be_bytes([bytes[4], bytes[5]]));
    if total < HEADER || total > bytes.len() {
        return Err(DecodeError::Length(4));
    }
    let mut at = HEADER;
    let mut found = Found::default();
    while at < total {
        if at + CHUNK > total {
            return Err(DecodeError::Length(at));
        }
        let vendor = u16::from_be_bytes([bytes[at], bytes[at + 1]]);
        let kind = u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]);
        let len = usize::from(u16::from_be_bytes([bytes[at + 4], bytes[at + 5]]));
        if len < CHUNK || at + len > total {
            return Err(DecodeError::Length(at));
        }
        let value = &bytes[at + CHUNK..at + len];
        if vendor == 0 {
            found.take(kind, value)?;
        }
        at += len;
    }
    Ok((found.packet()?, total))
}

/// The chunks read so far.
#[derive(Default)]
struct Found<'a> {
    family: Option<u8>,
    protocol: Option<u8>,
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    src_port: Option<u16>,
    dst_port: Option<u16>,
    seconds: Option<u32>,
    micros: Option<u32>,
    kind: Option<u8>,
    capture_id: Option<u32>,
    auth_key: Option<&'a [u8]>,
    payload: Option<&'a [u8]>,
    correlation: Option<&'a [u8]>,
    node_name: Option<&'a [u8]>,
}

impl<'a> Found<'a> {
    fn take(&mut self, kind: u16, v: &'a [u8]) -> Result<(), DecodeError> {
        let bad = || DecodeError::Chunk { kind, len: v.len() };
        let u8_ = || (v.len() == 1).then(|| v[0]).ok_or_else(bad);
        let u16_ = || <[u8; 2]>::try_from(v).map(u16::from_be_bytes).map_err(|_| bad());
        let u32_ = || <[u8; 4]>::try_from(v).map(u32::from_be_bytes).map_err(|_| bad());
        match kind {
            FAMILY => self.family = Some(u8_()?),
            PROTOCOL => self.protocol = Some(u8_()?),
            SRC_V4 => self.src = Some(IpAddr::from(<[u8; 4]>::try_from(v).map_err(|_| bad())?)),
            DST_V4 => self.dst = Some(IpAddr::from(<[u8; 4]>::try_from(v).map_err(|_| bad())?)),
            SRC_V6 => self.src = Some(IpAddr::from(<[u8; 16]>::try_from(v).map_err(|_| bad())?)),
            DST_V6 => self.dst = Some(IpAddr::from(<[u8; 16]>::try_from(v).map_err(|_| bad())?)),
            SRC_PORT => self.src_port = Some(u16_()?),
            DST_PORT => self.dst_port = Some(u16_()?),
            SECONDS => self.seconds = Some(u32_()?),
            MICROS => self.micros = Some(u32_()?),
            KIND => self.kind = Some(u8_()?),
            CAPTURE_ID => self.capture_id = Some(u32_()?),
            AUTH_KEY => self.auth_key = Some(v),
            PAYLOAD => self.payload = Some(v),
            CORRELATION => self.correlation = Some(v),
            NODE_NAME => self.node_name = Some(v),
            _ => {}
        }
        Ok(())
    }

    fn packet(self) -> Result<Packet<'a>, DecodeError> {
        let family = self.family.ok_or(DecodeError::Missing(FAMILY))?;
        let (src, dst) = match family {
            2 => (self.src.ok_or(DecodeError::Missing(SRC_V4))?, self.dst.ok_or(DecodeError::Missing(DST_V4))?),
            _ => (self.src.ok_or(DecodeError::Missing(SRC_V6))?, self.dst.ok_or(DecodeError::Missing(DST_V6))?),
        };
        let time = UNIX_EPOCH
            + Duration::from_secs(self.seconds.ok_or(DecodeError::Missing(SECONDS))?.into())
            + Duration::from_micros(self.micros.ok_or(DecodeError::Missing(MICROS))?.into());
        Ok(Packet {
            protocol: self.protocol.ok_or(DecodeError::Missing(PROTOCOL))?,
            src: SocketAddr::new(src, self.src_port.ok_or(DecodeError::Missing(SRC_PORT))?),
            dst: SocketAddr::new(dst, self.dst_port.ok_or(DecodeError::Missing(DST_PORT))?),
            time,
            kind: self.kind.ok_or(DecodeError::Missing(KIND))?,
            capture_id: self.capture_id.ok_or(DecodeError::Missing(CAPTURE_ID))?,
            auth_key: self.auth_key,
            payload: self.payload.ok_or(DecodeError::Missing(PAYLOAD))?,
            correlation: self.correlation,
            node_name: self.node_name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet<'a>(src: &str, dst: &str, payload: &'a [u8]) -> Packet<'a> {
        Packet {
            protocol: UDP,
            src: src.parse().expect("address"),
            dst: dst.parse().expect("address"),
            time: UNIX_EPOCH + Duration::from_micros(1_765_000_000_123_456),
            kind: SIP,
            capture_id: 2001,
            auth_key: Some(b"secret"),
            payload,
            correlation: Some(b"a84b4c76e66710@pc33"),
            node_name: Some(b"router-1"),
        }
    }

    /// The chunks of `bytes` as (type, value), read by hand.
    fn chunks(bytes: &[u8]) -> Vec<(u16, Vec<u8>)> {
        let mut at = 6;
        let mut out = Vec::new();
        while at < bytes.len() {
            assert_eq!(&bytes[at..at + 2], &[0, 0], "generic vendor");
            let kind = u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]);
            let len = usize::from(u16::from_be_bytes([bytes[at + 4], bytes[at + 5]]));
            out.push((kind, bytes[at + 6..at + len].to_vec()));
            at += len;
        }
        assert_eq!(at, bytes.len(), "the chunks fill the packet");
        out
    }

    #[test]
    fn every_chunk_of_an_ipv4_sip_packet_is_written_per_the_specification() {
        let sip = b"OPTIONS sip:um@contoso.com SIP/2.0\r\n\r\n";
        let p = packet("192.0.2.1:5060", "198.51.100.7:5061", sip);
        let mut out = Vec::new();
        encode(&p, &mut out);
        assert_eq!(&out[..4], b"HEP3");
        assert_eq!(usize::from(u16::from_be_bytes([out[4], out[5]])), out.len());
        assert!(!too_large(&p));
        assert_eq!(encoded_len(&p), out.len());
        let expected: Vec<(u16, Vec<u8>)> = vec![
            (0x0001, vec![2]),
            (0x0002, vec![17]),
            (0x0003, vec![192, 0, 2, 1]),
            (0x0004, vec![198, 51, 100, 7]),
            (0x0007, 5060u16.to_be_bytes().to_vec()),
            (0x0008, 5061u16.to_be_bytes().to_vec()),
            (0x0009, 1_765_000_000u32.to_be_bytes().to_vec()),
            (0x000a, 123_456u32.to_be_bytes().to_vec()),
            (0x000b, vec![1]),
            (0x000c, 2001u32.to_be_bytes().to_vec()),
            (0x000e, b"secret".to_vec()),
            (0x000f, sip.to_vec()),
            (0x0011, b"a84b4c76e66710@pc33".to_vec()),
            (0x0013, b"router-1".to_vec()),
        ];
        assert_eq!(chunks(&out), expected);
        let (back, len) = decode(&out).expect("decodes");
        assert_eq!((back, len), (p, out.len()));
    }

    #[test]
    fn ipv6_and_mixed_families_use_the_ipv6_chunks() {
        let p = Packet {
            kind: LOG,
            protocol: TCP,
            auth_key: None,
            node_name: None,
            ..packet("[::1]:5060", "[2001:db8::5]:5070", b"{}")
        };
        let mut out = Vec::new();
        encode(&p, &mut out);
        let c = chunks(&out);
        assert_eq!(c[0], (0x0001, vec![10]));
        assert_eq!(c[1], (0x0002, vec![6]));
        assert_eq!(c[2], (0x0005, "::1".parse::<Ipv6Addr>().expect("v6").octets().to_vec()));
        assert_eq!(c[3].0, 0x0006);
        assert!(c.iter().all(|(k, _)| *k != 0x000e && *k != 0x0013), "no auth key or node name when unset");
        assert_eq!(c.iter().find(|(k, _)| *k == 0x000b).map(|(_, v)| v.clone()), Some(vec![100]));
        assert_eq!(decode(&out).expect("decodes").0, p);
        // An IPv4 source with an IPv6 destination: both as IPv6, the IPv4 mapped.
        let mixed = packet("192.0.2.1:5060", "[2001:db8::5]:5060", b"x");
        out.clear();
        encode(&mixed, &mut out);
        let (back, _) = decode(&out).expect("decodes");
        assert_eq!(back.src.ip(), IpAddr::V6("::ffff:192.0.2.1".parse().expect("v6")));
        assert_eq!(back.src.port(), 5060);
    }

    #[test]
    fn broken_packets_are_refused_and_unknown_chunks_skipped() {
        let p = packet("192.0.2.1:5060", "192.0.2.2:5060", b"INVITE");
        let mut out = Vec::new();
        encode(&p, &mut out);
        assert_eq!(decode(b"HEP2\0\x06"), Err(DecodeError::NotHep3));
        assert_eq!(decode(&out[..out.len() - 1]), Err(DecodeError::Length(4)));
        // A vendor chunk and an unknown generic chunk, appended, are skipped.
        let mut more = out.clone();
        more.extend_from_slice(&[0, 7, 0, 1, 0, 7, 9]);
        more.extend_from_slice(&[0, 0, 0x0f, 0xff, 0, 7, 1]);
        let total = u16::try_from(more.len()).expect("fits");
        more[4..6].copy_from_slice(&total.to_be_bytes());
        assert_eq!(decode(&more).expect("decodes").0, p);
        // A chunk whose length runs past the packet.
        let mut cut = out.clone();
        cut[6 + 4..6 + 6].copy_from_slice(&1000u16.to_be_bytes());
        assert_eq!(decode(&cut), Err(DecodeError::Length(6)));
        // A port chunk of three bytes.
        let mut port = Vec::new();
        port.extend_from_slice(b"HEP3\0\x0f");
        port.extend_from_slice(&[0, 0, 0, 7, 0, 9, 1, 2, 3]);
        assert_eq!(decode(&port), Err(DecodeError::Chunk { kind: 7, len: 3 }));
        // Over the 16-bit length field.
        let big = Packet { payload: &[b'x'; 70_000], ..p.clone() };
        assert!(too_large(&big));
    }
}
