"""The audit report inside an export: per target, snapshot inventory, generations, history and drills.

Input: config, policy set, the exported records, `now`. Output: a plain dict (report.json); the CSV
and bilingual HTML renderings live in evidence_html.py.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta

from backupd.actions import offline
from backupd.actions.common import repository
from backupd.actions.snapshot_choice import data_snapshots, flagged
from backupd.engine import snapshots as restic_snapshots
from backupd.errors import BackupdError
from backupd.evidence.canonical import iso
from backupd.policy.durations import format_duration
from backupd.render.charts import number

#: What build() and evidence_conformance read of the records: an export keeps only records of these
#: kinds, with only these data fields (the data of runbook, key backup and export records is never
#: parsed: only their seqs are reported), and folds backup records into a BackupTally as it reads
#: them, so a ledger of a million records never sits in memory.
DATA_FIELDS = ("target", "status", "verdict", "ok", "destination", "snapshot_id", "service_ready_seconds")
RECORD_FIELDS = {"drill": DATA_FIELDS, "runbook": (), "keys_escrow": (), "key-backup": (), "evidence-export": (),
                 offline.KIND: offline.FIELDS}
RECORD_KINDS = frozenset(RECORD_FIELDS) | {"backup"}

#: Age buckets of "generations by age" (label, upper bound).
AGE_BUCKETS = (("<=1d", timedelta(days=1)), ("<=7d", timedelta(days=7)), ("<=30d", timedelta(days=30)),
               ("<=90d", timedelta(days=90)), ("<=365d", timedelta(days=365)), (">365d", timedelta.max))


def inventory(cfg, policy_set, host: str | list[str]) -> dict[tuple[str, str], dict]:
    """(target, destination) -> {snapshots: [(id, time)], flagged: {id: why}, error}; one restic call per
    destination (data snapshots and the companions that flag or accept generations)."""
    out: dict[tuple[str, str], dict] = {}
    for name, dest in policy_set.destinations.items():
        if dest.kind == "removable":
            continue  # media come and go: their rotations are reported from the media-sync records
        repo = None  # with the listing given, the functions below call no restic
        try:
            repo = repository(cfg, name, dest)
            listing = restic_snapshots.list_snapshots(repo, host=host)
            error = None
        except BackupdError as exc:
            listing, error = [], str(exc)
        for target in policy_set.targets:
            if name in target.destinations:
                own = [s for s in listing if s.tagmap.get("target") == target.name]
                mine = data_snapshots(repo, target.name, host, own)
                out[(target.name, name)] = {"snapshots": mine, "error": error,
                                            "flagged": flagged(repo, mine, target.name, host, own)}
    return out


def generations(times: list[datetime], now: datetime) -> dict[str, int]:
    counts = {label: 0 for label, _ in AGE_BUCKETS}
    for when in times:
        age = now - when
        counts[next(label for label, bound in AGE_BUCKETS if age <= bound)] += 1
    return counts


def _destination_row(dest_name: str, dest, found: dict, min_history: timedelta, now: datetime) -> dict:
    snaps = found["snapshots"]
    times = [s.time for s in snaps]
    oldest = min(times) if times else None
    return {"destination": dest_name, "kind": dest.kind, "object_lock": bool(getattr(dest, "object_lock", False)),
            "offline": bool(getattr(dest, "offline", False)), "error": found["error"],
            "snapshots": [{"id": s.id, "short_id": s.short_id, "time": iso(s.time),
                           "suspect": s.id in found.get("flagged", {})} for s in snaps],
            "count": len(snaps), "generations": generations(times, now),
            "oldest_restorable": iso(oldest) if oldest else None,
            "newest": iso(max(times)) if times else None,
            "oldest_age_days": round((now - oldest).total_seconds() / 86400, 2) if oldest else None,
            "meets_min_history": bool(oldest and now - oldest >= min_history)}


def by_target(records: list[dict]) -> dict[tuple, list[dict]]:
    """(kind, target) -> records, in ledger order: one pass, however many targets."""
    out: dict[tuple, list[dict]] = {}
    for rec in records:
        data = rec["data"] if isinstance(rec.get("data"), dict) else {}
        target = data.get("target")
        out.setdefault((rec["kind"], target if isinstance(target, str) else None), []).append(rec)
    return out


def _status(data: dict) -> str:
    return str(data.get("status") or data.get("verdict") or ("ok" if data.get("ok") else "unknown"))


class BackupTally:
    """The backup summary per target (counts, the last success, seqs), fed one backup record at a time
    in ledger order: no entry per backup, as a year of a busy host's ledger holds hundreds of thousands."""

    def __init__(self):
        self.targets: dict[str | None, list] = {}  # target -> [ok count, seqs, last ok (seq, time, data)]

    def add(self, seq: int, time: str, data) -> None:
        data = data if isinstance(data, dict) else {}
        target = data.get("target")
        entry = self.targets.get(target if isinstance(target, str) else None)
        if entry is None:
            entry = self.targets[target if isinstance(target, str) else None] = [0, [], None]
        entry[1].append(seq)
        if _status(data) == "ok":
            entry[0] += 1
            entry[2] = (seq, time, data)

    def summary(self, target: str) -> dict:
        ok, seqs, last = self.targets.get(target) or (0, [], None)
        return {"ok": ok, "failed": len(seqs) - ok,
                "last_ok": _history([{"seq": last[0], "time": last[1], "kind": "backup", "data": last[2]}],
                                    "backup", target)[0] if last is not None else None,
                "seqs": list(seqs)}

    @classmethod
    def of(cls, records: list[dict]) -> "BackupTally":
        """The tally of the backup records among records ({seq, time, kind, data} dicts)."""
        tally = cls()
        for rec in records:
            if rec["kind"] == "backup":
                tally.add(rec["seq"], rec["time"], rec.get("data"))
        return tally


def _history(records: list[dict], kind: str, target: str) -> list[dict]:
    out = []
    for rec in records:
        data = rec["data"] if isinstance(rec.get("data"), dict) else {}
        if rec["kind"] == kind and data.get("target") == target:
            status = _status(data)
            out.append({"seq": rec["seq"], "time": rec["time"], "status": str(status), "verdict": data.get("verdict"),
                        "destination": data.get("destination"), "snapshot_id": data.get("snapshot_id"),
                        "service_ready_seconds": number(data.get("service_ready_seconds"))})
    return out


def activity(grouped: dict[tuple, list[dict]], backups: BackupTally, target: str) -> dict:
    """A target's backups and drills in the report, from the period's records alone (grouped by
    by_target): what `evidence verify` rebuilds to check a bundle's report."""
    return {"backups": backups.summary(target),
            "drills": _history(grouped.get(("drill", target), []), "drill", target),
            "offline_rotations": offline.rotations(grouped.get((offline.KIND, None), []), target)}


def build(cfg, policy_set, records: list[dict], now: datetime, host: str, found: dict,
          backups: BackupTally | None = None) -> dict:
    """report.json: one entry per target (found = inventory(...)); backups: the period's backup records
    already tallied (else the backup records among records are)."""
    dests = policy_set.destinations
    targets = []
    grouped = by_target(records)
    backups = backups if backups is not None else BackupTally.of(records)
    for t in policy_set.targets:
        targets.append({
            "name": t.name, "category": t.category, "environment": t.environment, "source": t.source,
            "owner": t.owner, "frequency": format_duration(t.frequency),
            "rto": format_duration(t.rto) if t.rto else None,
            "rto_seconds": t.rto.total_seconds() if t.rto else None,
            "min_history": format_duration(t.retention.min_history),
            "min_history_seconds": t.retention.min_history.total_seconds(),
            "offline_max_age_seconds": t.offline.max_age.total_seconds() if t.offline else None,
            "destinations": [_destination_row(d, dests[d], found[(t.name, d)], t.retention.min_history, now)
                             for d in t.destinations],
            **activity(grouped, backups, t.name)})
    site = policy_set.site
    others = [{"name": n, **activity(grouped, backups, n)}
              for n in sorted(recorded_targets(grouped, backups) - {t.name for t in policy_set.targets})]
    return {"generated": iso(now), "host": host, "site": site.name, "port": site.port,
            "specific_port": site.specific_port, "targets": targets, "other_targets": others}


def recorded_targets(grouped: dict[tuple, list[dict]], backups: BackupTally) -> set[str]:
    """Targets the period's backup and drill records name: each must be in the report, in the policy's
    targets or (no longer in the policy) in other_targets, so dropping one from a bundle's report shows."""
    named = {t for (kind, t) in grouped if kind == "drill"} | set(backups.targets)
    return {t for t in named if isinstance(t, str)}


CSV_COLUMNS = ("target", "category", "destination", "snapshots", "oldest_restorable", "newest", "oldest_age_days",
               "min_history", "meets_min_history", *[label for label, _ in AGE_BUCKETS], "backups_ok",
               "backups_failed", "drills", "last_drill", "last_drill_status", "error")


def to_csv(report: dict) -> bytes:
    """report.csv: one row per target and destination."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for t in report["targets"]:
        last = t["drills"][-1] if t["drills"] else {}
        for d in t["destinations"]:
            writer.writerow([t["name"], t["category"], d["destination"], d["count"], d["oldest_restorable"] or "",
                             d["newest"] or "", d["oldest_age_days"] if d["oldest_age_days"] is not None else "",
                             t["min_history"], d["meets_min_history"], *d["generations"].values(),
                             t["backups"]["ok"], t["backups"]["failed"], len(t["drills"]), last.get("time", ""),
                             last.get("status", ""), d["error"] or ""])
    return buf.getvalue().encode("utf-8")


def to_json(report: dict) -> bytes:
    """report.json: the bytes of json.dumps(report, indent=1, sort_keys=True, ensure_ascii=False), UTF-8.

    json's indenting encoder is pure Python, one generator step per token: seconds for a year of seqs
    and drills. Here every list or mapping without a list or mapping inside (seqs, a drill) goes through
    json's C encoder in one call, its item separator carrying the line break and indent of its level."""
    out: list[str] = []
    _value(report, 0, out)
    return "".join(out).encode("utf-8")


_CONTAINERS = (list, tuple, dict)
_SCALARS = frozenset({str, int, float, bool, type(None)})
_flat_encoders: dict[int, json.JSONEncoder] = {}


def _scalars(values) -> bool:
    """Only plain scalars among values (types compared in C: a million seqs in milliseconds)."""
    return set(map(type, values)) <= _SCALARS


def _value(value, level: int, out: list[str]) -> None:
    if not isinstance(value, _CONTAINERS):
        out.append(json.dumps(value, ensure_ascii=False))
    elif not value:
        out.append("{}" if isinstance(value, dict) else "[]")
    elif _scalars(value.values() if isinstance(value, dict) else value):
        out.append(_flat(value, level))
    elif isinstance(value, list) and set(map(type, value)) == {dict} and all(
            v and _scalars(v.values()) for v in value):
        out.append(_flat_rows(value, level))
    elif isinstance(value, dict):
        inner = "\n" + " " * (level + 1)
        out.append("{")
        for i, (key, item) in enumerate(sorted(value.items())):
            out.append((inner if i == 0 else "," + inner) + _key(key) + ": ")
            _value(item, level + 1, out)
        out.append("\n" + " " * level + "}")
    else:
        inner = "\n" + " " * (level + 1)
        out.append("[")
        for i, item in enumerate(value):
            out.append(inner if i == 0 else "," + inner)
            _value(item, level + 1, out)
        out.append("\n" + " " * level + "]")


def _flat(value, level: int) -> str:
    """A non-empty list or mapping of scalars at this nesting level, as the indenting encoder writes it."""
    encoder = _flat_encoders.get(level)
    if encoder is None:
        encoder = _flat_encoders[level] = json.JSONEncoder(sort_keys=True, ensure_ascii=False,
                                                           separators=(",\n" + " " * (level + 1), ": "))
    text = encoder.encode(value)
    return text[0] + "\n" + " " * (level + 1) + text[1:-1] + "\n" + " " * level + text[-1]


def _flat_rows(rows: list[dict], level: int) -> str:
    """A list of non-empty mappings of scalars (the drills): one C encoder call for all of them. The
    separator holds a line break, which no encoded string can hold, so `}<sep>{` is always the seam
    between two mappings and gets the indent of their level."""
    sep = ",\n" + " " * (level + 2)
    encoder = _flat_encoders.get(level + 1)
    if encoder is None:
        encoder = _flat_encoders[level + 1] = json.JSONEncoder(sort_keys=True, ensure_ascii=False,
                                                               separators=(sep, ": "))
    outer, inner = "\n" + " " * (level + 1), "\n" + " " * (level + 2)
    body = encoder.encode(rows)[2:-2].replace("}" + sep + "{", outer + "}," + outer + "{" + inner)
    return "[" + outer + "{" + inner + body + outer + "}" + "\n" + " " * level + "]"


def _key(key) -> str:
    """A mapping key as json writes it (str, or a float/int/bool/None turned into its JSON text)."""
    if isinstance(key, str):
        return json.dumps(key, ensure_ascii=False)
    if isinstance(key, (int, float)) or key is None:
        return json.dumps(json.dumps(key), ensure_ascii=False)
    raise TypeError(f"keys must be str, int, float, bool or None, not {key.__class__.__name__}")
