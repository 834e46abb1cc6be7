//! Writers that produce exactly what Python's `json` module writes.
//!
//! - [`to_wire`]: `json.dumps(jsonable(x))` as Determined's `json_encode` does for request bodies —
//!   separators `", "` and `": "`, `ensure_ascii`, and non-finite floats turned into the strings
//!   `"NaN"`, `"Infinity"`, `"-Infinity"`. Always valid JSON; also used for `metrics.jsonl` lines.
//! - [`to_metadata_file`]: `json.dump(m, f, indent=2)`, the `metadata.json` of a checkpoint — bare
//!   `NaN`/`Infinity` literals, as Python writes them.

use super::{Number, Value};
use std::fmt::Write;

/// Serialize as Determined's `json_encode` does (one line, non-finite floats as strings).
pub fn to_wire(v: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, v, None, 0, NonFinite::AsString);
    out
}

/// Serialize as Python's `json.dump(v, f, indent=2)` (bare `NaN`/`Infinity` literals).
pub fn to_metadata_file(v: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, v, Some(2), 0, NonFinite::Literal);
    out
}

#[derive(Clone, Copy)]
enum NonFinite {
    AsString,
    Literal,
}

fn newline(out: &mut String, indent: Option<usize>, level: usize) {
    if let Some(n) = indent {
        out.push('\n');
        for _ in 0..n * level {
            out.push(' ');
        }
    }
}

fn write_value(out: &mut String, v: &Value, indent: Option<usize>, level: usize, nf: NonFinite) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n, nf),
        Value::String(s) => write_string(out, s),
        Value::Array(a) => {
            if a.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(if indent.is_some() { "," } else { ", " });
                }
                newline(out, indent, level + 1);
                write_value(out, x, indent, level + 1, nf);
            }
            newline(out, indent, level);
            out.push(']');
        }
        Value::Object(m) => {
            if m.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(if indent.is_some() { "," } else { ", " });
                }
                newline(out, indent, level + 1);
                write_string(out, k);
                out.push_str(": ");
                write_value(out, x, indent, level + 1, nf);
            }
            newline(out, indent, level);
            out.push('}');
        }
    }
}

fn write_number(out: &mut String, n: &Number, nf: NonFinite) {
    match *n {
        Number::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Number::UInt(u) => {
            let _ = write!(out, "{u}");
        }
        Number::BigInt(ref digits) => out.push_str(digits),
        Number::Float(f) => {
            let special = if f.is_nan() {
                Some("NaN")
            } else if f == f64::INFINITY {
                Some("Infinity")
            } else if f == f64::NEG_INFINITY {
                Some("-Infinity")
            } else {
                None
            };
            match (special, nf) {
                (Some(s), NonFinite::AsString) => {
                    out.push('"');
                    out.push_str(s);
                    out.push('"');
                }
                (Some(s), NonFinite::Literal) => out.push_str(s),
                (None, _) => out.push_str(&py_float_repr(f)),
            }
        }
    }
}

/// Python's `repr(float)` for finite values: the shortest digits that round-trip, in fixed
/// notation when the decimal exponent is in `[-4, 16)` (always with a fractional part, `1.0`),
/// else scientific with a signed two-digit-minimum exponent (`1e-05`, `1.5e+16`).
pub fn py_float_repr(f: f64) -> String {
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "-1.2345e-5", "1e16".
    let sci = format!("{f:e}");
    let (mant, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("integer exponent");
    let (neg, mant) = match mant.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mant),
    };
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if (-4..16).contains(&exp) {
        if exp >= 0 {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                for _ in digits.len()..int_len {
                    out.push('0');
                }
                out.push_str(".0");
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        } else {
            out.push_str("0.");
            for _ in 0..(-exp - 1) {
                out.push('0');
            }
            out.push_str(&digits);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    out
}

/// A JSON string with Python's `ensure_ascii=True` escaping.
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::super::{parse, Map};
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        // Expected values are Python 3.11's repr().
        let cases: &[(f64, &str)] = &[
            (1.0, "1.0"),
            (0.5, "0.5"),
            (0.1, "0.1"),
            (1e-4, "0.0001"),
            (1e-5, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (123.456, "123.456"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.2345678901234567e17, "1.2345678901234566e+17"),
            (-2.5, "-2.5"),
            (-0.0, "-0.0"),
            (3.0e100, "3e+100"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (0.30000000000000004, "0.30000000000000004"),
            (100.0, "100.0"),
            (12345.678e3, "12345678.0"),
        ];
        for (f, want) in cases {
            assert_eq!(py_float_repr(*f), *want, "repr({f:e})");
        }
    }

    #[test]
    fn wire_format_matches_json_dumps() {
        let v = parse(r#"{"loss": NaN, "acc": Infinity, "neg": -Infinity, "n": 3, "x": 0.25, "s": "é\u0001\u007f", "l": [1, {}], "e": []}"#).unwrap();
        assert_eq!(
            to_wire(&v),
            r#"{"loss": "NaN", "acc": "Infinity", "neg": "-Infinity", "n": 3, "x": 0.25, "s": "\u00e9\u0001\u007f", "l": [1, {}], "e": []}"#
        );
    }

    #[test]
    fn metadata_file_matches_json_dump_indent2() {
        let v = parse(r#"{"steps_completed": 10, "loss": NaN, "nested": {"a": [1, 2.0], "b": {}}, "u": "\ud83d\ude00"}"#)
            .unwrap();
        let want = "{\n  \"steps_completed\": 10,\n  \"loss\": NaN,\n  \"nested\": {\n    \"a\": [\n      1,\n      2.0\n    ],\n    \"b\": {}\n  },\n  \"u\": \"\\ud83d\\ude00\"\n}";
        assert_eq!(to_metadata_file(&v), want);
        assert_eq!(to_metadata_file(&Value::Object(Map::new())), "{}");
    }

    #[test]
    fn round_trip() {
        let text = r#"{"a": [1, -2, 3.5, true, false, null, "x\ny"], "b": {"c": 1e-05}}"#;
        let v = parse(text).unwrap();
        assert_eq!(to_wire(&v), text);
        assert_eq!(parse(&to_metadata_file(&v)).unwrap(), v);
    }
}
