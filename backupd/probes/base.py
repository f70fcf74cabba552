"""What every probe receives (ProbeContext) and returns (ProbeResult)."""

from __future__ import annotations

import os
import stat
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable

from backupd.files.verify import Beneath
from backupd.process import execute
from backupd.process.sandbox import Jail


@dataclass
class ProbeContext:
    """The restored data and what was recorded about it at backup time.

    `restored` lists the manifest entries restored (all of them in a full drill); `previous()` returns
    the manifest of the generation before (or None) and is only called by probes that need it.
    """

    target: object
    sandbox: Path
    restore_dir: Path
    manifest: dict
    restored: list[dict]
    snapshot_time: datetime
    rpo: timedelta
    previous: Callable[[], dict | None]
    cancel: execute.Cancel | None = None
    #: manifests of every older retained generation, newest first (default: just previous())
    older: Callable[[], list[dict]] | None = None
    #: gives the sandbox uid the listed sandbox paths (a no-op unless we run as root)
    grant: Callable[..., None] = lambda *paths: None
    #: where probe processes run (backupd.process.sandbox); built from the sandbox paths when not given
    jail: Jail | None = None
    #: what prepare() started for a probe while restic restored, by id(probe); the probe takes it over
    prepared: dict = field(default_factory=dict)

    def older_manifests(self) -> list[dict]:
        """Manifests of the older generations, newest first."""
        if self.older is not None:
            return self.older()
        previous = self.previous()
        return [previous] if previous is not None else []

    def local(self, path: str) -> Path:
        """Where a snapshot path lies in the sandbox."""
        return self.restore_dir / path.lstrip("/")

    def regular(self, path: str) -> Path | None:
        """local(path) when it is a regular file reached without leaving the restored tree, else None.
        The tree is untrusted: a planted FIFO would hang a reader, a symlink lead to a host file."""
        local = self.local(path)
        if not Beneath(str(self.restore_dir))(str(local)):
            return None
        try:
            return local if stat.S_ISREG(os.lstat(local).st_mode) else None
        except OSError:
            return None

    def confine(self) -> Jail:
        """The jail every probe process runs in: the restored tree read-only, `sandbox/work` writable."""
        if self.jail is None:
            work = self.sandbox / "work"
            work.mkdir(mode=0o700, exist_ok=True)
            self.jail = Jail(readonly=(self.restore_dir,), writable=(work,), root=self.sandbox,
                             cancel=self.cancel)
        return self.jail


@dataclass
class ProbeResult:
    name: str
    kind: str
    status: str = "ok"  # ok | failed | skipped | unavailable
    details: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    duration: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)
