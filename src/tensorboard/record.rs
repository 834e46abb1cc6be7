//! TFRecord framing, the container format of TensorBoard event files.
//!
//! Each record is `u64le length`, `u32le masked_crc32c(length bytes)`, the data, and
//! `u32le masked_crc32c(data)`, where `masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8` (mod
//! 2³²) and the CRC is CRC-32C (Castagnoli). A record is always written whole, in one `write`
//! together with the other records of the same flush, so a reader sees complete records
//! followed at most by the beginning of the next one — which TensorBoard's readers treat as
//! "not written yet" and read again later.

/// The constant TensorFlow adds to a rotated CRC.
const MASK_DELTA: u32 = 0xa282_ead8;

/// TensorFlow's masked CRC-32C of `data`.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let c = crc32c::crc32c(data);
    (c.rotate_right(15)).wrapping_add(MASK_DELTA)
}

/// Bytes of framing around each record's data.
pub const FRAMING: usize = 16;

/// Append one framed record holding `data` to `out`.
pub fn append_record(out: &mut Vec<u8>, data: &[u8]) {
    let len = (data.len() as u64).to_le_bytes();
    out.reserve(data.len() + FRAMING);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
}

/// Why a byte string does not parse as records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// The data ends inside a record (a writer may still be appending it).
    Truncated { offset: usize },
    /// A checksum does not match: the file is corrupt.
    Corrupt { offset: usize, what: &'static str },
}

/// Split `buf` into records' data. Stops at the first truncated or corrupt record and says why;
/// `Ok` means `buf` holds only whole records.
pub fn read_records(buf: &[u8]) -> (Vec<&[u8]>, Result<(), ReadError>) {
    let mut out = Vec::new();
    let mut off = 0usize;
    while off < buf.len() {
        let rest = &buf[off..];
        if rest.len() < 12 {
            return (out, Err(ReadError::Truncated { offset: off }));
        }
        let len_bytes = &rest[..8];
        let crc = u32::from_le_bytes([rest[8], rest[9], rest[10], rest[11]]);
        if crc != masked_crc32c(len_bytes) {
            return (
                out,
                Err(ReadError::Corrupt {
                    offset: off,
                    what: "length checksum",
                }),
            );
        }
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap_or([0; 8]));
        let Some(total) = usize::try_from(len)
            .ok()
            .and_then(|l| l.checked_add(FRAMING))
        else {
            return (
                out,
                Err(ReadError::Corrupt {
                    offset: off,
                    what: "length",
                }),
            );
        };
        if rest.len() < total {
            return (out, Err(ReadError::Truncated { offset: off }));
        }
        let data = &rest[12..total - 4];
        let dcrc = u32::from_le_bytes([
            rest[total - 4],
            rest[total - 3],
            rest[total - 2],
            rest[total - 1],
        ]);
        if dcrc != masked_crc32c(data) {
            return (
                out,
                Err(ReadError::Corrupt {
                    offset: off,
                    what: "data checksum",
                }),
            );
        }
        out.push(data);
        off += total;
    }
    (out, Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_known_values() {
        // RFC 3720 test vector: 32 bytes of zeros.
        assert_eq!(crc32c::crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        // TensorFlow's mask, spelled out: ((c >> 15) | (c << 17)) + 0xa282ead8.
        let c = crc32c::crc32c(b"abc");
        #[allow(clippy::manual_rotate)]
        let want = ((c >> 15) | (c << 17)).wrapping_add(0xa282_ead8);
        assert_eq!(masked_crc32c(b"abc"), want);
    }

    #[test]
    fn round_trip_and_truncation() {
        let mut buf = Vec::new();
        append_record(&mut buf, b"hello");
        append_record(&mut buf, b"");
        append_record(&mut buf, &[7u8; 1000]);
        let (recs, r) = read_records(&buf);
        assert!(r.is_ok());
        assert_eq!(recs, vec![&b"hello"[..], &b""[..], &[7u8; 1000][..]]);
        for cut in 1..buf.len() {
            let (recs, r) = read_records(&buf[..cut]);
            match r {
                Err(ReadError::Truncated { .. }) => {}
                Ok(()) => assert!(cut == 21 || cut == 37, "cut {cut}"),
                other => panic!("cut {cut}: {other:?}"),
            }
            assert!(recs.len() <= 3);
        }
        let mut bad = buf.clone();
        bad[13] ^= 1;
        assert_eq!(
            read_records(&bad).1,
            Err(ReadError::Corrupt {
                offset: 0,
                what: "data checksum"
            })
        );
    }
}
