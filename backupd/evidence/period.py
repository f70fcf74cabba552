"""The records of a period in a ledger file, in one streaming pass (what `evidence export` bundles).

The period is the contiguous run of lines from the first record whose time is in [since, until] to
the last one (by position, as the chain runs; a record in between keeps its place whatever its
time). Returned: its byte range in the file (streamed into the bundle without loading it), the hash
it chains to, its first and last seq, and the records the report reads: only the kinds asked, each
reduced to the data fields asked for its kind (a million-record ledger never sits in memory as dicts).
Seq, time and kind come from record_format's canonical layout without a JSON round-trip, the data of a
kind only when fields of it are asked (orjson, the standard parser where orjson refuses); the bytes
themselves are authenticated by the export's verify of the whole ledger and again by the auditor's verify.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from backupd.evidence import record_format
from backupd.evidence.ledger import LineFile, tail


@dataclass
class Period:
    start: int = 0                      # byte offset of the first line
    end: int = 0                        # byte offset after the last line's newline
    lines: int = 0
    first_prev: str = record_format.GENESIS
    first_seq: int | None = None
    last_seq: int | None = None
    records: list[dict] = field(default_factory=list)  # {seq, time, kind, data} of the kinds asked

    @property
    def size(self) -> int:
        return self.end - self.start


def whole_file(path: Path, since: str, until: str) -> tuple[int, int] | None:
    """(0, file size) when the period holds the whole ledger (its first and last records are inside it),
    else None; from the first and the last line only, so the bundle can be written before read()."""
    with open(path, "rb") as handle:
        first = handle.readline()
        last, torn = tail(handle)
        size = handle.seek(0, 2)
    times = [_time(first.rstrip(b"\n")), _time(last or b"")]
    if torn is not None or None in times or not all(since.encode() <= t <= until.encode() for t in times):
        return None
    return 0, size


def _time(line: bytes) -> bytes | None:
    parts = line.rsplit(b',"', 7)
    return parts[7][7:-2] if len(parts) == 8 else None


def read(path, since: str, until: str, wanted: Mapping[str, tuple[str, ...]],
         limit: int | None = None,
         fold: Mapping[str, tuple[tuple[str, ...], Callable[[int, str, object], None]]] | None = None) -> Period:
    """The period [since, until] (ISO 8601 UTC strings) of the ledger at path (its first limit bytes);
    path may also be the lines themselves (a bundle's ledger, which verify re-reads to rebuild its report).

    wanted: kind -> the data fields the caller reads of records of that kind (an empty tuple: none,
    the data is not parsed). fold: kind -> (fields, function): the function is given (seq, time, data)
    of every record of that kind in the period, in ledger order, instead of keeping them (a summary of
    hundreds of thousands of records without a dict each); data is the whole parsed data, exact in
    fields. Records of other kinds are only part of the byte range."""
    since_b, until_b = since.encode(), until.encode()
    # keyed by the raw `kind":"<kind>"` part of the line: no slice per line
    kinds = {b'kind":' + _raw(k): (k, tuple(f), None) for k, f in wanted.items()}  # -> (str, fields, fold)
    kinds.update({b'kind":' + _raw(k): (k, tuple(fields), f) for k, (fields, f) in (fold or {}).items()})
    got = Period()
    records = got.records
    number, offset, previous, first, last, last_end, last_parts = 0, 0, None, None, None, 0, None
    # records after the last line inside the period so far: part of it only if a later line is inside
    pending: list[tuple] = []
    lines = LineFile(path, limit) if isinstance(path, (str, Path)) else path
    for line in lines:  # limit: lines appended after the export began are not read
        number += 1
        size = len(line) + 1
        parts = line.rsplit(b',"', 7)
        if len(parts) == 8:
            when = parts[7][7:-2]
            inside = since_b <= when <= until_b
        else:
            when, inside = None, True  # a damaged line stays inside: verify names it
        if inside:
            if first is None:
                first, got.start = number, offset
                got.first_prev = record_format.line_hash(previous) if previous is not None else got.first_prev
                got.first_seq = _seq(parts[5] if when is not None else None)
            last, last_end, last_parts = number, offset + size, parts
            if pending:
                _deliver(pending, records)
                pending = []
        if first is not None:
            kind = kinds.get(parts[3]) if when is not None else None
            if kind is not None:
                try:  # what the report reads: seq, time, kind and a few data fields
                    seq = int(parts[5][5:])
                    raw = parts[0][8:]  # {"data":<this>
                    if kind[2] is not None:  # folded: the whole data
                        data = _data(raw, kind[1])
                    else:
                        data = _fields(_data(raw, kind[1]), kind[1]) if kind[1] else {}
                except ValueError:
                    pass  # damaged: not reported on; verify names it
                else:
                    if not inside:
                        pending.append((kind, seq, when.decode(), data))
                    elif kind[2] is not None:
                        kind[2](seq, when.decode(), data)
                    else:
                        records.append({"seq": seq, "time": when.decode(), "kind": kind[0], "data": data})
        else:
            previous = line
        offset += size
    if first is not None:
        got.lines, got.end = last - first + 1, last_end
        got.last_seq = _seq(last_parts[5] if len(last_parts) == 8 else None)
    return got


def _deliver(items, records: list[dict]) -> None:
    for (name, _, fold), seq, when, data in items:
        if fold is not None:
            fold(seq, when, data)
        else:
            records.append({"seq": seq, "time": when, "kind": name, "data": data})


#: Values orjson may read differently from json: an integer beyond 64 bits becomes a float (canonical
#: records hold no floats), and containers could hide one.
_INEXACT = frozenset({float, list, dict})


def _data(raw: bytes, fields: tuple[str, ...]):
    """A record's data from its raw JSON, exactly as json.loads reads it at least in fields; ValueError
    when it is not JSON. orjson for speed, json where orjson refuses (a lone surrogate, NaN) or may differ."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)
    if isinstance(data, dict) and _INEXACT.isdisjoint(map(type, map(data.get, fields))):
        return data
    return json.loads(raw)


def _fields(data, fields: tuple[str, ...]) -> dict:
    return {k: data[k] for k in fields if k in data} if isinstance(data, dict) else {}


def _raw(kind: str) -> bytes:
    """A kind as its JSON string in a canonical line (quotes included)."""
    return json.dumps(kind, ensure_ascii=False).encode("utf-8", "backslashreplace")


def _seq(part: bytes | None) -> int | None:
    try:
        return int(part[5:]) if part else None
    except ValueError:
        return None
