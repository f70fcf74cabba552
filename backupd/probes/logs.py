"""Logs probe: the restored logs still hold what EVERY older retained generation backed up.

Each older manifest lists each log's size and SHA-256 at that time. Walking from the drilled generation
back to the oldest retained one, an older log is:
- continued: some restored file of its rotation family (app.log, app.log.1, app.log-20261127, .gz) starts
  with exactly those bytes (checked on the restored data, one pass per restored file);
- carried: the next generation holds the same content (same SHA-256) under any name, whose verdict it
  shares;
- edited: the next generation's file at its name (or its rotated successor) is at least as long and is
  itself continued, yet does not start with those bytes: the content was changed in between;
- expired: nothing holds it any more (rotation dropped it);
- undetermined: a sample drill left the file that would tell out.
A log edited once is found by every later drill for as long as an older generation is retained.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from collections import defaultdict

from backupd.judgement.appendonly import family, is_rotated_name, open_content, successor
from backupd.probes.base import ProbeContext, ProbeResult

MAX_LISTED = 20
CHUNK = 1 << 20


def predecessor(path: str) -> str | None:
    """The name whose content moves to path at a rotation: app.log.1 <- app.log, app.log.4 <- app.log.3."""
    head, dot, number = path.rpartition(".")
    if not dot or not number.isdigit():
        return None
    return head if number == "1" else f"{head}.{int(number) - 1}"


def prefix_digests(local, sizes: set[int]) -> dict[int, str]:
    """SHA-256 of the first n bytes of local (decompressed for .gz) for every n in sizes, in one read."""
    want, out, digest, seen = sorted(s for s in sizes if s > 0), {}, hashlib.sha256(), 0
    try:
        with open_content(local) as handle:
            for size in want:
                while seen < size:
                    chunk = handle.read(min(CHUNK, size - seen))
                    if not chunk:
                        return out
                    digest.update(chunk)
                    seen += len(chunk)
                out[size] = digest.copy().hexdigest()
    except (OSError, EOFError, ValueError):
        pass
    return out


def _heads(manifest: dict) -> dict[str, str]:
    """{path: SHA-256 of its first HEAD_BYTES} recorded at backup time for append-only targets."""
    heads = manifest.get("facts", {}).get("heads")
    return heads if isinstance(heads, dict) else {}


class Walk:
    """Judges every older generation's logs against the restored files and the next generation."""

    def __init__(self, drilled: dict, restored: dict[str, object], older: list[dict], pattern: str):
        self.pattern, self.restored = pattern, restored
        self.older = [self._logs(m.get("files", [])) for m in older]   # newest first
        self.heads = [_heads(m) for m in older]
        self.families: dict[str, list[str]] = defaultdict(list)
        for path in restored:
            self.families[family(path)].append(path)
        sizes: dict[str, set[int]] = defaultdict(set)
        for generation in self.older:
            for e in generation.values():
                for path in self.families.get(family(e["path"]), []):
                    sizes[path].add(e["size"])
        self.prefix = {path: prefix_digests(restored[path], wanted) for path, wanted in sizes.items()}
        self.drilled, self.drilled_heads = self._logs(drilled.get("files", [])), _heads(drilled)

    def _logs(self, files: list[dict]) -> dict[str, dict]:
        return {e["path"]: e for e in files if e.get("type") == "file"
                and fnmatch.fnmatch(os.path.basename(e["path"]), self.pattern)}

    def _continued(self, e: dict) -> bool:
        return any(self.prefix.get(p, {}).get(e["size"]) == e["sha256"] for p in self.families.get(family(e["path"]), []))

    @staticmethod
    def _successor_entry(e: dict, following: dict[str, dict], moved: set[str], heads: tuple) -> dict | None:
        """The next generation's file that should hold e's content (grown), if e was not rotated away: the
        same name or its rotated successor, not holding another old file's content, and beginning with the
        same bytes where both generations recorded their first bytes (else it is a new file)."""
        old_heads, next_heads = heads
        for name in (e["path"], successor(e["path"])):
            nxt = following.get(name)
            if nxt is None or nxt["sha256"] in moved:
                continue
            old, new = old_heads.get(e["path"]), next_heads.get(name)
            if old and new:
                if old == new:
                    return nxt  # the same file: grown, shortened or edited
                continue
            if nxt["size"] >= e["size"] or (name == e["path"] and not is_rotated_name(name)):
                return nxt
        return None

    def judge(self) -> dict:
        out = {"continued": 0, "edited": [], "expired": 0, "undetermined": 0, "generations": len(self.older)}
        following, following_heads = self.drilled, self.drilled_heads
        status = {p: ("continued" if p in self.restored else "undetermined") for p in following}
        for generation, heads in zip(self.older, self.heads):
            by_sha = {e["sha256"]: p for p, e in following.items()}
            moved = {e["sha256"] for e in generation.values()}
            current = {}
            for path, e in generation.items():
                current[path] = verdict = self._verdict(e, following, status, by_sha, moved,
                                                        (heads, following_heads))
                if verdict == "edited" and path not in out["edited"]:
                    out["edited"].append(path)
                elif verdict in ("continued", "expired", "undetermined"):
                    out[verdict] += 1
            following, status, following_heads = generation, current, heads
        return out

    def _verdict(self, e, following, status, by_sha, moved, heads) -> str:
        if e["size"] == 0:
            return "continued"
        if e["sha256"] in by_sha:
            return status[by_sha[e["sha256"]]]
        if self._continued(e):
            return "continued"
        nxt = self._successor_entry(e, following, moved - {e["sha256"]}, heads)
        if nxt is None:
            return "expired"
        later = status.get(nxt["path"], "expired")
        return "edited" if later in ("continued", "edited") else later


def run(probe, ctx: ProbeContext, result: ProbeResult) -> None:
    older = ctx.older_manifests()
    if not older:
        result.status = "skipped"
        result.details["reason"] = "no older generation to compare with"
        return
    restored = {e["path"]: local for e in ctx.restored
                if e.get("type") == "file" and (local := ctx.regular(e["path"])) is not None}
    found = Walk(ctx.manifest, restored, older, probe.pattern).judge()
    result.details.update(continued=found["continued"], edited=found["edited"][:MAX_LISTED],
                          expired=found["expired"], undetermined=found["undetermined"],
                          generations_checked=found["generations"])
    if found["edited"]:
        result.problems.append(f"{len(found['edited'])} log file(s) no longer hold content that an older "
                               f"generation backed up (edited or truncated): " + ", ".join(found["edited"][:5]))
