"""The append-only evidence ledger: state_dir/evidence/ledger.jsonl, one signed record per line.

Before each append the head is checked against the index, the mirror and the last checkpoint
(guard.py): a ledger that lost records is a finding and receives no more records.

Appends hold an exclusive flock, write one whole line and fsync before returning, so concurrent
processes never interleave and an acknowledged record survives a crash. A torn tail (a crash in the
middle of a write, before the record was acknowledged) is moved aside to `ledger.torn-<time>` and
a `ledger-repair` record names it, so the repair itself is evidence.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

from backupd.errors import ConfigError, Finding
from backupd.evidence import canonical, guard, keys, record_format
from backupd.evidence.index import Index

log = logging.getLogger(__name__)
LEDGER_NAME = "ledger.jsonl"
_CHUNK = 64 * 1024
_BLOCK = 4 * 1024 * 1024


def evidence_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "evidence"


class Ledger:
    """The ledger file of one state directory plus its SQLite index."""

    def __init__(self, state_dir: Path):
        self.dir = evidence_dir(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = self.dir / LEDGER_NAME
        self.index = Index(self.dir / "index.sqlite")
        self._last: dict | None = None  # the last record, as read under the append lock

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc) -> None:
        self.index.close()

    def append(self, host: str, kind: str, data, private_key, before_write=None) -> dict:
        """Sign and append one record; returns it as stored.

        Refuses (`LedgerRegression`) when the ledger lost records (guard.py). before_write(seq), when
        given, runs under the lock just before the record is written (the WORM mirror probe).
        """
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "r+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            guard.refuse_if_open(self.dir)
            seq, prev, end = self._head(handle, host, private_key)
            private_key = self._signing_key(private_key)
            if before_write is not None:
                before_write(seq + 1)
            when = canonical.utc_now()
            if callable(data):  # data that depends on the record's place (the key-rotation proof)
                data = data(seq + 1, prev, when)
            line = record_format.build(seq + 1, prev, host, kind, data, private_key, when)
            self._write(handle, line)
            rec = record_format.parse(line)
            self.index.add(rec, end, len(line) + 1, record_format.line_hash(line))
        return rec

    def _signing_key(self, private_key):
        """After a key-rotation record only its new key may sign: a process that loaded the old key just
        before a concurrent `evidence rotate-key` switches to the new one (pending or promoted)."""
        last = self._last
        if not last or last["kind"] != record_format.ROTATION or not isinstance(last["data"], dict):
            return private_key
        new_kid = last["data"].get("new_kid")
        if keys.fingerprint(private_key.public_key()) == new_kid:
            return private_key
        state_dir = self.dir.parent
        for path in (keys.pending_path(state_dir), keys.key_dir(state_dir) / keys.KEY_NAME):
            try:
                key = keys.load_private(path)
            except ConfigError:
                continue
            if keys.fingerprint(key.public_key()) == new_kid:
                return key
        raise Finding(f"{self.path}: record {last['seq']} rotated the signing key to {new_kid}, which is not in "
                      f"{keys.key_dir(state_dir)}; restore that key (or rotate again from a key backup)")

    def check_head(self) -> None:
        """Raise LedgerRegression when the ledger lost records (under the append lock; nothing is written)."""
        try:
            handle = open(self.path, "rb")
        except FileNotFoundError:
            handle = open(os.devnull, "rb")  # a deleted ledger is checked as an empty one
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            last, _ = _tail(handle)
            seq, digest = (record_format.parse(last)["seq"], record_format.line_hash(last)) if last else (0, None)
            if seq:
                self.index.catch_up(self.path, seq)
            problems = guard.head_problems(self.index, self.dir, handle, seq, digest)
        if problems:
            guard.refuse(self.dir, problems, "local")

    def head(self) -> tuple[int, str | None]:
        """(last seq, hash of the last line) as stored now; (0, None) for an empty ledger."""
        try:
            with open(self.path, "rb") as handle:
                last, _ = _tail(handle)
        except FileNotFoundError:
            return 0, None
        if last is None:
            return 0, None
        return record_format.parse(last)["seq"], record_format.line_hash(last)

    def _head(self, handle, host: str, private_key) -> tuple[int, str, int]:
        """(last seq, hash of the last line, end offset): head checked, a torn tail repaired."""
        last, torn_at = _tail(handle)
        end = handle.seek(0, os.SEEK_END)
        seq, digest, self._last = 0, None, None
        if last is not None:
            try:
                self._last = record_format.parse(last)
                seq, digest = self._last["seq"], record_format.line_hash(last)
            except ValueError as exc:
                raise Finding(f"{self.path}: the last record is damaged ({exc}); run `backupd evidence verify "
                              f"{self.path}` and restore the ledger from the WORM mirror") from None
            self.index.catch_up(self.path, seq)
        problems = guard.head_problems(self.index, self.dir, handle, seq, digest)
        if problems:  # checked before a torn tail is repaired: a cut ledger gets no repair record either
            guard.refuse(self.dir, problems, "local")
        if torn_at is not None:
            last = self._repair(handle, last, torn_at, end, host, private_key)
            end = handle.seek(0, os.SEEK_END)
            seq, digest = record_format.parse(last)["seq"], record_format.line_hash(last)
        return seq, digest or record_format.GENESIS, end

    def _repair(self, handle, last, torn_at: int, end: int, host: str, private_key) -> bytes | None:
        handle.seek(torn_at)
        torn = handle.read()
        aside = self.dir / f"ledger.torn-{canonical.utc_now().replace(':', '')}"
        aside.write_bytes(torn)
        handle.truncate(torn_at)
        os.fsync(handle.fileno())
        log.warning("evidence ledger had a torn last record (%d bytes); moved to %s", len(torn), aside)
        seq, prev = 0, record_format.GENESIS
        if last is not None:
            seq, prev = record_format.parse(last)["seq"], record_format.line_hash(last)
        line = record_format.build(seq + 1, prev, host, "ledger-repair", {
            "torn_bytes": len(torn), "torn_sha256": canonical.sha256(torn), "offset": torn_at,
            "moved_to": aside.name}, private_key)
        self._write(handle, line)
        self.index.add(record_format.parse(line), torn_at, len(line) + 1, record_format.line_hash(line))
        return line

    @staticmethod
    def _write(handle, line: bytes) -> None:
        handle.write(line + b"\n")
        handle.flush()
        os.fsync(handle.fileno())

    def lines(self) -> list[bytes]:
        """Every line as stored (no newline); a torn tail is the last item."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        return split_lines(data)

    def query(self, kind: str | None = None, since: str | None = None, until: str | None = None,
              target: str | None = None) -> list[dict]:
        """Records matching all filters, through the index (times are ISO 8601 UTC strings)."""
        self.index.catch_up(self.path)
        out = []
        with open(self.path, "rb") as handle:
            for offset, length in self.index.find(kind, since, until, target):
                handle.seek(offset)
                out.append(record_format.parse(handle.read(length).rstrip(b"\n")))
        return out


def split_lines(data: bytes) -> list[bytes]:
    """Lines of a ledger file; a last line without newline is kept (verify reports it as torn)."""
    parts = data.split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()
    return parts


class LineFile:
    """A ledger file read line by line (never whole), re-iterable: verify streams it, twice at most.

    Iterating yields the complete lines without their newline; a last line without one (a torn tail)
    is not yielded but kept in `torn` after the iteration. limit: read only the file's first limit bytes.
    """

    def __init__(self, path: Path, limit: int | None = None):
        self.path = Path(path)
        self.limit = limit
        self.torn: bytes | None = None

    def __iter__(self):
        self.torn, rest = None, b""
        left = self.limit if self.limit is not None else -1
        with open(self.path, "rb") as handle:
            # split in blocks: far cheaper per line than readline
            while left and (block := handle.read(_BLOCK if left < 0 else min(_BLOCK, left))):
                left -= len(block) if left > 0 else 0
                lines = (rest + block).split(b"\n")
                rest = lines.pop()
                yield from lines
        self.torn = rest or None


def tail(handle) -> tuple[bytes | None, int | None]:
    """(last complete line, offset of a torn tail or None) of an open ledger file."""
    return _tail(handle)


def _tail(handle) -> tuple[bytes | None, int | None]:
    """(last complete line, offset of a torn tail or None), reading backwards from the end."""
    end = handle.seek(0, os.SEEK_END)
    if end == 0:
        return None, None
    buf, pos = b"", end
    while pos > 0:
        step = min(_CHUNK, pos)
        pos -= step
        handle.seek(pos)
        buf = handle.read(step) + buf
        if buf.count(b"\n") >= 2 or (pos == 0 and b"\n" in buf):
            break
    if pos == 0 and b"\n" not in buf:
        return None, 0
    body, _, torn = buf.rpartition(b"\n")
    torn_at = end - len(torn) if torn else None
    last = body.rpartition(b"\n")[2]
    return (last or None), torn_at
