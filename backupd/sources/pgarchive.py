"""Data offsets for a custom-format archive (pg_dump -Fc) that was written to a pipe.

pg_dump writes each table's data position into the archive's table of contents only when it can seek
back in its output; a dump streamed into restic has none. pg_restore -j then finds a table by stepping
over every data block before it, and uncompressed, every row is a block of its own: one lseek per row
(5.7 million to reach the last table of a 1M-container TOS dump). `add_offsets` writes the positions
into the table of contents in place, as pg_dump does for a file, so each worker seeks straight to its
table. Only the offset fields change; pg_restore still checks the block id it finds at each one.

A block is found by its exact start: the previous block's end marker (a zero length), the data block
type and the entry's dump id. COPY text never holds a NUL byte, so that pattern cannot occur inside table
data; archives holding large objects (binary data) are left alone, as is anything not understood.
"""

from __future__ import annotations

import mmap
from pathlib import Path

from backupd.sources.postgres import CUSTOM_MAGIC

OFFSET_NOT_SET, OFFSET_SET = 1, 2  # pg_backup_archiver's K_OFFSET_POS_NOT_SET / K_OFFSET_POS_SET
BLOCK_DATA = 1
VERSIONS = ((1, 13), (1, 14), (1, 15))  # archive formats of pg_dump 13-16, whose layout is read here


class Unsupported(Exception):
    """An archive this module leaves alone."""


_Unsupported = Unsupported


class _Reader:
    """pg_dump's archive primitives over a buffer: ints are a sign byte and int_size little-endian bytes."""

    def __init__(self, buf, pos: int = 0):
        self.buf, self.pos, self.int_size, self.off_size = buf, pos, 4, 8

    def byte(self) -> int:
        if self.pos >= len(self.buf):
            raise _Unsupported("truncated")
        self.pos += 1
        return self.buf[self.pos - 1]

    def int(self) -> int:
        sign = self.byte()
        raw = self.buf[self.pos:self.pos + self.int_size]
        if len(raw) != self.int_size:
            raise _Unsupported("truncated")
        self.pos += self.int_size
        value = int.from_bytes(raw, "little")
        return -value if sign else value

    def str(self) -> bytes | None:
        n = self.int()
        if n < 0:
            return None
        if n > len(self.buf) - self.pos:
            raise _Unsupported("truncated")
        self.pos += n
        return bytes(self.buf[self.pos - n:self.pos])


def _header(r: _Reader) -> tuple[int, int]:
    if bytes(r.buf[:len(CUSTOM_MAGIC)]) != CUSTOM_MAGIC:
        raise _Unsupported("not a custom-format archive")
    r.pos = len(CUSTOM_MAGIC)
    version = (r.byte(), r.byte())
    r.byte()  # revision
    r.int_size, r.off_size = r.byte(), r.byte()
    if version not in VERSIONS or r.byte() != 1 or r.int_size not in (4, 8) or r.off_size != 8:  # 1: custom
        raise _Unsupported(f"archive version {version}")
    if version >= (1, 15):
        r.byte()  # compression algorithm
    else:
        r.int()  # compression level
    for _ in range(7):  # creation time
        r.int()
    for _ in range(3):  # database name, server and pg_dump versions
        r.str()
    return version


def _entries(r: _Reader, version: tuple[int, int]) -> list[tuple[int, str, int, int]]:
    """(dump id, desc, dataState position, data state) per table-of-contents entry."""
    out = []
    for _ in range(r.int()):
        dump_id = r.int()
        r.int()  # had dumper
        for _ in range(3):  # table oid, oid, tag
            r.str()
        desc = (r.str() or b"").decode("ascii", "replace")
        r.int()  # section
        for _ in range(6 if version >= (1, 14) else 5):  # defn, drop, copy, namespace, tablespace, [table am]
            r.str()
        r.str(), r.str()  # owner, "false" (with oids)
        while r.str() is not None:  # dependencies
            pass
        out.append((dump_id, desc, r.pos, r.byte()))
        r.pos += r.off_size
    return out


def add_offsets(path: Path, located: Locator | None = None) -> int:
    """Write the data offsets of an archive that lacks them into its table of contents, in place.
    Returns how many entries got one; 0 (file untouched) when there is nothing to do or anything about
    the archive is not as expected. `located`: a Locator that already scanned (part of) this file while
    it was written; it finishes from where it got."""
    with open(path, "r+b") as fh:
        if fh.read(len(CUSTOM_MAGIC)) != CUSTOM_MAGIC:
            return 0
        with mmap.mmap(fh.fileno(), 0) as buf:
            try:
                found = (located or Locator()).advance(buf, len(buf))
                return _write(buf, found) if found is not None else 0
            except _Unsupported:
                return 0


class Locator:
    """Finds the data blocks of an archive, in table-of-contents order, over a growing written prefix:
    `advance(buf, end)` looks at buf[:end] only (bytes restic wrote; never what lies beyond, which may be
    a hole reading as zeros) and resumes where the last call stopped, so a file can be scanned while it
    is restored and only its tail is left when it is complete. Returns [(toc position, block offset)] once
    every pending entry is found, [] when no entry needs one, None while the prefix is too short; raises
    _Unsupported for an archive this module leaves alone."""

    def __init__(self) -> None:
        self.pending: list[tuple[int, int]] | None = None  # (dump id, toc position) still to find
        self.found: list[tuple[int, int]] = []
        self.size = 4
        self.start = self.cursor = 0  # where the last block began; where the search for the next resumes

    def advance(self, buf, end: int) -> list[tuple[int, int]] | None:
        if self.pending is None and not self._toc(buf, end):
            return None
        while self.pending:
            dump_id, where = self.pending[0]
            head = bytes([BLOCK_DATA, 0]) + dump_id.to_bytes(self.size, "little")
            at = self.start if self.start + len(head) <= end and buf[self.start:self.start + len(head)] == head \
                else -1
            if at < 0:
                pattern = bytes(1 + self.size) + head  # the previous block's zero-length end, then this one
                hit = _find(buf, pattern, max(self.cursor, self.start), end)
                if hit < 0:
                    self.cursor = max(self.cursor, end - len(pattern) + 1)
                    if end >= len(buf):
                        raise _Unsupported(f"no data block for dump id {dump_id}")
                    return None
                at = hit + len(pattern) - len(head)
            self.found.append((where, at))
            self.pending.pop(0)
            self.start = self.cursor = at + len(head)
        return self.found

    def _toc(self, buf, end: int) -> bool:
        """Read the table of contents once the prefix holds it (False until then)."""
        r = _Reader(memoryview(buf)[:end])
        try:
            version = _header(r)
            entries = _entries(r, version)
        except _Unsupported:
            if end >= len(buf):
                raise
            return False  # not written yet (or not an archive: found out once the file is complete)
        if any(desc in ("BLOBS", "BLOB", "LARGE OBJECT") for _, desc, _, _ in entries):
            raise _Unsupported("large objects")
        pending = [(dump_id, where) for dump_id, _, where, state in entries if state == OFFSET_NOT_SET]
        if any(state == OFFSET_SET for *_, state in entries):
            pending = []
        self.pending, self.size, self.start = pending, r.int_size, r.pos  # data blocks follow the toc, in order
        self.cursor = self.start
        return True


#: A search holds the GIL: it looks at this much at a time, so the threads beside it (hashing) go on.
WINDOW = 16 << 20


def _find(buf, pattern: bytes, start: int, end: int) -> int:
    """buf.find(pattern, start, end), one WINDOW at a time."""
    while start < end:
        stop = min(start + WINDOW + len(pattern) - 1, end)
        hit = buf.find(pattern, start, stop)
        if hit >= 0:
            return hit
        start += WINDOW
    return -1


def _write(buf, found: list[tuple[int, int]]) -> int:
    """Write each found offset; every block is checked again at its offset first (the file is the one
    scanned, or nothing is written)."""
    r = _Reader(buf)
    version = _header(r)
    entries = {where: dump_id for dump_id, _, where, state in _entries(r, version) if state == OFFSET_NOT_SET}
    for where, at in found:
        dump_id = entries.get(where)
        head = bytes([BLOCK_DATA, 0]) + (dump_id or 0).to_bytes(r.int_size, "little")
        if dump_id is None or bytes(buf[at:at + len(head)]) != head:
            raise _Unsupported("the archive changed since it was scanned")
    for where, at in found:
        buf[where] = OFFSET_SET
        buf[where + 1:where + 1 + r.off_size] = at.to_bytes(r.off_size, "little")
    if found:
        buf.flush()
    return len(found)
