"""`backupd status`: per target the last successful backup and its age against the RPO."""

from __future__ import annotations

import time

from backupd.config import Config
from backupd.policy.durations import format_duration
from backupd.state import State


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def run(cfg: Config, policy_set) -> list[dict]:
    """One row per target; status ok, stale (older than the RPO), failed (last run failed) or never."""
    state = State(cfg.state_dir)
    now, rows = time.time(), []
    for target in policy_set.targets:
        last_ok = state.last("backup", target.name, "ok")
        last_any = state.last("backup", target.name)
        row = {"target": target.name, "category": target.category,
               "rpo": format_duration(target.frequency), "last_snapshot": None, "age": None,
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
        rows.append(row)
    return rows
