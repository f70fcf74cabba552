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

from backupd.manifest import sha256_file


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


def _check(root: Path, entry: dict, volatile: set[str], hashed: frozenset = frozenset()) -> tuple[str, str]:
    """('ok'|'mismatch'|'missing'|'skipped', path) for one manifest entry; the content of the paths in
    `hashed` already matched (EarlyHasher), only their type, size and mode are checked."""
    path = entry["path"]
    if path in volatile:
        return "skipped", path
    local = root / path.lstrip("/")
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
    return ("ok" if sha256_file(str(local)) == entry["sha256"] else "mismatch"), path


def verify_tree(root: Path, manifest_doc: dict, workers: int = 2, hashed=frozenset()) -> Verification:
    """Check every manifest entry under root (hash, size, mode). Files that changed while they
    were backed up are skipped, since their recorded hash may not be what restic stored. Paths in
    `hashed` had their content verified while the restore ran (EarlyHasher)."""
    volatile = set(manifest_doc.get("facts", {}).get("changed_during_backup", []))
    entries = manifest_doc.get("files", [])
    result = Verification()
    hashed = frozenset(hashed)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(pool.map(lambda e: _check(root, e, volatile, hashed), entries))
    for (kind, path), entry in zip(outcomes, entries):
        if kind == "ok":
            result.verified += 1
            result.bytes += entry["size"]
        else:
            {"mismatch": result.mismatched, "missing": result.missing, "skipped": result.skipped}[kind].append(path)
    return result


class EarlyHasher:
    """Verifies content while the restore still runs, so a full drill costs little more than the restore.

    restic (0.14 on) reports no per-file completion, so a background scan takes a restored file whose size
    already equals the manifest's and that nobody wrote to for `settle` seconds, and hashes it (a pool of
    `workers`). A match is final: restic only writes the snapshot's blobs, each checked against its id, so
    bytes that equal the backup-time hash are the file's. A miss (the file was still being written) is
    retried when it changes and is left to verify_tree. `with EarlyHasher(root, doc): restore()`, then
    verify_tree(..., hashed=early.matched), which only stats those files.
    """

    def __init__(self, root: Path, manifest_doc: dict, workers: int = 2, settle: float = 0.5):
        volatile = set(manifest_doc.get("facts", {}).get("changed_during_backup", []))
        self.root, self.workers, self.settle = Path(root), workers, settle
        self.pending = {e["path"]: e for e in manifest_doc.get("files", [])
                        if e.get("type") in ("file", "stdin") and e["path"] not in volatile and e["size"] > 0}
        self.matched: set[str] = set()
        self._tried: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> EarlyHasher:
        self._thread = threading.Thread(target=self._run, name="early-verify", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _ready(self, path: str, entry: dict, now: float) -> bool:
        try:
            st = os.lstat(self.root / path.lstrip("/"))
        except OSError:
            return False
        if not stat.S_ISREG(st.st_mode) or st.st_size != entry["size"] or self._tried.get(path) == st.st_mtime_ns:
            return False
        if now - st.st_mtime < self.settle:
            return False
        self._tried[path] = st.st_mtime_ns
        return True

    def _hash(self, path: str) -> None:
        if self._stop.is_set():  # the restore ended: verify_tree takes the rest
            return
        try:
            if sha256_file(str(self.root / path.lstrip("/"))) == self.pending[path]["sha256"]:
                self.matched.add(path)
        except OSError:
            pass

    def _run(self) -> None:
        pause = self.settle / 2
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            while not self._stop.wait(pause):
                now = time.time()
                ready = [p for p, e in self.pending.items() if p not in self.matched and self._ready(p, e, now)]
                # a scan of a large tree costs CPU the restore needs: scan at most a quarter of the time
                pause = max(self.settle / 2, 3 * (time.time() - now))
                list(pool.map(self._hash, ready))  # the round ends before the next scan
