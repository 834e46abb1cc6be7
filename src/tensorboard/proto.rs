//! A hand-encoded subset of TensorFlow's `Event` protocol buffer — what TensorBoard needs to plot
//! scalars and histograms (no protobuf dependency):
//!
//! ```text
//! message Event   { double wall_time = 1; int64 step = 2;
//!                   oneof what { string file_version = 3; Summary summary = 5; } }
//! message Summary { repeated Value value = 1; }
//! message Value   { string tag = 1; oneof value { float simple_value = 2; HistogramProto histo = 5; } }
//! message HistogramProto { double min = 1; double max = 2; double num = 3; double sum = 4;
//!                          double sum_squares = 5; repeated double bucket_limit = 6 [packed];
//!                          repeated double bucket = 7 [packed]; }
//! ```

/// The `file_version` of the first record of every event file.
pub const FILE_VERSION: &str = "brain.Event:2";

const WIRE_VARINT: u32 = 0;
const WIRE_FIXED64: u32 = 1;
const WIRE_LEN: u32 = 2;
const WIRE_FIXED32: u32 = 5;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_tag(out: &mut Vec<u8>, field: u32, wire: u32) {
    put_varint(out, u64::from((field << 3) | wire));
}

fn put_f64(out: &mut Vec<u8>, field: u32, v: f64) {
    put_tag(out, field, WIRE_FIXED64);
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    put_tag(out, field, WIRE_LEN);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// One summary value.
#[derive(Debug, Clone, PartialEq)]
pub enum SummaryValue<'a> {
    /// A scalar, stored as `float32` (`simple_value`), as TensorFlow's writers do.
    Scalar(&'a str, f32),
    /// A histogram of values.
    Histogram(&'a str, &'a Histogram),
}

/// An `Event` with a summary.
pub fn encode_summary_event(wall_time: f64, step: i64, values: &[SummaryValue<'_>]) -> Vec<u8> {
    let mut summary = Vec::with_capacity(values.len() * 32);
    let mut value = Vec::with_capacity(64);
    for v in values {
        value.clear();
        match v {
            SummaryValue::Scalar(tag, x) => {
                put_bytes(&mut value, 1, tag.as_bytes());
                put_tag(&mut value, 2, WIRE_FIXED32);
                value.extend_from_slice(&x.to_le_bytes());
            }
            SummaryValue::Histogram(tag, h) => {
                put_bytes(&mut value, 1, tag.as_bytes());
                put_bytes(&mut value, 5, &h.encode());
            }
        }
        put_bytes(&mut summary, 1, &value);
    }
    let mut ev = Vec::with_capacity(summary.len() + 24);
    put_f64(&mut ev, 1, wall_time);
    put_tag(&mut ev, 2, WIRE_VARINT);
    put_varint(&mut ev, step as u64);
    put_bytes(&mut ev, 5, &summary);
    ev
}

/// The header `Event` of a file: `file_version = "brain.Event:2"`.
pub fn encode_file_version_event(wall_time: f64) -> Vec<u8> {
    let mut ev = Vec::with_capacity(32);
    put_f64(&mut ev, 1, wall_time);
    put_bytes(&mut ev, 3, FILE_VERSION.as_bytes());
    ev
}

/// A histogram with TensorFlow's default buckets (`tensorflow/core/lib/histogram`): limits grow
/// by 10 % from 1e-12 to 1e20 on both sides of 0, ending at ±`f64::MAX`. Non-finite values are
/// not counted (TensorFlow's would corrupt `sum`).
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub min: f64,
    pub max: f64,
    pub num: f64,
    pub sum: f64,
    pub sum_squares: f64,
    /// (upper limit, count) of each bucket, empty runs collapsed as TensorFlow encodes them.
    pub buckets: Vec<(f64, f64)>,
}

fn default_limits() -> &'static [f64] {
    static L: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    L.get_or_init(|| {
        let mut pos = Vec::new();
        let mut v = 1.0e-12;
        while v < 1.0e20 {
            pos.push(v);
            v *= 1.1;
        }
        pos.push(f64::MAX);
        let mut all: Vec<f64> = pos.iter().rev().map(|x| -x).collect();
        all.push(0.0);
        all.extend_from_slice(&pos);
        all
    })
}

impl Histogram {
    /// The histogram of `values`.
    pub fn of(values: &[f64]) -> Histogram {
        let limits = default_limits();
        let mut counts = vec![0.0f64; limits.len()];
        let (mut min, mut max) = (f64::MAX, -f64::MAX);
        let (mut num, mut sum, mut sq) = (0.0, 0.0, 0.0);
        for &x in values.iter().filter(|x| x.is_finite()) {
            // TensorFlow: the first limit strictly greater than the value.
            let b = limits.partition_point(|&l| l <= x).min(limits.len() - 1);
            counts[b] += 1.0;
            min = min.min(x);
            max = max.max(x);
            num += 1.0;
            sum += x;
            sq += x * x;
        }
        let mut buckets = Vec::new();
        let mut i = 0;
        while i < counts.len() {
            let (mut end, mut count) = (limits[i], counts[i]);
            i += 1;
            if count <= 0.0 {
                while i < counts.len() && counts[i] <= 0.0 {
                    end = limits[i];
                    count = counts[i];
                    i += 1;
                }
            }
            buckets.push((end, count));
        }
        if buckets.is_empty() {
            buckets.push((f64::MAX, 0.0));
        }
        Histogram {
            min,
            max,
            num,
            sum,
            sum_squares: sq,
            buckets,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(48 + self.buckets.len() * 16);
        put_f64(&mut out, 1, self.min);
        put_f64(&mut out, 2, self.max);
        put_f64(&mut out, 3, self.num);
        put_f64(&mut out, 4, self.sum);
        put_f64(&mut out, 5, self.sum_squares);
        let mut packed = Vec::with_capacity(self.buckets.len() * 8);
        for (l, _) in &self.buckets {
            packed.extend_from_slice(&l.to_le_bytes());
        }
        put_bytes(&mut out, 6, &packed);
        packed.clear();
        for (_, c) in &self.buckets {
            packed.extend_from_slice(&c.to_le_bytes());
        }
        put_bytes(&mut out, 7, &packed);
        out
    }
}

/// A decoded event, for tests and tools: what [`decode_event`] understands.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DecodedEvent {
    pub wall_time: f64,
    pub step: i64,
    pub file_version: Option<String>,
    /// `(tag, simple_value)` of each scalar value.
    pub scalars: Vec<(String, f32)>,
    /// Tags of histogram values, with their `num`.
    pub histograms: Vec<(String, f64)>,
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.i)?;
            self.i += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(v);
            }
        }
        None
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.i..self.i.checked_add(n)?)?;
        self.i += n;
        Some(s)
    }
    fn field(&mut self) -> Option<(u32, Field<'a>)> {
        let key = self.varint()?;
        let (num, wire) = ((key >> 3) as u32, (key & 7) as u32);
        let f = match wire {
            WIRE_VARINT => Field::Varint(self.varint()?),
            WIRE_FIXED64 => Field::F64(u64::from_le_bytes(self.take(8)?.try_into().ok()?)),
            WIRE_LEN => {
                let n = usize::try_from(self.varint()?).ok()?;
                Field::Bytes(self.take(n)?)
            }
            WIRE_FIXED32 => Field::F32(u32::from_le_bytes(self.take(4)?.try_into().ok()?)),
            _ => return None,
        };
        Some((num, f))
    }
    fn done(&self) -> bool {
        self.i >= self.b.len()
    }
}

enum Field<'a> {
    Varint(u64),
    F64(u64),
    Bytes(&'a [u8]),
    F32(u32),
}

/// Decode an `Event` written by this module (unknown fields are skipped). `None` if malformed.
pub fn decode_event(b: &[u8]) -> Option<DecodedEvent> {
    let mut ev = DecodedEvent::default();
    let mut r = Reader { b, i: 0 };
    while !r.done() {
        match r.field()? {
            (1, Field::F64(v)) => ev.wall_time = f64::from_bits(v),
            (2, Field::Varint(v)) => ev.step = v as i64,
            (3, Field::Bytes(s)) => ev.file_version = Some(String::from_utf8(s.to_vec()).ok()?),
            (5, Field::Bytes(s)) => {
                let mut sr = Reader { b: s, i: 0 };
                while !sr.done() {
                    if let (1, Field::Bytes(v)) = sr.field()? {
                        let mut vr = Reader { b: v, i: 0 };
                        let (mut tag, mut scalar, mut histo) = (String::new(), None, None);
                        while !vr.done() {
                            match vr.field()? {
                                (1, Field::Bytes(t)) => tag = String::from_utf8(t.to_vec()).ok()?,
                                (2, Field::F32(x)) => scalar = Some(f32::from_bits(x)),
                                (5, Field::Bytes(h)) => {
                                    let mut hr = Reader { b: h, i: 0 };
                                    let mut num = 0.0;
                                    while !hr.done() {
                                        if let (3, Field::F64(n)) = hr.field()? {
                                            num = f64::from_bits(n);
                                        }
                                    }
                                    histo = Some(num);
                                }
                                _ => {}
                            }
                        }
                        if let Some(x) = scalar {
                            ev.scalars.push((tag, x));
                        } else if let Some(n) = histo {
                            ev.histograms.push((tag, n));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Some(ev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        let mut v = Vec::new();
        put_varint(&mut v, 300);
        assert_eq!(v, [0xac, 0x02]);
        v.clear();
        put_varint(&mut v, -1i64 as u64);
        assert_eq!(v.len(), 10);
    }

    #[test]
    fn scalar_event_bytes() {
        // Same bytes as TensorFlow's `Event(wall_time=1.5, step=3,
        // summary=Summary(value=[Summary.Value(tag="a", simple_value=2.0)]))
        // .SerializeToString()`.
        let b = encode_summary_event(1.5, 3, &[SummaryValue::Scalar("a", 2.0)]);
        let want: Vec<u8> = [
            &[0x09][..],
            &1.5f64.to_le_bytes(),
            &[0x10, 0x03, 0x2a, 0x0a, 0x0a, 0x08, 0x0a, 0x01, b'a', 0x15],
            &2.0f32.to_le_bytes(),
        ]
        .concat();
        assert_eq!(b, want);
        let d = decode_event(&b).unwrap();
        assert_eq!(d.step, 3);
        assert_eq!(d.scalars, vec![("a".to_owned(), 2.0)]);
    }

    #[test]
    fn negative_step_and_nan_round_trip() {
        let b = encode_summary_event(
            0.0,
            -2,
            &[
                SummaryValue::Scalar("n", f32::NAN),
                SummaryValue::Scalar("i", f32::INFINITY),
            ],
        );
        let d = decode_event(&b).unwrap();
        assert_eq!(d.step, -2);
        assert!(d.scalars[0].1.is_nan());
        assert_eq!(d.scalars[1].1, f32::INFINITY);
        let h = decode_event(&encode_file_version_event(2.0)).unwrap();
        assert_eq!(h.file_version.as_deref(), Some(FILE_VERSION));
    }

    #[test]
    fn histogram_buckets_like_tensorflow() {
        let h = Histogram::of(&[0.0, 1.0, 1.0, -3.0, f64::NAN]);
        assert_eq!(
            (h.min, h.max, h.num, h.sum, h.sum_squares),
            (-3.0, 1.0, 4.0, -1.0, 11.0)
        );
        let total: f64 = h.buckets.iter().map(|b| b.1).sum();
        assert_eq!(total, 4.0);
        // 0.0 falls in the bucket whose limit is the first one above 0 (1e-12).
        assert!(h.buckets.iter().any(|&(l, c)| l == 1.0e-12 && c == 1.0));
        // Limits are increasing.
        assert!(h.buckets.windows(2).all(|w| w[0].0 < w[1].0));
        let e = Histogram::of(&[]);
        assert_eq!(e.num, 0.0);
        assert_eq!(e.buckets, vec![(f64::MAX, 0.0)]);
        let b = encode_summary_event(1.0, 1, &[SummaryValue::Histogram("w", &h)]);
        assert_eq!(
            decode_event(&b).unwrap().histograms,
            vec![("w".to_owned(), 4.0)]
        );
    }
}
