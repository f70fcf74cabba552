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


class _Unsupported(Exception):
    pass


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


def add_offsets(path: Path) -> int:
    """Write the data offsets of an archive that lacks them into its table of contents, in place.
    Returns how many entries got one; 0 (file untouched) when there is nothing to do or anything about
    the archive is not as expected."""
    with open(path, "r+b") as fh:
        if fh.read(len(CUSTOM_MAGIC)) != CUSTOM_MAGIC:
            return 0
        with mmap.mmap(fh.fileno(), 0) as buf:
            try:
                return _patch(buf)
            except _Unsupported:
                return 0


def _patch(buf) -> int:
    r = _Reader(buf)
    version = _header(r)
    entries = _entries(r, version)
    if any(desc in ("BLOBS", "BLOB", "LARGE OBJECT") for _, desc, _, _ in entries):
        raise _Unsupported("large objects")
    pending = [(dump_id, where) for dump_id, _, where, state in entries if state == OFFSET_NOT_SET]
    if not pending or any(state == OFFSET_SET for *_, state in entries):
        return 0
    size = r.int_size
    found, start = [], r.pos  # data blocks follow the table of contents, in its order
    for dump_id, where in pending:
        head = bytes([BLOCK_DATA, 0]) + dump_id.to_bytes(size, "little")
        at = start if bytes(buf[start:start + len(head)]) == head else -1
        if at < 0:
            end_marker = bytes(1 + size)  # the previous block's zero-length end
            hit = buf.find(end_marker + head, start)
            at = hit + len(end_marker) if hit >= 0 else -1
        if at < 0:
            raise _Unsupported(f"no data block for dump id {dump_id}")
        found.append((where, at))
        start = at + len(head)
    for where, at in found:
        buf[where] = OFFSET_SET
        buf[where + 1:where + 1 + r.off_size] = at.to_bytes(r.off_size, "little")
    buf.flush()
    return len(found)
