"""`backupd check`: a deterministic rotation of `restic check --read-data-subset=k/n` per destination,
with a coverage ledger (in state) that proves every pack was read within C days.

restic assigns a pack to slice k of n by its id's first byte (`id[0] % n == k-1`), so slices are disjoint
and together cover the repository. n is chosen from the repository size and the daily read budget; each
run reads the slice read least recently (never-read first), so a failed slice is retried until it passes.
"""

from __future__ import annotations

import math
import re
import time

from backupd import evidence
from backupd.actions import locks
from backupd.actions.common import Preflight, repository
from backupd.config.loader import Config
from backupd.engine import check as restic_check
from backupd.engine import find as restic_find
from backupd.engine import index as restic_index
from backupd.engine import snapshots as restic_snapshots
from backupd.engine import stats as restic_stats
from backupd.engine.exitcodes import Busy, RepositoryLocked
from backupd.errors import BackupdError, ConfigError, DependencyError
from backupd.process import execute
from backupd.state.runs import State

MAX_SLICES = 256  # restic buckets packs by one byte of their id
DAY = 86400.0
_PACK_RE = re.compile(r"\b(?:pack|Pack ID)\s+([0-9a-f]{8,64})\b")
_WANT_RE = re.compile(r"Pack ID does not match, want ([0-9a-f]{64})")
MAX_PACKS = 20
#: a repository's size is measured again (`restic stats`) when the last measurement is older than this
SIZE_MAX_AGE = 7 * DAY


def slices(repo_bytes: int, daily_budget: int, days: int) -> tuple[int, bool]:
    """(n, within_budget): as few slices as the budget allows (faster coverage), never more than `days`
    so one run a day covers everything within `days`; within_budget is False when a slice of n=days
    still exceeds the budget."""
    needed = max(1, math.ceil(repo_bytes / max(1, daily_budget)))
    n = min(needed, days, MAX_SLICES)
    return n, needed <= n


def next_slice(read: dict[int, float], n: int) -> int:
    """The slice read least recently; never-read slices first, lowest number first."""
    return min(range(1, n + 1), key=lambda k: (read.get(k, 0.0), k))


def coverage(read: dict[int, float], n: int, days: int, now: float) -> float:
    """Share of the n slices read successfully within the last `days`."""
    recent = [k for k, t in read.items() if 1 <= k <= n and now - t <= days * DAY]
    return len(recent) / n


def _ledger(state: State, dest: str, url: str, n: int) -> dict[int, float]:
    """Per slice the time of its last successful read, for this repository and slice count."""
    last = state.last("check", dest)
    detail = last["detail"] if last else {}
    if detail.get("url") != url or detail.get("n") != n:
        return {}  # new repository or new slicing: a new cycle starts
    return {int(k): float(t) for k, t in detail.get("read", {}).items()}


def _size(state: State, dest: str, repo, preflight: Preflight) -> tuple[int, float]:
    """(repository bytes, when measured): the size the last check measured, while under SIZE_MAX_AGE old;
    else `restic stats`, which walks every snapshot's tree. The size only picks the slice count, which
    may lag the repository's growth by a week."""
    last = state.last("check", dest)
    detail = last["detail"] if last else {}
    measured = detail.get("size_measured")
    if (detail.get("url") == repo.url and isinstance(measured, (int, float))
            and 0 <= time.time() - measured < SIZE_MAX_AGE and isinstance(detail.get("repository_bytes"), int)):
        return detail["repository_bytes"], measured
    return preflight.run_unlocked(dest, repo, lambda: restic_stats.raw_size(repo), exclusive_only=True), time.time()


def damaged_packs(output: str) -> list[str]:
    """Pack ids restic check named as damaged (the expected id of a mismatch, never the hash it got)."""
    return sorted(set(_PACK_RE.findall(output)) | set(_WANT_RE.findall(output)))[:MAX_PACKS]


def attribute(repo, packs: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """({target: [pack, ...]}, packs that could not be attributed): the blobs of each pack from the index,
    the snapshots referencing them (`restic find --blob/--tree`), their `target` tags. A pack the index
    no longer lists, or whose blobs no snapshot references, stays unattributed."""
    targets_of = {s.id: s.tagmap.get("target") for s in restic_snapshots.list_snapshots(repo)}
    try:
        blobs = restic_index.blobs_of_packs(repo, packs)
    except BackupdError:
        blobs = {}
    hit: dict[str, list[str]] = {}
    unknown: list[str] = []
    for pack in packs:
        names: set = set()
        for kind in ("data", "tree"):
            ids = [b for t, b in blobs.get(pack, []) if t == kind]
            try:
                names |= {targets_of.get(sid) for sid in restic_find.snapshots_of_blobs(repo, kind, ids)}
            except BackupdError:
                pass
        names.discard(None)
        for name in sorted(names):
            hit.setdefault(name, []).append(pack)
        if not names:
            unknown.append(pack)
    return hit, unknown


def _damage(dest_name: str, k: int, n: int, targets: list[str], hit: dict, unknown: list[str],
            packs: list[str]) -> str:
    if not packs:
        where = f"restic named no pack, so the damage could not be attributed: any of {', '.join(targets)}"
    else:
        where = ", ".join(sorted(hit)) or "none identified"
        if unknown:
            where += f" ({len(unknown)} damaged pack(s) could not be attributed to a target)"
    return (f"slice {k}/{n} of {dest_name} failed: data of target(s) {where} may be damaged; "
            "run `restic check --read-data` and restore from another copy")


def _one(cfg: Config, state: State, dest_name: str, dest, targets: list[str], days: int, budget: int,
         preflight: Preflight, cancel=None) -> dict:
    out = {"destination": dest_name, "targets": targets, "status": "failed"}
    started = time.time()
    try:
        repo = repository(cfg, dest_name, dest)
        preflight.require(dest_name, dest)
        # a lock in check's way (restic 0.14 checks under an exclusive one) makes restic refuse: stale ones
        # go, live ones are waited for, else busy; a killed restic of ours is cleaned up after at once
        preflight.clear_owed_locks(dest_name, repo, exclusive_only=False)
        size, measured = _size(state, dest_name, repo, preflight)
        n, within = slices(size, budget, days)
        read = _ledger(state, dest_name, repo.url, n)
        k = next_slice(read, n)
        out.update(repository_bytes=size, slice=f"{k}/{n}", n=n, k=k, within_budget=within)
        with locks.at_work(cfg.state_dir, dest_name):
            result = preflight.run_unlocked(dest_name, repo, lambda: restic_check.check(
                repo, read_data_subset=f"{k}/{n}", cancel=cancel), exclusive_only=False)
        if result.ok:
            read[k] = time.time()
            out["status"] = "ok"
        else:
            packs = damaged_packs(result.output)
            hit, unknown = attribute(repo, packs)
            out.update(packs=packs, affected_targets=sorted(hit), unattributed_packs=unknown,
                       output=result.output[-2000:], error=_damage(dest_name, k, n, targets, hit, unknown, packs))
        if not within:
            out["note"] = f"the daily budget cannot read the repository within {days} days; raise it"
        out["coverage"] = round(coverage(read, n, days, time.time()), 4)
        state.record("check", dest_name, dest_name, started, out["status"], None,
                     {"url": repo.url, "n": n, "k": k, "read": read, "coverage": out["coverage"],
                      "repository_bytes": size, "size_measured": measured})
    except (Busy, RepositoryLocked) as exc:  # someone else's live lock: not damage, try again later
        out.update(status="busy", error=str(exc) if isinstance(exc, Busy) else f"repository busy: {exc}")
    except DependencyError as exc:
        out.update(status="unavailable", error=str(exc))
    except ConfigError as exc:  # wrong keys or password: exit 2 like backup, restore and drill
        out.update(status="misconfigured", error=str(exc))
    except BackupdError as exc:
        out["error"] = str(exc)
    evidence.record(cfg, "check", out)
    return out


def run(cfg: Config, policy_set, *, days: int = 30, daily_budget: int = 5 << 30,
        cancel: execute.Cancel | None = None) -> list[dict]:
    """Check the next slice of every destination that holds a target (each bounded by job_timeout_seconds)."""
    state = State(cfg.state_dir)
    used: dict[str, list[str]] = {}
    for target in policy_set.targets:
        for dest in target.destinations:
            used.setdefault(dest, []).append(target.name)
    preflight = Preflight(cfg, cancel)
    results = []
    for name, names in used.items():
        if cancel is not None and cancel.is_set():
            break
        with execute.deadline(cfg.job_timeout_seconds), execute.cancelled_by(cancel):
            results.append(_one(cfg, state, name, policy_set.destinations[name], names, days, daily_budget,
                                preflight, cancel))
    return results
