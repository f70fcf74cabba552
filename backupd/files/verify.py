"""Verify restored files against the manifest recorded at backup time."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from backupd.files.manifest import sha256_file
from backupd.process import execute


@dataclass
class Verification:
    """Counts and the paths that failed; `ok` when nothing is missing or different."""

    verified: int = 0
    bytes: int = 0
    mismatched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatched and not self.missing

    def to_dict(self) -> dict:
        return {"ok": self.ok, "verified": self.verified, "bytes": self.bytes,
                "mismatched": self.mismatched, "missing": self.missing, "skipped": self.skipped}


class Beneath:
    """Whether a path's directory lies in the restored tree, reached without a symlink (cached per
    directory). The tree is untrusted: a planted directory link (srv -> /srv) or a `..` in the manifest
    would have the live host's files verified in place of the snapshot's."""

    def __init__(self, root: str):
        self.root, self.real = root, os.path.realpath(root)
        self._dirs: dict[str, bool] = {}

    def __call__(self, local: str) -> bool:
        parent = os.path.dirname(local)
        hit = self._dirs.get(parent)
        if hit is None:
            lexical = os.path.normpath(os.path.join(self.real, os.path.relpath(parent, self.root)))
            inside = lexical == self.real or lexical.startswith(self.real + os.sep)
            hit = self._dirs[parent] = inside and os.path.realpath(parent) == lexical
        return hit


def _check(root: str, entry: dict, volatile: set[str], beneath: Beneath,
           hashed: frozenset = frozenset(), cancel=None) -> tuple[str, str]:
    """('ok'|'mismatch'|'missing'|'skipped', path) for one manifest entry; the content of the paths in
    `hashed` already matched (EarlyHasher), only their type, size and mode are checked."""
    path = entry["path"]
    if path in volatile:
        return "skipped", path
    local = os.path.join(root, path.lstrip("/"))  # a str: a Path per file costs more than its lstat
    if not beneath(local):
        return "mismatch", path
    try:
        st = os.lstat(local)
    except OSError:
        return "missing", path
    if entry["type"] == "symlink":
        same = stat.S_ISLNK(st.st_mode) and \
            hashlib.sha256(os.readlink(local).encode()).hexdigest() == entry["sha256"]
        return ("ok" if same else "mismatch"), path
    if not stat.S_ISREG(st.st_mode) or st.st_size != entry["size"]:
        return "mismatch", path
    if entry["type"] == "file" and oct(stat.S_IMODE(st.st_mode)) != entry["mode"]:
        return "mismatch", path
    if path in hashed:
        return "ok", path
    return ("ok" if sha256_file(local, cancel) == entry["sha256"] else "mismatch"), path


def verify_tree(root: Path, manifest_doc: dict, workers: int = 2, hashed=frozenset(), cancel=None) -> Verification:
    """Check every manifest entry under root (hash, size, mode). Files that changed while they
    were backed up are skipped, since their recorded hash may not be what restic stored. Paths in
    `hashed` had their content verified while the restore ran (EarlyHasher). execute.Interrupted once
    `cancel` (default: this thread's) is set: between two chunks of a file, not after the whole tree."""
    cancel = cancel or execute.current_cancel()
    volatile = set(manifest_doc.get("facts", {}).get("changed_during_backup", []))
    entries = manifest_doc.get("files", [])
    result, root, hashed = Verification(), str(root), frozenset(hashed)
    beneath = Beneath(root)
    to_read = [e for e in entries if e["path"] not in hashed and e.get("type") != "symlink"]
    with ThreadPoolExecutor(max_workers=workers) as pool:  # only reading content is worth a thread
        futures = [pool.submit(_check, root, e, volatile, beneath, cancel=cancel) for e in to_read]
        execute.wait_all(pool, futures, cancel, "verifying the restored files")
        read = dict(zip((e["path"] for e in to_read), (f.result() for f in futures)))
    outcomes = [read.get(e["path"]) or _check(root, e, volatile, beneath, hashed) for e in entries]
    for (kind, path), entry in zip(outcomes, entries):
        if kind == "ok":
            result.verified += 1
            result.bytes += entry["size"]
        else:
            {"mismatch": result.mismatched, "missing": result.missing, "skipped": result.skipped}[kind].append(path)
    return result


BLOCK = 4096
MARGIN = 2 << 20  # never hash the last 2 MiB before a hole: its page may hold a blob's first half
CHUNK = 1 << 20


def _first_hole(fd: int, start: int, size: int) -> int:
    """Where the written data from `start` ends: restic preallocates a file and fills it blob by blob, and
    the unwritten extents read as holes (ext4, xfs); `size` when the file system has no such holes."""
    try:
        return min(os.lseek(fd, start, os.SEEK_HOLE), size)
    except OSError:  # ENXIO at the end, EINVAL without SEEK_HOLE
        return size


def _feed(fd: int, hasher, start: int, end: int) -> None:
    while start < end:
        data = os.pread(fd, min(CHUNK, end - start), start)
        if not data:
            raise OSError("the file shrank")
        hasher.update(data)
        start += len(data)


def _restored(local: str, size: int) -> bool:
    """A regular file of the manifest's size is there (restic preallocates: it may still be filling)."""
    try:
        st = os.lstat(local)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size == size


@dataclass
class _Progress:
    """One file's content hashed so far: `done` bytes into `hasher`; `tried` the mtime of the last miss."""

    hasher: object = field(default_factory=hashlib.sha256)
    done: int = 0
    tried: int | None = None


class EarlyHasher:
    """Verifies content while the restore still runs, so a full drill costs little more than the restore.

    restic reports no per-file completion, but it preallocates each file and fills it blob by blob, so a
    background scan hashes every file's written prefix as it grows (up to the first hole, less a margin)
    and, once no hole is left, finishes a copy of that hash with the rest and compares it with the
    manifest. A match is final: restic only writes the snapshot's blobs, each checked against its id, so
    bytes that equal the backup-time hash are the file's. A miss (the last blob was still being written) is
    retried when the file changes; on a file system that shows no holes a file is only tried once nobody
    wrote to it for `settle` seconds. When the restore ended normally the hasher
    finishes every file from where it got (`__exit__`); what did not match is left to verify_tree.
    `with EarlyHasher(root, doc): restore()`, then verify_tree(..., hashed=early.matched), which only
    stats those files.
    """

    def __init__(self, root: Path, manifest_doc: dict, workers: int = 2, settle: float = 0.5):
        volatile = set(manifest_doc.get("facts", {}).get("changed_during_backup", []))
        self.root, self.workers, self.settle = Path(root), workers, settle
        self.pending = {e["path"]: e for e in manifest_doc.get("files", [])
                        if e.get("type") in ("file", "stdin") and e["path"] not in volatile and e["size"] > 0}
        self.matched: set[str] = set()
        self._local = {p: os.path.join(self.root, p.lstrip("/")) for p in self.pending}
        self._progress: dict[str, _Progress] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._finish = False
        self._holes = False  # this file system shows restic's unwritten extents as holes

    def __enter__(self) -> EarlyHasher:
        self._thread = threading.Thread(target=self._run, name="early-verify", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self._finish = exc_type is None  # the restore is complete: finish every file from where it got
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _advance(self, path: str, now: float, final: bool = False) -> None:
        """Hash what restic wrote since the last round; compare once the file has no hole left."""
        entry, prog = self.pending[path], self._progress.setdefault(path, _Progress())
        try:
            fd = os.open(self._local[path], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return
        try:
            st = os.fstat(fd)
            size = entry["size"]
            if not stat.S_ISREG(st.st_mode) or st.st_size != size:
                return
            hole = _first_hole(fd, prog.done, size)
            if hole < size and not final:
                self._holes = True
                safe = (hole - MARGIN) // BLOCK * BLOCK
                if safe > prog.done:
                    _feed(fd, prog.hasher, prog.done, safe)
                    prog.done = safe
                return
            if not final and (st.st_mtime_ns == prog.tried or
                              (not self._holes and size > MARGIN and now - st.st_mtime < self.settle)):
                return
            whole = prog.hasher.copy()
            _feed(fd, whole, prog.done, size)
            if whole.hexdigest() == entry["sha256"]:
                self.matched.add(path)
            else:
                prog.tried = st.st_mtime_ns
        except OSError:
            pass
        finally:
            os.close(fd)

    def _round(self, pool, final: bool = False) -> float:
        """One pass over the files not matched yet; returns the seconds its scan took (the stats)."""
        t0 = time.time()
        todo = [p for p, local in self._local.items() if p not in self.matched and
                _restored(local, self.pending[p]["size"])]
        scan = time.time() - t0
        list(pool.map(lambda p: self._advance(p, t0, final), todo))
        return scan

    def _run(self) -> None:
        pause = self.settle / 2
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            while not self._stop.wait(pause):
                # scanning a large tree costs CPU the restore needs: scan at most a quarter of the time
                pause = min(max(self.settle / 2, 3 * self._round(pool)), 5.0)
            if self._finish:
                self._round(pool, final=True)
