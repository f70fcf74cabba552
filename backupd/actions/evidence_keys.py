"""`backupd evidence rotate-key | acknowledge`: the signing key's life and the head-regression repair."""

from __future__ import annotations

from backupd import evidence
from backupd.errors import BackupdError
from backupd.evidence import foreign, guard, keys, mirror, rotation, settings
from backupd.evidence.ledger import evidence_dir


def rotate(cfg, reason: str = "") -> dict:
    """Rotate the key; the record and a checkpoint signed by the new key go to the mirror at once."""
    rec = rotation.rotate(cfg, reason)
    remote = mirror.connect_if_configured(cfg)
    if remote is not None:
        remote = mirror.bound(cfg, remote)  # the push and the checkpoint share one deadline
        new = keys.load_or_create(cfg.state_dir)
        mirror.push_and_checkpoint(cfg, remote, new)
        try:
            opts = settings.of(cfg)
            mirror.checkpoint_if_due(cfg.state_dir, remote.dest, remote.s3, new, opts.checkpoint_period,
                                     force=True, retention=opts.retention)
        except guard.LedgerRegression:
            raise
        except Exception:  # noqa: BLE001 - unreachable mirror: the next record or the daemon pushes it
            pass
    return {"ok": True, "seq": rec["seq"], "old_kid": rec["data"]["old_kid"], "new_kid": rec["data"]["new_kid"],
            "public_key": str(keys.key_dir(cfg.state_dir) / keys.PUB_NAME)}


def acknowledge(cfg, reason: str) -> dict:
    """Re-check the (restored) ledger; when whole, record the regression and the reason, reopen appends.
    Objects others planted in the mirror prefix (foreign.py) are acknowledged too (foreign_objects)."""
    ev_dir = evidence_dir(cfg.state_dir)
    found = guard.open_finding(ev_dir)
    if not found:
        return {"ok": True, "acknowledged": False, "foreign_objects": _acknowledge_foreign(cfg, ev_dir, reason)}
    saved = guard.finding_path(ev_dir).read_bytes()
    guard.clear(ev_dir)
    try:  # the append runs every head check again (index, checkpoint, mirror)
        rec = evidence.record(cfg, "ledger-regression", {"found": found.get("time"), "source": found.get("source"),
                                                         "reasons": found.get("reasons"), "reason": reason})
    except BackupdError:
        if not guard.finding_path(ev_dir).exists():
            guard.finding_path(ev_dir).write_bytes(saved)
        raise
    return {"ok": True, "acknowledged": True, "seq": rec["seq"], "finding": found,
            "foreign_objects": _acknowledge_foreign(cfg, ev_dir, reason)}


def _acknowledge_foreign(cfg, ev_dir, reason: str) -> list[dict]:
    """Close the foreign-object finding (objects others planted in this host's mirror prefix; they never
    blocked the ledger): recorded with the reason, then status no longer shows them."""
    found = foreign.open_finding(ev_dir)
    if not found:
        return []
    objects = [{"object": o.get("key"), **{k: o.get(k) for k in ("sha256", "size", "recorded_seq")}}
               for o in found["objects"]]
    evidence.record(cfg, foreign.ACK_KIND, {"objects": objects, "reason": reason})
    foreign.clear(ev_dir, found["objects"])  # what was met meanwhile (this record's push) stays open
    return objects
