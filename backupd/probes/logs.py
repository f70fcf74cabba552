"""Logs probe: every restored log file must continue the file of the previous generation.

The previous snapshot's manifest holds each log's size and SHA-256 at that time. A log is intact when
its restored copy (or, after rotation, its rotated successor `name.1` / `name.N+1`) starts with exactly
those bytes. A log edited in the middle or truncated fails; logs gone since (dropped by rotation) are listed.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re

from backupd.probes.base import ProbeContext, ProbeResult

_NUMBERED = re.compile(r"^(.*)\.(\d+)$")
MAX_LISTED = 20


def successor(path: str) -> str:
    """The name a log gets at its next rotation: app.log -> app.log.1, app.log.3 -> app.log.4."""
    match = _NUMBERED.match(path)
    return f"{match.group(1)}.{int(match.group(2)) + 1}" if match else f"{path}.1"


def predecessor(path: str) -> str | None:
    """The name whose content moves to path at a rotation: app.log.1 <- app.log, app.log.4 <- app.log.3."""
    match = _NUMBERED.match(path)
    if not match:
        return None
    return match.group(1) if match.group(2) == "1" else f"{match.group(1)}.{int(match.group(2)) - 1}"


def prefix_sha256(path, size: int) -> str | None:
    """SHA-256 of the first `size` bytes of path; None when the file is shorter."""
    digest, left = hashlib.sha256(), size
    with open(path, "rb") as handle:
        while left > 0:
            chunk = handle.read(min(left, 1 << 20))
            if not chunk:
                return None
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def continues(local, old: dict) -> bool:
    """True when the file at `local` starts with the old generation's content."""
    try:
        return prefix_sha256(local, old["size"]) == old["sha256"]
    except OSError:
        return False


def compare(previous: list[dict], restored: dict[str, object], current: set[str], pattern: str) -> dict:
    """Classify each previous log against restored files {snapshot path: local path}; `current` holds
    every path of the drilled snapshot (restored or not).

    Returns {"continued": n, "edited": [...], "gone": [...], "undetermined": n}.
    """
    out = {"continued": 0, "edited": [], "gone": [], "undetermined": 0}
    before = {e["path"]: e for e in previous if e.get("type") == "file"}
    for old in previous:
        if old.get("type") != "file" or not fnmatch.fnmatch(os.path.basename(old["path"]), pattern):
            continue
        path, rotated = old["path"], successor(old["path"])
        if any(continues(restored[p], old) for p in (path, rotated) if p in restored):
            out["continued"] += 1
        elif (path not in current and rotated not in current) or _shifted(path, before, restored):
            out["gone"].append(path)  # dropped by rotation: its name now holds its predecessor
        elif path not in restored or (rotated in current and rotated not in restored):
            out["undetermined"] += 1  # a sample drill left the file or its rotated successor out
        else:
            out["edited"].append(path)
    return out


def _shifted(path: str, before: dict[str, dict], restored: dict[str, object]) -> bool:
    """True when the file now at path continues the previous generation's predecessor of path."""
    older = before.get(predecessor(path) or "")
    return older is not None and path in restored and continues(restored[path], older)


def run(probe, ctx: ProbeContext, result: ProbeResult) -> None:
    previous = ctx.previous()
    if previous is None:
        result.status = "skipped"
        result.details["reason"] = "no previous generation to compare with"
        return
    restored = {e["path"]: ctx.local(e["path"]) for e in ctx.restored if e.get("type") == "file"}
    current = {e["path"] for e in ctx.manifest.get("files", [])}
    found = compare(previous.get("files", []), restored, current, probe.pattern)
    result.details.update(continued=found["continued"], edited=found["edited"][:MAX_LISTED],
                          gone_since_previous=found["gone"][:MAX_LISTED], undetermined=found["undetermined"])
    if found["edited"]:
        result.problems.append(f"{len(found['edited'])} log file(s) changed content that the previous "
                               f"generation already held (edited or truncated): "
                               + ", ".join(found["edited"][:5]))
