//! The repository explains itself: no tracked file cites notes that are not in it, and every
//! pointer into `docs/protocol.md` names a section that exists.
//!
//! - Nothing may cite the design or protocol notes kept outside the repository (by file name, or
//!   by their numbered sections, a section sign followed by a digit). Facts detcore relies on are
//!   written in `docs/protocol.md`; cite its sections as `docs/protocol.md#<anchor>`.
//! - Every `protocol.md#<anchor>` reference (code comments, docs, tests) and every in-page
//!   `](#<anchor>)` link of `docs/protocol.md` must match one of its headings, with GitHub's
//!   anchor rules, so that renaming a heading cannot leave comments pointing nowhere.
//!
//! The needles are assembled from pieces so that this file does not match itself.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The repository's tracked files (relative paths), from `git ls-files`; without git (an
/// unpacked source archive), every file outside build outputs and caches.
fn tracked_files() -> Vec<PathBuf> {
    let out = std::process::Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root())
        .output();
    if let Ok(o) = out {
        if o.status.success() && !o.stdout.is_empty() {
            return o
                .stdout
                .split(|b| *b == 0)
                .filter(|p| !p.is_empty())
                .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()))
                .collect();
        }
    }
    let mut files = Vec::new();
    walk(&root(), Path::new(""), &mut files);
    files
}

fn walk(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    const SKIP: [&str; 5] = [".git", "target", ".cache", "node_modules", "__pycache__"];
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            let skip = SKIP.contains(&name.as_str())
                || rel == Path::new("bench") && name == "out"
                || (rel.as_os_str().is_empty()
                    && (name.starts_with("build") || name.starts_with(".venv")));
            if !skip {
                walk(&e.path(), &rel.join(&name), out);
            }
        } else if ft.is_file() {
            out.push(rel.join(&name));
        }
    }
}

/// Every tracked text file (binary files and symlinked folders are skipped) with its content.
fn text_files() -> Vec<(PathBuf, String)> {
    tracked_files()
        .into_iter()
        .filter_map(|rel| {
            let bytes = std::fs::read(root().join(&rel)).ok()?;
            String::from_utf8(bytes).ok().map(|t| (rel, t))
        })
        .collect()
}

/// The anchor GitHub gives a heading: lowercase, letters, digits, `-` and `_` kept, spaces
/// turned into `-`, everything else dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a Markdown text's headings (outside fenced code), in order.
fn anchors(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
            out.push(slug(&line[hashes..]));
        }
    }
    out
}

/// The anchor that follows each occurrence of `marker` in `text`, with its line number. A
/// placeholder (`#<anchor>`, as in this file's docs) is not a reference.
fn references(text: &str, marker: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(p) = rest.find(marker) {
            rest = &rest[p + marker.len()..];
            if rest.starts_with('<') {
                continue;
            }
            let anchor: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '-' || *c == '_')
                .collect();
            out.push((i + 1, anchor));
        }
    }
    out
}

#[test]
fn no_citations_of_notes_outside_the_repository() {
    let names = [
        concat!("PROTO", "COL.md").to_owned(),
        concat!("DES", "IGN.md").to_owned(),
    ];
    let section_sign = '\u{a7}';
    let mut found = Vec::new();
    for (rel, text) in text_files() {
        for (i, line) in text.lines().enumerate() {
            let cites_name = names.iter().any(|n| line.contains(n.as_str()));
            let cites_section =
                line.char_indices()
                    .filter(|(_, c)| *c == section_sign)
                    .any(|(p, c)| {
                        line[p + c.len_utf8()..]
                            .trim_start()
                            .starts_with(|d: char| d.is_ascii_digit())
                    });
            if cites_name || cites_section {
                found.push(format!("{}:{}: {}", rel.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "{} line(s) cite notes that are not in the repository; write the fact down in \
         docs/protocol.md and cite its section as docs/protocol.md#<anchor>:\n{}",
        found.len(),
        found.join("\n")
    );
}

#[test]
fn protocol_anchors_exist() {
    let doc = std::fs::read_to_string(root().join("docs/protocol.md"))
        .expect("docs/protocol.md must exist");
    let list = anchors(&doc);
    let known: BTreeSet<&str> = list.iter().map(String::as_str).collect();
    assert_eq!(
        known.len(),
        list.len(),
        "docs/protocol.md has two headings with the same anchor; code comments need unique ones"
    );
    assert!(
        known.contains("checkpoint-layout") && known.contains("metrics"),
        "anchor parsing is broken: {known:?}"
    );

    let marker = concat!("protocol", ".md#");
    let mut bad = Vec::new();
    let mut seen = 0;
    for (rel, text) in text_files() {
        let mut refs = references(&text, marker);
        if rel == Path::new("docs/protocol.md") {
            refs.extend(references(&text, "](#"));
        }
        for (line, anchor) in refs {
            seen += 1;
            if !known.contains(anchor.as_str()) {
                bad.push(format!("{}:{line}: #{anchor}", rel.display()));
            }
        }
    }
    assert!(
        seen > 20,
        "only {seen} references to docs/protocol.md sections found"
    );
    assert!(
        bad.is_empty(),
        "references to sections that docs/protocol.md does not have (its anchors: {}):\n{}",
        list.join(", "),
        bad.join("\n")
    );
}

#[test]
fn slugs_follow_github() {
    assert_eq!(
        slug(" Checkpoint metadata file"),
        "checkpoint-metadata-file"
    );
    assert_eq!(
        slug("Quirks and deliberate differences"),
        "quirks-and-deliberate-differences"
    );
    assert_eq!(slug("`metadata.json` (v2)"), "metadatajson-v2");
    assert_eq!(
        references(
            "see docs/protocol.md#tls), protocol.md#init-sequence, docs/protocol.md#<anchor>.",
            concat!("protocol", ".md#")
        ),
        vec![(1, "tls".to_owned()), (1, "init-sequence".to_owned())]
    );
}
