"""Evidence: every event backupd performs becomes a record auditors can verify later.

`record(cfg, kind, data)` is the one call actions make. Records never hold secrets.
"""

from __future__ import annotations

from backupd.evidence.ledger import record

__all__ = ["record"]
