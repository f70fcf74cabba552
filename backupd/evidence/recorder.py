"""Recording an event: the one write path actions use (``backupd.evidence.record``).

Settles an interrupted key rotation, appends the signed record to the ledger (ledger.py), probing the
WORM mirror first when one is configured, then pushes pending records and checkpoints (mirror.py). It sits
above both, so neither needs the other.
"""

from __future__ import annotations

import socket
from pathlib import Path

from backupd.config import Config
from backupd.evidence import guard, keys, record_format
from backupd.evidence.ledger import Ledger, evidence_dir


def record(cfg: Config, kind: str, data, *, key=None) -> dict:
    """Append one signed event record for this host; returns it. Mirrors to WORM when configured.

    Raises LedgerRegression (a Finding, exit 1) and appends nothing when the ledger lost records.
    data may be a callable(seq, prev, time) -> dict; key overrides the host's signing key.
    """
    guard.refuse_if_open(evidence_dir(cfg.state_dir))
    if key is None:
        if keys.pending_path(cfg.state_dir).exists():
            _settle_rotation(cfg.state_dir)
        key = keys.load_or_create(cfg.state_dir)
    from backupd.evidence import mirror  # boto3 is only imported when a mirror is configured

    remote = mirror.connect_if_configured(cfg)
    reachable = [remote is not None]
    ledger = Ledger(cfg.state_dir)
    try:
        def probe(seq: int) -> None:
            reachable[0] = reachable[0] and mirror.probe(remote, ledger.dir, seq)

        rec = ledger.append(cfg.host or socket.gethostname(), kind, data, key, probe if remote else None)
    finally:
        # closed here, not by the garbage collector: a connection collected in a forked child would
        # drop the locks of the child's own connection to the same file (SQLite over POSIX locks)
        ledger.index.close()
    if reachable[0]:
        mirror.push_and_checkpoint(cfg, remote, key)
    return rec


def _settle_rotation(state_dir: Path) -> None:
    """A rotation interrupted after its new key was written: finish it if its record is the ledger's last."""
    pending = keys.pending_path(state_dir)
    new_kid = keys.fingerprint(keys.load_private(pending).public_key())
    with Ledger(state_dir) as ledger:
        seq, _ = ledger.head()
        last = record_format.parse(ledger.lines()[-1]) if seq else None
    if last and last["kind"] == record_format.ROTATION and last["data"].get("new_kid") == new_kid:
        keys.promote_pending(state_dir)
    else:
        pending.unlink()  # the record was never written: the rotation did not happen
