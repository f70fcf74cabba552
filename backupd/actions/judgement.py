"""Generations judged suspect after the fact: when cumulative drift is flagged, the earlier generations
that carried the slow change were not clean either.

They are dropped from the target's clean references and flagged in every repository that holds them,
with a companion snapshot (tag backupd-judgement + suspect, of=<id>): the writer can add such a flag,
never remove one, and restores and drills on any host skip the flagged generations.
"""

from __future__ import annotations

import json

from backupd import evidence
from backupd.actions.common import repository
from backupd.actions.snapshot_choice import JUDGEMENT_TAG
from backupd.config.loader import Config
from backupd.engine import backup as restic_backup
from backupd.errors import BackupdError
from backupd.judgement import analytics, baseline


def _flag(cfg: Config, policy_set, target: str, dest_name: str, snapshot_id: str, why: str) -> str | None:
    """Write one judgement companion; returns an error text instead of raising."""
    staging = cfg.state_dir / "manifests" / f"{target}.judgement"
    staging.mkdir(parents=True, exist_ok=True, mode=0o700)
    (staging / "backupd-judgement.json").write_text(json.dumps(
        {"target": target, "snapshot_id": snapshot_id, "suspect": True, "why": why}, sort_keys=True))
    try:
        repo = repository(cfg, dest_name, policy_set.destinations[dest_name])
        restic_backup.backup_paths(repo, [str(staging)], excludes=[], host=cfg.host,
                                   tags=[JUDGEMENT_TAG, "suspect", f"target={target}", f"of={snapshot_id}"])
    except BackupdError as exc:
        return f"{dest_name} {snapshot_id[:8]}: {exc}"
    return None


def retract_drifted(cfg: Config, policy_set, target, flags: list[str]) -> list[str]:
    """After a drift flag: flag the generations since the anchor that carried the change; returns notes."""
    dropped = baseline.retract_since_anchor(cfg.state_dir, target.name,
                                            lambda g: analytics.implicated(g.get("change") or {}))
    why = "part of a slow change flagged later as cumulative drift: " + "; ".join(flags[:2])
    notes, flagged = [], []
    for generation in dropped:
        for dest_name, snapshot_id in (generation.get("snapshots") or {}).items():
            if dest_name not in policy_set.destinations or not snapshot_id:
                continue
            error = _flag(cfg, policy_set, target.name, dest_name, snapshot_id, why)
            notes.append(f"could not flag {error}" if error else
                         f"SUSPECT (after the fact): {dest_name} {snapshot_id[:8]} carried the drift")
            if not error:
                flagged.append({"destination": dest_name, "snapshot_id": snapshot_id})
    if flagged:
        evidence.record(cfg, "suspect_snapshot", {"target": target.name, "after_the_fact": True,
                                                  "snapshots": flagged, "flags": flags[:5]})
    return notes
