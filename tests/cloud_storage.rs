//! Storage-level tests of the object-store backends against a real server.
//!
//! They need a running server and are `#[ignore]`d by a plain `cargo test`; the pytest suite
//! (`tests/python/test_cloud_rust.py`) starts moto/s3s-fs, fake-gcs-server and Azurite and runs
//! them with `DETCORE_TEST_STORAGE` set to a storage config (a JSON dict) for each. Run without
//! that variable they fail rather than pass.

use detcore::storage::manifest::{Manifest, MANIFEST};
use detcore::storage::object_store::ObjectStore;
use detcore::storage::{self, FileSum, Storage, Sums};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

fn config_text() -> String {
    std::env::var("DETCORE_TEST_STORAGE")
        .expect("DETCORE_TEST_STORAGE must name a storage config (run through tests/python)")
}

fn open() -> Arc<dyn Storage> {
    let spec = storage::config::parse_user(&config_text()).expect("config");
    storage::open(&spec.config).expect("open")
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("detcore-cloudtest-{tag}-{}", uuid::Uuid::new_v4()));
    fs::create_dir_all(&d).unwrap();
    d
}

/// A deterministic pseudo-random payload.
fn payload(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Every file (with its bytes) and folder under `root`.
fn tree(root: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    fn walk(d: &Path, pre: &str, out: &mut BTreeMap<String, Option<Vec<u8>>>) {
        for e in fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            let name = format!("{pre}{}", e.file_name().to_str().unwrap());
            if e.file_type().unwrap().is_dir() {
                out.insert(format!("{name}/"), None);
                walk(&e.path(), &format!("{name}/"), out);
            } else {
                out.insert(name, Some(fs::read(e.path()).unwrap()));
            }
        }
    }
    walk(root, "", &mut out);
    out
}

fn write_sample(dir: &Path) {
    fs::create_dir_all(dir.join("sub/deeper")).unwrap();
    fs::create_dir_all(dir.join("empty")).unwrap();
    // Above the 5 MiB minimum part size used by the tests: a multipart/block upload.
    fs::write(dir.join("big.bin"), payload(12 << 20 | 12345, 1)).unwrap();
    fs::write(dir.join("sub/small.txt"), b"hello").unwrap();
    fs::write(dir.join("sub/deeper/zero"), b"").unwrap();
    fs::write(dir.join("name with spaces & symbols+%.txt"), b"odd").unwrap();
    fs::write(dir.join("metadata.json"), b"{\"steps_completed\": 1}").unwrap();
}

#[test]
#[ignore = "needs a storage server: run through tests/python/test_cloud_rust.py"]
fn store_download_delete_round_trip() {
    let s = open();
    let id = uuid::Uuid::new_v4().to_string();
    let scratch = s.stage(&id).unwrap();
    let staged = scratch.path().to_path_buf();
    write_sample(&staged);
    let want = tree(&staged);
    assert!(!s.is_complete(&id).unwrap());
    s.publish(&staged, &id, None).unwrap();
    assert!(!staged.exists(), "publish must remove the local copy");
    drop(scratch);
    assert!(
        !staged.with_extension("lock").exists() && !staged.exists(),
        "the staging folder and its lock file must be gone"
    );
    assert!(s.is_complete(&id).unwrap());

    let dl = tmp("dl");
    s.download(&id, &dl, None).unwrap();
    let mut got = tree(&dl);
    // The manifest travels with the checkpoint.
    assert!(got.remove(MANIFEST).is_some());
    // Servers that drop folder markers (s3s-fs) lose only the empty folder.
    let mut want_cmp = want.clone();
    if !got.contains_key("empty/") {
        assert_eq!(std::env::var("DETCORE_TEST_NO_MARKERS").as_deref(), Ok("1"));
        want_cmp.remove("empty/");
    }
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want_cmp.keys().collect::<Vec<_>>()
    );
    assert!(got == want_cmp, "downloaded bytes differ");

    // Selector: only sub/small.txt (and nothing else).
    let dl2 = tmp("sel");
    let mut seen = Vec::new();
    let mut sel = |p: &str| {
        seen.push(p.to_owned());
        p == "sub/small.txt"
    };
    s.download(&id, &dl2, Some(&mut sel)).unwrap();
    assert!(seen.contains(&"big.bin".to_owned()));
    assert_eq!(fs::read(dl2.join("sub/small.txt")).unwrap(), b"hello");
    assert!(!dl2.join("big.bin").exists());

    assert_eq!(s.read_file(&id, "sub/small.txt").unwrap(), b"hello");
    let e = s.read_file(&id, "nope").unwrap_err();
    assert_eq!(e.kind(), detcore::Kind::NotFound, "{e}");

    let r = s.restore(&id, None).unwrap();
    assert!(r.is_temporary());
    assert_eq!(fs::read(r.path.join("sub/small.txt")).unwrap(), b"hello");
    let restored = r.path.clone();
    drop(r);
    assert!(
        !restored.exists(),
        "a temporary restore is removed when dropped"
    );

    // A failed restore leaves nothing behind.
    let missing = uuid::Uuid::new_v4().to_string();
    assert!(s.restore(&missing, None).is_err());
    // (The scratch area itself goes with its last folder.)
    if let Ok(rd) = fs::read_dir(restored.parent().unwrap()) {
        assert!(rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .all(|n| !n.contains(&missing)));
    }

    s.delete(&id).unwrap();
    assert!(!s.is_complete(&id).unwrap());
    let e = s.download(&id, &tmp("gone"), None).unwrap_err();
    assert_eq!(e.kind(), detcore::Kind::NotFound, "{e}");
    // Deleting again is fine.
    s.delete(&id).unwrap();
}

#[test]
#[ignore = "needs a storage server: run through tests/python/test_cloud_rust.py"]
fn upload_with_extra_and_aux_objects() {
    let s = open();
    let src = tmp("src");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("d/a"), b"A").unwrap();
    fs::write(src.join("skip"), b"S").unwrap();
    let id = uuid::Uuid::new_v4().to_string();
    let sums = s
        .upload(
            &src,
            &["d/".into(), "d/a".into()],
            &[("metadata.json".into(), b"{}".to_vec())],
            &id,
            &Default::default(),
        )
        .unwrap();
    // Sums of what was stored (folder markers have none), and a manifest listing them.
    assert_eq!(sums.keys().collect::<Vec<_>>(), ["d/a", "metadata.json"]);
    assert_eq!(sums["d/a"], FileSum::of(b"A"));
    let m = Manifest::parse(&id, &s.read_file(&id, MANIFEST).unwrap()).unwrap();
    assert_eq!(m.files, sums);
    assert!(s.is_complete(&id).unwrap());
    assert_eq!(s.read_file(&id, "metadata.json").unwrap(), b"{}");
    assert_eq!(
        s.read_file(&id, "skip").unwrap_err().kind(),
        detcore::Kind::NotFound
    );
    // The source folder is left alone.
    assert!(src.join("skip").exists() && !src.join("metadata.json").exists());
    s.delete(&id).unwrap();

    let key = format!(".detcore/runs/r-{}/checkpoints.json", uuid::Uuid::new_v4());
    assert_eq!(s.get_aux(&key).unwrap(), None);
    s.put_aux(&key, b"one").unwrap();
    s.put_aux(&key, b"two").unwrap();
    assert_eq!(s.get_aux(&key).unwrap().as_deref(), Some(&b"two"[..]));
    assert!(s.get_aux("../escape").is_err());
    let dir = key.trim_end_matches("checkpoints.json");
    s.put_aux(&format!("{dir}checkpoints/a.json"), b"a")
        .unwrap();
    s.put_aux(&format!("{dir}checkpoints/b.json"), b"b")
        .unwrap();
    assert_eq!(
        s.list_aux(&format!("{dir}checkpoints/")).unwrap(),
        ["a.json", "b.json"]
    );
    assert_eq!(s.list_aux(dir).unwrap(), ["checkpoints.json"]);
    s.delete_aux(&format!("{dir}checkpoints/a.json")).unwrap();
    s.delete_aux(&format!("{dir}checkpoints/a.json")).unwrap();
    assert_eq!(
        s.list_aux(&format!("{dir}checkpoints/")).unwrap(),
        ["b.json"]
    );

    let f = src.join("d/a");
    s.put_files(&[(f, format!("tb/{}/events", uuid::Uuid::new_v4()))])
        .unwrap();
}

#[test]
#[ignore = "needs a storage server: run through tests/python/test_cloud_rust.py"]
fn unsafe_keys_never_become_local_paths() {
    let s = open();
    let id = uuid::Uuid::new_v4().to_string();
    // An object whose name, made relative to the checkpoint, is an absolute path. (Names with
    // ".." components cannot be created through URLs, which normalize them away; safe_join's
    // unit tests cover those.)
    let evil = format!("{id}//escaped-{id}");
    s.put_aux(&format!("{id}/ok"), b"fine").unwrap();
    // put_aux refuses such keys: store it through the backend's raw put instead.
    raw_put(&evil, b"evil");
    let dst = tmp("evil");
    let e = s.download(&id, &dst.join("inner"), None).unwrap_err();
    assert!(e.message().contains("refusing unsafe object name"), "{e}");
    assert!(!dst.join(format!("escaped-{id}")).exists());
    assert!(fs::read_dir(&dst).unwrap().next().is_none() || !dst.join("inner/ok").exists());
}

/// Run `f` with the configured backend's raw object store and the full key of `key` (relative
/// to the configured prefix): no checks, no manifests.
fn with_raw<T>(key: &str, f: impl FnOnce(&dyn ObjectStore, &str) -> T) -> T {
    use detcore::storage::config::StorageConfig;
    use detcore::storage::tuning::Tuning;
    let spec = storage::config::parse_user(&config_text()).unwrap();
    let full = |prefix: &str| {
        if prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{prefix}/{key}")
        }
    };
    match &spec.config {
        StorageConfig::S3(c) => {
            let st = detcore::storage::s3::S3Store::new(c, Tuning::default()).unwrap();
            f(&st, &full(&c.prefix))
        }
        StorageConfig::Gcs(c) => {
            let st = detcore::storage::gcs::GcsStore::new(c, Tuning::default()).unwrap();
            f(&st, &full(&c.prefix))
        }
        StorageConfig::Azure(c) => {
            let st = detcore::storage::azure::AzureStore::new(c, Tuning::default()).unwrap();
            let k = format!("{}{key}", st.blob_prefix());
            f(&st, &k)
        }
        other => panic!("not an object store: {other:?}"),
    }
}

/// Store `key` (relative to the configured prefix) without any checks.
fn raw_put(key: &str, data: &[u8]) {
    use detcore::storage::http::Body;
    with_raw(key, |st, k| st.put(k, Body::Bytes(data)).unwrap());
}

/// Delete `key` (relative to the configured prefix).
fn raw_delete(key: &str) {
    with_raw(key, |st, k| st.delete(&[k.to_owned()]).unwrap());
}

/// Every file (not folder) under `root`, relative.
fn files_under(root: &Path) -> Vec<String> {
    tree(root)
        .into_iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| k)
        .collect()
}

#[test]
#[ignore = "needs a storage server: run through tests/python/test_cloud_rust.py"]
fn manifests_are_computed_while_uploading_and_checked_while_downloading() {
    let s = open();
    assert!(s.checksums());
    let id = uuid::Uuid::new_v4().to_string();
    let scratch = s.stage(&id).unwrap();
    let staged = scratch.path();
    write_sample(staged);
    // A stale manifest in the staging folder is never stored.
    fs::write(staged.join(MANIFEST), b"stale").unwrap();
    let want: BTreeMap<String, Vec<u8>> = tree(staged)
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .filter(|(k, _)| k != MANIFEST)
        .collect();
    let sums = s.publish(staged, &id, None).unwrap();
    drop(scratch);
    // The CRC32C computed from the request bodies (single PUTs, parallel parts combined, GCS's
    // resumable chunks) is the CRC32C of the file.
    let expect: Sums = want
        .iter()
        .map(|(k, v)| (k.clone(), FileSum::of(v)))
        .collect();
    assert_eq!(sums, expect);
    let m = Manifest::parse(&id, &s.read_file(&id, MANIFEST).unwrap()).unwrap();
    assert_eq!(m.files, expect);
    assert_eq!(m.storage_id, id);

    let check = |sel: Option<&mut dyn FnMut(&str) -> bool>| {
        let dl = tmp("check");
        let r = s.download(&id, &dl, sel).map(|_| dl.clone());
        (r, dl)
    };
    // A good checkpoint downloads whole, with its manifest.
    let (r, dl) = check(None);
    r.unwrap();
    assert!(dl.join(MANIFEST).is_file());

    // A flipped byte in the multipart file: detected, named, nothing left behind.
    let mut bad = want["big.bin"].clone();
    bad[7 << 20] ^= 0x01;
    raw_put(&format!("{id}/big.bin"), &bad);
    let (r, dl) = check(None);
    let e = r.unwrap_err();
    assert_eq!(e.kind(), detcore::Kind::Integrity, "{e}");
    assert!(
        e.message()
            .contains("file \"big.bin\" is corrupt: its CRC32C is"),
        "{e}"
    );
    assert_eq!(
        files_under(&dl),
        Vec::<String>::new(),
        "a failed download keeps nothing"
    );
    let e = s.restore(&id, None).unwrap_err();
    assert_eq!(e.kind(), detcore::Kind::Integrity, "{e}");
    // A selector that leaves the bad file out restores the rest, checked.
    let mut not_big = |p: &str| p != "big.bin";
    let (r, dl) = check(Some(&mut not_big));
    r.unwrap();
    assert_eq!(fs::read(dl.join("sub/small.txt")).unwrap(), b"hello");
    raw_put(&format!("{id}/big.bin"), &want["big.bin"]);

    // A truncated file (known from the listing) and a missing one.
    raw_put(&format!("{id}/sub/small.txt"), b"hel");
    let e = s.download(&id, &tmp("trunc"), None).unwrap_err();
    assert!(
        e.message()
            .contains("file \"sub/small.txt\" is 3 bytes, its manifest says 5 (truncated)"),
        "{e}"
    );
    raw_put(&format!("{id}/sub/small.txt"), b"hello");
    raw_delete(&format!("{id}/sub/deeper/zero"));
    let e = s.download(&id, &tmp("missing"), None).unwrap_err();
    assert!(
        e.message()
            .contains("file \"sub/deeper/zero\" is missing (its manifest lists 0 bytes)"),
        "{e}"
    );
    let r = s.restore(&id, None).unwrap_err();
    assert_eq!(r.kind(), detcore::Kind::Integrity, "{r}");
    // A damaged manifest is itself an integrity error.
    raw_put(&format!("{id}/{MANIFEST}"), b"{\"format\": 1, \"fil");
    let e = s.download(&id, &tmp("badmanifest"), None).unwrap_err();
    assert_eq!(e.kind(), detcore::Kind::Integrity, "{e}");
    assert!(e.message().contains(MANIFEST), "{e}");

    // Checksums off: no manifest is written, and nothing is checked.
    let spec = storage::config::parse_user(&config_text()).unwrap();
    let off = storage::open_with(&spec.config, storage::Modes::Umask, false).unwrap();
    off.download(&id, &tmp("off"), None).unwrap();
    let id2 = uuid::Uuid::new_v4().to_string();
    let scratch = off.stage(&id2).unwrap();
    write_sample(scratch.path());
    assert!(off.publish(scratch.path(), &id2, None).unwrap().is_empty());
    drop(scratch);
    assert_eq!(
        s.read_file(&id2, MANIFEST).unwrap_err().kind(),
        detcore::Kind::NotFound
    );
    // ... and such a checkpoint restores unchecked with checksums on.
    s.download(&id2, &tmp("nomanifest"), None).unwrap();
    s.delete(&id).unwrap();
    s.delete(&id2).unwrap();
}

#[test]
#[ignore = "needs a storage server: run through tests/python/test_cloud_rust.py"]
fn sharded_checkpoint_from_several_processes() {
    const RANKS: usize = 3;
    let s = open();
    let id = uuid::Uuid::new_v4().to_string();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..RANKS)
        .map(|rank| {
            Command::new(&exe)
                .args([
                    "--ignored",
                    "--exact",
                    "shard_child",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("DETCORE_SHARD_ID", &id)
                .env("DETCORE_SHARD_RANK", rank.to_string())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success(), "a shard process failed");
    }
    // No rank wrote metadata.json: the checkpoint is not complete yet.
    assert!(!s.is_complete(&id).unwrap());
    // The chief completes it last, with the manifest of every rank's files.
    let mut prior = Sums::new();
    for rank in 0..RANKS {
        let text = fs::read_to_string(shard_sums_file(&id, rank)).unwrap();
        for line in text.lines() {
            let mut f = line.split(' ');
            let (name, size, crc) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
            prior.insert(
                name.to_owned(),
                FileSum {
                    size: size.parse().unwrap(),
                    crc32c: crc.parse().unwrap(),
                },
            );
        }
    }
    assert_eq!(prior.len(), 2 * RANKS);
    let staged = s.stage(&id).unwrap();
    s.upload(
        staged.path(),
        &[],
        &[("metadata.json".into(), b"{\"steps_completed\": 3}".to_vec())],
        &id,
        &prior,
    )
    .unwrap();
    assert!(s.is_complete(&id).unwrap());
    let m = Manifest::parse(&id, &s.read_file(&id, MANIFEST).unwrap()).unwrap();
    assert_eq!(m.files.len(), 2 * RANKS + 1);
    let dl = tmp("shard");
    s.download(&id, &dl, None).unwrap();
    for rank in 0..RANKS {
        assert_eq!(
            fs::read(dl.join(format!("rank{rank}/part.bin"))).unwrap(),
            payload(6 << 20 | rank, rank as u64 + 10)
        );
        assert_eq!(
            fs::read(dl.join(format!("shared/file{rank}"))).unwrap(),
            vec![rank as u8; 10]
        );
    }
    s.delete(&id).unwrap();
}

/// One rank of `sharded_checkpoint_from_several_processes` (run as a child process).
#[test]
#[ignore = "child process of sharded_checkpoint_from_several_processes"]
fn shard_child() {
    let id = std::env::var("DETCORE_SHARD_ID")
        .expect("run by sharded_checkpoint_from_several_processes");
    let rank: usize = std::env::var("DETCORE_SHARD_RANK")
        .unwrap()
        .parse()
        .unwrap();
    let s = open();
    // Each rank stages in its own folder (as on separate nodes).
    let root = tmp(&format!("rank{rank}"));
    fs::create_dir_all(root.join(format!("rank{rank}"))).unwrap();
    fs::create_dir_all(root.join("shared")).unwrap();
    fs::write(
        root.join(format!("rank{rank}/part.bin")),
        payload(6 << 20 | rank, rank as u64 + 10),
    )
    .unwrap();
    fs::write(
        root.join(format!("shared/file{rank}")),
        vec![rank as u8; 10],
    )
    .unwrap();
    let files = vec![
        format!("rank{rank}/"),
        format!("rank{rank}/part.bin"),
        "shared/".to_owned(),
        format!("shared/file{rank}"),
    ];
    let files: detcore::storage::Resources = files
        .into_iter()
        .map(|n| {
            let size = if n.ends_with('/') {
                0
            } else {
                fs::metadata(root.join(&n)).unwrap().len()
            };
            (n, size)
        })
        .collect();
    let sums = s.publish(&root, &id, Some(&files)).unwrap();
    let lines: Vec<String> = sums
        .iter()
        .map(|(k, v)| format!("{k} {} {}", v.size, v.crc32c))
        .collect();
    fs::write(shard_sums_file(&id, rank), lines.join("\n")).unwrap();
}

/// Where a shard child leaves the sums of the files it stored.
fn shard_sums_file(id: &str, rank: usize) -> PathBuf {
    std::env::temp_dir().join(format!("detcore-shard-{id}-{rank}.sums"))
}
