"""Choose the files a sample drill restores: a deterministic subset stratified by size class and
directory, so small configs, mid-size files and the biggest files of every directory are all exercised."""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict

#: Upper bounds of the size classes (bytes); the last class is open.
SIZE_CLASSES = (4 << 10, 64 << 10, 1 << 20, 16 << 20)
#: restic --include takes patterns; paths with pattern characters are left out of samples.
_PATTERN_CHARS = set("*?[]\\")


def size_class(size: int) -> int:
    return next((i for i, bound in enumerate(SIZE_CLASSES) if size < bound), len(SIZE_CLASSES))


def _key(seed: str, path: str) -> str:
    return hashlib.sha256(f"{seed}\0{path}".encode()).hexdigest()


def choose(entries: list[dict], seed: str, max_files: int, max_bytes: int,
           required: list[str] | tuple[str, ...] = ()) -> list[dict]:
    """Entries to restore: `required` paths first, then round-robin over (size class, directory) strata,
    each stratum in an order fixed by `seed` (the snapshot id), within max_files and max_bytes."""
    usable = [e for e in entries if not _PATTERN_CHARS & set(e["path"])]
    chosen = [e for e in usable if e["path"] in set(required)]
    strata: dict[tuple, list[dict]] = defaultdict(list)
    for e in usable:
        if e["path"] not in set(required):
            strata[(size_class(e["size"]), os.path.dirname(e["path"]))].append(e)
    queues = [sorted(items, key=lambda e: _key(seed, e["path"])) for _, items in sorted(strata.items())]
    total = sum(e["size"] for e in chosen)
    while queues and len(chosen) < max_files:
        remaining = []
        for queue in queues:
            if len(chosen) >= max_files:
                break
            entry = queue.pop(0)
            if total + entry["size"] <= max_bytes or not chosen:
                chosen.append(entry)
                total += entry["size"]
            if queue:
                remaining.append(queue)
        queues = remaining
    return chosen
