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

from backupd import evidence, output
from backupd.actions.common import repository
from backupd.config import Config
from backupd.engine import check as restic_check
from backupd.engine import stats as restic_stats
from backupd.errors import EXIT_DEPENDENCY, EXIT_FINDING, EXIT_OK, BackupdError, DependencyError
from backupd.state import State

MAX_SLICES = 256  # restic buckets packs by one byte of their id
DAY = 86400.0
_PACK_RE = re.compile(r"\b(?:pack|Pack ID)\s+([0-9a-f]{8,64})")


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


def _one(cfg: Config, state: State, dest_name: str, dest, targets: list[str], days: int, budget: int) -> dict:
    out = {"destination": dest_name, "targets": targets, "status": "failed"}
    started = time.time()
    try:
        repo = repository(cfg, dest_name, dest)
        size = restic_stats.raw_size(repo)
        n, within = slices(size, budget, days)
        read = _ledger(state, dest_name, repo.url, n)
        k = next_slice(read, n)
        out.update(repository_bytes=size, slice=f"{k}/{n}", n=n, k=k, within_budget=within)
        result = restic_check.check(repo, read_data_subset=f"{k}/{n}")
        if result.ok:
            read[k] = time.time()
            out["status"] = "ok"
        else:
            packs = sorted(set(_PACK_RE.findall(result.output)))[:20]
            out.update(packs=packs, output=result.output[-2000:],
                       error=f"slice {k}/{n} of {dest_name} failed: data of target(s) {', '.join(targets)} "
                             "may be damaged; run `restic check --read-data` and restore from another copy")
        if not within:
            out["note"] = f"the daily budget cannot read the repository within {days} days; raise it"
        out["coverage"] = round(coverage(read, n, days, time.time()), 4)
        state.record("check", dest_name, dest_name, started, out["status"], None,
                     {"url": repo.url, "n": n, "k": k, "read": read, "coverage": out["coverage"]})
    except DependencyError as exc:
        out.update(status="unavailable", error=str(exc))
    except BackupdError as exc:
        out["error"] = str(exc)
    evidence.record(cfg, "check", out)
    return out


def run(cfg: Config, policy_set, *, days: int = 30, daily_budget: int = 5 << 30) -> list[dict]:
    """Check the next slice of every destination that holds a target."""
    state = State(cfg.state_dir)
    used: dict[str, list[str]] = {}
    for target in policy_set.targets:
        for dest in target.destinations:
            used.setdefault(dest, []).append(target.name)
    return [_one(cfg, state, name, policy_set.destinations[name], names, days, daily_budget)
            for name, names in used.items()]


def render(results: list[dict], as_json: bool) -> int:
    statuses = [r["status"] for r in results]
    code = EXIT_OK if all(s == "ok" for s in statuses) else \
        EXIT_DEPENDENCY if "unavailable" in statuses and "failed" not in statuses else EXIT_FINDING
    if as_json:
        output.emit_json({"ok": code == EXIT_OK, "exit_code": code, "results": results})
        return code
    output.table("check (read-data rotation)", ["destination", "slice", "status", "coverage", "repository"],
                 [[r["destination"], r.get("slice", "-"), r["status"],
                   f"{r['coverage']:.0%}" if "coverage" in r else "-",
                   output.human_bytes(r.get("repository_bytes", 0))] for r in results])
    for r in results:
        if r.get("error"):
            output.error(r["error"])
        if r.get("note"):
            output.note(f"{r['destination']}: {r['note']}")
    return code
