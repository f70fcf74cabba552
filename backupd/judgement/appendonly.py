"""Append-only sources (logs) checked at backup time: what was backed up before must still be there.

For every file of the last clean generation, its bytes then (size and SHA-256 from that manifest) must
still be the prefix of a file now: the same file grown, or its rotated successor (app.log -> app.log.1,
app.log-20261127, app.log.1.gz), found by name AND confirmed by content, never by name alone. A file
edited in the middle, shortened or replaced is a finding that names the file and the first changed
offset (from per-block digests kept with the clean generation). Old rotated files that disappear are
the oldest generation expiring; a live log that vanishes with nothing continuing it is a finding.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
from dataclasses import asdict, dataclass

BLOCK = 4096          # granularity of the first-changed-offset report
HEAD_BYTES = 512       # the beginning recorded in each manifest (facts.heads)
DIGEST_HEX = 16       # 64-bit BLAKE2b per block: locates a change; SHA-256 of the prefix proves it
_ROTATED = re.compile(r"(\.\d+|[-_.]\d{8}(\d{2,6})?)(\.gz)?$|\.gz$")
_NUMBERED = re.compile(r"^(.*)\.(\d+)((?:\.gz)?)$")


@dataclass
class Problem:
    path: str
    kind: str           # edited | shortened | removed
    offset: int | None  # first changed byte (block-aligned), None when unknown
    detail: str

    def flag(self) -> str:
        where = f" at offset {self.offset}" if self.offset is not None else ""
        return f"append-only file {self.path} {self.kind}{where}: {self.detail}"


def is_rotated_name(path: str) -> bool:
    """app.log.3, app.log-20261127, app.log.1.gz: names logrotate gives to older generations."""
    return bool(_ROTATED.search(os.path.basename(path)))


def family(path: str) -> str:
    """The live name a rotated file belongs to (app.log.2.gz -> app.log)."""
    name = path
    while True:
        stripped = _ROTATED.sub("", name)
        if stripped == name or not os.path.basename(stripped):
            return name
        name = stripped


def successor(path: str) -> str:
    """The name a file gets at its next numbered rotation: app.log -> app.log.1, app.log.3 -> app.log.4."""
    match = _NUMBERED.match(path)
    return f"{match.group(1)}.{int(match.group(2)) + 1}{match.group(3)}" if match else f"{path}.1"


def open_content(path) -> object:
    """The file's content bytes: decompressed for a rotated .gz."""
    return gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")


def scan(path: str, prefix_size: int = 0, limit: int | None = None) -> tuple[str, str | None]:
    """(block digests of the first `limit` bytes, SHA-256 of the first prefix_size bytes or None when the
    file is shorter) in one read. Block digests are of the stored bytes (compressed for .gz)."""
    blocks, sha, seen = [], hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while limit is None or seen < limit:
            chunk = handle.read(BLOCK if limit is None else min(BLOCK, limit - seen))
            if not chunk:
                break
            blocks.append(hashlib.blake2b(chunk, digest_size=DIGEST_HEX // 2).hexdigest())
            if seen < prefix_size:
                sha.update(chunk[:prefix_size - seen])
            seen += len(chunk)
    return "".join(blocks), (sha.hexdigest() if seen >= prefix_size else None)


def prefix_sha(path: str, size: int) -> str | None:
    """SHA-256 of the first `size` content bytes (decompressed for .gz); None when shorter or unreadable."""
    digest, left = hashlib.sha256(), size
    try:
        with open_content(path) as handle:
            while left > 0:
                chunk = handle.read(min(left, 1 << 20))
                if not chunk:
                    return None
                digest.update(chunk)
                left -= len(chunk)
    except (OSError, EOFError, gzip.BadGzipFile):
        return None
    return digest.hexdigest()


def first_difference(old_blocks: str, path: str, old_size: int) -> int | None:
    """Block-aligned offset of the first byte that differs from the old generation's blocks."""
    if not old_blocks:
        return None
    now, _ = scan(path, 0, old_size)
    step = DIGEST_HEX
    for i in range(0, len(old_blocks), step):
        if old_blocks[i:i + step] != now[i:i + step]:
            return (i // step) * BLOCK
    return min(len(now) // step * BLOCK, old_size)


class Checker:
    """Checks one target's current files against its last clean generation."""

    def __init__(self, reference: dict[str, list], ref_blocks: dict[str, str], current: dict[str, list]):
        self.ref, self.ref_blocks, self.current = reference, ref_blocks, current  # path -> [sha256, size]
        self.current_shas = {sig[0] for sig in current.values()}
        self.ref_shas = {sig[0]: path for path, sig in reference.items()}
        self.scanned: dict[str, str] = {}  # path -> block digests of its current bytes, read while checking
        self.families: dict[str, list[str]] = {}
        for path in current:
            self.families.setdefault(family(path), []).append(path)

    def continued_by(self, path: str) -> str | None:
        """The current file that starts with the old content of path, if any."""
        sha, size = self.ref[path]
        if self.current.get(path, [None])[0] == sha:
            return path
        names = [path, successor(path)] + sorted(self.families.get(family(path), []))
        for name in dict.fromkeys(names):
            sig = self.current.get(name)
            if sig is None or (sig[1] < size and not name.endswith(".gz")):
                continue
            if sig[0] == sha or self._prefix_sha(name, size, sig[1]) == sha:
                return name
        return None

    def _prefix_sha(self, name: str, size: int, now: int) -> str | None:
        """SHA-256 of the first size bytes; a plain file's block digests come from the same read and are
        kept for the next generation's reference (a growing log is read once here, not twice)."""
        if name.endswith(".gz"):
            return prefix_sha(name, size)
        try:
            self.scanned[name], sha = scan(name, size, now)
        except OSError:
            return None
        return sha

    def shifted(self, path: str) -> bool:
        """The file now at path holds another old file's content (rotation moved it here)."""
        sig = self.current.get(path)
        if sig is None:
            return False
        other = self.ref_shas.get(sig[0])
        if other is not None and other != path:
            return True
        return any(self.continued_by(p) == path for p in self.ref if p != path and family(p) == family(path))

    def problem(self, path: str) -> Problem | None:
        sha, size = self.ref[path]
        if size == 0 or sha in self.current_shas or self.continued_by(path):
            return None
        rotated = is_rotated_name(path)
        if path not in self.current:
            if rotated:
                return None  # the oldest rotated generation expired
            return Problem(path, "removed", None, "gone, and no file continues its backed-up content")
        if rotated and self.shifted(path):
            return None  # rotation moved a newer generation onto this name; the old one expired
        now = self.current[path][1]
        offset = first_difference(self.ref_blocks.get(path, ""), path, size)
        if now < size:
            return Problem(path, "shortened", offset if offset is not None else now,
                           f"{size} bytes when last backed up clean, {now} bytes now")
        return Problem(path, "edited", offset, f"its first {size} bytes (backed up clean) were changed")


def check(reference: dict[str, list], ref_blocks: dict[str, str], current: dict[str, list],
          scanned: dict[str, str] | None = None) -> list[Problem]:
    """Problems of every file of the reference generation; `current` maps path -> [sha256, size]. The
    block digests of files read on the way are added to `scanned` (for blocks_for)."""
    checker = Checker(reference, ref_blocks, current)
    problems = [p for p in (checker.problem(path) for path in sorted(reference)) if p is not None]
    if scanned is not None:
        scanned.update(checker.scanned)
    return problems


def blocks_for(current: dict[str, list], reference: dict[str, list], ref_blocks: dict[str, str],
               scanned: dict[str, str] | None = None) -> dict[str, str]:
    """Block digests of every current file, for the next check: reused where the content is unchanged or
    the file was already read by check (`scanned`), else read now."""
    by_sha = {sig[0]: ref_blocks[path] for path, sig in reference.items() if path in ref_blocks}
    out = {}
    for path, (sha, size) in current.items():
        if sha in by_sha:
            out[path] = by_sha[sha]
            continue
        if scanned and path in scanned:
            out[path] = scanned[path]
            continue
        try:
            out[path], _ = scan(path, 0, size)
        except OSError:
            continue
    return out


def heads(current: dict[str, list]) -> dict[str, str]:
    """SHA-256 of the first HEAD_BYTES of every file at least that long: lets a drill tell a file that grew
    or was edited (same beginning) from a new file that took its name at rotation."""
    out = {}
    for path, (_, size) in current.items():
        if size < HEAD_BYTES:
            continue
        try:
            with open(path, "rb") as handle:
                out[path] = hashlib.sha256(handle.read(HEAD_BYTES)).hexdigest()
        except OSError:
            continue
    return out


def to_dicts(problems: list[Problem]) -> list[dict]:
    return [asdict(p) for p in problems]
