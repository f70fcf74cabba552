"""Evidence: every event backupd performs becomes a signed, hash-chained record auditors can verify later.

`record(cfg, kind, data)` is the one call actions make. Records never hold secrets (see canonical.py).
Modules: canonical (bytes + scrubbing), keys (Ed25519), record_format (one line), ledger (append, lock,
fsync), index (SQLite WAL), verify (offline chain check), bundle (export format), mirror (WORM objects).
"""

from __future__ import annotations

from backupd.evidence.ledger import record

__all__ = ["record"]
