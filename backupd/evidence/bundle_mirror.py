"""An export bundle against the WORM mirror: `evidence verify BUNDLE --mirror D`.

Root on the host holds the signing key, so it can re-sign a bundle without its FAIL and suspect
records and the bundle still verifies under the host's own key. What it cannot change is what the
mirror locked as each record was appended. So every record of the bundle must be the mirror's record
of its seq byte for byte, every signed checkpoint of the bundle's seqs must match it, and no mirrored
record (or checkpoint) whose time lies in the bundle's period [since, until] may be missing from it:
a bundle cut short or thinned out is tampering.

Input: the host's mirror as `pull` rebuilt it into a file (the oldest version of each object that the
host's key chain signed; what other identities planted is reported, never compared), the bundle's
ledger lines, manifest and chain report (bundle.verify). The rebuilt ledger is streamed; only ranges
of seqs are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from backupd.evidence import record_format
from backupd.evidence.ledger import LineFile
from backupd.evidence.verify import ChainReport, Problem, check_checkpoints

#: Ranges of seqs named in one finding; the rest are counted.
SHOWN = 10


@dataclass
class Comparison:
    problems: list[Problem] = field(default_factory=list)
    records: int = 0             # record objects in the mirror
    identical: int = 0           # bundle records found byte for byte in the mirror
    checkpoints: int = 0         # checkpoints in the mirror
    last_seq: int | None = None  # the newest mirrored record

    def to_dict(self) -> dict:
        return {"records": self.records, "identical": self.identical, "checkpoints": self.checkpoints,
                "last_seq": self.last_seq}


class _Runs:
    """Seqs added in ascending order, kept as ranges (a re-signed year is one range, not 100k entries)."""

    def __init__(self):
        self.ranges: list[list[int]] = []

    def add(self, seq: int) -> None:
        if self.ranges and self.ranges[-1][1] + 1 == seq:
            self.ranges[-1][1] = seq
        else:
            self.ranges.append([seq, seq])

    def __bool__(self) -> bool:
        return bool(self.ranges)

    @property
    def first(self) -> int:
        return self.ranges[0][0]

    def named(self, one: str, many: str) -> str:
        """'record 6 <one>' or 'records 6..9 <many>'."""
        single = len(self.ranges) == 1 and self.ranges[0][0] == self.ranges[0][1]
        return f"record {self} {one}" if single else f"records {self} {many}"

    def __str__(self) -> str:
        shown = ", ".join(f"{a}" if a == b else f"{a}..{b}" for a, b in self.ranges[:SHOWN])
        more = len(self.ranges) - SHOWN
        return shown + (f" and {more} more range(s)" if more > 0 else "")


def compare(got, lines: list[bytes], manifest: dict, chain: ChainReport) -> Comparison:
    """The bundle (its ledger lines from manifest first_seq on) against the host's mirror as `pull`
    rebuilt it (got: pull.PulledHost: per record the oldest version the host's key chain signed, in seq
    order, streamed from its ledger file; its checkpoints; what others planted, in its problems)."""
    out = Comparison(problems=[Problem(None, f"WORM mirror: {p}") for p in got.problems],
                     checkpoints=len(got.checkpoints))
    first = _int(manifest.get("first_seq"), 1)
    since, until = manifest.get("since"), manifest.get("until")
    window = (since.encode(), until.encode()) if isinstance(since, str) and isinstance(until, str) else None
    if window is None:
        out.problems.append(Problem(None, "manifest.json names no period (since, until): records the bundle "
                                          "left out of it cannot be told"))
    differ, missing, omitted, unreadable = _Runs(), _Runs(), _Runs(), _Runs()
    expected, end = first, first + len(lines)  # the next bundle seq the mirror should hold; after the last
    for line in LineFile(got.ledger) if got.ledger else []:
        seq, when = _seq_time(line)
        out.records += 1
        if seq is None:
            out.problems.append(Problem(None, f"WORM mirror: record {out.records} of {got.host} is unreadable"))
            continue
        out.last_seq = max(out.last_seq or seq, seq)
        for gap in range(max(expected, first), min(seq, end)):
            missing.add(gap)
        expected = max(expected, seq + 1)
        if first <= seq < end:
            if line == lines[seq - first]:
                out.identical += 1
            else:
                differ.add(seq)
        elif window is not None:
            if when is None:
                unreadable.add(seq)
            elif window[0] <= when <= window[1]:
                omitted.add(seq)
    for gap in range(max(expected, first), end):
        missing.add(gap)
    out.problems += _findings(f"evidence/{got.host}/", differ, missing, omitted, unreadable, since, until)
    out.problems += _checkpoints(got.checkpoints, lines, chain, first, window)
    return out


def _findings(where: str, differ: _Runs, missing: _Runs, omitted: _Runs, unreadable: _Runs,
              since, until) -> list[Problem]:
    out = []
    if differ:
        out.append(Problem(differ.first, f"{differ.named('differs', 'differ')} from the WORM mirror's copies "
                                         f"({where}records/): the bundle was edited or re-signed"))
    if missing:
        out.append(Problem(missing.first, f"{missing.named('is', 'are')} in the bundle but not in the WORM mirror "
                                          f"({where}records/): made up, or never mirrored"))
    if omitted:
        out.append(Problem(omitted.first, f"{omitted.named('is', 'are')} in the WORM mirror within the bundle's period "
                                          f"{since} .. {until} but not in the bundle: left out (a re-signed bundle "
                                          f"without them)"))
    if unreadable:
        out.append(Problem(unreadable.first, f"{unreadable.named('is', 'are')} unreadable in the WORM mirror: "
                                             f"whether the bundle left them out cannot be told"))
    return out


def _checkpoints(cps: list[dict], lines: list[bytes], chain: ChainReport, first: int, window) -> list[Problem]:
    """Signed checkpoints at the bundle's seqs must match its records; one made within its period at a
    later seq means the bundle stops short of what the ledger already held then."""
    last = first + len(lines) - 1
    relevant = [c for c in cps if first <= c["seq"] <= last or (
        c["seq"] > last and window is not None and isinstance(c["time"], str)
        and window[0] <= c["time"].encode() <= window[1])]
    return check_checkpoints(lines, relevant, chain, first, what="the bundle")


def _seq_time(line: bytes) -> tuple[int | None, bytes | None]:
    """A record's seq and time (bytes, comparable with the period's ISO strings); None where unreadable."""
    scanned = record_format.scan(line)
    if scanned is not None:
        return scanned[0], scanned[5]
    try:
        rec = record_format.parse(line)
    except ValueError:
        return None, None
    return rec["seq"], rec["time"].encode() if isinstance(rec["time"], str) else None


def _int(value, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default
