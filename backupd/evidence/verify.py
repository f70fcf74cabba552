"""Offline verification of a ledger: chain, order, signatures, truncation. Names the bad record.

Input: the ledger's lines and the trusted public key(s). Output: a `ChainReport` listing every
problem with the seq it concerns; `ok` only when there is none.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from backupd.evidence import keys, record_format


@dataclass
class Problem:
    seq: int | None
    message: str

    def __str__(self) -> str:
        return f"record {self.seq}: {self.message}" if self.seq is not None else self.message


@dataclass
class ChainReport:
    records: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    hosts: list[str] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    head: str | None = None  # hash of the last good line: what the next record must chain to

    @property
    def ok(self) -> bool:
        return not self.problems and self.records > 0

    def to_dict(self) -> dict:
        return {"ok": self.ok, "records": self.records, "first_seq": self.first_seq, "last_seq": self.last_seq,
                "hosts": self.hosts, "kinds": self.kinds, "head_sha256": self.head,
                "problems": [{"seq": p.seq, "message": p.message} for p in self.problems],
                "first_bad_seq": next((p.seq for p in self.problems), None)}


def verify_lines(lines: list[bytes], public_keys: list, *, first_seq: int = 1,
                 first_prev: str = record_format.GENESIS, torn_tail: bool = False) -> ChainReport:
    """Check lines (without newlines) against the trusted keys.

    first_seq/first_prev describe where a slice starts (an export may hold seq 40..90). torn_tail
    says the last line had no newline: a record cut off by truncation.
    """
    trusted = {keys.fingerprint(k): k for k in public_keys}
    report = ChainReport()
    positions = _positions(lines)
    expected, prev = first_seq, first_prev
    for number, line in enumerate(lines, 1):
        if torn_tail and number == len(lines):
            report.problems.append(Problem(expected, f"truncated: the record after seq {expected - 1} is cut off"))
            break
        try:
            rec = record_format.parse(line)
        except ValueError as exc:
            report.problems.append(Problem(expected, f"line {number} is damaged: {exc}"))
            expected, prev = expected + 1, record_format.line_hash(line)
            continue
        _check(rec, expected, prev, trusted, report, positions)
        _count(rec, report)
        expected, prev = rec["seq"] + 1, record_format.line_hash(line)
    report.head = prev if lines else None
    if not lines:
        report.problems.append(Problem(None, "the ledger holds no records"))
    return report


def _positions(lines: list[bytes]) -> dict[int, int]:
    """seq -> line number, read leniently (to tell a moved record from a deleted one)."""
    out = {}
    for number, line in enumerate(lines, 1):
        try:
            out.setdefault(int(record_format.parse(line)["seq"]), number)
        except ValueError:
            continue
    return out


def _check(rec: dict, expected: int, prev: str, trusted: dict, report: ChainReport, positions: dict) -> None:
    seq = rec["seq"]
    if seq > expected:
        where = positions.get(expected)
        why = f"out of order (it is on line {where})" if where else "missing (deleted)"
        report.problems.append(Problem(expected, f"found seq {seq} where seq {expected} was expected: "
                                                 f"record {expected} is {why}"))
    elif seq < expected:
        report.problems.append(Problem(seq, f"found seq {seq} where seq {expected} was expected: "
                                            f"record {seq} is repeated, inserted or out of order"))
    if rec["prev"] != prev:
        report.problems.append(Problem(seq, "chain broken: prev does not match the SHA-256 of the record before it"
                                            " (a record before it was changed, removed or inserted)"))
    key = trusted.get(rec["kid"])
    if key is None:
        report.problems.append(Problem(seq, f"signed by key {rec['kid']}, which is not the trusted key "
                                            f"({', '.join(sorted(trusted)) or 'none'})"))
    elif not record_format.signature_ok(rec, key):
        report.problems.append(Problem(seq, "signature does not verify: the record was changed after signing"))


def _count(rec: dict, report: ChainReport) -> None:
    report.records += 1
    report.first_seq = rec["seq"] if report.first_seq is None else report.first_seq
    report.last_seq = rec["seq"]
    if rec["host"] not in report.hosts:
        report.hosts.append(rec["host"])
    report.kinds[rec["kind"]] = report.kinds.get(rec["kind"], 0) + 1
