"""Change analytics at backup time: does this generation look like ransomware or mass deletion?

Ransomware produces backups that "succeed" and hold encrypted files. Each backup is compared with the
target's last CLEAN generation (backupd.judgement.baseline; never with a flagged one, so the generations after an
attack stay flagged while the encrypted files are still there): files added, changed, removed, and the
byte entropy of a sample of changed files. The same test runs against an older clean generation (the
drift anchor), so encryption that creeps below the per-step thresholds is caught as cumulative drift.
The target's own clean history is the baseline of what is usual, so a target that normally rewrites
compressed data is not flagged, and flagged generations never shift that baseline.
"""

from __future__ import annotations

import math
import os
import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field, replace

SAMPLE_FILES = 64
SAMPLE_BYTES = 64 * 1024
HIGH_ENTROPY = 7.2          # bits per byte; text is ~4-5, compressed or encrypted data ~7.9+
REWRITE_SHARE = 0.3         # share of previous files rewritten to count as mass rewriting
DELETE_SHARE = 0.5
MIN_FILES = 10              # deletions and renames below this are ordinary housekeeping
MIN_REWRITES = 3            # a handful of files can be a whole small target (configs, programs)
ROW_LOSS = 0.5              # a dump table losing half its rows
BASELINE_GENERATIONS = 5


@dataclass
class Change:
    """What changed between two generations of one target, and whether it looks malicious."""

    previous_files: int = 0
    added: int = 0
    changed: int = 0
    removed: int = 0
    changed_bytes: int = 0
    sampled: int = 0
    high_entropy_share: float = 0.0
    mean_entropy: float = 0.0
    renamed_extensions: int = 0
    flags: list[str] = field(default_factory=list)

    @property
    def suspicious(self) -> bool:
        return bool(self.flags)

    def to_dict(self) -> dict:
        return {**asdict(self), "suspicious": self.suspicious}


MIN_SAMPLE = 64


def entropy(data: bytes) -> float:
    """Shannon entropy in bits per byte, Miller-Madow corrected so short files are not
    underestimated (200 random bytes measure ~7.1 uncorrected, ~7.6 corrected)."""
    if not data:
        return 0.0
    counts = Counter(data)
    n = len(data)
    plain = -sum(c / n * math.log2(c / n) for c in counts.values())
    return min(8.0, plain + (len(counts) - 1) / (2 * n * math.log(2)))


def sample(paths: list[str]) -> list[str]:
    """The paths whose content is sampled for entropy (spread evenly over the list, at most SAMPLE_FILES)."""
    step = max(1, len(paths) // SAMPLE_FILES)
    return paths[::step][:SAMPLE_FILES]


def changed_paths(previous: dict[str, str], current: dict) -> list[str]:
    """Rewritten then added paths of current against previous (sorted each): what compare() samples."""
    rewritten = [p for p in current if p in previous and previous[p] != current[p][0]]
    return sorted(rewritten) + sorted(set(current) - set(previous))


def _sample_entropy(paths: list[str]) -> list[float]:
    values = []
    for path in sample(paths):
        try:
            with open(path, "rb") as handle:
                data = handle.read(SAMPLE_BYTES)
        except OSError:
            continue
        if len(data) >= MIN_SAMPLE:
            values.append(entropy(data))
    return values


def _renamed(added: set[str], removed: set[str]) -> int:
    """Added files that are a removed file plus a new suffix (report.csv -> report.csv.locked)."""
    count = 0
    for path in added:
        stem, ext = os.path.splitext(path)
        if ext and stem in removed:
            count += 1
    return count


def compare(previous: dict[str, str], current: dict[str, tuple[str, int]]) -> Change:
    """previous: path -> sha256; current: path -> (sha256, size). Flags come from `judge`."""
    change = Change(previous_files=len(previous))
    if not previous:
        return change
    added = set(current) - set(previous)
    removed = set(previous) - set(current)
    rewritten = [p for p in current if p in previous and previous[p] != current[p][0]]
    change.added, change.removed, change.changed = len(added), len(removed), len(rewritten)
    change.changed_bytes = sum(current[p][1] for p in rewritten) + sum(current[p][1] for p in added)
    values = _sample_entropy(changed_paths(previous, current))
    change.sampled = len(values)
    if values:
        change.mean_entropy = round(statistics.fmean(values), 3)
        change.high_entropy_share = round(sum(v >= HIGH_ENTROPY for v in values) / len(values), 3)
    change.renamed_extensions = _renamed(added, removed)
    return change


def _usual(baseline: list[dict], key: str) -> float:
    values = [b.get(key, 0.0) for b in baseline[-BASELINE_GENERATIONS:]]
    return statistics.median(values) if values else 0.0


def clean_history(records: list[dict]) -> list[dict]:
    """The Change records of generations that were not flagged: the only ones that say what is usual."""
    return [r for r in records if not r.get("suspicious") and not r.get("flags")]


def _rewrite_share(record: dict) -> float:
    return (record["changed"] + record.get("renamed_extensions", 0)) / max(record["previous_files"], 1)


def _encrypted(change: Change, baseline: list[dict]) -> bool:
    """Many files rewritten with high-entropy content, which this target does not usually do."""
    touched = change.changed + change.renamed_extensions
    usual_rewrite = _usual([{"share": _rewrite_share(b)} for b in baseline if b.get("previous_files")], "share")
    usual_entropy = _usual(baseline, "high_entropy_share")
    # a target of one or two files (an export) counts when all of them were rewritten
    enough = touched >= min(MIN_REWRITES, max(change.previous_files, 1))
    return (enough and touched / max(change.previous_files, 1) >= REWRITE_SHARE
            and change.high_entropy_share >= 0.6
            and not (usual_rewrite >= REWRITE_SHARE and usual_entropy >= 0.6))


def judge(change: Change, baseline: list[dict], since: str = "") -> Change:
    """Set flags on change, given the target's earlier clean Change records (oldest first).
    `since` names the reference when it is not the last clean generation (drift)."""
    prev = max(change.previous_files, 1)
    touched = change.changed + change.renamed_extensions
    lead = f"{since}: " if since else ""
    if _encrypted(change, baseline):
        change.flags.append(f"{lead}mass encryption suspected: {touched} of {change.previous_files} files "
                            f"rewritten, {change.high_entropy_share:.0%} of sampled changes look encrypted "
                            f"(mean entropy {change.mean_entropy:.2f} bits/byte)")
    if change.renamed_extensions >= MIN_FILES:
        change.flags.append(f"{lead}{change.renamed_extensions} files renamed with a new extension")
    if not since and change.removed >= MIN_FILES and change.removed / prev >= DELETE_SHARE:
        change.flags.append(f"mass deletion: {change.removed} of {change.previous_files} files removed")
    return change


def implicated(record: dict) -> bool:
    """A step that rewrote files with high-entropy content: part of a slow encryption once drift is flagged."""
    touched = record.get("changed", 0) + record.get("renamed_extensions", 0)
    return touched >= MIN_REWRITES and record.get("high_entropy_share", 0) >= 0.6


def judge_drift(drift: Change, baseline: list[dict], anchor_time: str) -> list[str]:
    """Flags of the cumulative change since the drift anchor, judged against the usual drift of clean
    generations (each clean record carries its own `drift`)."""
    usual = [b["drift"] for b in baseline if isinstance(b.get("drift"), dict)]
    since = f"cumulative change since the clean generation of {anchor_time}"
    return judge(replace(drift, flags=[]), usual, since=since).flags


def judge_dump(rows: dict[str, int], reference_rows: dict[str, int], allowance: dict[str, float] | None = None,
               since: str = "") -> Change:
    """A dump is suspicious when a table lost more of its rows than its allowance (share of rows; tables
    that only grow have 0) against a clean reference generation, or vanished.

    allowance: {table: share, "default": share}; without an entry a table may lose ROW_LOSS, and only
    tables of MIN_FILES rows or more are judged (a handful of rows is ordinary churn)."""
    allowance = allowance or {}
    change = Change(previous_files=len(reference_rows))
    lead = f"{since}: " if since else ""
    for table, before in sorted(reference_rows.items()):
        after = rows.get(table, 0)
        key = table if table in allowance else table.rsplit(".", 1)[-1]  # public.events or events
        explicit = key in allowance
        share = allowance.get(key, allowance.get("default", ROW_LOSS))
        if before <= 0 or (not explicit and before < MIN_FILES):
            continue
        lost = (before - after) / before
        if (table not in rows) or lost > share + 1e-12:
            change.flags.append(f"{lead}mass deletion: table {table} fell from {before} to {after} rows "
                                f"({lost:.1%} lost, allowance {share:.0%})")
    return change
