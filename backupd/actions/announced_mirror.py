"""The verifier reads the backup hosts' announcements (announced.py) from the WORM mirror, with read-only
keys, through `backupd evidence pull`'s code: no second implementation of pulling or verifying a ledger."""

from __future__ import annotations

import contextlib
import functools
import tempfile
from pathlib import Path

from backupd.actions.announced import Announcement, by_target
from backupd.errors import ConfigError, Finding
from backupd.evidence import settings


def for_run(cfg, policy_set, targets: list[str]):
    """A verifier's view of what the backup hosts announced: a callable -> target -> snapshot id ->
    Announcement for each of `targets`, pulled once per run when first called (a failed pull is tried again
    by the next call); None in the backup role. Drills and restores choose through it (of_target)."""
    if not cfg.verifier:
        return None
    return functools.cache(lambda: load(cfg, policy_set, targets))


def of_target(cfg, policy_set, target: str, announced=None) -> dict | None:
    """target's announcements (from `announced`, a for_run() of this run, else pulled now): what a verifier
    may choose from (snapshot_choice.select(announced=...)); None in the backup role."""
    if not cfg.verifier:
        return None
    return (announced or for_run(cfg, policy_set, [target]))()[target]


def load(cfg, policy_set, targets: list[str]) -> dict[str, dict[str, Announcement]]:
    """target -> snapshot id -> its announcement by the verifier's backup hosts (`hosts`), for each of
    `targets`, from one pull of the mirror destination `evidence.mirror` (ledgers()). Each host's ledger
    is read once, for every target."""
    out: dict[str, dict[str, Announcement]] = {t: {} for t in targets}
    with ledgers(cfg, policy_set) as pulled:
        for host, path in pulled.items():
            with open(path, "rb") as lines:
                for target, announced in by_target(lines, host, targets).items():
                    for sid, ann in announced.items():
                        out[target].setdefault(sid, ann)
    return out


@contextlib.contextmanager
def ledgers(cfg, policy_set, hosts: list[str] | None = None, mirror_name: str | None = None):
    """Yields host -> path of its pulled and verified ledger, for each of `hosts` (default: the verifier's
    `hosts`), from the mirror destination `mirror_name` (default: `evidence.mirror`) read with its
    read-only auditor keys; each ledger is pulled and verified by `evidence pull`'s code (first key,
    rotations, keyring, signed checkpoints). Finding when a host has no mirrored ledger or it does not
    verify, DependencyError (exit 3) when the bucket cannot be read. The files are gone after the block."""
    from backupd.actions import evidence as evidence_action  # the S3 client only where a verifier chooses
    from backupd.evidence import mirror

    opts = settings.of(cfg)
    name = mirror_name or opts.mirror
    if not name:
        raise ConfigError("role verifier trusts only snapshots the backup host announced in its mirrored "
                          "ledger: set evidence.mirror to the destination both mirror to")
    dest = policy_set.destinations.get(name)
    if dest is None or not getattr(dest, "auditor_credentials_file", None):
        raise ConfigError(f"evidence mirror {name}: role verifier reads the backup host's ledger with "
                          "the destination's auditor_credentials_file (read-only keys); set it in the policy")
    hosts = cfg.backup_hosts() if hosts is None else hosts
    if not hosts:
        raise ConfigError("role verifier: set hosts (the backup hosts whose announced snapshots it drills)")
    out: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="backupd-announced-", dir=_tmp_parent(cfg)) as tmp:
        for host in hosts:
            try:
                doc = evidence_action.pull(cfg, policy_set, name, Path(tmp) / "pulled", host,
                                           dest.auditor_credentials_file, opts.keyring)
            except mirror.NoEvidence:
                raise Finding(f"no mirrored ledger of {host} in s3://{dest.bucket}/{mirror.PREFIX}: it announced "
                              "no snapshot, so none may be drilled") from None
            got = next((h for h in doc["hosts"] if h["host"] == host), None)
            if got is None or not got["ok"] or not got["ledger"]:
                why = "; ".join((got or {}).get("problems", ["missing"])[:3])
                raise Finding(f"the mirrored ledger of {host} does not verify ({why}): no snapshot counts as "
                              "announced")
            out[host] = Path(got["ledger"])
        yield out


def _tmp_parent(cfg) -> str | None:
    """state_dir/tmp (the pulled ledgers stay on this host's own disk), created 0700."""
    path = Path(cfg.state_dir) / "tmp"
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return None
    return str(path)
