//! Checkpoints written by several ranks (`shard = true`) and downloads shared by the ranks of a
//! node (`DownloadMode::LocalWorkersShareDownload`), per docs/protocol.md#sharded-checkpoints.
//!
//! Every step that can fail is followed by a collective that tells every rank about every
//! failure, so all ranks return the same error instead of some hanging (as in Python).
//! The merged `metadata.json` is always stored and listed (Python's is not always), and on object
//! stores it is uploaded last, after every rank's files, so nothing partial looks complete.

use super::merge::{
    file_conflict_message, merge_metadata, merge_resources, metadata_conflict_message,
};
use super::{check_metadata, CheckpointContext, RestoreScope, StoreScope};
use crate::error::{Error, Kind, Result};
use crate::json::{parse, to_metadata_file, to_wire, Map, Value};
use crate::storage::{fsutil, FileSum, Resources, Restored, Scratch, Selector, Sums};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The identity of a local folder across the job: the host plus the file system's device and
/// inode, so that ranks sharing a folder upload it once (Python compares only (dev, ino), which
/// can collide across machines).
fn folder_uid(p: &Path) -> Result<String> {
    let m = std::fs::metadata(p).map_err(|e| Error::io("cannot stat", p, e))?;
    Ok(format!(
        "{}:{}:{}",
        crate::host::hostname(),
        m.dev(),
        m.ino()
    ))
}

/// Allgather one JSON value per rank.
fn allgather_json(d: &crate::distributed::DistributedContext, v: Value) -> Result<Vec<Value>> {
    d.allgather(json_text(v))?
        .into_vecs()
        .iter()
        .map(|b| json_of(b))
        .collect()
}

fn json_text(v: Value) -> Vec<u8> {
    to_wire(&v).into_bytes()
}

fn json_of(b: &[u8]) -> Result<Value> {
    parse(
        std::str::from_utf8(b)
            .map_err(|_| err!(Distributed, "a rank sent non-UTF-8 checkpoint data"))?,
    )
    .map_err(|e| Error::new(Kind::Distributed, e.message().to_owned()))
}

/// Outcome of a local step, as exchanged between ranks.
fn status_value<T>(r: &Result<T>) -> Value {
    match r {
        Ok(_) => Value::Null,
        Err(e) => Value::from(e.message()),
    }
}

/// Every rank's statuses → the same error everywhere (naming the ranks), or Ok.
fn combine<'a>(what: &str, statuses: impl IntoIterator<Item = &'a Value>) -> Result<()> {
    let failed: Vec<String> = statuses
        .into_iter()
        .enumerate()
        .filter_map(|(r, v)| v.as_str().map(|m| format!("rank {r}: {m}")))
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(err!(
            Storage,
            "{what} failed on {} rank(s): {}",
            failed.len(),
            failed.join("; ")
        ))
    }
}

/// [`combine`] the `"error"` of every rank's allgathered object.
fn combine_errors(what: &str, all: &[Value]) -> Result<()> {
    combine(
        what,
        all.iter().map(|v| v.get("error").unwrap_or(&Value::Null)),
    )
}

/// Every rank's `"storage"` identity from an allgather: the same everywhere, or an error (the
/// same on every rank) naming the ranks and what each uses.
fn same_storage(all: &[Value]) -> Result<()> {
    let ids: Vec<&str> = all
        .iter()
        .map(|v| v.get("storage").and_then(Value::as_str).unwrap_or(""))
        .collect();
    if ids.iter().all(|i| *i == ids[0]) {
        return Ok(());
    }
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    for (r, id) in ids.iter().enumerate() {
        match groups.iter_mut().find(|(i, _)| i == id) {
            Some((_, rs)) => rs.push(r),
            None => groups.push((id, vec![r])),
        }
    }
    bail!(
        InvalidArgument,
        "the ranks do not use the same checkpoint storage ({}): every rank must give the same checkpoint_storage, \
         or the files of some ranks would be missing from their sharded checkpoints",
        groups
            .iter()
            .map(|(id, rs)| format!("rank(s) {rs:?}: {id}"))
            .collect::<Vec<_>>()
            .join("; ")
    )
}

/// At init, on every rank of a multi-rank job (a collective): the ranks agree on the storage,
/// or all fail alike. `opened` is this rank's storage, or why it could not be opened.
pub(crate) fn agree_on_storage(
    d: &crate::distributed::DistributedContext,
    opened: Result<&dyn crate::storage::Storage>,
) -> Result<()> {
    if d.config().size == 1 {
        return opened.map(|_| ());
    }
    let mine = match &opened {
        Ok(s) => obj! { "storage" => s.identity() },
        Err(e) => obj! { "error" => e.message() },
    };
    let all = allgather_json(d, Value::Object(mine))?;
    opened?;
    combine_errors("opening the checkpoint storage", &all)?;
    same_storage(&all)
}

/// The relative names of the files under `root` (folders only walked; no `stat` per file: a
/// file system's metadata servers see one `readdir` per folder).
fn file_names(root: &Path) -> Result<Vec<String>> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<()> {
        let rd = std::fs::read_dir(dir).map_err(|e| Error::io("cannot read folder", dir, e))?;
        for entry in rd {
            let entry = entry.map_err(|e| Error::io("cannot read folder", dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_dir = entry
                .file_type()
                .map_err(|e| Error::io("cannot stat", &entry.path(), e))?
                .is_dir();
            if is_dir {
                walk(&entry.path(), &format!("{prefix}{name}/"), out)?;
            } else {
                out.push(format!("{prefix}{name}"));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, "", &mut out)?;
    Ok(out)
}

/// The files some ranks wrote that the checkpoint lacks: `expected` maps each file name to the
/// ranks that wrote (or listed) it, `present` says whether the checkpoint has it. `Ok` when none
/// is missing, else an error naming the ranks and a few of their files.
fn verify_present(
    id: &str,
    expected: &BTreeMap<String, Vec<usize>>,
    mut present: impl FnMut(&str) -> bool,
) -> Result<()> {
    let mut missing_ranks: BTreeSet<usize> = BTreeSet::new();
    let mut examples: Vec<&str> = Vec::new();
    let mut count = 0usize;
    for (name, ranks) in expected {
        if name.ends_with('/') || name == "metadata.json" || present(name) {
            continue;
        }
        count += 1;
        missing_ranks.extend(ranks.iter().copied());
        if examples.len() < 3 {
            examples.push(name);
        }
    }
    if count == 0 {
        return Ok(());
    }
    bail!(
        Storage,
        "checkpoint {id} lacks {count} file(s) of rank(s) {:?} (e.g. {}): those ranks wrote where the chief does not \
         publish (a node-local folder on another host, or different storage); nothing was stored or reported",
        missing_ranks.iter().collect::<Vec<_>>(),
        examples
            .iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// A new storage id on the chief; the other ranks take the chief's from [`agreed_metadata`].
fn new_id(d: &crate::distributed::DistributedContext) -> String {
    if d.config().rank == 0 {
        uuid::Uuid::new_v4().to_string()
    } else {
        String::new()
    }
}

/// From every rank's allgathered object: the chief's `"id"`, and the ranks' `"metadata"` merged
/// (refused on conflicts) with its `steps_completed`.
fn agreed_metadata(all: &[Value]) -> Result<(String, Map, i64)> {
    let id = all[0]
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let metas: Vec<Map> = all
        .iter()
        .map(|v| {
            v.get("metadata")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    let (merged, conflicts) = merge_metadata(&metas);
    if !conflicts.is_empty() {
        bail!(Conflict, "{}", metadata_conflict_message(&conflicts));
    }
    let steps = check_metadata(&merged)?;
    Ok((id, merged, steps))
}

/// The merged metadata of a sharded checkpoint, as stored and reported.
struct Metadata {
    map: Map,
    steps: i64,
    /// The content of `metadata.json`.
    text: Vec<u8>,
}

impl Metadata {
    fn new(map: Map, steps: i64) -> Metadata {
        let text = to_metadata_file(&Value::Object(map.clone())).into_bytes();
        Metadata { map, steps, text }
    }
}

/// Run `f` with a selector accepting the names in `union` (`None`: every name).
fn with_union<T>(union: &Option<BTreeSet<String>>, f: impl FnOnce(Option<Selector<'_>>) -> T) -> T {
    match union {
        Some(u) => {
            let mut sel = |n: &str| u.contains(n);
            f(Some(&mut sel))
        }
        None => f(None),
    }
}

fn resources_value(r: &Resources) -> Value {
    Value::Object(
        r.iter()
            .map(|(k, v)| (k.clone(), Value::from(*v)))
            .collect(),
    )
}

fn resources_of(v: &Value) -> Resources {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_i64().unwrap_or(0).max(0) as u64))
                .collect()
        })
        .unwrap_or_default()
}

fn md5_of(p: &Path) -> Result<String> {
    use md5::{Digest, Md5};
    use std::io::Read;
    let mut f = std::fs::File::open(p).map_err(|e| Error::io("cannot read", p, e))?;
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Error::io("cannot read", p, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

impl CheckpointContext {
    /// Sharded `store_path` begin: one allgather checks the merged metadata on every rank before
    /// anything is written and spreads the chief's new id; a second tells every rank whether all
    /// could stage.
    pub(super) fn shard_store_begin(&self, metadata: Map) -> Result<StoreScope> {
        let d = &self.dist;
        let id = new_id(d);
        // A failed asynchronous upload (only the chief has them) fails every rank alike.
        let pending = self.uploads.take_failure().err();
        let mine = obj! {
            "metadata" => Value::Object(metadata),
            "id" => id.as_str(),
            "storage" => self.storage.identity(),
            "error" => pending.as_ref().map(|e| e.message().to_owned()),
        };
        let all: Vec<Value> = allgather_json(d, Value::Object(mine))?;
        combine_errors("an earlier checkpoint", &all)?;
        same_storage(&all)?;
        let (id, merged, steps) = agreed_metadata(&all)?;
        let staged = self.staged_everywhere("store_path (staging)", self.storage.stage(&id))?;
        Ok(StoreScope {
            id,
            staged,
            metadata: merged,
            steps,
            shard: true,
        })
    }

    /// Tell every rank whether every rank has its staging folder; on any failure each rank
    /// discards its own (dropping it) and all return the same error.
    fn staged_everywhere(&self, what: &str, staged: Result<Scratch>) -> Result<Scratch> {
        let statuses: Vec<Value> = allgather_json(&self.dist, status_value(&staged))?;
        combine(what, &statuses)?;
        staged
    }

    /// Sharded `store_path` end (or abort when `abort`): see the module docs. Returns the
    /// storage id; aborting, this rank's part is discarded and the result is Ok (the other
    /// ranks' `end` fails, naming this rank).
    pub(super) fn shard_store_end(&self, scope: StoreScope, abort: bool) -> Result<String> {
        let d = &self.dist;
        let rank = d.config().rank as usize;
        // 1. Who is done, who aborted, and who shares which folder. (Every early return drops
        // the scope, which removes this rank's staged folder.)
        let uid = folder_uid(scope.path());
        let mine = obj! {
            "abort" => abort,
            "uid" => uid.as_ref().ok().cloned(),
            "error" => uid.as_ref().err().map(|e| e.message().to_owned()),
        };
        let all: Vec<Value> = allgather_json(d, Value::Object(mine))?;
        let aborted: Vec<usize> = (0..all.len())
            .filter(|&r| all[r].get("abort").and_then(Value::as_bool) == Some(true))
            .collect();
        if !aborted.is_empty() {
            let id = scope.id.clone();
            drop(scope);
            if abort {
                return Ok(id);
            }
            bail!(State, "checkpoint {id} was abandoned by rank(s) {aborted:?} (det_ckpt_store_path_abort); nothing was stored");
        }
        combine_errors("store_path", &all)?;
        let uids: Vec<String> = all
            .iter()
            .map(|v| {
                v.get("uid")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            })
            .collect();
        // Folder storage: every rank wrote into the one shared staging folder, which only the chief
        // lists and publishes (its host name differs from the other nodes', not its folder).
        // Object stores: the lowest rank of each node-local staging folder uploads it.
        let uploader = if self.storage.direct_access() {
            rank == 0
        } else {
            uids.iter().position(|u| *u == uids[rank]) == Some(rank)
        };

        // 2. Listings of every uploaded folder.
        let listing = if uploader {
            fsutil::list_resources(scope.path()).map(|mut r| {
                r.remove("metadata.json");
                r
            })
        } else {
            Ok(Resources::new())
        };
        // Folder storage seen from several hosts: what the first rank of each other folder wrote
        // must be in the chief's (a node-local folder is not).
        let views = if self.storage.direct_access() {
            self.folder_views(&uids, scope.path())?
        } else {
            None
        };
        let files = self.exchange_listings(listing, scope.path())?;

        // 3. Publish: the merged metadata.json is written by the chief, last on object stores.
        let meta = Metadata::new(scope.metadata.clone(), scope.steps);
        let published = if !uploader {
            Ok(Sums::new())
        } else if self.storage.direct_access() {
            let complete = match &views {
                Some(expected) => verify_present(&scope.id, expected, |n| {
                    files.merged.contains_key(n) || scope.path().join(n).exists()
                }),
                None => Ok(()),
            };
            // On failure every rank's staging folder is removed when its scope is dropped
            // (after the verdict below), a node-local one included.
            complete.and_then(|()| self.publish_with_metadata(scope.path(), &scope.id, &meta))
        } else {
            self.storage
                .publish(scope.path(), &scope.id, Some(&files.mine))
        };
        self.finish(
            &scope.id,
            published,
            scope.path(),
            files.merged,
            &files.owners,
            &meta,
        )?;
        Ok(scope.id.clone())
    }

    /// Folder storage: when the ranks' staging folders are not all one (`uids` differ: other
    /// hosts, or other folders), the first rank of each folder other than the chief's sends the
    /// chief the names it sees there; `None` when every rank shares the chief's folder. Returns,
    /// on the chief, each name and the ranks of the folder it was seen in.
    fn folder_views(
        &self,
        uids: &[String],
        path: &Path,
    ) -> Result<Option<BTreeMap<String, Vec<usize>>>> {
        if uids.iter().all(|u| *u == uids[0]) {
            return Ok(None);
        }
        let d = &self.dist;
        let rank = d.config().rank as usize;
        let first_of_folder = uids.iter().position(|u| *u == uids[rank]) == Some(rank);
        let mine = if first_of_folder && uids[rank] != uids[0] {
            match file_names(path) {
                Ok(n) => obj! { "names" => Value::Array(n.into_iter().map(Value::from).collect()) },
                Err(e) => obj! { "error" => e.message() },
            }
        } else {
            Map::new()
        };
        let all: Vec<Value> = allgather_json(d, Value::Object(mine))?;
        combine_errors("listing the checkpoint folder", &all)?;
        let mut expected: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (r, v) in all.iter().enumerate() {
            let Some(names) = v.get("names").and_then(Value::as_array) else {
                continue;
            };
            let folder: Vec<usize> = (0..uids.len()).filter(|&o| uids[o] == uids[r]).collect();
            for n in names.iter().filter_map(Value::as_str) {
                expected.entry(n.to_owned()).or_default().extend(&folder);
            }
        }
        Ok(Some(expected))
    }

    /// Folder storage, on the chief: write the merged `metadata.json` into the shared staging
    /// folder `staged`, then record and publish it (with its manifest). Returns the sums.
    fn publish_with_metadata(&self, staged: &Path, id: &str, meta: &Metadata) -> Result<Sums> {
        let meta_path = staged.join("metadata.json");
        std::fs::write(&meta_path, &meta.text)
            .map_err(|e| Error::io("cannot write", &meta_path, e))?;
        super::publish_recorded(
            &*self.storage,
            &*self.reporter,
            staged,
            id,
            &meta.map,
            meta.steps,
            None,
        )
    }

    /// Exchange the uploaders' listings, resolve conflicts by content, and return the merged
    /// listing and this rank's share of the files.
    fn exchange_listings(&self, listing: Result<Resources>, root: &Path) -> Result<SharedFiles> {
        let d = &self.dist;
        let rank = d.config().rank as usize;
        let mine = match &listing {
            Ok(r) => obj! { "files" => resources_value(r) },
            Err(e) => obj! { "error" => e.message() },
        };
        let all: Vec<Value> = allgather_json(d, Value::Object(mine))?;
        combine_errors("listing the checkpoint files", &all)?;
        let per_rank: Vec<Resources> = all
            .iter()
            .map(|v| resources_of(v.get("files").unwrap_or(&Value::Null)))
            .collect();
        let (merged, conflicts) = merge_resources(&per_rank);
        let mut drop_mine: BTreeSet<String> = BTreeSet::new();
        if !conflicts.is_empty() {
            // Ranks that list a conflicting file send its digest; identical contents are fine.
            let mut digests = Map::new();
            for (name, ranks) in &conflicts {
                if ranks.contains(&rank) {
                    let v = if per_rank[rank].contains_key(&format!("{name}/")) {
                        Value::from("this is a directory")
                    } else {
                        match md5_of(&root.join(name)) {
                            Ok(h) => Value::from(h),
                            Err(e) => Value::from(format!("unreadable: {}", e.message())),
                        }
                    };
                    digests.insert(name.clone(), v);
                }
            }
            let all: Vec<Value> = allgather_json(d, Value::Object(digests))?;
            let mut unresolved = BTreeMap::new();
            for (name, ranks) in &conflicts {
                let distinct: BTreeSet<String> = ranks
                    .iter()
                    .filter_map(|&r| all[r].get(name).map(to_wire))
                    .collect();
                if distinct.len() > 1 {
                    unresolved.insert(name.clone(), ranks.clone());
                } else if ranks[0] != rank && ranks.contains(&rank) {
                    drop_mine.insert(name.clone());
                }
            }
            if !unresolved.is_empty() {
                bail!(Conflict, "{}", file_conflict_message(&unresolved));
            }
        }
        let mine: Resources = per_rank[rank]
            .iter()
            .filter(|(k, _)| !drop_mine.contains(k.trim_end_matches('/')))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let mut owners: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (r, files) in per_rank.iter().enumerate() {
            for name in files.keys() {
                owners.entry(name.clone()).or_default().push(r);
            }
        }
        Ok(SharedFiles {
            merged,
            mine,
            owners,
        })
    }

    /// The common end of sharded stores and uploads: tell everyone how publishing went (with the
    /// sums of the files each rank stored), upload the manifest and `metadata.json` last (object
    /// stores; from `src`), report `resources` and `metadata.json`, and give every rank the same
    /// result.
    fn finish(
        &self,
        id: &str,
        published: Result<Sums>,
        src: &Path,
        mut resources: Resources,
        owners: &BTreeMap<String, Vec<usize>>,
        meta: &Metadata,
    ) -> Result<()> {
        let d = &self.dist;
        let mine = match &published {
            Ok(sums) => obj! { "sums" => sums_value(sums) },
            Err(e) => obj! { "error" => e.message() },
        };
        let all: Vec<Value> = allgather_json(d, Value::Object(mine))?;
        let mut outcome = combine_errors(&format!("storing checkpoint {id}"), &all);
        if d.config().rank == 0 && outcome.is_ok() {
            // Object stores: every rank's files must be in the checkpoint (a rank that uploaded
            // elsewhere said "done" too), with the sums each rank computed as it stored them,
            // then the manifest of them all and metadata.json last (folder storage published
            // them with the rest, after the same check, its manifest from the chief's own pass).
            if !self.storage.direct_access() {
                outcome = self.verify_uploaded(id, owners);
            }
            let mut prior = Sums::new();
            if !self.storage.direct_access() && outcome.is_ok() {
                match merged_sums(id, &all, &resources, self.storage.checksums()) {
                    Ok(p) => prior = p,
                    Err(e) => {
                        // Never completed (no metadata.json): nothing of it is kept.
                        if let Err(de) = self.storage.delete(id) {
                            log_warn!("could not remove the incomplete checkpoint {id}: {de}");
                        }
                        outcome = Err(e);
                    }
                }
            }
            if !self.storage.direct_access() && outcome.is_ok() {
                outcome = self
                    .reporter
                    .prepare(id, &meta.map, meta.steps)
                    .and_then(|()| {
                        self.storage
                            .upload(
                                src,
                                &[],
                                &[("metadata.json".to_owned(), meta.text.clone())],
                                id,
                                &prior,
                            )
                            .map(|_| ())
                            .inspect_err(|_| self.reporter.abandon(id))
                    })
                    .map_err(|e| e.context(format!("checkpoint {id} was not stored")));
            }
            if outcome.is_ok() {
                resources.insert("metadata.json".into(), meta.text.len() as u64);
                outcome = self.reporter.report(id, &resources, &meta.map, meta.steps);
            }
        }
        let verdict = d.broadcast(json_text(status_value(&outcome)))?;
        match json_of(&verdict)?.as_str() {
            None => Ok(()),
            Some(m) if d.config().rank == 0 => Err(Error::new(
                outcome.err().map_or(Kind::Storage, |e| e.kind()),
                m.to_owned(),
            )),
            Some(m) => Err(err!(
                Storage,
                "the chief could not complete checkpoint {id}: {m}"
            )),
        }
    }

    /// Object stores, on the chief: list checkpoint `id` and check every rank's files are there;
    /// if not, remove what was stored (it has no metadata.json, so it never looked complete).
    fn verify_uploaded(&self, id: &str, owners: &BTreeMap<String, Vec<usize>>) -> Result<()> {
        // No object at all (every rank's selector kept nothing) lists as nothing, not an error:
        // the checkpoint is then metadata.json alone.
        let listed: BTreeSet<String> = match self.storage.list(id) {
            Ok(names) => names.into_iter().collect(),
            Err(e) if e.kind() == Kind::NotFound => BTreeSet::new(),
            Err(e) => return Err(e.context(format!("checking checkpoint {id}"))),
        };
        let r = verify_present(id, owners, |n| listed.contains(n));
        if r.is_err() {
            if let Err(e) = self.storage.delete(id) {
                log_warn!("could not remove the incomplete checkpoint {id}: {e}");
            }
        }
        r
    }

    /// Sharded `upload(dir, metadata, shard=true, selector)`: ranks without files pass `None`.
    pub(super) fn shard_upload(
        &self,
        dir: Option<&Path>,
        metadata: Map,
        mut selector: Option<Selector<'_>>,
    ) -> Result<String> {
        let d = &self.dist;
        let rank = d.config().rank as usize;
        let id = new_id(d);
        let uid = dir.map(folder_uid).transpose();
        // A failed asynchronous upload (only the chief has them) fails every rank alike.
        let pending = self.uploads.take_failure().err();
        let error = match (&uid, &pending) {
            (Err(e), _) | (Ok(_), Some(e)) => Some(e.message().to_owned()),
            (Ok(_), None) => None,
        };
        let mine = obj! {
            "id" => id.as_str(),
            "has_dir" => dir.is_some(),
            "has_selector" => selector.is_some(),
            "uid" => uid.as_ref().ok().cloned().flatten(),
            "error" => error,
            "storage" => self.storage.identity(),
            "metadata" => Value::Object(metadata),
        };
        let all: Vec<Value> = allgather_json(d, Value::Object(mine))?;
        // Argument checks, on every rank alike (Python raises on one rank and hangs the others),
        // in Python's order.
        let bad: Vec<usize> = (0..all.len())
            .filter(|&r| {
                all[r].get("has_selector").and_then(Value::as_bool) == Some(true)
                    && all[r].get("has_dir").and_then(Value::as_bool) != Some(true)
            })
            .collect();
        if !bad.is_empty() {
            bail!(
                InvalidArgument,
                "{} (rank(s) {bad:?} passed a selector to upload(shard=True) without a ckpt_dir)",
                super::SELECTOR_WITHOUT_DIR
            );
        }
        if !all
            .iter()
            .any(|v| v.get("has_dir").and_then(Value::as_bool) == Some(true))
        {
            bail!(InvalidArgument, "{}", super::ALL_NONE_SHARDED);
        }
        combine_errors("upload", &all)?;
        same_storage(&all)?;
        let (id, merged_meta, steps) = agreed_metadata(&all)?;
        let uids: Vec<Option<String>> = all
            .iter()
            .map(|v| v.get("uid").and_then(Value::as_str).map(str::to_owned))
            .collect();
        let want_upload = dir.is_some()
            && (selector.is_some() || uids.iter().position(|u| *u == uids[rank]) == Some(rank));

        let listing = match (want_upload, dir) {
            (true, Some(p)) => fsutil::list_resources(p).map(|mut r| {
                r.remove("metadata.json");
                if let Some(sel) = selector.as_mut() {
                    r.retain(|name, _| sel(name));
                }
                r
            }),
            _ => Ok(Resources::new()),
        };
        let root = dir.unwrap_or(Path::new("."));
        let files = self.exchange_listings(listing, root)?;

        let meta = Metadata::new(merged_meta, steps);
        let mut staged_copy: Option<Scratch> = None;
        let published = if self.storage.direct_access() {
            // Everyone copies into the shared staging folder; the chief publishes it.
            let copied = self.storage.stage(&id).and_then(|staged| {
                if want_upload {
                    copy_into(root, &files.mine, staged.path())?;
                }
                Ok(staged)
            });
            let staged = self.staged_everywhere(&format!("copying checkpoint {id}"), copied)?;
            let r = if rank == 0 {
                verify_present(&id, &files.owners, |n| staged.path().join(n).exists())
                    .and_then(|()| self.publish_with_metadata(staged.path(), &id, &meta))
            } else {
                Ok(Sums::new())
            };
            // Dropped (removed if still there) once every rank knows the outcome.
            staged_copy = Some(staged);
            r
        } else if want_upload {
            let names: Vec<String> = files.mine.into_keys().collect();
            self.storage.upload(root, &names, &[], &id, &Sums::new())
        } else {
            Ok(Sums::new())
        };
        let done = self.finish(&id, published, root, files.merged, &files.owners, &meta);
        // Every rank's copy (a node-local one included) is removed once all know the outcome.
        drop(staged_copy);
        done.map(|()| id)
    }

    /// The names of checkpoint `id` the ranks of this node want: the local chief lists them once,
    /// every local rank marks what its selector accepts, the union is downloaded.
    fn local_union(
        &self,
        id: &str,
        selector: Option<Selector<'_>>,
    ) -> Result<Option<BTreeSet<String>>> {
        let d = &self.dist;
        let has: Vec<Vec<u8>> = d
            .allgather_local(vec![selector.is_some() as u8])?
            .into_vecs();
        if !has.iter().any(|b| b.first() == Some(&1)) {
            return Ok(None);
        }
        let local_chief = d.config().local_rank == 0;
        let names = if local_chief {
            self.storage
                .list(id)
                .map_err(|e| e.context(format!("listing checkpoint {id}")))
        } else {
            Ok(Vec::new())
        };
        let msg = match &names {
            Ok(n) => Value::Array(n.iter().map(|s| Value::from(s.as_str())).collect()),
            Err(e) => Value::Object(obj! { "error" => e.message() }),
        };
        let shared = json_of(&d.broadcast_local(json_text(msg))?)?;
        if let Some(m) = shared.get("error").and_then(Value::as_str) {
            return Err(Error::new(
                names.err().map_or(Kind::Storage, |e| e.kind()),
                m.to_owned(),
            ));
        }
        let list: Vec<String> = shared
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let mut mask = vec![0u8; list.len()];
        if let Some(sel) = selector {
            for (i, n) in list.iter().enumerate() {
                mask[i] = sel(n) as u8;
            }
        } else {
            mask.iter_mut().for_each(|b| *b = 1);
        }
        let masks = d.gather_local(mask)?;
        Ok(masks
            .map(|m| {
                let vs = m.into_vecs();
                list.iter()
                    .enumerate()
                    .filter(|(i, _)| vs.iter().any(|v| v.get(*i) == Some(&1)))
                    .map(|(_, n)| n.clone())
                    .collect()
            })
            .or(Some(BTreeSet::new())))
    }

    /// `download` with LocalWorkersShareDownload: the local chief downloads once (the union of
    /// the local selectors); every local rank gets the chief's result.
    pub(super) fn shared_download(
        &self,
        id: &str,
        dir: &Path,
        selector: Option<Selector<'_>>,
    ) -> Result<()> {
        let d = &self.dist;
        let union = self.local_union(id, selector)?;
        let r = if d.config().local_rank == 0 {
            with_union(&union, |sel| self.storage.download(id, dir, sel))
        } else {
            Ok(())
        };
        let verdict = json_of(&d.broadcast_local(json_text(status_value(&r)))?)?;
        match verdict.as_str() {
            None => Ok(()),
            Some(_) if d.config().local_rank == 0 => r,
            Some(m) => Err(err!(
                Storage,
                "the local chief could not download checkpoint {id}: {m}"
            )),
        }
    }

    /// `restore_path` with LocalWorkersShareDownload on object stores: the local chief downloads
    /// once into a temporary folder that it removes only after every local rank has ended.
    ///
    /// With `fallback` (the resume point of a job of several processes; every rank calls):
    /// after each attempt every rank learns every node's outcome, and when any node found the
    /// checkpoint damaged all move on together to the next older one (the chief's list), so
    /// that every rank restores the same checkpoint.
    pub(super) fn shared_restore_begin(
        &self,
        id: &str,
        mut selector: Option<Selector<'_>>,
        fallback: Option<&super::Resume>,
    ) -> Result<RestoreScope> {
        let Some(r) = fallback else {
            let restored = self.shared_restore_once(id, selector)?;
            return Ok(self.scope(id.to_owned(), restored, true));
        };
        let d = &self.dist;
        let mut current = super::index::Entry {
            storage_id: id.to_owned(),
            ..Default::default()
        };
        let mut failed: Vec<(String, String)> = Vec::new();
        let mut first_error: Option<Error> = None;
        // The chief's candidates (older checkpoints of the run, best first).
        let mut candidates: Option<std::vec::IntoIter<super::index::Entry>> = None;
        loop {
            let cid = current.storage_id.clone();
            let attempt = self.shared_restore_once(&cid, super::reborrow(&mut selector));
            let mine = match &attempt {
                Ok(_) => Map::new(),
                Err(e) if e.kind() == Kind::Integrity => obj! { "integrity" => e.message() },
                Err(e) => obj! { "error" => e.message() },
            };
            let all = allgather_json(d, Value::Object(mine))?;
            let find = |key: &str| {
                all.iter().enumerate().find_map(|(r, v)| {
                    v.get(key)
                        .and_then(Value::as_str)
                        .map(|m| (r, m.to_owned()))
                })
            };
            let (error, damaged) = (find("error"), find("integrity"));
            if error.is_none() && damaged.is_none() {
                let restored = attempt?;
                if !failed.is_empty() {
                    self.fell_back(r, &failed, &current);
                }
                return Ok(self.scope(cid, restored, true));
            }
            // From here this attempt is abandoned everywhere: dropping it removes the local
            // chief's download (every local rank is past it).
            if let Some((rank, m)) = error {
                return Err(match attempt {
                    Err(e) if e.kind() != Kind::Integrity => e,
                    _ => err!(
                        Storage,
                        "rank {rank} could not restore checkpoint {cid}: {m}"
                    ),
                });
            }
            let (rank, m) = damaged.expect("a damaged checkpoint");
            let e = match attempt {
                Err(e) => e,
                Ok(_) => Error::new(Kind::Integrity, format!("rank {rank}: {m}")),
            };
            failed.push((cid, e.message().to_owned()));
            first_error.get_or_insert(e);
            // The chief picks the next older checkpoint the run could resume from (checked as
            // the resume point was chosen); every rank takes the same.
            let mine = if d.config().rank == 0 {
                let it = candidates.get_or_insert_with(|| {
                    r.index
                        .before_in_resume_order(id)
                        .unwrap_or_else(|e| {
                            log_warn!("resume: cannot read the run index: {e}");
                            Vec::new()
                        })
                        .into_iter()
                });
                json_text(match Self::next_resumable(r, it) {
                    Some(e) => Value::Object(obj! {
                        "id" => e.storage_id.as_str(),
                        "steps_completed" => e.steps_completed,
                    }),
                    None => Value::Null,
                })
            } else {
                Vec::new()
            };
            let next = json_of(&d.broadcast(mine)?)?;
            match next.get("id").and_then(Value::as_str) {
                Some(next_id) => {
                    current = super::index::Entry {
                        storage_id: next_id.to_owned(),
                        steps_completed: next.get("steps_completed").and_then(Value::as_i64),
                        ..Default::default()
                    }
                }
                None => {
                    return Err(super::no_fallback(
                        first_error.as_ref().expect("a first error"),
                        failed.len(),
                    ))
                }
            }
        }
    }

    /// One shared restore of `id`: the local chief restores (a download on object stores, a
    /// check in place on folders), every local rank gets its folder or its error.
    fn shared_restore_once(&self, id: &str, selector: Option<Selector<'_>>) -> Result<Restored> {
        let d = &self.dist;
        let union = self.local_union(id, selector)?;
        // The local chief's result; the others get its path or its error.
        let mine = (d.config().local_rank == 0)
            .then(|| with_union(&union, |sel| self.storage.restore(id, sel)));
        let msg = match &mine {
            Some(Ok(x)) => obj! { "path" => x.path.to_string_lossy().into_owned() },
            Some(Err(e)) => obj! {
                "error" => e.message(),
                "integrity" => e.kind() == Kind::Integrity,
            },
            None => Map::new(), // not sent: workers receive the local chief's
        };
        let v = json_of(&d.broadcast_local(json_text(Value::Object(msg)))?)?;
        match mine {
            Some(r) => r,
            None => {
                if let Some(m) = v.get("error").and_then(Value::as_str) {
                    let kind = if v.get("integrity").and_then(Value::as_bool) == Some(true) {
                        Kind::Integrity
                    } else {
                        Kind::Storage
                    };
                    return Err(Error::new(
                        kind,
                        format!("the local chief could not restore checkpoint {id}: {m}"),
                    ));
                }
                let p = v.get("path").and_then(Value::as_str).unwrap_or_default();
                // Only the local chief removes a temporary download.
                Ok(Restored {
                    path: p.into(),
                    scratch: None,
                })
            }
        }
    }

    /// End of a shared restore: wait for every local rank, then the local chief cleans up.
    pub(super) fn shared_restore_end(&self, scope: RestoreScope) -> Result<()> {
        self.dist.gather_local(Vec::new())?;
        match scope.restored.scratch {
            Some(s) => s.remove(),
            None => Ok(()),
        }
    }
}

/// Sums as JSON, `[[name, size, crc32c], ...]` (a list: a rank may send many files).
fn sums_value(sums: &Sums) -> Value {
    Value::Array(
        sums.iter()
            .map(|(name, s)| {
                Value::Array(vec![
                    Value::from(name.as_str()),
                    Value::from(s.size),
                    Value::from(s.crc32c as u64),
                ])
            })
            .collect(),
    )
}

/// The sums every rank sent, merged, checked against the merged listing `resources`: with
/// checksums each listed file was stored by exactly one rank with the size it was listed with
/// (a file that changed between listing and storing would otherwise get a manifest that lies).
fn merged_sums(id: &str, all: &[Value], resources: &Resources, checksums: bool) -> Result<Sums> {
    let mut merged = Sums::new();
    let mut by = BTreeMap::new();
    for (rank, v) in all.iter().enumerate() {
        for e in v
            .get("sums")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let parts = e.as_array().map(Vec::as_slice).unwrap_or(&[]);
            let (Some(name), Some(size), Some(crc)) = (
                parts.first().and_then(Value::as_str),
                parts.get(1).and_then(Value::as_i64),
                parts.get(2).and_then(Value::as_i64),
            ) else {
                bail!(Distributed, "rank {rank} sent a malformed file checksum");
            };
            merged.insert(
                name.to_owned(),
                FileSum {
                    size: size as u64,
                    crc32c: crc as u32,
                },
            );
            by.insert(name.to_owned(), rank);
        }
    }
    if !checksums {
        return Ok(merged);
    }
    for (name, listed) in resources {
        if name.ends_with('/') || name == "metadata.json" {
            continue;
        }
        match merged.get(name) {
            Some(s) if s.size == *listed => {}
            Some(s) => bail!(
                Integrity,
                "sharded checkpoint {id}: rank {} listed file {name:?} with {listed} bytes but stored {} (it changed while it was being stored)",
                by[name],
                s.size
            ),
            None => bail!(
                Integrity,
                "sharded checkpoint {id}: file {name:?} is listed but no rank stored it"
            ),
        }
    }
    Ok(merged)
}

/// This rank's share of the files and the merged listing.
struct SharedFiles {
    merged: Resources,
    /// This rank's share, as it listed it.
    mine: Resources,
    /// Every listed name and the ranks that listed it.
    owners: BTreeMap<String, Vec<usize>>,
}

fn copy_into(src: &Path, names: &Resources, dst: &Path) -> Result<()> {
    for name in names.keys() {
        let to = fsutil::safe_join(dst, name)?;
        if name.ends_with('/') {
            std::fs::create_dir_all(&to).map_err(|e| Error::io("cannot create folder", &to, e))?;
        } else {
            if let Some(p) = to.parent() {
                std::fs::create_dir_all(p).map_err(|e| Error::io("cannot create folder", p, e))?;
            }
            fsutil::copy_file(&fsutil::safe_join(src, name)?, &to)?;
        }
    }
    Ok(())
}
