"""`backupd copy`: fill destinations marked `copy_from` with `restic copy` from their primary,
so a second failure domain holds the same snapshots without reading the sources twice."""

from __future__ import annotations

import time

from backupd import evidence
from backupd.actions.common import Retry, repository
from backupd.config.loader import Config
from backupd.engine import copy as restic_copy
from backupd.engine import init as restic_init
from backupd.errors import BackupdError, ConfigError, DependencyError


def pairs(policy_set, target) -> list[tuple[str, str]]:
    """(source, copy) destination names of a target."""
    dests = policy_set.destinations
    return [(dests[name].copy_from, name) for name in target.destinations
            if dests[name].copy_from in target.destinations]


def _ensure_like(cfg: Config, dest_repo, source_repo) -> None:
    marker = cfg.state_dir / "repos" / dest_repo.name
    if marker.exists():
        return
    if not restic_init.exists(dest_repo):
        restic_copy.init_like(dest_repo, source_repo)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(dest_repo.url + "\n")


def copy_target(cfg: Config, policy_set, target, source: str, dest: str) -> dict:
    """Copy one target's snapshots (data and manifests) from source to dest."""
    out = {"target": target.name, "source": source, "destination": dest, "status": "failed", "copied": []}
    t0 = time.monotonic()
    retry = Retry(cfg.retry_attempts, cfg.retry_wait_seconds)
    try:
        src = repository(cfg, source, policy_set.destinations[source])
        dst = repository(cfg, dest, policy_set.destinations[dest])
        retry.run(lambda: _ensure_like(cfg, dst, src), f"open {dest}")
        out["copied"] = retry.run(lambda: restic_copy.copy(dst, src, tags=[f"target={target.name}"],
                                                           host=cfg.host), f"copy {target.name}")
        out["status"] = "ok"
    except DependencyError as exc:
        out.update(status="unavailable", error=str(exc))
    except ConfigError as exc:  # wrong keys or password: exit 2
        out.update(status="misconfigured", error=str(exc))
    except BackupdError as exc:
        out["error"] = str(exc)
    out["duration"] = round(time.monotonic() - t0, 3)
    out["notes"] = retry.notes
    evidence.record(cfg, "copy", out)
    return out


def run(cfg: Config, policy_set, target_name: str | None = None) -> list[dict]:
    """Copy every target (or one) to each of its copy destinations."""
    targets = [policy_set.target(target_name)] if target_name else list(policy_set.targets)
    return [copy_target(cfg, policy_set, t, src, dst) for t in targets for src, dst in pairs(policy_set, t)]
