"""Evidence: every event backupd performs becomes a signed, hash-chained record auditors can verify later.

`record(cfg, kind, data)` is the one call actions make. Records never hold secrets (see canonical.py).
Modules: canonical (bytes + scrubbing), keys (Ed25519), record_format (one line), recorder (record():
rotation settling, append, mirror push), ledger (append, lock, fsync), index (SQLite WAL), guard (head
regressions), verify (offline chain check, key continuity, roles), keyring (roles -> keys and kinds),
rotation (key-rotation records), checkpoint (signed heads), bundle (export format), mirror (WORM objects,
the anchor).
"""

from __future__ import annotations

from backupd.evidence.recorder import prepare, record

__all__ = ["prepare", "record"]
