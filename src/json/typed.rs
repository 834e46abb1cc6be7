//! Standard JSON into typed structs with serde_json: the files Determined writes and the master's
//! answers (both written by Go, which never writes `NaN` or integers beyond 64 bits).
//!
//! - `Deserialize` for [`Value`], so a typed struct can hold free-form parts (hyperparameters,
//!   the experiment config, checkpoint metadata) in detcore's order-keeping value.
//! - [`field`]: `deserialize_with` checks whose messages say what was expected and what came,
//!   as a user reads them: `must be an integer, got string "3"`.
//! - [`from_object_text`]: one JSON object into `T`, errors naming the source and the key;
//!   [`from_object_value`] the same for an object already parsed (a storage dict given by the
//!   user, the experiment config's `checkpoint_storage`), through `Deserializer` for [`Value`].

use super::{to_wire, Map, Number, Value};
use crate::error::{Error, Result};
use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{
    self, Deserialize, DeserializeOwned, Deserializer, IntoDeserializer, MapAccess, SeqAccess,
    Visitor,
};
use std::fmt;
use std::marker::PhantomData;

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> std::result::Result<Value, E> {
        Ok(Value::from(i))
    }
    fn visit_u64<E>(self, u: u64) -> std::result::Result<Value, E> {
        Ok(Value::from(u))
    }
    fn visit_f64<E>(self, f: f64) -> std::result::Result<Value, E> {
        Ok(Value::from(f))
    }
    fn visit_str<E>(self, s: &str) -> std::result::Result<Value, E> {
        Ok(Value::from(s))
    }
    fn visit_string<E>(self, s: String) -> std::result::Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> std::result::Result<Value, A::Error> {
        let mut v = Vec::new();
        while let Some(x) = a.next_element()? {
            v.push(x);
        }
        Ok(Value::Array(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> std::result::Result<Value, A::Error> {
        let mut m = Map::new();
        while let Some((k, v)) = a.next_entry::<String, Value>()? {
            m.insert(k, v);
        }
        Ok(Value::Object(m))
    }
}

/// `deserialize_with` checks for typed fields. A value of the wrong type fails with
/// `must be <what>, got <type> <value>` (the value cut at 80 characters); [`from_object_text`]
/// puts the source and the key in front.
pub mod field {
    use super::*;

    /// `v` converted by `f`, else the message naming `want` and `v`: the base of every check
    /// (a module with its own domain, e.g. a range, writes its check with it).
    pub fn check<'de, D: Deserializer<'de>, T>(
        d: D,
        want: &str,
        f: impl FnOnce(&Value) -> Option<T>,
    ) -> std::result::Result<T, D::Error> {
        let v = Value::deserialize(d)?;
        f(&v).ok_or_else(|| {
            let shown = to_wire(&v);
            let shown = match shown.char_indices().nth(77) {
                Some((cut, _)) if shown.len() > 80 => format!("{}...", &shown[..cut]),
                _ => shown,
            };
            de::Error::custom(format_args!(
                "must be {want}, got {} {shown}",
                v.type_name()
            ))
        })
    }

    /// An integer that fits `i64` (not `1.0`, not `"1"`).
    fn int_of(v: &Value) -> Option<i64> {
        match v {
            Value::Number(n) if n.is_integer() => n.as_i64(),
            _ => None,
        }
    }

    /// An integer that fits `i64`.
    pub fn int<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<i64, D::Error> {
        check(d, "an integer", int_of)
    }

    /// An integer that fits `i64`, or `null` (with `#[serde(default)]`, also absent).
    pub fn opt_int<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<i64>, D::Error> {
        check(d, "an integer or null", |v| match v {
            Value::Null => Some(None),
            _ => int_of(v).map(Some),
        })
    }

    /// An integer from 0 to 2³²−1.
    pub fn uint32<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<u32, D::Error> {
        check(d, "a uint32", |v| {
            int_of(v).and_then(|i| u32::try_from(i).ok())
        })
    }

    /// A string.
    pub fn string<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
        check(d, "a string", |v| v.as_str().map(str::to_owned))
    }

    /// A string or `null` (with `#[serde(default)]`, also absent).
    pub fn opt_string<'de, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Option<String>, D::Error> {
        check(d, "a string or null", |v| match v {
            Value::Null => Some(None),
            Value::String(s) => Some(Some(s.clone())),
            _ => None,
        })
    }

    /// `true`, `false`, or `null` for false (with `#[serde(default)]`, also absent).
    pub fn bool_or_false<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
        check(d, "true or false", |v| match v {
            Value::Null => Some(false),
            _ => v.as_bool(),
        })
    }

    /// A string, or `null` for the empty string (with `#[serde(default)]`, also absent).
    pub fn string_or_empty<'de, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<String, D::Error> {
        opt_string(d).map(Option::unwrap_or_default)
    }

    /// `true`, `false` or `null` (with `#[serde(default)]`, also absent).
    pub fn opt_bool<'de, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Option<bool>, D::Error> {
        check(d, "true or false", |v| match v {
            Value::Null => Some(None),
            _ => v.as_bool().map(Some),
        })
    }

    /// An object.
    pub fn object<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Map, D::Error> {
        check(d, "an object", |v| v.as_object().cloned())
    }

    /// A list of integers that fit `i64`.
    pub fn int_list<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<i64>, D::Error> {
        check(d, "a list of integers", |v| {
            v.as_array()?.iter().map(int_of).collect()
        })
    }

    /// A list of strings.
    pub fn string_list<'de, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Vec<String>, D::Error> {
        check(d, "a list of strings", |v| {
            v.as_array()?
                .iter()
                .map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
    }
}

/// Read `text`, one JSON object, into `T` with serde_json. Unknown keys are ignored. Errors are
/// [`Kind::InvalidArgument`](crate::error::Kind) and start with `what`:
/// `trial.json: broken JSON: EOF while parsing an object at line 1 column 13`,
/// `trial.json: expected a JSON object, got array`,
/// `trial.json: required key "trial_id" is missing`,
/// `trial.json: key "trial_run_id" must be an integer, got string "3" at line 2 column 20`.
pub fn from_object_text<T: DeserializeOwned>(text: &str, what: impl fmt::Display) -> Result<T> {
    let broken = |e: serde_json::Error| err!(InvalidArgument, "{what}: broken JSON: {e}");
    if !text.trim_start().starts_with('{') {
        // A derived struct would also take an array (as its fields in order): refuse it here.
        let v: Value = serde_json::from_str(text).map_err(broken)?;
        bail!(
            InvalidArgument,
            "{what}: expected a JSON object, got {}",
            v.type_name()
        );
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let t = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() || inner.is_io() {
            return broken(inner);
        }
        data_error(&what, &path, &inner.to_string())
    })?;
    de.end().map_err(broken)?;
    Ok(t)
}

/// [`from_object_text`] for an object already parsed (no positions in the messages).
pub fn from_object_value<T: DeserializeOwned>(v: &Value, what: impl fmt::Display) -> Result<T> {
    if !matches!(v, Value::Object(_)) {
        bail!(
            InvalidArgument,
            "{what}: expected a JSON object, got {}",
            v.type_name()
        );
    }
    let de = ValueDeserializer::<de::value::Error>::new(v.clone());
    serde_path_to_error::deserialize(de)
        .map_err(|e| data_error(&what, &e.path().to_string(), &e.into_inner().to_string()))
}

/// A typed field's error, in front the source and the key.
fn data_error(what: &dyn fmt::Display, path: &str, msg: &str) -> Error {
    match msg
        .strip_prefix("missing field `")
        .and_then(|m| m.split_once('`'))
    {
        Some((key, _)) if path == "." => {
            err!(InvalidArgument, "{what}: required key {key:?} is missing")
        }
        Some((key, _)) => err!(
            InvalidArgument,
            "{what}: required key \"{path}.{key}\" is missing"
        ),
        None => err!(InvalidArgument, "{what}: key {path:?} {msg}"),
    }
}

/// A [`Value`] as a serde `Deserializer` (integers beyond 64 bits come as floats).
pub struct ValueDeserializer<E> {
    value: Value,
    error: PhantomData<E>,
}

impl<E> ValueDeserializer<E> {
    fn new(value: Value) -> Self {
        ValueDeserializer {
            value,
            error: PhantomData,
        }
    }
}

impl<'de, E: de::Error> IntoDeserializer<'de, E> for Value {
    type Deserializer = ValueDeserializer<E>;
    fn into_deserializer(self) -> ValueDeserializer<E> {
        ValueDeserializer::new(self)
    }
}

impl<'de, E: de::Error> Deserializer<'de> for ValueDeserializer<E> {
    type Error = E;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> std::result::Result<V::Value, E> {
        match self.value {
            Value::Null => v.visit_unit(),
            Value::Bool(b) => v.visit_bool(b),
            Value::Number(Number::Int(i)) => v.visit_i64(i),
            Value::Number(Number::UInt(u)) => v.visit_u64(u),
            Value::Number(n) => v.visit_f64(n.as_f64()),
            Value::String(s) => v.visit_string(s),
            Value::Array(a) => v.visit_seq(SeqDeserializer::new(a.into_iter())),
            Value::Object(m) => v.visit_map(MapDeserializer::new(m.into_iter())),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> std::result::Result<V::Value, E> {
        match self.value {
            Value::Null => v.visit_none(),
            _ => v.visit_some(self),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    struct T {
        #[serde(deserialize_with = "field::int")]
        n: i64,
        #[serde(default, deserialize_with = "field::opt_string")]
        s: Option<String>,
        #[serde(deserialize_with = "field::object")]
        o: Map,
    }

    #[test]
    fn values_keep_order_and_numbers() {
        let v: Value =
            serde_json::from_str(r#"{"b": [1, -2, 2.5, 18446744073709551615], "a": null}"#)
                .unwrap();
        assert_eq!(
            to_wire(&v),
            r#"{"b": [1, -2, 2.5, 18446744073709551615], "a": null}"#
        );
    }

    #[test]
    fn errors_name_source_and_key() {
        let ok: T = from_object_text(r#"{"o": {"z": 1, "a": 2}, "n": 3, "x": []}"#, "f").unwrap();
        assert_eq!((ok.n, ok.s), (3, None));
        assert_eq!(ok.o.keys().cloned().collect::<Vec<_>>(), ["z", "a"]);
        for (text, want) in [
            (
                r#"{"n": "3", "o": {}}"#,
                r#"f: key "n" must be an integer, got string "3" at line 1"#,
            ),
            (
                r#"{"n": 1.0, "o": {}}"#,
                r#"f: key "n" must be an integer, got number 1.0"#,
            ),
            (
                r#"{"n": 1, "o": {}, "s": 2}"#,
                r#"f: key "s" must be a string or null, got integer 2"#,
            ),
            (r#"{"o": {}}"#, r#"f: required key "n" is missing"#),
            ("[1, {}]", "f: expected a JSON object, got array"),
            ("{\"n\": ", "f: broken JSON: EOF"),
            ("[1,", "f: broken JSON: EOF"),
            (
                r#"{"n": 1, "o": {}} x"#,
                "f: broken JSON: trailing characters",
            ),
            (r#"{"n": NaN, "o": {}}"#, "f: broken JSON: expected value"),
        ] {
            let e = from_object_text::<T>(text, "f").unwrap_err();
            assert_eq!(e.kind(), crate::error::Kind::InvalidArgument);
            assert!(e.message().starts_with(want), "{text}: {}", e.message());
        }
        let long = format!(r#"{{"n": "{}", "o": {{}}}}"#, "x".repeat(200));
        let e = from_object_text::<T>(&long, "f").unwrap_err();
        assert!(
            e.message().contains(&format!("\"{}...", "x".repeat(76))),
            "{e}"
        );
    }
}
