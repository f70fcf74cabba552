"""Deadlines of the WORM mirror: every S3 call of one push (records, checkpoint, public keys) ends by one time.

That time is `storage_timeout_seconds` after the push starts, and never later than GRACE_SECONDS after the
calling job's own deadline (`execute.deadline`, i.e. job_timeout_seconds): a record written as its job is
stopped gets a short try, then stays pending and goes with the next push. Each request gets connect/read
timeouts and a retry count that fit in the time left, so no single stall outlives the deadline either.
A cancel of the calling thread (SIGTERM, execute.cancelled_by) leaves the mirror CANCEL_GRACE_SECONDS after
it: a mirror that answers still gets the stopped job's record, a stalled one no longer holds the stop up.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from backupd.errors import DependencyError
from backupd.process import execute

#: After the job's deadline a record still gets this long to reach the mirror (a job ends by then + this).
GRACE_SECONDS = 5.0
#: A gateway that is up accepts a connection at once; longer is spent waiting for the answer.
CONNECT_MAX = 5
#: botocore's first retry waits at most 1 s (standard mode: random * 2**0).
RETRY_PAUSE = 1.0
#: Below this many seconds per attempt, one attempt is worth more than two short ones.
RETRY_FLOOR = 4
#: Less time than this left: nothing more is started.
MIN_REQUEST = 2
#: After the calling thread's cancel (SIGTERM) the mirror's calls may run this much longer, in all.
CANCEL_GRACE_SECONDS = 0.5


class MirrorDeadline(DependencyError):
    """The mirror's deadline passed; what was not pushed stays pending for the next push."""


@dataclass(frozen=True)
class Limits:
    """botocore settings of one request: connect + read timeout per attempt, attempts in all."""

    connect: int
    read: int
    attempts: int


def end_of(storage_timeout: float, job_left: float | None, now: float) -> float:
    """Monotonic time by which one push ends: storage_timeout after now, at most GRACE_SECONDS past the job's
    deadline (job_left: seconds until it from now, negative once passed; None: no job deadline)."""
    end = now + storage_timeout
    if job_left is not None:
        end = min(end, now + job_left + GRACE_SECONDS)
    return end


def limits(left: float) -> Limits | None:
    """Timeouts and attempts so that one request, retry and backoff included, ends within `left` seconds
    (connect + read per attempt); None when less than MIN_REQUEST seconds are left."""
    if left < MIN_REQUEST:
        return None
    attempts = 2 if left >= 2 * RETRY_FLOOR + RETRY_PAUSE else 1
    per = int((left - RETRY_PAUSE * (attempts - 1)) / attempts)
    connect = max(1, min(CONNECT_MAX, per // 3))
    return Limits(connect, per - connect, attempts)


class BoundedS3:
    """Stands in for an S3 client: each call runs on a client whose timeouts fit before `end`; once too
    little time is left, MirrorDeadline. client_for(Limits | None) returns a (cached) client; None: any."""

    def __init__(self, client_for, end: float, name: str = "mirror"):
        self._client_for, self.end, self._name = client_for, end, name

    def __getattr__(self, attr: str):
        plain = getattr(self._client_for(None), attr)
        if not callable(plain):
            return plain  # meta, exceptions

        def call(*args, **kwargs):
            left = self.end - time.monotonic()
            found = limits(left)
            if found is None:
                raise MirrorDeadline(f"evidence mirror {self._name}: its deadline passed ({max(left, 0):.0f} s "
                                     f"left); the records not pushed stay pending")
            return execute.interruptible(lambda: getattr(self._client_for(found), attr)(*args, **kwargs),
                                         f"evidence mirror {self._name}", grace=CANCEL_GRACE_SECONDS)

        return call
