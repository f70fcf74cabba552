"""Which restore drill a target is due for: its restore_tests schedule against the drills this state_dir
has passed. `backupd drill --due` (the verifier's daily timer) runs only those, so a daily run does not
restore a large database every day, yet a failed drill is tried again on the next run."""

from __future__ import annotations

PASSED = ("pass", "warn")


def _newest(runs: list[dict], kinds: set[str]) -> float | None:
    times = [r["finished"] or r["started"] for r in runs
             if r["status"] in PASSED and r["detail"].get("kind") in kinds]
    return max(times, default=None)


def due_kind(schedule, runs: list[dict], now: float) -> str | None:
    """"full", "sample" or None. `schedule` has `full`/`sample` timedeltas (None: never); `runs` are the
    target's drill runs (State.runs). A passed full drill also counts as a sample; failed and unavailable
    drills count as nothing."""
    if schedule.full is not None:
        last = _newest(runs, {"full"})
        if last is None or now - last >= schedule.full.total_seconds():
            return "full"
    if schedule.sample is not None:
        last = _newest(runs, {"full", "sample"})
        if last is None or now - last >= schedule.sample.total_seconds():
            return "sample"
    return None
