"""restic check: structure, optionally a deterministic slice of the pack data."""

from __future__ import annotations

from dataclasses import dataclass

from backupd.engine import command, exitcodes, feature
from backupd.engine.repository import Repository


@dataclass
class CheckResult:
    ok: bool
    output: str


#: what restic check prints when it found damage (anything else that fails is not a finding about the data)
DAMAGE = ("repository contains errors", "Pack ID does not match", "error for tree", "is damaged",
          "pack file cannot be listed", "not referenced in any index", "blobs are missing")


def check(repo: Repository, *, read_data_subset: str | None = None, timeout: float = 6 * 3600,
          cancel=None) -> CheckResult:
    """Run restic check; read_data_subset like '3/30' reads that slice of the packs.

    ok=False only when restic reported damage. A lock held by someone else (RepositoryLocked), a storage
    outage or a timeout raise their own errors: they say nothing about the data."""
    args = []
    if read_data_subset:
        args.append(f"--read-data-subset={read_data_subset}")
    done = command.run(repo, "check", *args, what=f"check {repo.name}", json=False,
                       timeout=timeout, cancel=cancel, check=False)
    text = (done.stdout.decode("utf-8", "replace") + done.stderr)[-4000:]
    damaged = done.returncode == 1 and any(marker in text for marker in DAMAGE)
    if done.returncode != 0 and not damaged or done.timed_out or done.cancelled:
        exitcodes.classify(done, f"check {repo.name}", feature.detect(repo.restic_binary))
        raise exitcodes.ResticError(f"check {repo.name}: restic check failed without reporting damage: "
                                    f"{text.strip().splitlines()[-1] if text.strip() else 'no message'}")
    return CheckResult(ok=done.returncode == 0, output=text)
