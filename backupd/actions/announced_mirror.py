"""The verifier reads the backup hosts' announcements (announced.py) from the WORM mirror, with read-only
keys, through `backupd evidence pull`'s code: no second implementation of pulling or verifying a ledger."""

from __future__ import annotations

import tempfile
from pathlib import Path

from backupd.actions import evidence as evidence_action
from backupd.actions.announced import Announcement, from_lines
from backupd.errors import ConfigError, Finding
from backupd.evidence import mirror, settings


def load(cfg, policy_set, targets: list[str]) -> dict[str, dict[str, Announcement]]:
    """target -> snapshot id -> its announcement by the verifier's backup hosts (`hosts`), for each of
    `targets`, from one pull of the mirror destination
    `evidence.mirror` with its read-only auditor keys; each host's ledger is pulled and verified by
    `evidence pull`'s code (first key, rotations, keyring, signed checkpoints). Finding when a host has no
    mirrored ledger or it does not verify, DependencyError (exit 3) when the bucket cannot be read."""
    opts = settings.of(cfg)
    if not opts.mirror:
        raise ConfigError("role verifier drills only snapshots the backup host announced in its mirrored "
                          "ledger: set evidence.mirror to the destination both mirror to")
    dest = policy_set.destinations.get(opts.mirror)
    if dest is None or not getattr(dest, "auditor_credentials_file", None):
        raise ConfigError(f"evidence.mirror {opts.mirror}: role verifier reads the backup host's ledger with "
                          "the destination's auditor_credentials_file (read-only keys); set it in the policy")
    if not cfg.backup_hosts():
        raise ConfigError("role verifier: set hosts (the backup hosts whose announced snapshots it drills)")
    out: dict[str, dict[str, Announcement]] = {t: {} for t in targets}
    with tempfile.TemporaryDirectory(prefix="backupd-announced-", dir=_tmp_parent(cfg)) as tmp:
        for host in cfg.backup_hosts():
            try:
                doc = evidence_action.pull(cfg, policy_set, opts.mirror, Path(tmp) / "pulled", host,
                                           dest.auditor_credentials_file, opts.keyring)
            except mirror.NoEvidence:
                raise Finding(f"no mirrored ledger of {host} in s3://{dest.bucket}/{mirror.PREFIX}: it announced "
                              "no snapshot, so none may be drilled") from None
            got = next((h for h in doc["hosts"] if h["host"] == host), None)
            if got is None or not got["ok"] or not got["ledger"]:
                why = "; ".join((got or {}).get("problems", ["missing"])[:3])
                raise Finding(f"the mirrored ledger of {host} does not verify ({why}): no snapshot counts as "
                              "announced")
            for target in targets:
                with open(got["ledger"], "rb") as lines:
                    for sid, ann in from_lines(lines, host, target).items():
                        out[target].setdefault(sid, ann)
    return out


def _tmp_parent(cfg) -> str | None:
    """state_dir/tmp (the pulled ledgers stay on this host's own disk), created 0700."""
    path = Path(cfg.state_dir) / "tmp"
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return None
    return str(path)
