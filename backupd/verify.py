"""Verify restored files against the manifest recorded at backup time."""

from __future__ import annotations

import hashlib
import os
import stat
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


def _check(root: Path, entry: dict, volatile: set[str]) -> tuple[str, str]:
    """('ok'|'mismatch'|'missing'|'skipped', path) for one manifest entry."""
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
    return ("ok" if sha256_file(str(local)) == entry["sha256"] else "mismatch"), path


def verify_tree(root: Path, manifest_doc: dict, workers: int = 2) -> Verification:
    """Check every manifest entry under root (hash, size, mode). Files that changed while they
    were backed up are skipped, since their recorded hash may not be what restic stored."""
    volatile = set(manifest_doc.get("facts", {}).get("changed_during_backup", []))
    entries = manifest_doc.get("files", [])
    result = Verification()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(pool.map(lambda e: _check(root, e, volatile), entries))
    for (kind, path), entry in zip(outcomes, entries):
        if kind == "ok":
            result.verified += 1
            result.bytes += entry["size"]
        else:
            {"mismatch": result.mismatched, "missing": result.missing, "skipped": result.skipped}[kind].append(path)
    return result
