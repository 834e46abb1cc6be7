//! Merge rules of sharded checkpoints (docs/protocol.md#merge-rules): every rank computes them from
//! the same allgathered inputs, so every rank reaches the same verdict — and the same error.

use crate::json::{Map, Number, Value};
use std::collections::BTreeMap;

/// `merge_metadata`: recursive union of the ranks' metadata. Two objects under the same key
/// merge; any other repeated key with differing values is a conflict, keyed by its path
/// (`/a/b`), with Python's list of ranks: every rank that had listed the key when the first
/// differing value came, then each later rank whose value differs from the merged one (the
/// first value wins in the output). Values compare as Python's `==` does (`1 == 1.0 == true`,
/// objects whatever their key order), except that NaN equals NaN.
pub fn merge_metadata(per_rank: &[Map]) -> (Map, BTreeMap<String, Vec<usize>>) {
    let mut out = Map::new();
    let mut conflicts: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut key_ranks = KeyRanks::default();
    for (rank, m) in per_rank.iter().enumerate() {
        merge_into(&mut out, m, "", rank, &mut key_ranks, &mut conflicts);
    }
    (out, conflicts)
}

/// The ranks that listed each key, per level of nesting (Python's `key_ranks`).
#[derive(Default)]
struct KeyRanks {
    ranks: Vec<usize>,
    children: BTreeMap<String, KeyRanks>,
}

fn merge_into(
    dst: &mut Map,
    src: &Map,
    prefix: &str,
    rank: usize,
    key_ranks: &mut KeyRanks,
    conflicts: &mut BTreeMap<String, Vec<usize>>,
) {
    for (k, v) in src.iter() {
        let node = key_ranks.children.entry(k.clone()).or_default();
        node.ranks.push(rank);
        let path = format!("{prefix}/{k}");
        match (dst.get_mut(k), v) {
            (None, Value::Object(s)) => {
                let mut d = Map::new();
                merge_into(&mut d, s, &path, rank, node, conflicts);
                dst.insert(k.clone(), Value::Object(d));
            }
            (None, _) => dst.insert(k.clone(), v.clone()),
            (Some(Value::Object(d)), Value::Object(s)) => {
                merge_into(d, s, &path, rank, node, conflicts)
            }
            (Some(existing), _) => {
                if !py_eq(existing, v) {
                    match conflicts.get_mut(&path) {
                        Some(e) => e.push(rank),
                        None => {
                            conflicts.insert(path, node.ranks.clone());
                        }
                    }
                }
            }
        }
    }
}

/// Python's `==` on decoded JSON values, except that NaN equals NaN (two ranks reporting
/// `"loss": NaN` agree).
fn py_eq(a: &Value, b: &Value) -> bool {
    fn num(v: &Value) -> Option<Number> {
        match v {
            Value::Number(n) => Some(n.clone()),
            Value::Bool(b) => Some(Number::Int(*b as i64)),
            _ => None,
        }
    }
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| py_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, p)| y.get(k).is_some_and(|q| py_eq(p, q)))
        }
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => num_eq(x, y),
            _ => false,
        },
    }
}

/// Exact numeric equality across integers and floats (as Python compares `int` with `float`).
fn num_eq(a: Number, b: Number) -> bool {
    fn int(n: &Number) -> Option<i128> {
        match n {
            Number::Int(v) => Some(*v as i128),
            Number::UInt(v) => Some(*v as i128),
            Number::BigInt(_) | Number::Float(_) => None,
        }
    }
    // An integral float as its exact decimal digits (Rust prints every digit of an f64).
    fn float_digits(f: f64) -> Option<String> {
        (f.is_finite() && f.fract() == 0.0).then(|| format!("{f:.0}"))
    }
    match (int(&a), int(&b), &a, &b) {
        (Some(x), Some(y), _, _) => x == y,
        (_, _, Number::Float(x), Number::Float(y)) => x == y || (x.is_nan() && y.is_nan()),
        (_, _, Number::BigInt(x), Number::BigInt(y)) => x == y,
        (_, _, Number::BigInt(d), Number::Float(f))
        | (_, _, Number::Float(f), Number::BigInt(d)) => float_digits(*f).is_some_and(|s| s == **d),
        // An integer equals a float only if the float is integral and the same number (the
        // range keeps the conversion exact: i64/u64 values lie well inside it).
        (Some(i), None, _, Number::Float(f)) | (None, Some(i), Number::Float(f), _) => {
            f.fract() == 0.0 && (-1.8e19..=1.9e19).contains(f) && *f as i128 == i
        }
        _ => false,
    }
}

/// The message for metadata conflicts (Python's text).
pub fn metadata_conflict_message(conflicts: &BTreeMap<String, Vec<usize>>) -> String {
    conflict_message("refusing to upload with metadata conflicts:", conflicts)
}

/// `header`, then one line per conflicting key with the ranks involved.
fn conflict_message(header: &str, conflicts: &BTreeMap<String, Vec<usize>>) -> String {
    let mut s = String::from(header);
    for (k, ranks) in conflicts {
        s.push_str(&format!("\n    {k} uploaded by ranks {ranks:?}"));
    }
    s
}

/// `merge_resources`: the union of the ranks' listings, and the *files* (not folders) listed by
/// more than one rank, with those ranks. `x/` against `x` counts as a conflict on `x`.
pub fn merge_resources(
    per_rank: &[BTreeMap<String, u64>],
) -> (BTreeMap<String, u64>, BTreeMap<String, Vec<usize>>) {
    let mut all: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_name: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (rank, m) in per_rank.iter().enumerate() {
        for (name, size) in m {
            all.entry(name.clone()).or_insert(*size);
            let key = name.trim_end_matches('/').to_owned();
            by_name.entry(key).or_default().push(rank);
        }
    }
    let mut conflicts = BTreeMap::new();
    for (key, ranks) in by_name {
        if ranks.len() < 2 {
            continue;
        }
        // Several ranks listing the same folder is fine; a file (on any of them) is not.
        let all_dirs = ranks.iter().all(|&r| {
            per_rank[r].contains_key(&format!("{key}/")) && !per_rank[r].contains_key(&key)
        });
        if !all_dirs {
            let mut rs = ranks;
            rs.dedup();
            conflicts.insert(key, rs);
        }
    }
    (all, conflicts)
}

/// The message for file conflicts (Python's text).
pub fn file_conflict_message(conflicts: &BTreeMap<String, Vec<usize>>) -> String {
    conflict_message("refusing to upload with files conflicts:", conflicts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{parse, to_wire};

    fn m(s: &str) -> Map {
        parse(s).unwrap().as_object().unwrap().clone()
    }

    #[test]
    fn metadata_examples_from_the_protocol() {
        let (out, c) = merge_metadata(&[m(r#"{"a": 1}"#), m(r#"{"b": 2}"#)]);
        assert_eq!(to_wire(&Value::Object(out)), r#"{"a": 1, "b": 2}"#);
        assert!(c.is_empty());
        let (_, c) = merge_metadata(&[m(r#"{"a": [1]}"#), m(r#"{"a": [2]}"#)]);
        assert_eq!(c.get("/a"), Some(&vec![0, 1]));
        let (out, c) = merge_metadata(&[m(r#"{"a": {"c": 1}}"#), m(r#"{"a": {"d": 1}}"#)]);
        assert!(c.is_empty());
        assert_eq!(to_wire(&Value::Object(out)), r#"{"a": {"c": 1, "d": 1}}"#);
        let (_, c) = merge_metadata(&[m(r#"{"a": {"c": 1}}"#), m(r#"{"a": 1}"#)]);
        assert_eq!(c.get("/a"), Some(&vec![0, 1]));
        let (_, c) = merge_metadata(&[
            m(r#"{"x": NaN, "s": 3}"#),
            m(r#"{"x": NaN, "s": 3}"#),
            m(r#"{"s": 4}"#),
        ]);
        assert_eq!(c.len(), 1);
        // Python lists every rank that had the key: 0, 1 (same value) and 2.
        assert_eq!(c.get("/s"), Some(&vec![0, 1, 2]));
        assert!(metadata_conflict_message(&c).contains("/s uploaded by ranks [0, 1, 2]"));
        // A later rank with the first value is not listed; one with another value is.
        let (_, c) = merge_metadata(&[
            m(r#"{"a": 1}"#),
            m(r#"{"a": 2}"#),
            m(r#"{"a": 1}"#),
            m(r#"{"a": 3}"#),
        ]);
        assert_eq!(c.get("/a"), Some(&vec![0, 1, 3]));
    }

    /// Determined's own cases (harness/tests/core/test_checkpoint.py, test_merge_metadata).
    type Case<'a> = (&'a [&'a str], &'a str, &'a [(&'a str, &'a [usize])]);
    type FilesCase<'a> = (
        &'a [&'a [&'a str]],
        &'a [&'a str],
        &'a [(&'a str, &'a [usize])],
    );

    #[test]
    fn metadata_cases_of_determineds_tests() {
        let cases: &[Case] = &[
            (&[r#"{"a": 0}"#, r#"{"b": 0}"#], r#"{"a": 0, "b": 0}"#, &[]),
            (&[r#"{"a": 0}"#, r#"{"a": 0}"#], r#"{"a": 0}"#, &[]),
            (
                &[r#"{"a": 1, "b": 0}"#, r#"{"a": 0}"#],
                r#"{"a": 1, "b": 0}"#,
                &[("/a", &[0, 1])],
            ),
            (
                &[r#"{"a": {"c": 1}}"#, r#"{"a": {"d": 2}}"#],
                r#"{"a": {"c": 1, "d": 2}}"#,
                &[],
            ),
            (
                &[r#"{"a": {"c": 1}}"#, r#"{"a": 2}"#],
                r#"{"a": {"c": 1}}"#,
                &[("/a", &[0, 1])],
            ),
            (
                &[r#"{"a": {"c": 1}}"#, r#"{"a": [2]}"#],
                r#"{"a": {"c": 1}}"#,
                &[("/a", &[0, 1])],
            ),
            (
                &[r#"{"a": {"c": 1}}"#, r#"{"a": {"c": 2}}"#],
                r#"{"a": {"c": 1}}"#,
                &[("/a/c", &[0, 1])],
            ),
            (
                &[r#"{"a": {"c": {"d": 1}}}"#, r#"{"a": {"d": 2}}"#],
                r#"{"a": {"c": {"d": 1}, "d": 2}}"#,
                &[],
            ),
            (
                &[
                    r#"{"a": 1, "d": {"a": 1, "d": {"a": 1}}}"#,
                    r#"{"b": 2, "d": {"b": 2, "d": {"a": 1}}}"#,
                    r#"{"c": 3, "d": {"c": 3, "d": {"a": 1}}}"#,
                ],
                r#"{"a": 1, "d": {"a": 1, "d": {"a": 1}, "b": 2, "c": 3}, "b": 2, "c": 3}"#,
                &[],
            ),
            (
                &[
                    r#"{"a": 1, "d": {"a": 1, "d": {"a": 1}}}"#,
                    r#"{"b": 2, "d": {"b": 2, "d": {"b": 1, "c": 1}}}"#,
                    r#"{"c": 3, "d": {"b": 3, "d": {"c": 2, "a": 2}}}"#,
                ],
                r#"{"a": 1, "d": {"a": 1, "d": {"a": 1, "b": 1, "c": 1}, "b": 2}, "b": 2, "c": 3}"#,
                &[("/d/b", &[1, 2]), ("/d/d/a", &[0, 2]), ("/d/d/c", &[1, 2])],
            ),
        ];
        for (inputs, merged, conflicts) in cases {
            let metas: Vec<Map> = inputs.iter().map(|s| m(s)).collect();
            let (out, c) = merge_metadata(&metas);
            assert!(
                py_eq(&Value::Object(out.clone()), &Value::Object(m(merged))),
                "{inputs:?}: {out:?}"
            );
            let want: BTreeMap<String, Vec<usize>> = conflicts
                .iter()
                .map(|(k, r)| (k.to_string(), r.to_vec()))
                .collect();
            assert_eq!(c, want, "{inputs:?}");
        }
    }

    #[test]
    fn values_compare_as_in_python() {
        let v = |s: &str| parse(s).unwrap();
        assert!(py_eq(&v("1"), &v("1.0")));
        assert!(py_eq(&v("true"), &v("1")));
        assert!(py_eq(&v("false"), &v("0.0")));
        assert!(!py_eq(&v("1"), &v("1.5")));
        assert!(!py_eq(&v("\"1\""), &v("1")));
        assert!(py_eq(
            &v(r#"{"a": 1, "b": [1, 2]}"#),
            &v(r#"{"b": [1.0, 2], "a": true}"#)
        ));
        assert!(!py_eq(&v(r#"{"a": 1}"#), &v(r#"{"a": 1, "b": null}"#)));
        assert!(!py_eq(&v("[1, 2]"), &v("[2, 1]")));
        assert!(py_eq(&v("NaN"), &v("NaN")));
        assert!(py_eq(
            &v("18446744073709551615"),
            &v("18446744073709551615")
        ));
        assert!(!py_eq(&v("9007199254740993"), &v("9007199254740992.0")));
        assert!(!py_eq(&v("null"), &v("0")));
    }

    #[test]
    fn resources_conflicts() {
        let r = |pairs: &[(&str, u64)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect::<BTreeMap<_, _>>()
        };
        let (all, c) = merge_resources(&[r(&[("d/", 0), ("d/a", 1)]), r(&[("d/", 0), ("d/b", 2)])]);
        assert!(c.is_empty());
        assert_eq!(all.len(), 3);
        let (_, c) = merge_resources(&[r(&[("x", 1)]), r(&[]), r(&[("x", 1)])]);
        assert_eq!(c.get("x"), Some(&vec![0, 2]));
        let (_, c) = merge_resources(&[r(&[("x/", 0)]), r(&[("x", 5)])]);
        assert_eq!(c.get("x"), Some(&vec![0, 1]));
        assert!(file_conflict_message(&c).contains("x uploaded by ranks [0, 1]"));
        // Determined's own cases (harness/tests/core/test_checkpoint.py, test_merge_files).
        let cases: &[FilesCase] = &[
            (&[&["file0"], &["file1"]], &["file0", "file1"], &[]),
            (&[&["file0"], &["file0"]], &["file0"], &[("file0", &[0, 1])]),
            (&[&["dir1/"], &["dir1/"]], &["dir1/"], &[]),
            (
                &[&["file1/"], &["file1"]],
                &["file1/", "file1"],
                &[("file1", &[0, 1])],
            ),
            (
                &[&["dir1/file1"], &["file1"]],
                &["dir1/file1", "file1"],
                &[],
            ),
            (
                &[&["dir1/file1"], &["dir1/file1/"]],
                &["dir1/file1", "dir1/file1/"],
                &[("dir1/file1", &[0, 1])],
            ),
            (
                &[&["x/"], &["x/"], &["x"]],
                &["x/", "x"],
                &[("x", &[0, 1, 2])],
            ),
        ];
        for (ranks, merged, conflicts) in cases {
            let per_rank: Vec<BTreeMap<String, u64>> = ranks
                .iter()
                .map(|names| r(&names.iter().map(|n| (*n, 0)).collect::<Vec<_>>()))
                .collect();
            let (all, c) = merge_resources(&per_rank);
            let names: Vec<&str> = all.keys().map(String::as_str).collect();
            let mut want: Vec<&str> = merged.to_vec();
            want.sort();
            assert_eq!(names, want, "{ranks:?}");
            let want: BTreeMap<String, Vec<usize>> = conflicts
                .iter()
                .map(|(k, r)| (k.to_string(), r.to_vec()))
                .collect();
            assert_eq!(c, want, "{ranks:?}");
        }
    }
}
