"""The records of a period in a ledger file, in one streaming pass (what `evidence export` bundles).

The period is the contiguous run of lines from the first record whose time is in [since, until] to
the last one (by position, as the chain runs; a record in between keeps its place whatever its
time). Returned: its byte range in the file (streamed into the bundle without loading it), the hash
it chains to, its first and last seq, and the records the report reads, parsed only for the kinds
asked and reduced to the data fields asked (a million-record ledger never sits in memory as dicts).
Fields come from record_format's canonical layout without a JSON round-trip; the bytes themselves are
authenticated by the export's verify of the whole ledger and again by the auditor's verify.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from backupd.evidence import record_format
from backupd.evidence.ledger import LineFile


@dataclass
class Period:
    start: int = 0                      # byte offset of the first line
    end: int = 0                        # byte offset after the last line's newline
    lines: int = 0
    first_prev: str = record_format.GENESIS
    first_seq: int | None = None
    last_seq: int | None = None
    records: list[dict] = field(default_factory=list)  # {seq, time, kind, host, data} of the kinds asked

    @property
    def size(self) -> int:
        return self.end - self.start


def read(path: Path, since: str, until: str, kinds, data_fields) -> Period:
    """The period [since, until] (ISO 8601 UTC strings) of the ledger at path."""
    since_b, until_b = since.encode(), until.encode()
    wanted = {k.encode() for k in kinds}
    got = Period()
    offset, previous, first, last, first_seqs, last_seqs = 0, None, None, None, None, None
    collected: list[tuple[int, dict]] = []
    for number, line in enumerate(LineFile(path), 1):
        parts = line.rsplit(b',"', 7)
        whole = len(parts) == 8
        when = parts[7][7:-2] if whole else None
        if when is None or since_b <= when <= until_b:  # a damaged line stays inside: verify names it
            if first is None:
                first, got.start = number, offset
                got.first_prev = record_format.line_hash(previous) if previous is not None else got.first_prev
                first_seqs = parts[5] if whole else None
            last, got.end, last_seqs = number, offset + len(line) + 1, parts[5] if whole else None
        if first is not None and whole and parts[3][7:-1] in wanted:
            rec = _record(parts, data_fields)
            if rec is not None:
                collected.append((number, rec))
        previous, offset = line, offset + len(line) + 1
    if first is not None:
        got.lines = last - first + 1
        got.records = [rec for number, rec in collected if number <= last]
        got.first_seq, got.last_seq = _seq(first_seqs), _seq(last_seqs)
    return got


def _record(parts: list[bytes], data_fields) -> dict | None:
    try:
        data = json.loads(parts[0][8:])  # {"data":<this>
        seq = int(parts[5][5:])
    except ValueError:
        return None  # damaged: not reported on; verify names it
    data = {k: data[k] for k in data_fields if k in data} if isinstance(data, dict) else {}
    return {"seq": seq, "time": parts[7][7:-2].decode("utf-8", "replace"),
            "kind": parts[3][7:-1].decode("utf-8", "replace"),
            "host": parts[1][7:-1].decode("utf-8", "replace"), "data": data}


def _seq(part: bytes | None) -> int | None:
    try:
        return int(part[5:]) if part else None
    except ValueError:
        return None
