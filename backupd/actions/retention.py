"""`backupd forget`: per-target retention with restic forget, guarded so planted snapshots cannot
push real generations out. Prune is a separate maintenance action; this never prunes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from backupd import evidence
from backupd.actions import incident
from backupd.actions.common import repository
from backupd.config import Config
from backupd.engine import forget as restic_forget
from backupd.engine import prune as restic_prune
from backupd.engine import snapshots as restic_snapshots
from backupd.errors import BackupdError, ConfigError, DependencyError
from backupd.policy.schema import Target

CLOCK_SKEW = timedelta(minutes=10)


def keep_rules(target: Target) -> dict[str, int]:
    r = target.retention
    return {rule: getattr(r, rule) for rule in restic_forget.KEEP_RULES}


def _future(snaps, now: datetime) -> list:
    """Snapshots dated after now: they would shift --keep-within and the keep-last counts."""
    return [s for s in snaps if s.time > now + CLOCK_SKEW]


def _orphan_manifests(repo, target: str, host: str, kept: list) -> list[str]:
    """Companion manifests and amendments whose data snapshot was just forgotten."""
    companions = restic_snapshots.list_snapshots(repo, tags=[f"target={target}"], host=host)
    return [c.id for c in companions if "of" in c.tagmap
            and not any(k.made_as(c.tagmap["of"]) for k in kept)]


def _one(cfg: Config, target: Target, dest_name: str, dest, dry_run: bool) -> dict:
    out = {"target": target.name, "destination": dest_name, "status": "failed", "dry_run": dry_run}
    try:
        repo = repository(cfg, dest_name, dest)
        tags = ["backupd", f"target={target.name}"]
        snaps = restic_snapshots.list_snapshots(repo, tags=tags, host=cfg.host)
        future = _future(snaps, datetime.now(timezone.utc))
        if future:
            out["error"] = (f"refusing to forget: {len(future)} snapshot(s) dated in the future "
                            f"({', '.join(s.short_id for s in future[:5])}); they may be planted to push "
                            "real generations out. Investigate before applying retention.")
            return out
        result = restic_forget.forget(repo, keep_rules(target), target.retention.min_history,
                                      tags=tags, host=cfg.host, dry_run=dry_run)
        out.update(keep=result.keep, remove=result.remove, status="ok")
        if not dry_run:
            kept = [s for s in snaps if s.id in set(result.keep)]
            orphans = _orphan_manifests(repo, target.name, cfg.host, kept)
            restic_forget.forget_ids(repo, orphans)
            out["manifests_removed"] = len(orphans)
    except DependencyError as exc:
        out.update(status="unavailable", error=str(exc))
    except BackupdError as exc:
        out["error"] = str(exc)
    return out


def run(cfg: Config, policy_set, target_name: str | None = None, dry_run: bool = False) -> list[dict]:
    """Apply each target's retention on each destination; refused while an incident is open (here or by
    marker in a WORM bucket of those destinations) or its state cannot be read."""
    targets = [policy_set.target(target_name)] if target_name else list(policy_set.targets)
    incident.guard(cfg, "forget", policy_set, {d for t in targets for d in t.destinations})
    results = [_one(cfg, t, d, policy_set.destinations[d], dry_run) for t in targets for d in t.destinations]
    for result in results:
        evidence.record(cfg, "forget", result)
    return results


def _prune_one(cfg: Config, policy_set, name: str, dest, dry_run: bool) -> dict:
    out = {"destination": name, "status": "failed", "dry_run": dry_run}
    try:
        keys = getattr(dest, "maintainer_credentials_file", None)
        repo = repository(cfg, name, dest, credentials_file=keys)
        out["report"] = restic_prune.prune(repo, dry_run=dry_run).strip().splitlines()[-6:]
        out["status"] = "ok"
    except DependencyError as exc:
        out.update(status="unavailable", error=str(exc))
    except BackupdError as exc:
        out["error"] = str(exc)
    return out


def prune(cfg: Config, policy_set, destination: str | None = None, dry_run: bool = False) -> list[dict]:
    """restic prune on each destination (the maintenance identity's job, never the backup path),
    then extend the locks of what is still referenced, since prune repacks into new objects. Refused like
    forget during an incident; extend-locks alone stays allowed."""
    names = [n for n in policy_set.destinations if destination in (None, n)]
    if destination and not names:
        raise ConfigError(f"no destination named {destination!r}")
    incident.guard(cfg, "prune", policy_set, set(names))
    results = [_prune_one(cfg, policy_set, n, policy_set.destinations[n], dry_run) for n in names]
    for result in results:
        evidence.record(cfg, "prune", result)
    if not dry_run:
        from backupd.actions import extend

        for result in results:
            dest = policy_set.destinations[result["destination"]]
            if result["status"] == "ok" and getattr(dest, "maintainer_credentials_file", None):
                result["extend_locks"] = extend.run(cfg, policy_set, result["destination"])[0]["status"]
    return results
