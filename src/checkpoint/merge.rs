//! Merge rules of sharded checkpoints (docs/protocol.md#merge-rules): every rank computes them from
//! the same allgathered inputs, so every rank reaches the same verdict — and the same error.

use crate::json::{to_wire, Map, Value};
use std::collections::BTreeMap;

/// `merge_metadata`: recursive union of the ranks' metadata. Two objects under the same key
/// merge; any other repeated key with differing values is a conflict, keyed by its path
/// (`/a/b`) with the ranks involved (the first value wins in the output).
pub fn merge_metadata(per_rank: &[Map]) -> (Map, BTreeMap<String, Vec<usize>>) {
    let mut out = Map::new();
    let mut conflicts: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut owner: BTreeMap<String, usize> = BTreeMap::new();
    for (rank, m) in per_rank.iter().enumerate() {
        merge_into(&mut out, m, "", rank, &mut owner, &mut conflicts);
    }
    (out, conflicts)
}

fn merge_into(
    dst: &mut Map,
    src: &Map,
    prefix: &str,
    rank: usize,
    owner: &mut BTreeMap<String, usize>,
    conflicts: &mut BTreeMap<String, Vec<usize>>,
) {
    for (k, v) in src.iter() {
        let path = format!("{prefix}/{k}");
        match (dst.get_mut(k), v) {
            (None, _) => {
                dst.insert(k.clone(), v.clone());
                owner.insert(path, rank);
            }
            (Some(Value::Object(d)), Value::Object(s)) => {
                merge_into(d, s, &path, rank, owner, conflicts)
            }
            (Some(existing), _) => {
                if !same_value(existing, v) {
                    let e = conflicts.entry(path.clone()).or_default();
                    if e.is_empty() {
                        e.push(*owner.get(&path).unwrap_or(&0));
                    }
                    if !e.contains(&rank) {
                        e.push(rank);
                    }
                }
            }
        }
    }
}

/// JSON equality where NaN equals NaN (two ranks reporting `"loss": NaN` agree).
fn same_value(a: &Value, b: &Value) -> bool {
    to_wire(a) == to_wire(b)
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
    use crate::json::parse;

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
        assert_eq!(c.get("/s"), Some(&vec![0, 2]));
        assert!(metadata_conflict_message(&c).contains("/s uploaded by ranks [0, 2]"));
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
    }
}
