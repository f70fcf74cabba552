"""Projected time to service-ready, per target and for the whole terminal, from the drills in state
(backupd.drill.projection has the method): a target's newest drill that measured rates, projected at its
newest backup's size, with the measured error of the newest projected/measured pair; the terminal's
targets in restore order, summed over parallel lanes, against the site's allowable_downtime.
`backupd status` and the runbook show both (render/time_to_service.py words the terminal's)."""

from __future__ import annotations

from backupd.drill import projection
from backupd.policy.order import restore_order
from backupd.state.runs import State

#: Drill outcomes whose timings count (an unavailable drill measured nothing).
TIMED = ("pass", "warn", "fail")


def for_target(state: State, target) -> dict:
    """projected_ready_seconds (None without a drill that measured rates), its basis, the size it is
    projected at, and the measured error of the newest pair (None before a full drill follows another)."""
    runs = [r for r in state.runs("drill", target.name, limit=20) if r["status"] in TIMED]
    base = next((r for r in runs if r["detail"].get("rates")), None)
    paired = projection.measured_error([r["detail"] for r in runs if r["status"] in ("pass", "warn")])
    out = {"projected_ready_seconds": None, "projection_basis": None, "projection_error": paired}
    if base is None:
        return out
    # the base's rates, their fixed parts fitted with an earlier drill of another size (projection.fit)
    rates = projection.basis([r["detail"] for r in runs[runs.index(base):]])
    facts = ((state.last("backup", target.name, "ok") or {}).get("detail") or {}).get("facts") or {}
    proj_bytes = base["detail"].get("projection", {}).get("bytes", rates["bytes"])
    proj_files = base["detail"].get("projection", {}).get("files", rates["files"])
    nbytes, files = facts.get("bytes", proj_bytes), facts.get("files", proj_files)
    got = projection.project(rates, nbytes, files)
    out.update(projected_ready_seconds=got["seconds"], projected_bytes=nbytes, projected_files=files,
               projection_basis=f"{base['detail'].get('kind') or 'drill'} drill of "
                                f"{(base['detail'].get('snapshot_id') or base['snapshot_id'] or '-')[:8]}"
                                + (", fixed parts fitted with an earlier size's drill"
                                   if rates.get("fitted_with") else ""))
    return out


def terminal(state: State, policy_set, per_target: dict[str, dict] | None = None) -> dict:
    """The whole terminal: every target in restore order (policy.order.restore_order), its first destination
    its lane (see backupd.drill.projection.terminal for the rule), against site.allowable_downtime."""
    ordered = restore_order(policy_set)
    per_target = {t.name: (per_target or {}).get(t.name) or for_target(state, t) for t in ordered}
    items = [{"target": t.name, "destination": t.destinations[0],
              "seconds": per_target[t.name]["projected_ready_seconds"]} for t in ordered]
    site = policy_set.site
    out = projection.terminal(items, site.restore_parallelism)
    allowed = site.allowable_downtime.total_seconds() if site.allowable_downtime else None
    worst = None
    for item in items:
        paired = per_target[item["target"]]["projection_error"] or {}
        if paired.get("error") is not None and (worst is None or abs(paired["error"]) > abs(worst)):
            worst = paired["error"]
    out.update(allowable_downtime_seconds=allowed, order=[i["target"] for i in items], worst_measured_error=worst,
               share=round(out["seconds"] / allowed, 4) if allowed else None,
               verdict=None if allowed is None else "over" if out["seconds"] > allowed else "within")
    return out
