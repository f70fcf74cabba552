"""Content manifests: what was backed up (path, size, mode, SHA-256), recorded at backup time.

Drills verify restored data against the manifest rather than against the live source, which
drifts. A hash cache keyed on (size, mtime, ctime, inode) spares re-reading unchanged files,
the same change test restic itself uses.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path

from backupd.excludes import is_excluded

MANIFEST_NAME = "backupd-manifest.json"
#: Companion snapshots listing files that changed while a backup read them (staged in <target>.amend).
AMEND_TAG = "backupd-manifest-amend"
AMEND_SUFFIX = ".amend"
FORMAT = 1


@dataclass
class Entry:
    """One file or symlink of a backup."""

    path: str
    size: int
    mode: str
    sha256: str
    mtime_ns: int
    type: str = "file"


def sha256_file(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


class HashCache:
    """Remembers file hashes between runs; a changed stat signature means re-hashing."""

    def __init__(self, path: Path):
        self.path = path
        self.old: dict[str, list] = {}
        self.new: dict[str, list] = {}
        try:
            self.old = json.loads(path.read_text())
        except (OSError, ValueError):
            self.old = {}

    @staticmethod
    def signature(st: os.stat_result) -> list:
        return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]

    def lookup(self, path: str, st: os.stat_result) -> str | None:
        hit = self.old.get(path)
        if hit and hit[:4] == self.signature(st):
            return hit[4]
        return None

    def store(self, path: str, st: os.stat_result, digest: str) -> None:
        self.new[path] = self.signature(st) + [digest]

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.new))
        os.replace(tmp, self.path)


def walk(paths: list[str], excludes: list[str]):
    """Yield (path, lstat) of regular files and symlinks below paths, honouring excludes."""
    def excluded(path: str) -> bool:
        return bool(excludes) and is_excluded(path, excludes)  # no patterns: skip the per-path split

    for root in paths:
        try:
            st = os.lstat(root)
        except OSError:
            continue  # restic reports unreadable sources; the manifest lists what exists
        if not stat.S_ISDIR(st.st_mode):
            if not excluded(root):
                yield root, st
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not excluded(os.path.join(dirpath, d)))
            for name in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
                full = os.path.join(dirpath, name)
                if excluded(full):
                    continue
                try:
                    yield full, os.lstat(full)
                except OSError:
                    continue


def _known_entry(path: str, st: os.stat_result, cache: HashCache) -> Entry | None:
    """The entry when it needs no read: a symlink, or a file the hash cache still vouches for."""
    mode = oct(stat.S_IMODE(st.st_mode))
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(path)
        digest = hashlib.sha256(target.encode()).hexdigest()
        return Entry(path, len(target), mode, digest, st.st_mtime_ns, "symlink")
    digest = cache.lookup(path, st) if stat.S_ISREG(st.st_mode) else None
    if digest is None:
        return None
    cache.store(path, st, digest)
    return Entry(path, st.st_size, mode, digest, st.st_mtime_ns)


def _hashed_entry(path: str, st: os.stat_result, cache: HashCache) -> Entry | None:
    """The entry of a regular file, read and hashed now (None when it cannot be read)."""
    try:
        digest = sha256_file(path)
    except OSError:
        return None
    cache.store(path, st, digest)
    return Entry(path, st.st_size, oct(stat.S_IMODE(st.st_mode)), digest, st.st_mtime_ns)


def build(paths: list[str], excludes: list[str], cache: HashCache, workers: int = 2) -> list[Entry]:
    """Manifest entries for everything restic will back up below paths.

    Only files the hash cache cannot vouch for go to the thread pool (hashing releases the GIL);
    cache hits stay inline, since a pool task per unchanged file costs more than the lookup.
    """
    items = list(walk(paths, excludes))
    entries = [_known_entry(path, st, cache) for path, st in items]
    todo = [i for i, e in enumerate(entries) if e is None and stat.S_ISREG(items[i][1].st_mode)]
    if todo:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for i, entry in zip(todo, pool.map(lambda i: _hashed_entry(*items[i], cache), todo)):
                entries[i] = entry
    return [e for e in entries if e is not None]


def changed_since(entries: list[Entry]) -> list[str]:
    """Paths whose size or mtime changed after they were hashed (written during the backup)."""
    moved = []
    for e in entries:
        try:
            st = os.lstat(e.path)
        except OSError:
            moved.append(e.path)
            continue
        if e.type == "file" and (st.st_size != e.size or st.st_mtime_ns != e.mtime_ns):
            moved.append(e.path)
    return moved


_FIELDS = tuple(f.name for f in fields(Entry))


def document(target: str, host: str, entries: list[Entry], facts: dict, **extra) -> dict:
    """The manifest document stored in the repository beside (or inside) the snapshot."""
    return {"format": FORMAT, "target": target, "host": host, "facts": facts,
            "files": [{name: getattr(e, name) for name in _FIELDS} for e in entries], **extra}


_DIGEST = re.compile(r"[0-9a-f]{64}")
TYPES = ("file", "stdin", "symlink")


def problem(doc) -> str | None:
    """Why a manifest read back from storage cannot be used, or None. What the repository returns is
    attacker input (a planted snapshot brings its own manifest): every field the drill, the restore and
    the probes use must have the shape backup wrote."""
    if not isinstance(doc, dict):
        return "not a JSON object"
    files = doc.get("files", [])
    if not isinstance(files, list):
        return "'files' is not a list"
    for i, entry in enumerate(files):
        why = _entry_problem(entry)
        if why:
            return f"files[{i}]: {why}"
    facts = doc.get("facts", {})
    return _facts_problem(facts) if isinstance(facts, dict) else "'facts' is not an object"


def _entry_problem(e) -> str | None:
    if not isinstance(e, dict):
        return "not an object"
    path = e.get("path")
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path or ".." in path.split("/"):
        return f"path {repr(path)[:80]} is not an absolute path without '..'"
    if e.get("type", "file") not in TYPES:
        return f"{path}: type {str(e.get('type'))[:20]!r} is none of {', '.join(TYPES)}"
    if type(e.get("size")) is not int or e["size"] < 0:
        return f"{path}: size is not a whole number of bytes"
    if not isinstance(e.get("sha256"), str) or not _DIGEST.fullmatch(e["sha256"]):
        return f"{path}: sha256 is not 64 hex digits"
    if not isinstance(e.get("mode", ""), str):
        return f"{path}: mode is not a string"
    return None


def _facts_problem(facts: dict) -> str | None:
    rows = facts.get("rows", {})
    if not isinstance(rows, dict) or any(not isinstance(k, str) or type(v) is not int for k, v in rows.items()):
        return "facts.rows is not a table of row counts"
    for key in ("files", "bytes"):
        if key in facts and (type(facts[key]) is not int or facts[key] < 0):
            return f"facts.{key} is not a whole number"
    if not is_path_list(facts.get("changed_during_backup", [])):
        return "facts.changed_during_backup is not a list of paths"
    return None


def is_path_list(value) -> bool:
    """A JSON list of strings (paths)."""
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def write(doc: dict, staging_dir: Path) -> Path:
    """Write the manifest into staging_dir (replacing any older one); returns its path.

    A byte-identical manifest is left untouched: restic then sees an unchanged file (same inode,
    mtime, ctime) and an unchanged-source re-run stores no new blob, tree or index for it.
    """
    staging_dir.mkdir(parents=True, exist_ok=True)
    path = staging_dir / MANIFEST_NAME
    data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    try:
        if path.read_bytes() == data:
            return path
    except OSError:
        pass  # no usable older manifest: write it
    tmp = staging_dir / (MANIFEST_NAME + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path
