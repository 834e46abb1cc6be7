//! The layout rules of `src/capi/` (see CONTRIBUTING.md): every exported function sits in the
//! file named after its prefix, every `DET_*` enumeration constant in `enums.rs`, and the
//! bottom files (`status`, `handle`, `boundary`, `enums`) import nothing from a file above them.

use std::collections::BTreeMap;
use std::path::PathBuf;

fn capi_files() -> BTreeMap<String, String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/capi");
    let mut files = BTreeMap::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "rs") {
            let stem = p.file_stem().unwrap().to_str().unwrap().to_owned();
            files.insert(stem, std::fs::read_to_string(&p).unwrap());
        }
    }
    files
}

/// The names of the `extern "C"` functions defined in `text`.
fn exports(text: &str) -> Vec<String> {
    text.match_indices("extern \"C\" fn ")
        .map(|(i, m)| {
            let rest = &text[i + m.len()..];
            rest[..rest.find('(').unwrap()].to_owned()
        })
        .collect()
}

/// The file a function belongs in: the longest matching prefix of the table, else
/// `det_<file>_*`.
fn home(name: &str) -> Option<&'static str> {
    // Prefixes whose file is not simply `det_<file>_`.
    const TABLE: &[(&str, &str)] = &[
        ("det_status_name", "status"),
        ("det_last_error_", "status"),
        ("det_version", "core"),
        ("det_string_free", "core"),
        ("det_init_options_", "options"),
        ("det_distributed_config_", "options"),
        ("det_distributed_from_env", "options"),
        ("det_bytes_list_", "dist"),
        ("det_should_preempt", "preempt"),
        ("det_cluster_info_", "cluster_info"),
        ("det_tb_writer_", "tb_writer"),
    ];
    TABLE
        .iter()
        .filter(|(p, _)| name.starts_with(p))
        .max_by_key(|(p, _)| p.len())
        .map(|(_, f)| *f)
}

#[test]
fn every_export_sits_in_the_file_named_after_its_prefix() {
    let files = capi_files();
    let mut wrong = Vec::new();
    let mut count = 0;
    for (file, text) in &files {
        for name in exports(text) {
            count += 1;
            let ok = match home(&name) {
                Some(f) => f == file,
                None => name.starts_with(&format!("det_{file}_")),
            };
            if !ok {
                wrong.push(format!("{name} is in {file}.rs"));
            }
        }
    }
    assert!(
        count > 100,
        "only {count} exports found: is src/capi/ still where it was?"
    );
    assert!(
        wrong.is_empty(),
        "functions outside the file of their prefix (move them, or extend the table in \
         tests/capi_layout.rs and CONTRIBUTING.md):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn enumeration_constants_live_in_enums() {
    let files = capi_files();
    // Constants that are sizes, not enumerations.
    const NOT_ENUMS: &[&str] = &["DET_STORAGE_ID_LEN", "DET_TB_NAME_MAX"];
    let mut wrong = Vec::new();
    for (file, text) in &files {
        if file == "enums" || file == "status" {
            continue;
        }
        for (i, m) in text.match_indices("pub const DET_") {
            let rest = &text[i + m.len() - 4..];
            let name = &rest[..rest.find(':').unwrap()];
            if !NOT_ENUMS.contains(&name) {
                wrong.push(format!("{name} is in {file}.rs"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "DET_* enumeration constants belong in src/capi/enums.rs with their conversion:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn bottom_files_import_nothing_above_them() {
    let files = capi_files();
    // What each bottom file may take from its siblings.
    let allowed: &[(&str, &[&str])] = &[
        ("status", &[]),
        ("enums", &[]),
        ("handle", &["status"]),
        ("boundary", &["status", "handle"]),
    ];
    let mut wrong = Vec::new();
    for (file, may) in allowed {
        let text = &files[*file];
        for (i, m) in text.match_indices("super::") {
            let rest = &text[i + m.len()..];
            let sibling = &rest[..rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap()];
            if !may.contains(&sibling) {
                wrong.push(format!("{file}.rs imports super::{sibling}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "a bottom file of src/capi imports from a file above it:\n{}",
        wrong.join("\n")
    );
}
