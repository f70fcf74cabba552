"""Content manifests: what was backed up (path, size, mode, SHA-256), recorded at backup time.

Drills verify restored data against the manifest rather than against the live source, which
drifts. A hash cache keyed on (size, mtime, ctime, inode) spares re-reading unchanged files,
the same change test restic itself uses. A cancel (SIGTERM) stops the walk and the hashing between two
chunks of a file (execute.Interrupted), not when the whole tree is read.
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

from backupd.files.excludes import is_excluded
from backupd.process import execute

MANIFEST_NAME = "backupd-manifest.json"
#: Companion snapshots listing files that changed while a backup read them (staged in <target>.amend).
AMEND_TAG = "backupd-manifest-amend"
AMEND_SUFFIX = ".amend"
FORMAT = 1
HASH_CHUNK = 1 << 20  # a cancel is seen between two chunks: milliseconds


@dataclass
class Entry:
    """One file or symlink of a backup."""

    path: str
    size: int
    mode: str
    sha256: str
    mtime_ns: int
    type: str = "file"


def sha256_file(path: str, cancel=None) -> str:
    """Hex SHA-256 of a file's content; execute.Interrupted once `cancel` is set (default: this thread's)."""
    cancel = cancel or execute.current_cancel()
    digest, buf = hashlib.sha256(), bytearray(HASH_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as handle:
        while size := handle.readinto(buf):
            if cancel is not None and cancel.is_set():
                raise execute.Interrupted(f"hashing {path}: cancelled")
            digest.update(view[:size])
    return digest.hexdigest()


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
        if self.new == self.old:
            return  # an unchanged tree: nothing to rewrite
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.new))
        os.replace(tmp, self.path)


def walk(paths: list[str], excludes: list[str]):
    """Yield (path, lstat) of regular files and symlinks below paths, honouring excludes: per directory its
    non-directories by name, then its subdirectories by name (symlinks are never followed; an unreadable
    directory or entry is left out, restic reports it)."""
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
        yield from _walk_dir(root, excluded)


def _walk_dir(top: str, excluded):
    """walk() below one directory, depth first without recursion (a source tree may nest deeper than Python's
    stack); scandir's entries carry their lstat, one system call each."""
    pending = [top]
    while pending:
        try:
            with os.scandir(pending.pop()) as listing:
                found = sorted(listing, key=lambda e: e.name)
        except OSError:
            continue
        subdirs = []
        for entry in found:
            if excluded(entry.path):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                subdirs.append(entry.path)
            else:
                yield entry.path, st
        pending.extend(reversed(subdirs))


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


def _hashed_entry(path: str, st: os.stat_result, cache: HashCache, cancel=None) -> Entry | None:
    """The entry of a regular file, read and hashed now (None when it cannot be read)."""
    try:
        digest = sha256_file(path, cancel)
    except OSError:
        return None
    cache.store(path, st, digest)
    return Entry(path, st.st_size, oct(stat.S_IMODE(st.st_mode)), digest, st.st_mtime_ns)


def build(paths: list[str], excludes: list[str], cache: HashCache, workers: int = 2) -> list[Entry]:
    """Manifest entries for everything restic will back up below paths; execute.Interrupted when this
    thread's cancel (execute.cancelled_by) is set meanwhile.

    Only files the hash cache cannot vouch for go to the thread pool (hashing releases the GIL);
    cache hits stay inline, since a pool task per unchanged file costs more than the lookup.
    """
    cancel = execute.current_cancel()
    items = []
    for item in walk(paths, excludes):
        if cancel is not None and cancel.is_set():
            raise execute.Interrupted("manifest: walking the sources cancelled")
        items.append(item)
    entries = [_known_entry(path, st, cache) for path, st in items]
    todo = [i for i, e in enumerate(entries) if e is None and stat.S_ISREG(items[i][1].st_mode)]
    if todo:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_hashed_entry, *items[i], cache, cancel) for i in todo]
            execute.wait_all(pool, futures, cancel, "manifest: hashing the sources")
            for i, future in zip(todo, futures):
                entries[i] = future.result()
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
#: Largest count or size: what restic, PostgreSQL's bigint and SQLite hold.
MAX_INT = 2**63 - 1
MAX_PATH = 4096   # PATH_MAX
MAX_TABLE = 127   # schema.table: two PostgreSQL identifiers of at most 63 bytes (NAMEDATALEN - 1)
MAX_FLAG = 8192  # a flag may name an append-only file (a path) and what changed in it
#: A NUL, or a surrogate no file name can hold (surrogateescape only yields U+DC80..U+DCFF).
_PATH_BAD = re.compile("[\0\ud800-\udc7f\udd00-\udfff]")
#: A table name: no control character (C0, DEL, C1), no surrogate (psql's argv is UTF-8).
_TABLE = re.compile("[^\x00-\x1f\x7f-\x9f\ud800-\udfff]+")
_MODE = re.compile(r"(?:0o[0-7]{1,7}|[0-7]{0,7})")  # oct() of the permission bits; "" for stdin


def problem(doc) -> str | None:
    """Why a manifest read back from storage cannot be used, or None. What the repository returns is
    attacker input (a planted snapshot brings its own manifest): every field the drill, the restore and
    the probes use must have the type, length and characters backup writes, so no consumer can raise on
    it. Hand-written rather than a pydantic model: a manifest lists up to 100k files and these checks
    cost about a microsecond each."""
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


def whole(value) -> bool:
    """A JSON whole number from 0 to MAX_INT (not a bool, not a float)."""
    return type(value) is int and 0 <= value <= MAX_INT


def is_path(value) -> bool:
    """An absolute path without '..', NUL or unencodable characters, at most MAX_PATH characters."""
    return (isinstance(value, str) and value[:1] == "/" and len(value) <= MAX_PATH
            and not _PATH_BAD.search(value) and ("/.." not in value or ".." not in value.split("/")))


def is_table(name) -> bool:
    """A row-count key: `schema.table` (or a bare table), each part non-empty, no control characters."""
    return (isinstance(name, str) and _TABLE.fullmatch(name) is not None and len(name.encode()) <= MAX_TABLE
            and all(name.split(".", 1)))


def _entry_problem(e) -> str | None:
    if not isinstance(e, dict):
        return "not an object"
    path, size = e.get("path"), e.get("size")
    if not is_path(path):
        return f"path {repr(path)[:80]} is not an absolute path without '..' (at most {MAX_PATH} characters)"
    if e.get("type") not in TYPES:
        return f"{path}: type {repr(e.get('type'))[:20]} is none of {', '.join(TYPES)}"
    if type(size) is not int or not 0 <= size <= MAX_INT:  # whole(), inline: once per file
        return f"{path}: size is not a whole number of bytes (0 to 2**63-1)"
    if not isinstance(e.get("sha256"), str) or not _DIGEST.fullmatch(e["sha256"]):
        return f"{path}: sha256 is not 64 hex digits"
    if not isinstance(e.get("mode"), str) or not _MODE.fullmatch(e["mode"]):
        return f"{path}: mode is not an octal permission string"
    if "mtime_ns" in e and type(e["mtime_ns"]) is not int:
        return f"{path}: mtime_ns is not a whole number"
    return None


def _facts_problem(facts: dict) -> str | None:
    return (_rows_problem(facts.get("rows", {})) or _sizes_problem(facts) or _change_problem(facts.get("change"))
            or _path_list_problem("facts.changed_during_backup", facts.get("changed_during_backup", []))
            or _heads_problem(facts.get("heads", {})))


def _rows_problem(rows) -> str | None:
    if not isinstance(rows, dict):
        return "facts.rows is not a table of row counts"
    for name, count in rows.items():
        if not is_table(name):
            return (f"facts.rows: table name {repr(name)[:80]} is not a schema.table name of at most "
                    f"{MAX_TABLE} bytes without control characters")
        if not whole(count):
            return f"facts.rows[{repr(name)[:80]}]: {repr(count)[:20]} is not a row count (0 to 2**63-1)"
    return None


def _sizes_problem(facts: dict) -> str | None:
    for key in ("files", "bytes"):
        if key in facts and not whole(facts[key]):
            return f"facts.{key} is not a whole number (0 to 2**63-1)"
    return None


def _change_problem(change) -> str | None:
    """The change judgement a drill reports (`flags` of a suspect snapshot)."""
    if change is None:
        return None
    if not isinstance(change, dict):
        return "facts.change is not an object"
    flags = change.get("flags", [])
    if not isinstance(flags, list) or any(not isinstance(f, str) or len(f) > MAX_FLAG for f in flags):
        return f"facts.change.flags is not a list of texts of at most {MAX_FLAG} characters"
    return None


def _heads_problem(heads) -> str | None:
    """facts.heads: {path: SHA-256 of its first bytes} of an append-only target (logs probe)."""
    if not isinstance(heads, dict):
        return "facts.heads is not an object"
    for path, digest in heads.items():
        if not is_path(path) or not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            return f"facts.heads[{repr(path)[:80]}]: not a path with a SHA-256"
    return None


def _path_list_problem(field: str, value) -> str | None:
    if not isinstance(value, list):
        return f"{field} is not a list of paths"
    for i, path in enumerate(value):
        if not is_path(path):
            return f"{field}[{i}]: {repr(path)[:80]} is not an absolute path without '..'"
    return None


def amendment_problem(doc) -> str | None:
    """Why an amendment (the files that changed while a backup read them) read back from storage cannot
    be used, or None."""
    if not isinstance(doc, dict):
        return "not a JSON object"
    return _path_list_problem("changed_during_backup", doc.get("changed_during_backup", []))


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
