"""Due-time arithmetic on persisted jobs: no clock library, just seconds since the epoch."""

from __future__ import annotations

import random

from backupd.daemon.jobs import Job


def job_name(target_name: str) -> str:
    return f"backup:{target_name}"


def reconcile(stored: dict[str, Job], targets, now: float) -> dict[str, Job]:
    """Jobs for the current targets. New targets are due now; a shortened frequency pulls the due
    time in (never past last start + new frequency); jobs of removed targets are dropped."""
    jobs = {}
    for target in targets:
        freq = target.frequency.total_seconds()
        name = job_name(target.name)
        job = stored.get(name)
        if job is None:
            job = Job(name, target.name, freq, next_due=now)
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
    """Jobs due at `now`, shortest RPO first, then the most overdue: a catch-up after downtime
    restores the tightest recovery points first."""
    due = [j for j in jobs.values() if j.next_due <= now]
    return sorted(due, key=lambda j: (j.frequency, j.next_due, j.job))


def next_wake(jobs: dict[str, Job]) -> float | None:
    return min((j.next_due for j in jobs.values()), default=None)
