"""restic forget: retention with a --keep-within guard. Never prunes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta

from backupd.engine import command
from backupd.engine.repository import Repository

KEEP_RULES = ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")


def restic_duration(td: timedelta) -> str:
    """timedelta -> restic duration ('42d', '36h'), rounded up so nothing is kept too short."""
    hours = -(-int(td.total_seconds()) // 3600)
    return f"{hours // 24}d" if hours % 24 == 0 else f"{hours}h"


def forget_args(keep: dict[str, int], keep_within: timedelta, *, tags: list[str], host: str,
                dry_run: bool = False) -> list[str]:
    """argv tail for forget: keep rules plus the mandatory --keep-within guard."""
    if keep_within <= timedelta(0):
        raise ValueError("forget needs a positive keep_within guard")
    args = ["--host", host, "--tag", ",".join(tags), "--group-by", "host",
            "--keep-within", restic_duration(keep_within)]
    for rule in KEEP_RULES:
        count = int(keep.get(rule, 0) or 0)
        if count > 0:
            args += ["--" + rule.replace("_", "-"), str(count)]
    if dry_run:
        args.append("--dry-run")
    return args


@dataclass
class ForgetResult:
    keep: list[str]
    remove: list[str]


def parse(stdout: bytes) -> ForgetResult:
    """Kept and removed snapshot ids from `restic forget --json`."""
    keep, remove = [], []
    for group in json.loads(stdout or b"[]") or []:
        keep += [s["id"] for s in group.get("keep") or []]
        remove += [s["id"] for s in group.get("remove") or []]
    return ForgetResult(keep=keep, remove=remove)


def forget(repo: Repository, keep: dict[str, int], keep_within: timedelta, *, tags: list[str],
           host: str, dry_run: bool = False) -> ForgetResult:
    """Apply retention to the snapshots carrying all `tags` on `host`."""
    done = command.run(repo, "forget", *forget_args(keep, keep_within, tags=tags, host=host,
                                                     dry_run=dry_run),
                       what=f"forget in {repo.name}", timeout=3600)
    return parse(done.stdout)


def forget_ids(repo: Repository, ids: list[str]) -> None:
    """Forget specific snapshots (used for manifests whose data snapshot is gone)."""
    if ids:
        command.run(repo, "forget", *ids, what=f"forget in {repo.name}", json=False, timeout=3600)
