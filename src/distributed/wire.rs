//! Frames between ranks: a fixed 32-byte little-endian header and a payload.
//!
//! ```text
//! magic u32 "DTC1" | kind u8 | op u8 | reserved u16 | sender u32 | reserved u32 | serial u64 | len u64 | payload
//! ```
//! `sender` is a global rank; `serial` numbers the collectives of a group (every rank must call
//! the same collectives in the same order, so serials and ops must match). Payloads are bytes;
//! an allgather result is `count u32` then `count` × (`len u64`, bytes).

use crate::error::Result;
use std::io::{Read, Write};

pub const MAGIC: u32 = u32::from_le_bytes(*b"DTC1");
pub const HEADER_LEN: usize = 32;
/// The largest payload accepted (a guard against garbage on the socket).
pub const MAX_PAYLOAD: u64 = 1 << 40;

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Client → server: `sender` = global rank, payload = hello fields.
    Hello = 1,
    /// Server → client: the group is complete.
    Welcome = 2,
    /// Server → client: refused, payload = reason.
    Reject = 3,
    /// A collective's data (op says which collective and which leg).
    Data = 4,
    /// Client → server: broadcast `serial` received.
    Ack = 5,
    /// Server → client: out-of-band control (preemption horizons and decisions).
    Control = 6,
    /// Server → client: the job failed, payload = reason.
    Abort = 7,
    /// Either way: this side is closing cleanly.
    Bye = 8,
    /// Server → client, right after a hello it takes: this rank belongs to the group, wait for
    /// `Welcome`; payload = the job identity the chief goes by.
    Accept = 9,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Hello,
            2 => Kind::Welcome,
            3 => Kind::Reject,
            4 => Kind::Data,
            5 => Kind::Ack,
            6 => Kind::Control,
            7 => Kind::Abort,
            8 => Kind::Bye,
            9 => Kind::Accept,
            _ => return None,
        })
    }
}

/// Which collective (and which leg of it) a data frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    /// Client → server: my item of a gather.
    Gather = 1,
    /// Server → client: the gather is complete.
    GatherDone = 2,
    /// Client → server: my item of an allgather.
    Allgather = 3,
    /// Server → client: everyone's items.
    AllgatherResult = 4,
    /// Server → client: the broadcast value.
    Broadcast = 5,
    /// Control: no preemption through call `serial`.
    Horizon = 16,
    /// Control: preemption from call `serial` on.
    Decision = 17,
    /// Control, chief → member: stop answering from horizons and reply with `Frozen`
    /// (`serial`: the chief's call).
    Freeze = 18,
    /// Control, member → chief: the last call this member answered `false` (`serial`).
    Frozen = 19,
}

impl Op {
    pub fn from_u8(v: u8) -> Option<Op> {
        Some(match v {
            1 => Op::Gather,
            2 => Op::GatherDone,
            3 => Op::Allgather,
            4 => Op::AllgatherResult,
            5 => Op::Broadcast,
            16 => Op::Horizon,
            17 => Op::Decision,
            18 => Op::Freeze,
            19 => Op::Frozen,
            _ => return None,
        })
    }

    /// The user-facing collective this leg belongs to, for messages.
    pub fn collective(self) -> &'static str {
        match self {
            Op::Gather | Op::GatherDone => "gather",
            Op::Allgather | Op::AllgatherResult => "allgather",
            Op::Broadcast => "broadcast",
            Op::Horizon | Op::Decision | Op::Freeze | Op::Frozen => "should_preempt",
        }
    }
}

/// A decoded header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub op: u8,
    pub sender: u32,
    pub serial: u64,
    pub len: u64,
}

impl Header {
    pub fn new(kind: Kind, op: u8, sender: u32, serial: u64, len: usize) -> Header {
        Header {
            kind,
            op,
            sender,
            serial,
            len: len as u64,
        }
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4] = self.kind as u8;
        b[5] = self.op;
        b[8..12].copy_from_slice(&self.sender.to_le_bytes());
        b[16..24].copy_from_slice(&self.serial.to_le_bytes());
        b[24..32].copy_from_slice(&self.len.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<Header> {
        let magic = u32::from_le_bytes(b[0..4].try_into().expect("4 bytes"));
        if magic != MAGIC {
            bail!(Distributed, "unexpected bytes on a detcore connection (bad magic {magic:#010x}): is another program using this port?");
        }
        let kind =
            Kind::from_u8(b[4]).ok_or_else(|| err!(Distributed, "unknown frame kind {}", b[4]))?;
        let len = u64::from_le_bytes(b[24..32].try_into().expect("8 bytes"));
        if len > MAX_PAYLOAD {
            bail!(
                Distributed,
                "frame of {len} bytes is larger than the {MAX_PAYLOAD} bytes allowed"
            );
        }
        Ok(Header {
            kind,
            op: b[5],
            sender: u32::from_le_bytes(b[8..12].try_into().expect("4 bytes")),
            serial: u64::from_le_bytes(b[16..24].try_into().expect("8 bytes")),
            len,
        })
    }
}

/// Write one frame (header, then payload) with as few system calls as practical.
pub fn write_frame(w: &mut impl Write, h: &Header, payload: &[u8]) -> std::io::Result<()> {
    debug_assert_eq!(h.len as usize, payload.len());
    if payload.len() <= 4096 {
        let mut buf = Vec::with_capacity(HEADER_LEN + payload.len());
        buf.extend_from_slice(&h.encode());
        buf.extend_from_slice(payload);
        w.write_all(&buf)
    } else {
        w.write_all(&h.encode())?;
        w.write_all(payload)
    }
}

/// Read one frame. `Ok(None)` on a clean end of stream before a header.
pub fn read_frame(r: &mut impl Read) -> Result<Option<(Header, Vec<u8>)>> {
    let mut hb = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match r.read(&mut hb[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => bail!(Distributed, "connection closed in the middle of a frame"),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(err!(Distributed, "connection failed: {e}")),
        }
    }
    let h = Header::decode(&hb)?;
    let mut payload = vec![0u8; h.len as usize];
    r.read_exact(&mut payload).map_err(|e| {
        err!(
            Distributed,
            "connection failed while reading {} bytes: {e}",
            h.len
        )
    })?;
    Ok(Some((h, payload)))
}

/// The result of a collective: one byte buffer per rank. Either separate buffers, or one
/// received (or sent) wire buffer with the items' positions — large allgathers are neither
/// copied item by item on receipt nor re-encoded to be returned.
#[derive(Debug, Clone, PartialEq)]
pub enum ByteList {
    Vecs(Vec<Vec<u8>>),
    Encoded {
        buf: Vec<u8>,
        spans: Vec<(usize, usize)>,
    },
}

impl ByteList {
    /// Encode `items` into one wire buffer (one copy, which is what gets sent).
    pub fn encode(items: &[Vec<u8>]) -> ByteList {
        ByteList::parse(encode_list(items)).expect("a list we encoded is well-formed")
    }

    /// Take a received wire buffer without copying the items.
    pub fn parse(buf: Vec<u8>) -> Result<ByteList> {
        let bad = || err!(Distributed, "malformed list payload");
        if buf.len() < 4 {
            return Err(bad());
        }
        let n = u32::from_le_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
        let mut at = 4usize;
        let mut spans = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            if buf.len() < at + 8 {
                return Err(bad());
            }
            let len = u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes")) as usize;
            at += 8;
            if buf.len() - at < len {
                return Err(bad());
            }
            spans.push((at, len));
            at += len;
        }
        if at != buf.len() {
            return Err(bad());
        }
        Ok(ByteList::Encoded { buf, spans })
    }

    /// The encoded form, if this list has one.
    pub fn wire(&self) -> Option<&[u8]> {
        match self {
            ByteList::Encoded { buf, .. } => Some(buf),
            ByteList::Vecs(_) => None,
        }
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        match self {
            ByteList::Vecs(v) => v.len(),
            ByteList::Encoded { spans, .. } => spans.len(),
        }
    }

    /// True when there are no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Item `i`.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        match self {
            ByteList::Vecs(v) => v.get(i).map(Vec::as_slice),
            ByteList::Encoded { buf, spans } => spans.get(i).map(|&(a, n)| &buf[a..a + n]),
        }
    }

    /// The items as separate buffers.
    pub fn into_vecs(self) -> Vec<Vec<u8>> {
        match self {
            ByteList::Vecs(v) => v,
            ByteList::Encoded { buf, spans } => {
                spans.iter().map(|&(a, n)| buf[a..a + n].to_vec()).collect()
            }
        }
    }
}

/// Encode a list of byte buffers: `count u32` then (`len u64`, bytes) each.
pub fn encode_list(items: &[Vec<u8>]) -> Vec<u8> {
    let total: usize = 4 + items.iter().map(|i| 8 + i.len()).sum::<usize>();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(items.len() as u32).to_le_bytes());
    for i in items {
        out.extend_from_slice(&(i.len() as u64).to_le_bytes());
        out.extend_from_slice(i);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = Header::new(Kind::Data, Op::Allgather as u8, 7, 123456789, 42);
        assert_eq!(Header::decode(&h.encode()).unwrap(), h);
        let mut bad = h.encode();
        bad[0] = b'X';
        assert!(Header::decode(&bad)
            .unwrap_err()
            .message()
            .contains("magic"));
        let mut bad = h.encode();
        bad[4] = 99;
        assert!(Header::decode(&bad).is_err());
    }

    #[test]
    fn frames_and_lists() {
        let mut buf = Vec::new();
        let big = vec![5u8; 10_000];
        write_frame(&mut buf, &Header::new(Kind::Data, 1, 1, 2, 3), b"abc").unwrap();
        write_frame(&mut buf, &Header::new(Kind::Data, 1, 1, 3, big.len()), &big).unwrap();
        let mut r = &buf[..];
        let (h, p) = read_frame(&mut r).unwrap().unwrap();
        assert_eq!((h.serial, p.as_slice()), (2, &b"abc"[..]));
        let (_, p) = read_frame(&mut r).unwrap().unwrap();
        assert_eq!(p, big);
        assert!(read_frame(&mut r).unwrap().is_none());
        let mut trunc = &buf[..10];
        assert!(read_frame(&mut trunc).is_err());

        let items = vec![vec![], b"x".to_vec(), vec![9; 300]];
        assert_eq!(
            ByteList::parse(encode_list(&items)).unwrap().into_vecs(),
            items
        );
        assert!(ByteList::parse(vec![1, 0, 0, 0]).is_err());
        let l = ByteList::encode(&items);
        assert_eq!(l.len(), 3);
        assert_eq!(l.get(2), Some(&items[2][..]));
        assert_eq!(l.clone().into_vecs(), items);
        assert!(ByteList::parse(vec![2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7]).is_err());
    }
}
