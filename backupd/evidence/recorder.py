"""Recording an event: the one write path actions use (``backupd.evidence.record``).

Settles an interrupted key rotation, appends the signed record to the ledger (ledger.py), probing the
WORM mirror first when one is configured, then pushes pending records and checkpoints (mirror.py), all
within one deadline (bounded.py: storage_timeout_seconds and the job's own). It sits above both, so neither
needs the other.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from pathlib import Path

from backupd.config.loader import Config
from backupd.errors import BackupdError
from backupd.evidence import bounded, foreign, guard, keys, record_format, settings
from backupd.evidence.ledger import Ledger, evidence_dir
from backupd.process import execute

log = logging.getLogger(__name__)


def record(cfg: Config, kind: str, data, *, key=None) -> dict:
    """Append one signed event record for this host; returns it. Mirrors to WORM when configured.

    Raises LedgerRegression (a Finding, exit 1) and appends nothing when the ledger lost records.
    data may be a callable(seq, prev, time) -> dict; key overrides the host's signing key.
    """
    guard.refuse_if_open(evidence_dir(cfg.state_dir))
    key_given = key is not None  # a rotation signs with the old key: the report waits for the next record
    if key is None:
        if keys.pending_path(cfg.state_dir).exists():
            _settle_rotation(cfg.state_dir)
        key = keys.load_or_create(cfg.state_dir)
    remote = _connect(cfg)
    if remote is not None:  # loaded by _connect (not when it was cut short: the import may still be running)
        from backupd.evidence import mirror
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
    if kind not in (foreign.KIND, foreign.ACK_KIND) and not key_given:  # the acknowledgement names them too
        report_foreign(cfg)
    return rec


def prepare(cfg: Config) -> None:
    """Resolve the configured mirror in a background thread (boto3 alone takes ~0.4 s to import; the client is
    kept per process). Callers start it while a long child (restic) runs, so the record after it does not
    wait for it. Nothing to do without a mirror."""
    if not _mirror_named(cfg):
        return

    def warm():
        try:
            from backupd.evidence import mirror

            mirror.connect_if_configured(cfg)
        except Exception:  # noqa: BLE001 - record() resolves again and reports what is wrong
            log.debug("evidence: warming up failed", exc_info=True)

    threading.Thread(target=warm, name="evidence warm-up", daemon=True).start()


def _connect(cfg: Config):
    """The configured mirror, bounded: the probe and the push share one deadline (storage and job timeouts).
    None when there is none, or when the calling thread was cancelled (SIGTERM) over
    bounded.CANCEL_GRACE_SECONDS ago while it was still being resolved (boto3 takes a while to load): the
    record stays pending."""
    def resolve():
        from backupd.evidence import mirror  # boto3 is only imported when a mirror is configured

        return mirror.connect_if_configured(cfg)

    if _mirror_named(cfg) is False:
        return None  # nothing to load (a broken evidence section is resolve()'s to report)
    if execute.cancelled() and "backupd.evidence.mirror" not in sys.modules:
        # loading boto3 alone outlasts the grace on a busy machine, and slows the exit down
        if _mirror_named(cfg):
            log.warning("evidence mirror: not loaded after a stop signal; records stay pending")
        return None
    try:
        remote = execute.interruptible(resolve, "evidence mirror", grace=bounded.CANCEL_GRACE_SECONDS)
    except execute.Interrupted as exc:
        log.warning("%s; records stay pending", exc)
        return None
    from backupd.evidence import mirror

    return None if remote is None else mirror.bound(cfg, remote)  # here: the deadline is this thread's


def _mirror_named(cfg: Config) -> bool | None:
    """Whether the evidence section names a mirror; None when it cannot be read."""
    try:
        return bool(settings.of(cfg).mirror)
    except BackupdError:
        return None


def report_foreign(cfg: Config) -> None:
    """One `mirror-foreign-object` record for the objects others planted in this host's prefix that were found
    since the last one (mirror.py notes them); a plant met while writing it is reported by the next record."""
    ev_dir = evidence_dir(cfg.state_dir)
    found = foreign.unrecorded(ev_dir)
    if not found:
        return
    data = {"objects": [{"object": o.get("key"), **{k: o.get(k) for k in ("version_id", "sha256", "size", "found")}}
                        for o in found],  # "object", not "key": records redact fields named like secrets
            "reason": "objects under this host's evidence prefix that none of its keys signed: another identity "
                      "wrote there (not a regression; this host's own objects were written beside them)"}
    try:
        rec = record(cfg, foreign.KIND, data)
    except BackupdError as exc:  # the event itself was recorded; the report follows with the next record
        log.warning("evidence: cannot record the foreign objects in the mirror yet: %s", exc)
        return
    foreign.mark_recorded(ev_dir, found, rec["seq"])


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
