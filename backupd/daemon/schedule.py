"""Due-time arithmetic on persisted jobs: no clock library, just seconds since the epoch."""

from __future__ import annotations

import random

from backupd.state.jobs import Job, job_name


#: Jobs beside the backups: (kind, target) -> every how many seconds. Checks read one slice a day;
#: storage audits run weekly; drills follow each target's restore_tests schedule.
CHECK_EVERY = 86400.0
AUDIT_EVERY = 7 * 86400.0
#: A new non-backup job waits this long (or its own frequency, if shorter) before its first run, so
#: a fresh install backs up first and drills what it has backed up.
FIRST_DELAY = 86400.0
ALL = "*"


def kind_of(job: Job) -> str:
    return job.job.split(":", 1)[0]


def wanted(targets, drill_schedules: dict[str, dict[str, float]] | None = None) -> dict[str, tuple[str, float]]:
    """job name -> (target or ALL, frequency in seconds) for every job the policy implies."""
    out = {job_name(t.name): (t.name, t.frequency.total_seconds()) for t in targets}
    for target, kinds in (drill_schedules or {}).items():
        for kind, every in kinds.items():
            out[job_name(target, f"drill-{kind}")] = (target, every)
    if targets:
        out[job_name(ALL, "check")] = (ALL, CHECK_EVERY)
        out[job_name(ALL, "audit")] = (ALL, AUDIT_EVERY)
    return out


def reconcile(stored: dict[str, Job], targets, now: float,
              drill_schedules: dict[str, dict[str, float]] | None = None) -> dict[str, Job]:
    """Jobs for the current policy. New backups are due now, new drills/checks/audits after
    FIRST_DELAY (or their frequency); a shortened frequency pulls the due time in (never past last
    start + new frequency); jobs of removed targets are dropped."""
    jobs = {}
    for name, (target, freq) in wanted(targets, drill_schedules).items():
        job = stored.get(name)
        if job is None:
            first = now if name.startswith("backup:") else now + min(freq, FIRST_DELAY)
            job = Job(name, target, freq, next_due=first)
        elif freq != job.frequency:
            if job.last_started is not None:
                job.next_due = min(job.next_due, job.last_started + freq)
            job.frequency = freq
        jobs[name] = job
    return jobs


def next_due(job: Job, ok: bool, started: float, now: float, jitter: float, retry: float,
             rng: random.Random | None = None) -> float:
    """When to run next. After success: one frequency after the start, minus up to `jitter`
    (capped at 10% of the frequency) so runs of many hosts spread out but never start late.
    After a failure: sooner, min(frequency, retry) after now."""
    if not ok:
        return now + min(job.frequency, retry)
    spread = min(jitter, job.frequency * 0.1)
    early = (rng or random).uniform(0, spread) if spread > 0 else 0.0
    return started + job.frequency - early


def due_in_order(jobs: dict[str, Job], now: float) -> list[Job]:
    """Jobs due at `now`: backups before drills, checks and audits, then shortest RPO first, then
    the most overdue: a catch-up after downtime restores the tightest recovery points first."""
    due = [j for j in jobs.values() if j.next_due <= now]
    return sorted(due, key=lambda j: (kind_of(j) != "backup", j.frequency, j.next_due, j.job))


def next_wake(jobs: dict[str, Job]) -> float | None:
    return min((j.next_due for j in jobs.values()), default=None)
