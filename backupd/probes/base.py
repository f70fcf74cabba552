"""What every probe receives (ProbeContext) and returns (ProbeResult)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable

from backupd import execute


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
    #: gives the database user the listed sandbox paths (a no-op unless we run as root)
    grant: Callable[..., None] = lambda *paths: None

    def local(self, path: str) -> Path:
        """Where a snapshot path lies in the sandbox."""
        return self.restore_dir / path.lstrip("/")


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
