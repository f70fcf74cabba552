"""`backupd accept`: an operator accepts a generation flagged suspect as a legitimate change.

The acceptance is stored beside the snapshot in every repository that holds it (a companion snapshot
tagged backupd-accept, so restores and drills on any host see it), recorded as evidence with the
operator's reason, and the accepted generation becomes the target's clean reference: later generations
are judged against it and drift starts again from it.
"""

from __future__ import annotations

import getpass
import json
import os
from datetime import datetime, timezone

from backupd import evidence
from backupd.actions.common import repository
from backupd.actions.snapshot_choice import ACCEPT_TAG, data_snapshots, flagged, load_manifest
from backupd.config.loader import Config
from backupd.engine import backup as restic_backup
from backupd.errors import ConfigError, Finding
from backupd.judgement import baseline

MAX_REASON = 2000


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def _store(cfg: Config, repo, target: str, snap, note: dict) -> None:
    """The acceptance as a companion snapshot of snap (the writer may add, never remove)."""
    staging = cfg.state_dir / "manifests" / f"{target}.accept"
    staging.mkdir(parents=True, exist_ok=True, mode=0o700)
    (staging / "backupd-accept.json").write_text(json.dumps({**note, "snapshot_id": snap.id}, sort_keys=True))
    restic_backup.backup_paths(repo, [str(staging)], excludes=[], host=cfg.host,
                               tags=[ACCEPT_TAG, f"target={target}", f"of={snap.id}"])


def _generation(doc: dict, snapshots: dict[str, str]) -> dict:
    """The baseline record of an accepted generation, from its backup-time manifest."""
    generation = {"files": baseline.file_map(doc.get("files", [])), "snapshots": snapshots}
    rows = doc.get("facts", {}).get("rows")
    if isinstance(rows, dict):
        generation["rows"] = rows
    return generation


def run(cfg: Config, policy_set, target_name: str, snapshot_id: str, reason: str) -> dict:
    """Accept snapshot_id of target; returns what was accepted where."""
    target = policy_set.target(target_name)
    reason = (reason or "").strip()
    if not reason:
        raise ConfigError("--reason must say why the change is legitimate (it is kept as evidence)")
    note = {"target": target.name, "reason": reason[:MAX_REASON], "operator": _operator(),
            "time": datetime.now(timezone.utc).isoformat()}
    accepted, doc, was_flagged = {}, None, False
    for dest_name in target.destinations:
        repo = repository(cfg, dest_name, policy_set.destinations[dest_name])
        snaps = data_snapshots(repo, target.name, cfg.backup_hosts())
        hits = [s for s in snaps if s.made_as(snapshot_id)]
        if len(hits) != 1:
            continue
        was_flagged |= hits[0].id in flagged(repo, snaps, target.name, cfg.backup_hosts())
        _store(cfg, repo, target.name, hits[0], note)
        accepted[dest_name] = hits[0].id
        doc = doc or load_manifest(repo, hits[0], target.name, cfg.backup_hosts())
    if not accepted:
        raise Finding(f"no destination of {target.name} holds exactly one snapshot {snapshot_id!r}")
    baseline.reset(cfg.state_dir, target.name, {**_generation(doc, accepted), "accepted": note["reason"]})
    result = {**note, "snapshots": accepted, "was_flagged": was_flagged}
    evidence.record(cfg, "accept", result)
    return result
