//! Storage-level tests of the object-store backends against a real server.
//!
//! They need a running server and are `#[ignore]`d by a plain `cargo test`; the pytest suite
//! (`tests/python/test_cloud_rust.py`) starts moto/s3s-fs, fake-gcs-server and Azurite and runs
//! them with `DETCORE_TEST_STORAGE` set to a storage config (a JSON dict) for each. Run without
//! that variable they fail rather than pass.

use detcore::storage::{self, Storage};
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
    let got = tree(&dl);
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
    s.upload(
        &src,
        &["d/".into(), "d/a".into()],
        &[("metadata.json".into(), b"{}".to_vec())],
        &id,
    )
    .unwrap();
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

/// Store `key` (relative to the configured prefix) without any checks.
fn raw_put(key: &str, data: &[u8]) {
    use detcore::storage::config::StorageConfig;
    use detcore::storage::http::{Body, Tuning};
    use detcore::storage::object::ObjectStore;
    let spec = storage::config::parse_user(&config_text()).unwrap();
    match &spec.config {
        StorageConfig::S3(c) => {
            let st = detcore::storage::s3::S3Store::new(c, Tuning::default()).unwrap();
            let full = if c.prefix.is_empty() {
                key.to_owned()
            } else {
                format!("{}/{key}", c.prefix)
            };
            st.put(&full, Body::Bytes(data)).unwrap();
        }
        StorageConfig::Gcs(c) => {
            let st = detcore::storage::gcs::GcsStore::new(c, Tuning::default()).unwrap();
            let full = if c.prefix.is_empty() {
                key.to_owned()
            } else {
                format!("{}/{key}", c.prefix)
            };
            st.put(&full, Body::Bytes(data)).unwrap();
        }
        StorageConfig::Azure(c) => {
            let st = detcore::storage::azure::AzureStore::new(c, Tuning::default()).unwrap();
            let full = format!("{}{key}", st.blob_prefix());
            st.put(&full, Body::Bytes(data)).unwrap();
        }
        other => panic!("not an object store: {other:?}"),
    }
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
    // The chief completes it last.
    let staged = s.stage(&id).unwrap();
    fs::write(
        staged.path().join("metadata.json"),
        b"{\"steps_completed\": 3}",
    )
    .unwrap();
    s.publish(staged.path(), &id, Some(&["metadata.json".into()]))
        .unwrap();
    assert!(s.is_complete(&id).unwrap());
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
    s.publish(&root, &id, Some(&files)).unwrap();
}
