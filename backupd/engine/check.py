"""restic check: structure, optionally a deterministic slice of the pack data."""

from __future__ import annotations

from dataclasses import dataclass

from backupd.engine import command, exitcodes
from backupd.engine.repository import Repository


@dataclass
class CheckResult:
    ok: bool
    output: str


def check(repo: Repository, *, read_data_subset: str | None = None, timeout: float = 6 * 3600) -> CheckResult:
    """Run restic check; read_data_subset like '3/30' reads that slice of the packs."""
    args = []
    if read_data_subset:
        args.append(f"--read-data-subset={read_data_subset}")
    done = command.run(repo, "check", *args, what=f"check {repo.name}", json=False,
                       timeout=timeout, check=False)
    text = (done.stdout.decode("utf-8", "replace") + done.stderr)[-4000:]
    if done.returncode not in (0, 1):
        exitcodes.classify(done, f"check {repo.name}")
    return CheckResult(ok=done.returncode == 0, output=text)
