"""Where things live on a medium: one directory per backup host under `backupd/`, holding

- `repository/`: the restic repository (the destination's password; chunker parameters of the source),
- `last-sync.json`: the signed `media-sync` ledger record of the last sync, as the ledger holds it
  (for the check on a separate terminal, which compares the medium with what the host announced),
- `evidence/`: room for an export bundle carried with the medium to an offline verifier terminal.

Everything on a medium is attacker input once it has left the host: readers verify before they trust.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from backupd.policy.schema import check_name

ROOT = "backupd"


@dataclass(frozen=True)
class Layout:
    """The paths of one host's data on a medium mounted at `mountpoint`."""

    mountpoint: Path
    host: str

    @property
    def root(self) -> Path:
        return self.mountpoint / ROOT / check_name(self.host, "host name")

    @property
    def repository(self) -> Path:
        return self.root / "repository"

    @property
    def last_sync(self) -> Path:
        return self.root / "last-sync.json"

    @property
    def evidence(self) -> Path:
        return self.root / "evidence"

    def hosts(self) -> list[str]:
        """Host directories present on the medium (names as found; not validated)."""
        base = self.mountpoint / ROOT
        return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
