"""`backupd forget`: per-target retention with restic forget, guarded so planted snapshots cannot
push real generations out. Per destination one `restic snapshots` serves every target (each restic process
derives the repository key, ~0.5 s), then one forget per target and one for the orphaned companions.
Prune is a separate maintenance action; this never prunes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from backupd import evidence
from backupd.actions import incident
from backupd.actions.common import repository
from backupd.config.loader import Config
from backupd.engine import forget as restic_forget
from backupd.engine import prune as restic_prune
from backupd.engine import snapshots as restic_snapshots
from backupd.errors import BackupdError, ConfigError, DependencyError
from backupd.policy.schema import Target

CLOCK_SKEW = timedelta(minutes=10)
DATA_TAG = "backupd"  # every data snapshot carries it (backup.tags_for); companions do not


def keep_rules(target: Target) -> dict[str, int]:
    r = target.retention
    return {rule: getattr(r, rule) for rule in restic_forget.KEEP_RULES}


def _future(snaps, now: datetime) -> list:
    """Snapshots dated after now: they would shift --keep-within and the keep-last counts."""
    return [s for s in snaps if s.time > now + CLOCK_SKEW]


def _orphan_manifests(listing: list, kept: list) -> list[str]:
    """Companion manifests, amendments and judgements (tagged `of=`) whose data snapshot is not kept."""
    return [c.id for c in listing if "of" in c.tagmap and not any(k.made_as(c.tagmap["of"]) for k in kept)]


def _one(repo, host: str, target: Target, listing: list, out: dict, dry_run: bool) -> list[str]:
    """Apply one target's retention from the destination's listing; fill `out`; return the ids of its
    companions whose data snapshot is gone (forgotten by the caller, in one call per destination)."""
    tags = [DATA_TAG, f"target={target.name}"]
    mine = [s for s in listing if tags[1] in s.tags]
    snaps = [s for s in mine if DATA_TAG in s.tags]
    future = _future(snaps, datetime.now(timezone.utc))
    if future:
        out["error"] = (f"refusing to forget: {len(future)} snapshot(s) dated in the future "
                        f"({', '.join(s.short_id for s in future[:5])}); they may be planted to push "
                        "real generations out. Investigate before applying retention.")
        return []
    result = restic_forget.forget(repo, keep_rules(target), target.retention.min_history,
                                  tags=tags, host=host, dry_run=dry_run)
    out.update(keep=result.keep, remove=result.remove, status="ok")
    if dry_run:
        return []
    keep = set(result.keep)
    orphans = _orphan_manifests([s for s in mine if DATA_TAG not in s.tags], [s for s in snaps if s.id in keep])
    out["manifests_removed"] = len(orphans)
    return orphans


def _destination(cfg: Config, dest_name: str, dest, targets: list[Target], dry_run: bool) -> list[dict]:
    """Retention of `targets` on one destination: one listing serves every target's future-date guard and
    its orphaned companions (taken before any forget, it never sees a companion without its data snapshot),
    one forget per target (keep rules differ), one forget of all orphaned companions."""
    outs = [{"target": t.name, "destination": dest_name, "status": "failed", "dry_run": dry_run} for t in targets]
    owners: list[tuple[dict, list[str]]] = []
    try:
        repo = repository(cfg, dest_name, dest)
        listing = restic_snapshots.list_snapshots(repo, host=cfg.host)
    except BackupdError as exc:
        for out in outs:
            _failed(out, exc)
        return outs
    for target, out in zip(targets, outs):
        try:
            owners.append((out, _one(repo, cfg.host, target, listing, out, dry_run)))
        except BackupdError as exc:
            _failed(out, exc)
    orphans = [i for _, ids in owners for i in ids]
    try:
        restic_forget.forget_ids(repo, orphans)
    except BackupdError as exc:  # harmless: the next forget finds the same orphans again
        for out, ids in owners:
            if ids:
                out.update(manifests_removed=0, error=f"companion manifests not removed: {exc}")
    return outs


def _failed(out: dict, exc: BackupdError) -> None:
    out.update(status="unavailable" if isinstance(exc, DependencyError) else "failed", error=str(exc))


def run(cfg: Config, policy_set, target_name: str | None = None, dry_run: bool = False) -> list[dict]:
    """Apply each target's retention on each destination; refused while an incident is open (here or by
    marker in a WORM bucket of those destinations) or its state cannot be read."""
    targets = [policy_set.target(target_name)] if target_name else list(policy_set.targets)
    incident.guard(cfg, "forget", policy_set, {d for t in targets for d in t.destinations})
    by_pair = {}
    for dest_name in dict.fromkeys(d for t in targets for d in t.destinations):
        on_dest = [t for t in targets if dest_name in t.destinations]
        for out in _destination(cfg, dest_name, policy_set.destinations[dest_name], on_dest, dry_run):
            by_pair[(out["target"], dest_name)] = out
    results = [by_pair[(t.name, d)] for t in targets for d in t.destinations]
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
