//! A JSON parser that accepts what Python's `json.loads` accepts — standard JSON plus the
//! literals `NaN`, `Infinity` and `-Infinity` — and what C's `printf("%f")`/`"%g"` write for
//! non-finite numbers: `nan`, `-nan`, `inf`, `-inf`, `infinity`, `-infinity`, in any case
//! (`NAN`, `INF` from `"%F"`). A training loop that formats its metrics with `printf` must not
//! fail exactly when its loss diverges. Errors name the line and column.

use super::{Map, Number, Value};
use crate::error::{Error, Result};

const MAX_DEPTH: usize = 256;

/// Parse `text` as one JSON value (surrounding whitespace allowed).
///
/// Errors are [`Kind::InvalidArgument`] with the position: `expected ':' at line 1, column 7`.
pub fn parse(text: &str) -> Result<Value> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
        depth: 0,
    };
    p.ws();
    let v = p.value()?;
    p.ws();
    if p.i != p.s.len() {
        return Err(p.error("extra data after the JSON value"));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn error(&self, what: &str) -> Error {
        let before = &self.s[..self.i.min(self.s.len())];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let col = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
        err!(
            InvalidArgument,
            "malformed JSON: {what} at line {line}, column {col}"
        )
    }

    fn ws(&mut self) {
        while let Some(&b) = self.s.get(self.i) {
            if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat_literal(&mut self, lit: &str) -> bool {
        if self.s[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Result<Value> {
        if matches!(self.peek(), Some(b'n' | b'N' | b'i' | b'I' | b'-')) {
            if let Some(f) = self.non_finite() {
                return Ok(Value::Number(Number::Float(f)));
            }
        }
        match self.peek() {
            None => Err(self.error("unexpected end of input, expected a value")),
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => Ok(Value::String(self.string()?)),
            Some(b't') if self.eat_literal("true") => Ok(Value::Bool(true)),
            Some(b'f') if self.eat_literal("false") => Ok(Value::Bool(false)),
            Some(b'n') if self.eat_literal("null") => Ok(Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("expected a value")),
        }
    }

    /// A non-finite literal at the cursor (consumed): Python's `NaN`, `Infinity`, `-Infinity`
    /// and C's `nan`, `-nan`, `inf`, `-inf`, `infinity`, `-infinity`, case-insensitive. A
    /// literal followed by a letter or digit (`info`, `nan2`) is not one.
    fn non_finite(&mut self) -> Option<f64> {
        let rest = &self.s[self.i..];
        let (neg, body) = match rest.first() {
            Some(b'-') => (true, &rest[1..]),
            _ => (false, rest),
        };
        let starts = |lit: &str| {
            body.len() >= lit.len() && body[..lit.len()].eq_ignore_ascii_case(lit.as_bytes())
        };
        let (len, v) = if starts("infinity") {
            (8, f64::INFINITY)
        } else if starts("inf") {
            (3, f64::INFINITY)
        } else if starts("nan") {
            (3, f64::NAN)
        } else {
            return None;
        };
        if body
            .get(len)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
        {
            return None;
        }
        self.i += len + usize::from(neg);
        Some(if neg { -v } else { v })
    }

    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("nesting deeper than 256 levels"));
        }
        Ok(())
    }

    fn object(&mut self) -> Result<Value> {
        self.enter()?;
        self.i += 1; // '{'
        let mut m = Map::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            self.depth -= 1;
            return Ok(Value::Object(m));
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a string key"));
            }
            let k = self.string()?;
            self.ws();
            if self.peek() != Some(b':') {
                return Err(self.error("expected ':'"));
            }
            self.i += 1;
            self.ws();
            let v = self.value()?;
            m.insert(k, v);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    self.depth -= 1;
                    return Ok(Value::Object(m));
                }
                _ => return Err(self.error("expected ',' or '}'")),
            }
        }
    }

    fn array(&mut self) -> Result<Value> {
        self.enter()?;
        self.i += 1; // '['
        let mut a = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            self.depth -= 1;
            return Ok(Value::Array(a));
        }
        loop {
            self.ws();
            a.push(self.value()?);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    self.depth -= 1;
                    return Ok(Value::Array(a));
                }
                _ => return Err(self.error("expected ',' or ']'")),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32> {
        let h = self
            .s
            .get(self.i..self.i + 4)
            .ok_or_else(|| self.error("truncated \\u escape"))?;
        let h = std::str::from_utf8(h).map_err(|_| self.error("invalid \\u escape"))?;
        let v = u32::from_str_radix(h, 16).map_err(|_| self.error("invalid \\u escape"))?;
        self.i += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String> {
        self.i += 1; // '"'
        let mut out = String::new();
        loop {
            let start = self.i;
            while let Some(&b) = self.s.get(self.i) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.i += 1;
            }
            // The input is a &str, and we only stop on ASCII bytes, so this slice is valid UTF-8.
            out.push_str(std::str::from_utf8(&self.s[start..self.i]).expect("valid UTF-8 slice"));
            match self.peek() {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.i += 1;
                    let c = self
                        .peek()
                        .ok_or_else(|| self.error("unterminated escape"))?;
                    self.i += 1;
                    match c {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi)
                                && self.s[self.i..].starts_with(b"\\u")
                            {
                                let save = self.i;
                                self.i += 2;
                                let lo = self.hex4()?;
                                if (0xDC00..0xE000).contains(&lo) {
                                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                                } else {
                                    self.i = save;
                                    hi
                                }
                            } else {
                                hi
                            };
                            // Lone surrogates (which Python keeps) cannot be UTF-8: they become
                            // U+FFFD, the replacement character (documented in the README).
                            out.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
                        }
                        _ => {
                            self.i -= 1;
                            return Err(self.error("invalid escape"));
                        }
                    }
                }
                Some(_) => return Err(self.error("control character in string")),
            }
        }
    }

    fn number(&mut self) -> Result<Value> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                while matches!(self.peek(), Some(b'0'..=b'9')) {
                    self.i += 1;
                }
            }
            _ => return Err(self.error("invalid number")),
        }
        let mut float = false;
        if self.peek() == Some(b'.') {
            float = true;
            self.i += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("invalid number: digits expected after '.'"));
            }
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.i += 1;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            float = true;
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("invalid number: digits expected in exponent"));
            }
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.i += 1;
            }
        }
        let text = std::str::from_utf8(&self.s[start..self.i]).expect("ASCII");
        if !float {
            if let Ok(i) = text.parse::<i64>() {
                return Ok(Value::Number(Number::Int(i)));
            }
            if let Ok(u) = text.parse::<u64>() {
                return Ok(Value::Number(Number::UInt(u)));
            }
            // Beyond 64 bits: kept exact (Python's int), never rounded to a float.
            return Ok(Value::Number(Number::BigInt(text.into())));
        }
        let f: f64 = text.parse().map_err(|_| self.error("invalid number"))?;
        Ok(Value::Number(Number::Float(f)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Kind;

    #[test]
    fn parses_python_extensions_and_keeps_order() {
        let v = parse(r#"{"b": NaN, "a": [Infinity, -Infinity, 1, -2.5e3, 18446744073709551615], "c": {"x": null}}"#)
            .unwrap();
        let m = v.as_object().unwrap();
        assert_eq!(m.keys().cloned().collect::<Vec<_>>(), ["b", "a", "c"]);
        assert!(m.get("b").unwrap().as_f64().unwrap().is_nan());
        let a = m.get("a").unwrap().as_array().unwrap();
        assert_eq!(a[0].as_f64(), Some(f64::INFINITY));
        assert_eq!(a[1].as_f64(), Some(f64::NEG_INFINITY));
        assert_eq!(a[2], Value::Number(Number::Int(1)));
        assert_eq!(a[3].as_f64(), Some(-2500.0));
        assert_eq!(a[4], Value::Number(Number::UInt(u64::MAX)));
    }

    #[test]
    fn big_integers_stay_exact() {
        for text in [
            "18446744073709551616",
            "-9223372036854775809",
            "123456789012345678901234567890123456789012345678901234567890",
        ] {
            let v = parse(text).unwrap();
            assert_eq!(v, Value::Number(Number::BigInt(text.into())));
            assert_eq!(v.type_name(), "integer");
            assert_eq!(v.as_i64(), None);
            assert_eq!(crate::json::to_wire(&v), text);
            assert_eq!(crate::json::to_metadata_file(&v), text);
        }
        assert_eq!(parse("1e400").unwrap().as_f64(), Some(f64::INFINITY));
        assert_eq!(
            parse("18446744073709551616").unwrap().as_f64(),
            Some(18446744073709551616.0)
        );
    }

    #[test]
    fn lone_surrogates_become_the_replacement_character() {
        assert_eq!(parse(r#""a\ud800b""#).unwrap().as_str(), Some("a\u{FFFD}b"));
        assert_eq!(parse(r#""\udc00""#).unwrap().as_str(), Some("\u{FFFD}"));
    }

    #[test]
    fn c_printf_non_finite_spellings() {
        // What printf("%f"), "%g" and "%F" write, and Python's spellings, in any case.
        for (text, want) in [
            ("nan", f64::NAN),
            ("-nan", f64::NAN),
            ("NAN", f64::NAN),
            ("-NaN", f64::NAN),
            ("NaN", f64::NAN),
            ("inf", f64::INFINITY),
            ("INF", f64::INFINITY),
            ("Inf", f64::INFINITY),
            ("infinity", f64::INFINITY),
            ("Infinity", f64::INFINITY),
            ("INFINITY", f64::INFINITY),
            ("-inf", f64::NEG_INFINITY),
            ("-INF", f64::NEG_INFINITY),
            ("-infinity", f64::NEG_INFINITY),
            ("-Infinity", f64::NEG_INFINITY),
        ] {
            let v = parse(&format!("{{\"loss\": {text}, \"n\": null}}"))
                .unwrap_or_else(|e| panic!("{text}: {}", e.message()));
            let got = v.get("loss").unwrap().as_f64().unwrap();
            if want.is_nan() {
                assert!(got.is_nan(), "{text}");
            } else {
                assert_eq!(got, want, "{text}");
            }
            assert!(v.get("n").unwrap().is_null());
            let a = parse(&format!("[{text},{text}]")).unwrap();
            assert_eq!(a.as_array().unwrap().len(), 2, "{text}");
        }
        // Numbers starting with '-' still parse as numbers.
        assert_eq!(parse("-1.5").unwrap().as_f64(), Some(-1.5));
        assert_eq!(parse("-0").unwrap().as_i64(), Some(0));
        assert!(parse("-").is_err());
        assert!(parse("-x").is_err());
    }

    #[test]
    fn strings_and_escapes() {
        let v = parse(r#""a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00 é""#).unwrap();
        assert_eq!(
            v.as_str().unwrap(),
            "a\"\\/\u{8}\u{c}\n\r\t\u{e9}\u{1F600} é"
        );
    }

    #[test]
    fn errors_name_position() {
        let e = parse("{\"a\" 1}").unwrap_err();
        assert_eq!(e.kind(), Kind::InvalidArgument);
        assert!(
            e.message().contains("expected ':' at line 1, column 6"),
            "{}",
            e.message()
        );
        assert!(parse("[1,]").is_err());
        assert!(parse("{\"a\":1} x")
            .unwrap_err()
            .message()
            .contains("extra data"));
        assert!(parse("01").is_err());
        assert!(parse("1.").is_err());
        assert!(parse("\"abc").is_err());
        assert!(parse("").is_err());
        assert!(parse("nanx").is_err());
        assert!(parse("info").is_err());
        assert!(parse("-i").is_err());
        assert!(parse("+inf").is_err());
        assert!(parse("na").is_err());
        assert!(parse("\"a\u{1}\"").is_err());
        let deep = "[".repeat(1000);
        assert!(parse(&deep).unwrap_err().message().contains("nesting"));
    }

    #[test]
    fn duplicate_keys_keep_first_position_last_value() {
        let v = parse(r#"{"a": 1, "b": 2, "a": 3}"#).unwrap();
        let m = v.as_object().unwrap();
        assert_eq!(m.keys().cloned().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(m.get("a").unwrap().as_i64(), Some(3));
    }
}
