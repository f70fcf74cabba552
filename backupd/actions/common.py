"""What actions share: turning policy destinations into engine repositories, retries, the per-run
pre-flight of each destination."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TypeVar

from backupd.config.credentials import read_credentials
from backupd.config.loader import Config
from backupd.engine import feature as restic_feature
from backupd.engine import init as restic_init
from backupd.engine.exitcodes import StorageUnavailable
from backupd.engine.repository import Repository
from backupd.errors import ConfigError
from backupd.process import execute

T = TypeVar("T")


def repository(cfg: Config, name: str, dest, credentials_file: Path | None = None) -> Repository:
    """The restic repository behind a policy destination. In the verifier role it opens read-only, with
    the destination's auditor_credentials_file (never the writer's keys)."""
    cache = cfg.state_dir / "cache"
    restic_feature.set_memory(cfg.state_dir / "restic-version.json")  # no `restic version` per command
    if dest.kind == "removable":  # its repository lives on whichever medium is attached (actions/media.py)
        raise ConfigError(f"destination {name} is a removable rotation set: its repository is on an attached "
                          "medium (backupd media sync; --destination MEDIUM)")
    if dest.kind == "s3":
        url = f"s3:{dest.endpoint.rstrip('/')}/{dest.bucket}/{dest.path}"
        keys = read_credentials(credentials_file or role_credentials(cfg, name, dest))
        keys.setdefault("AWS_DEFAULT_REGION", dest.region)
        return Repository(name, url, dest.password_file, keys, cache, cfg.restic, read_only=cfg.verifier,
                          stuck_request_timeout=cfg.storage_timeout_seconds)
    return Repository(name, str(dest.path), dest.password_file, {}, cache, cfg.restic, read_only=cfg.verifier)


def role_credentials(cfg: Config, name: str, dest) -> Path:
    """The keys this role acts on an S3 destination with: the writer's (backup), the maintainer's
    (maintenance, which holds no writer keys) or the auditor's (verifier); ConfigError when unset."""
    if cfg.maintenance:
        if not dest.maintainer_credentials_file:
            raise ConfigError(f"destination {name}: role maintenance acts with maintainer_credentials_file; "
                              "set it in the policy")
        return dest.maintainer_credentials_file
    if not cfg.verifier:
        return dest.credentials_file
    if not dest.auditor_credentials_file:
        raise ConfigError(f"destination {name}: role verifier reads with auditor_credentials_file (read-only "
                          "keys); set it in the policy")
    return dest.auditor_credentials_file


def ensure_repository(repo: Repository, state_dir: Path) -> None:
    """Initialise the repository on first use (remembered in state_dir to spare a round trip)."""
    marker = state_dir / "repos" / repo.name
    if marker.exists():
        return
    if repo.read_only:
        raise ConfigError(f"{repo.name}: a verifier never initialises a repository")
    restic_init.ensure(repo)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(repo.url + "\n")


@dataclass
class Retry:
    """Retry policy for storage outages: `attempts` tries, waiting `wait` seconds times the try number."""

    attempts: int = 3
    wait: float = 10.0
    notes: list[str] = field(default_factory=list)
    cancel: execute.Cancel | None = None  # a cancel (SIGTERM) ends the wait at once

    def run(self, fn: Callable[[], T], what: str) -> T:
        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except StorageUnavailable as exc:
                self.notes.append(f"{what}: attempt {attempt}/{self.attempts}: {exc}")
                pause = self.wait * attempt
                left = execute.time_left()
                if attempt == self.attempts or (left is not None and left <= pause):
                    raise  # out of tries, or the job deadline would pass while waiting
                if (self.cancel or execute.Cancel()).wait(pause):
                    raise execute.Interrupted(f"{what}: cancelled while waiting to retry") from None
        raise AssertionError("unreachable")


class Preflight:
    """Per run: one bounded probe per S3 destination (a HEAD with storage_timeout_seconds, no retries)
    before restic touches it. A destination that does not answer, or that failed every retry earlier in
    the run, fails each later target at once with the same reason (exit 3) instead of costing every
    target its own retries."""

    def __init__(self, cfg: Config, cancel: execute.Cancel | None = None):
        self.cfg, self.cancel = cfg, cancel
        self.down: dict[str, str] = {}
        self.probed: set[str] = set()
        self.unlocked: set[str] = set()

    def require(self, name: str, dest) -> None:
        """StorageUnavailable when destination `name` is known down or does not answer its probe."""
        if name not in self.probed and name not in self.down:
            self.probed.add(name)
            why = self._probe(name, dest)
            if why:
                self.down[name] = f"{name}: storage unreachable ({why}; pre-flight, not retried in this run)"
        if name in self.down:
            raise StorageUnavailable(self.down[name])

    def mark_down(self, name: str, reason: str) -> None:
        self.down.setdefault(name, reason)

    def clear_locks(self, name: str, repo: Repository, *, exclusive_only: bool) -> None:
        """Once per destination and run, before restic works on it: provably stale locks are removed
        (recorded in evidence); live ones in the way (only exclusive ones, for a backup) are waited for
        at most lock_wait_seconds, then Busy (exit 3)."""
        if name in self.unlocked or repo.read_only:
            return
        from backupd import evidence
        from backupd.actions import locks

        res = locks.resolve(repo, wait_seconds=self.cfg.lock_wait_seconds,
                            sleep=(self.cancel or execute.Cancel()).wait,
                            blocking=(lambda lk: lk.exclusive) if exclusive_only else (lambda lk: True))
        if res.removed:
            evidence.record(self.cfg, "locks", {"destination": name, "event": "stale_removed",
                                                "removed": res.removed})
        if res.outcome == "locked":
            raise res.busy(name)
        self.unlocked.add(name)

    def clear_owed_locks(self, name: str, repo: Repository, *, exclusive_only: bool) -> None:
        """clear_locks only when a restic of backupd's may have left a lock (locks.owed): no lock listing
        (a restic start-up) when nothing is owed."""
        from backupd.actions import locks

        if name not in self.unlocked and not repo.read_only and locks.owed(self.cfg.state_dir, name):
            self.clear_locks(name, repo, exclusive_only=exclusive_only)
            locks.settled(self.cfg.state_dir, name)

    def run_unlocked(self, name: str, repo: Repository, run: Callable[[], T], *, exclusive_only: bool) -> T:
        """run(); when a lock stopped restic before it did anything, clear_locks (stale ones go; a live
        holder is waited for, bounded, then Busy) and run() once more. Only a locked repository pays for
        the lock listing."""
        from backupd.engine.exitcodes import RepositoryLocked

        try:
            return run()
        except RepositoryLocked:
            if name in self.unlocked:
                raise  # cleared once in this run already: a live holder came back
            self.clear_locks(name, repo, exclusive_only=exclusive_only)
            return run()

    def _probe(self, name: str, dest) -> str | None:
        if dest.kind != "s3":
            return None  # a local directory: restic reports a missing one itself, at once
        from backupd.storage import probe

        timeout = self.cfg.storage_timeout_seconds
        left = execute.time_left()
        if left is not None:
            timeout = max(1.0, min(timeout, left))
        key = "/".join(p for p in (str(dest.path or "").strip("/"), "config") if p)  # the repository's config
        why = probe.head(dest.endpoint, dest.region, dest.bucket, key, timeout=timeout, cancel=self.cancel)
        return f"{dest.endpoint}: {why}" if why else None


def policy_of(policy_set, target_name: str) -> str:
    """The policy file (stem) that declares a target; used as the snapshots' policy tag."""
    for loaded in policy_set.policies:
        if loaded.policy and any(t.name == target_name for t in loaded.policy.targets):
            return loaded.path.stem
    return "unknown"
