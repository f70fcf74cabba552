"""`backupd status`: per target the last successful backup and its age against the RPO, and what proves
it recoverable: the verified RPO and last drill (state job "drill"), the immutability of its destinations
(the last storage audit in the evidence ledger), their check coverage (state job "check") and the
daemon's next due time (its persisted jobs). `mirror_lag`: what this host has not yet mirrored (evidence/lag.py)."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

from backupd.actions import offline, time_to_service
from backupd.config.loader import Config
from backupd.evidence import foreign, lag
from backupd.evidence.ledger import LEDGER_NAME, Ledger, evidence_dir
from backupd.policy.durations import format_duration
from backupd.policy.schema import S3Destination
from backupd.state.jobs import JobStore, job_name
from backupd.state.runs import State

#: Audit outcomes that judge a destination (unavailable/skipped audits say nothing about it).
AUDIT_VERDICTS = ("ok", "finding")
#: (ledger path, size, mtime_ns) -> per destination (status, time): the daemon asks every few seconds,
#: and the ledger only changes when something happened.
_audit_cache: dict[tuple, dict[str, tuple[str, str]]] = {}


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _iso(unix: float | None) -> str | None:
    return datetime.fromtimestamp(unix, timezone.utc).isoformat() if unix else None


def _backup_fields(state: State, target, now: float) -> dict:
    """The original status columns: last successful backup, its age against the RPO."""
    last_ok = state.last("backup", target.name, "ok")
    last_any = state.last("backup", target.name)
    row = {"rpo": format_duration(target.frequency), "last_snapshot": None, "age": None,
           "age_seconds": None, "rpo_seconds": target.frequency.total_seconds(),
           "last_success_time": last_ok["finished"] if last_ok else None,
           "last_duration": (last_any["detail"].get("duration") if last_any else None)}
    if last_ok:
        age = now - last_ok["finished"]
        row.update(last_snapshot=(last_ok["snapshot_id"] or "")[:8], age=_age(age), age_seconds=round(age))
    if last_ok is None:
        row["status"] = "never"
    elif last_any and last_any["status"] != "ok":
        row["status"] = "failed"
    elif age > target.frequency.total_seconds():
        row["status"] = "stale"
    else:
        row["status"] = "ok"
    return row


def _log_silent(state: State, target) -> bool | None:
    """For a logs target: True when its last successful generation brought no new or changed file
    (the log source may be switched off: guideline 2.7.3 asks for an alert). None for other targets."""
    if target.category != "logs":
        return None
    last = state.history("backup", target.name, limit=1)
    change = last[0].get("facts", {}).get("change") if last else None
    if not change or not change.get("previous_files"):
        return False
    return change.get("added", 0) + change.get("changed", 0) == 0


def _drill_fields(state: State, target, now: float) -> dict:
    """Verified RPO (every drill row carries the newest drill-verified snapshot time forward) and the
    last drill: status pass|warn|fail|unavailable, kind, time to service-ready against the RTO."""
    last = state.last("drill", target.name)
    detail = last["detail"] if last else {}
    verified = detail.get("verified_snapshot_time")
    return {"verified_snapshot_time": _iso(verified),
            "verified_rpo_seconds": round(now - verified) if verified else None,
            "verified_rpo": _age(now - verified) if verified else None,
            "drill_status": last["status"] if last else None, "drill_verdict": detail.get("verdict"),
            "drill_kind": detail.get("kind"), "drill_time": _iso(last["finished"]) if last else None,
            "drill_ready_seconds": detail.get("service_ready_seconds"),
            "rto": format_duration(target.rto) if target.rto else None,
            "rto_seconds": target.rto.total_seconds() if target.rto else None}


def _audits(state_dir: Path) -> dict[str, tuple[str, str]]:
    """Per destination the (status, time) of its newest audit that judged it; cached per ledger version."""
    path = evidence_dir(state_dir) / LEDGER_NAME
    try:
        st = path.stat()
    except FileNotFoundError:
        return {}
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _audit_cache:
        ledger = Ledger(state_dir)
        try:
            records = ledger.query(kind="storage_audit")
        finally:
            ledger.index.close()
        found: dict[str, tuple[str, str]] = {}
        for rec in records:  # seq order: later audits overwrite earlier ones
            for dest in rec["data"].get("destinations", []):
                if dest.get("status") in AUDIT_VERDICTS:
                    found[dest["destination"]] = (dest["status"], rec["time"])
        _audit_cache.clear()
        _audit_cache[key] = found
    return _audit_cache[key]


def _immutability(target, destinations: dict, audits: dict) -> dict:
    """finding if any locked destination's last audit found a problem, never if one was never audited,
    ok when all passed; none when no destination of the target is S3 with object_lock."""
    locked = [d for d in target.destinations
              if isinstance(destinations.get(d), S3Destination) and destinations[d].object_lock]
    if not locked:
        return {"immutability": "none", "immutability_audited": None}
    seen = [audits.get(d) for d in locked]
    states = {s[0] if s else "never" for s in seen}
    verdict = next(v for v in ("finding", "never", "ok") if v in states)
    times = [s[1] for s in seen if s]
    return {"immutability": verdict, "immutability_audited": min(times) if verdict != "never" else None}


def _coverage(state: State, target) -> dict:
    """Share of packs read within the check window, per destination as last recorded, and the lowest."""
    per = {}
    for dest in target.destinations:
        last = state.last("check", dest)
        per[dest] = last["detail"].get("coverage") if last else None
    known = [c for c in per.values() if c is not None]
    lowest = min(known) if len(known) == len(per) else None  # a never-checked destination: unknown
    return {"check_coverage": lowest, "check_coverage_by_destination": per}


#: The state column: the worst of what is wrong with a target, by severity.
SEVERITY = {"ok": 0, "warn": 1, "stale": 2, "finding": 3, "check failed": 3, "drill failed": 4, "suspect": 4,
            "failed": 5, "never": 5}


def _suspect(state: State, target) -> bool:
    """The newest generation was flagged suspect (a later clean one, or `accept`, clears it)."""
    last = state.history("backup", target.name, limit=1)
    return bool(last and (last[0].get("facts", {}).get("change") or {}).get("suspicious"))


def _checks_failed(state: State, target) -> list[str]:
    return [d for d in target.destinations if (state.last("check", d) or {}).get("status") == "failed"]


def overall(row: dict, suspect: bool, checks_failed: list[str]) -> tuple[str, list[str]]:
    """(state, reasons): the worst of backup age, newest generation's judgement, last drill verdict,
    check slices and storage audit."""
    reasons = [] if row["status"] == "ok" else [f"backup {row['status']}"]
    if suspect:
        reasons.append("suspect: the newest generation was flagged (see backupd backup output; accept or restore)")
    verdict = (row.get("drill_verdict") or "").upper()
    if row.get("drill_status") in ("fail", "suspect"):
        reasons.append(f"drill failed: last drill {verdict or row['drill_status'].upper()}")
    elif verdict == "WARN":
        reasons.append("warn: last drill needed >= 80% of the RTO")
    reasons += [f"check failed: last check slice of {d} failed" for d in checks_failed]
    reasons += [r for r in [offline.reason(row)] if r]
    if row.get("immutability") == "finding":
        reasons.append(f"finding: storage audit {row['immutability']}")
    labels = [r.split(":")[0] if ":" in r else r.replace("backup ", "") for r in reasons]
    worst = max(labels, key=lambda label: SEVERITY.get(label, 3), default="ok")
    return worst, reasons


def run(cfg: Config, policy_set) -> list[dict]:
    """One row per target: status (of backups: ok, stale, failed or never) and state, the worst of
    everything status shows (backup, judgement, drill, check, audit) with its reasons."""
    state = State(cfg.state_dir)
    jobs = JobStore(cfg.state_dir).all()
    audits = _audits(cfg.state_dir)
    now, rows = time.time(), []
    for target in policy_set.targets:
        job = jobs.get(job_name(target.name))
        row = {"target": target.name, "category": target.category, **_backup_fields(state, target, now),
               **_drill_fields(state, target, now),
               **_immutability(target, policy_set.destinations, audits), **_coverage(state, target),
               "next_due": job.next_due if job else None, "log_silent": _log_silent(state, target),
               **offline.fields(cfg.state_dir, target, now),
               **time_to_service.for_target(state, target)}
        row["next_due_in"] = (("now" if job.next_due <= now else _age(job.next_due - now)) if job else None)
        row["state"], row["state_reasons"] = overall(row, _suspect(state, target), _checks_failed(state, target))
        rows.append(row)
    return rows


def mirror_lag(cfg: Config) -> dict | None:
    """This host's evidence mirror lag (evidence/lag.py, local state only); None without a mirror."""
    return lag.of(cfg)


def foreign_objects(cfg: Config) -> list[dict]:
    """Objects another identity planted under this host's evidence prefix, not yet acknowledged (foreign.py)."""
    found = foreign.open_finding(evidence_dir(cfg.state_dir))
    return found["objects"] if found else []


def media_checks(cfg: Config) -> list[dict]:
    """Per medium the newest `media verify` of this (verifier) host; a failed one needs attention until a
    clean check (media_verify.checks)."""
    from backupd.actions import media_verify

    return media_verify.checks(cfg.state_dir)


def terminal(cfg: Config, policy_set, rows: list[dict]) -> dict:
    """The whole terminal's projected time to service against site.allowable_downtime (time_to_service)."""
    return time_to_service.terminal(State(cfg.state_dir), policy_set, {r["target"]: r for r in rows})
