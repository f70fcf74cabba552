"""Signing-key rotation: one `key-rotation` record signed by the old key and proven by the new one.

The new key is written to `keys/evidence-ed25519.key.new` (0600) first, then the record is appended
with the old key (its data carries both public keys and the new key's signature over the record's
seq, prev, host, time and both key ids), then the new key replaces the old one. A crash in between
is settled by the next record (`recorder._settle_rotation`). Verify accepts the new key only through
such a record; the old key is retired from that seq on.
"""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from backupd.errors import ConfigError
from backupd.evidence import keys, record_format
from backupd.evidence.recorder import record


def rotate(cfg, reason: str = "") -> dict:
    """Rotate the evidence signing key of cfg.state_dir; returns the key-rotation record."""
    old = keys.load_or_create(cfg.state_dir)
    pending = keys.pending_path(cfg.state_dir)
    if pending.exists():
        raise ConfigError(f"{pending}: an interrupted rotation is pending; run any command that records "
                          f"evidence (e.g. `backupd evidence sync`) to settle it, then rotate again")
    new = Ed25519PrivateKey.generate()
    keys.write_private(pending, new)
    old_kid, new_kid = keys.fingerprint(old.public_key()), keys.fingerprint(new.public_key())

    def data(seq: int, prev: str, time: str) -> dict:
        host = cfg.host or _hostname()
        proof = new.sign(record_format.rotation_statement(seq, prev, host, time, old_kid, new_kid))
        return {"old_kid": old_kid, "new_kid": new_kid, "reason": reason,
                "old_public_key": keys.public_pem(old.public_key()).decode("ascii"),
                "new_public_key": keys.public_pem(new.public_key()).decode("ascii"),
                "new_key_signature": base64.b64encode(proof).decode("ascii")}

    try:
        rec = record(cfg, record_format.ROTATION, data, key=old)
    except BaseException:
        if not _written(cfg, new_kid):
            pending.unlink(missing_ok=True)
            raise
        keys.promote_pending(cfg.state_dir)  # recorded, but the mirror refused it: still the key from now on
        raise
    keys.promote_pending(cfg.state_dir)
    return rec


def _written(cfg, new_kid: str) -> bool:
    from backupd.evidence.ledger import Ledger

    with Ledger(cfg.state_dir) as ledger:
        lines = ledger.lines()
    if not lines:
        return False
    try:
        last = record_format.parse(lines[-1])
    except ValueError:
        return False
    return last["kind"] == record_format.ROTATION and last["data"].get("new_kid") == new_kid


def _hostname() -> str:
    import socket

    return socket.gethostname()
