"""The last clean generations of a target: what every new generation is judged against.

A generation flagged at backup time (ransomware-like change, an edited log, a table losing rows) never
becomes the reference: the next generations are compared with the last clean one, so an attack stays
visible for as long as its effects are in the data, until an operator accepts the change
(`backupd accept`). Besides the last clean generation, a few older clean ones are kept, and the oldest of
them is the anchor for cumulative drift (slow encryption that stays under the per-step thresholds).

Stored as JSON under state_dir/baseline/<target>/, mode 0600, one file per kept generation:
``{"snapshots": {destination: id}, "time": ISO, "files": {path: [sha256, size]}, "rows": {table: n},
"blocks": {path: "<hex digests of each BLOCK bytes>"}, "accepted": reason-or-null}``.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

KEEP = 5  # clean generations kept; the oldest is the drift anchor


def _dir(state_dir: Path, target: str) -> Path:
    return Path(state_dir) / "baseline" / target


def _generations(state_dir: Path, target: str) -> list[Path]:
    """Stored generations, oldest first (names are zero-padded sequence numbers)."""
    try:
        return sorted(_dir(state_dir, target).glob("[0-9]*.json"))
    except OSError:
        return []


def _read(path: Path) -> dict | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def last_clean(state_dir: Path, target: str) -> dict | None:
    """The newest clean generation, or None when none was recorded yet."""
    kept = _generations(state_dir, target)
    return _read(kept[-1]) if kept else None


def anchor(state_dir: Path, target: str) -> dict | None:
    """The oldest kept clean generation (the reference for cumulative drift), or None."""
    kept = _generations(state_dir, target)
    return _read(kept[0]) if len(kept) > 1 else None


def record_clean(state_dir: Path, target: str, generation: dict) -> None:
    """Store a clean (or accepted) generation as the newest reference; keep the last KEEP."""
    folder = _dir(state_dir, target)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    kept = _generations(state_dir, target)
    number = int(kept[-1].stem) + 1 if kept else 1
    generation = {"time": datetime.now(timezone.utc).isoformat(), **generation}
    tmp = folder / f"{number:012d}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(generation, handle, separators=(",", ":"))
    os.replace(tmp, folder / f"{number:012d}.json")
    for old in _generations(state_dir, target)[:-KEEP]:
        old.unlink(missing_ok=True)


def reset(state_dir: Path, target: str, generation: dict) -> None:
    """Make `generation` the only reference (an accepted change restarts drift from it)."""
    for old in _generations(state_dir, target):
        old.unlink(missing_ok=True)
    record_clean(state_dir, target, generation)


def retract_since_anchor(state_dir: Path, target: str, implicated) -> list[dict]:
    """Drop the kept generations after the anchor for which implicated(generation) is true, and every one
    after the first of them (cumulative drift showed they were not clean); returns the dropped ones."""
    kept = _generations(state_dir, target)
    docs = [(path, _read(path) or {}) for path in kept[1:]]
    first = next((i for i, (_, doc) in enumerate(docs) if implicated(doc)), None)
    if first is None:
        return []
    for path, _ in docs[first:]:
        path.unlink(missing_ok=True)
    return [doc for _, doc in docs[first:]]


def file_map(entries) -> dict[str, list]:
    """{path: [sha256, size]} of the regular files among manifest entries (objects or dicts)."""
    out = {}
    for e in entries:
        if isinstance(e, dict):
            if e.get("type") == "file":
                out[e.get("path")] = [e.get("sha256"), e.get("size")]
        elif e.type == "file":
            out[e.path] = [e.sha256, e.size]
    return out
