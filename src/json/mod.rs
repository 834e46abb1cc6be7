//! JSON in detcore: serde_json for standard JSON, a small own parser and writer for Python's.
//!
//! Standard JSON — the master's answers, Determined's `/run/determined/info` files, storage
//! dicts — is read with serde_json into `#[derive(Deserialize)]` structs ([`from_object_text`],
//! [`from_object_value`], the checks in [`field`]). Those are written by Go or by Python from
//! Go's output, so they never hold `NaN` or integers beyond 64 bits.
//!
//! The user's JSON and the files Python writes need more than serde_json can express, so this
//! module keeps its own [`Value`] (key order kept, as in Python dicts), parser and writers:
//! - the parser ([`parse`]) takes Python's `NaN`/`Infinity`/`-Infinity` and C's
//!   `nan`/`-nan`/`inf`/`-inf` (as `printf` writes a diverged loss), keeps integers beyond 64 bits
//!   exact (Python's `int`), and reads a lone surrogate escape as U+FFFD (Python accepts it);
//!   serde_json refuses all three;
//! - the writers ([`to_wire`], [`to_metadata_file`]) produce Python's `json.dumps` and
//!   `json.dump(indent=2)` bytes. A serde_json `Formatter` could do the separators, the
//!   indentation, `ensure_ascii` and Python's float `repr`, but not the rest: serde_json's
//!   serializer turns a non-finite float into `null` before the formatter sees it (so
//!   `metadata.json`'s bare `NaN` cannot be written), and an exact integer beyond 64 bits can
//!   only reach the formatter through serde_json's private `arbitrary_precision` token. The
//!   writers are under 200 lines; a `Formatter` plus a `Serialize` for [`Value`] would not be shorter.
//!
//! [`parse_object`] is the one way a JSON-object argument or file is read.

mod parse;
mod typed;
mod write;

pub use parse::parse;
pub use typed::{field, from_object_text, from_object_value};
pub use write::{py_float_repr, to_metadata_file, to_wire};

/// Parse `text` as a JSON object: how every JSON-object argument and file is read. Errors are
/// [`Kind::InvalidArgument`](crate::error::Kind) and start with `what`:
/// `hparams_json: malformed JSON: expected ':' at line 1, column 6` or
/// `hparams_json: expected a JSON object, got array`.
pub fn parse_object(text: &str, what: impl std::fmt::Display) -> crate::error::Result<Map> {
    match parse(text).map_err(|e| e.context(&what))? {
        Value::Object(m) => Ok(m),
        other => Err(err!(
            InvalidArgument,
            "{what}: expected a JSON object, got {}",
            other.type_name()
        )),
    }
}

/// A JSON number, kept as precise as its text allowed: integers of any size stay exact (as in
/// Python), only numbers written with a fraction or an exponent are floats.
#[derive(Debug, Clone, PartialEq)]
pub enum Number {
    /// An integer that fits `i64`.
    Int(i64),
    /// A non-negative integer above `i64::MAX`.
    UInt(u64),
    /// An integer beyond 64 bits, as its decimal digits (with a leading `-` when negative).
    BigInt(Box<str>),
    /// Anything else, including NaN and the infinities.
    Float(f64),
}

impl Number {
    /// The number as `f64` (integers converted, possibly rounding).
    pub fn as_f64(&self) -> f64 {
        match self {
            Number::Int(i) => *i as f64,
            Number::UInt(u) => *u as f64,
            Number::BigInt(digits) => digits.parse().unwrap_or(f64::NAN),
            Number::Float(f) => *f,
        }
    }

    /// The number as `i64` if it is an integer (or an integral float) in range.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Number::Int(i) => Some(i),
            Number::UInt(u) => i64::try_from(u).ok(),
            Number::BigInt(_) => None,
            Number::Float(f) => {
                if f.is_finite() && f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64
                {
                    Some(f as i64)
                } else {
                    None
                }
            }
        }
    }

    /// True for integers, i.e. numbers written without fraction or exponent.
    pub fn is_integer(&self) -> bool {
        matches!(self, Number::Int(_) | Number::UInt(_) | Number::BigInt(_))
    }
}

/// A JSON value. Objects keep insertion order, as Python dicts do.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Value>),
    Object(Map),
}

/// An insertion-ordered JSON object. Lookups are linear: the objects detcore handles
/// (metrics, metadata, hparams, configs) are small.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Map {
    entries: Vec<(String, Value)>,
}

impl Map {
    /// An empty map.
    pub const fn new() -> Map {
        Map {
            entries: Vec::new(),
        }
    }

    /// Set `key` to `value`. An existing key keeps its position (as in a Python dict).
    pub fn insert(&mut self, key: impl Into<String>, value: Value) {
        let key = key.into();
        if let Some(slot) = self.entries.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = value;
        } else {
            self.entries.push((key, value));
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The value of `key`, mutably.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.entries
            .iter_mut()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Remove `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let i = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(i).1)
    }

    /// True if `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Entries in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// Keys in insertion order.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.entries.iter().map(|(k, _)| k)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl FromIterator<(String, Value)> for Map {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Map {
        let mut m = Map::new();
        for (k, v) in iter {
            m.insert(k, v);
        }
        m
    }
}

impl IntoIterator for Map {
    type Item = (String, Value);
    type IntoIter = std::vec::IntoIter<(String, Value)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl Value {
    /// The object inside, if this is one.
    pub fn as_object(&self) -> Option<&Map> {
        match self {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    /// The string inside, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The number as `f64`, if this is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(n.as_f64()),
            _ => None,
        }
    }

    /// The number as `i64`, if this is an integer-valued number.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    /// The bool inside, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The array inside, if this is one.
    pub fn as_array(&self) -> Option<&Vec<Value>> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// `obj[key]` for objects, `None` otherwise.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_object().and_then(|m| m.get(key))
    }

    /// True for `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// A JSON type name for messages: "null", "bool", "integer", "number", "string", "array", "object".
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Number(n) if n.is_integer() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }
}

impl From<f64> for Value {
    fn from(f: f64) -> Value {
        Value::Number(Number::Float(f))
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Number(Number::Int(i))
    }
}

impl From<u64> for Value {
    fn from(u: u64) -> Value {
        match i64::try_from(u) {
            Ok(i) => Value::Number(Number::Int(i)),
            Err(_) => Value::Number(Number::UInt(u)),
        }
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}

impl From<Map> for Value {
    fn from(m: Map) -> Value {
        Value::Object(m)
    }
}

impl From<Vec<Value>> for Value {
    fn from(v: Vec<Value>) -> Value {
        Value::Array(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(o: Option<T>) -> Value {
        o.map_or(Value::Null, Into::into)
    }
}

/// Build a [`Map`] from `key => value` pairs: `obj! { "a" => 1i64, "b" => "x" }`.
#[macro_export]
macro_rules! obj {
    () => { $crate::json::Map::new() };
    ($($k:expr => $v:expr),+ $(,)?) => {{
        let mut m = $crate::json::Map::new();
        $( m.insert($k, $crate::json::Value::from($v)); )+
        m
    }};
}
