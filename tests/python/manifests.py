"""detcore's checkpoint manifest (`.detcore-manifest.json`, beside metadata.json), checked here
independently of detcore: sizes from the files, CRC32C from google-crc32c (Google's C
implementation, a dependency of google-cloud-storage)."""
from __future__ import annotations

import json
import pathlib

import google_crc32c

MANIFEST = ".detcore-manifest.json"


def crc32c_hex(data: bytes) -> str:
    return f"{google_crc32c.value(data):08x}"


def parse(data: bytes) -> dict:
    """The manifest as {"storage_id": ..., "files": {path: (size, crc32c hex)}}."""
    m = json.loads(data)
    assert m["format"] == 1 and m["checksum"] == "crc32c", m
    return {"storage_id": m["storage_id"], "files": {f["path"]: (f["size"], f["crc32c"]) for f in m["files"]}}


def check_tree(files: dict, sid: str | None) -> None:
    """`files`: relative name -> bytes (folders -> None), as the tests' `files_of` gives, with the
    manifest among them: it must name `sid` (unless None) and list exactly the other files, each
    with its size and CRC32C."""
    m = parse(files[MANIFEST])
    assert sid is None or m["storage_id"] == sid, m
    want = {k: (len(v), crc32c_hex(v)) for k, v in files.items() if v is not None and k != MANIFEST}
    assert m["files"] == want


def check_folder(root: pathlib.Path, sid: str) -> None:
    """check_tree over a checkpoint folder."""
    files = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        files[rel] = None if p.is_dir() else p.read_bytes()
    check_tree(files, sid)
