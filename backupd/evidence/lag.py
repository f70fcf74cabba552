"""Mirror lag of this host, from local state only (the ledger index and the last checkpoint pushed).

`of(cfg)` -> the dict `backupd status --json` shows under `evidence_mirror`, the metrics export and the daemon
alerts on: records not yet in the WORM mirror, the age of the oldest of them, and the age of the newest signed
checkpoint against `evidence.checkpoint_period`. Either is stale once it exceeds STALE_PERIODS periods.
"""

from __future__ import annotations

import socket
from datetime import datetime, timedelta, timezone

from backupd.evidence import checkpoint, settings
from backupd.evidence.ledger import Ledger, evidence_dir

#: Records unmirrored, or the newest checkpoint, older than this many checkpoint periods: stale (alert).
STALE_PERIODS = 2


def of(cfg, now: datetime | None = None) -> dict | None:
    """This host's mirror lag; None when no mirror is configured (or the evidence settings are wrong)."""
    opts = settings.mirrored(cfg)
    if opts is None:
        return None
    now = now or datetime.now(timezone.utc)
    ledger = Ledger(cfg.state_dir)
    try:
        seq, _ = ledger.head()
        if seq:
            ledger.index.catch_up(ledger.path, seq)
        count, oldest, first = ledger.index.unmirrored_span()
    finally:
        ledger.index.close()
    last = checkpoint.load_local(evidence_dir(cfg.state_dir))
    return compute(cfg.host or socket.gethostname(), opts.mirror, opts.checkpoint_period, now, count, oldest,
                   first, last["time"] if last else None)


def compute(host: str, mirror: str, period: timedelta, now: datetime, unmirrored: int, oldest: str | None,
            first: str | None, checkpoint_time: str | None) -> dict:
    """The lag from its parts (times: ISO 8601 of records and the newest checkpoint; None when absent).
    No checkpoint yet counts from the first record: a host that wrote records a while ago should have one."""
    bound = period.total_seconds() * STALE_PERIODS
    oldest_age = _age(now, oldest) if unmirrored else None
    checkpoint_age = _age(now, checkpoint_time)
    waited = checkpoint_age if checkpoint_time else _age(now, first)
    return {"host": host, "mirror": mirror, "unmirrored_records": unmirrored,
            "unmirrored_oldest_time": oldest if unmirrored else None,
            "unmirrored_oldest_age_seconds": oldest_age,
            "checkpoint_time": checkpoint_time, "checkpoint_age_seconds": checkpoint_age,
            "checkpoint_period_seconds": period.total_seconds(), "stale_after_seconds": bound,
            "unmirrored_stale": oldest_age is not None and oldest_age > bound,
            "checkpoint_stale": waited is not None and waited > bound}


def stale_in(lag: dict) -> float | None:
    """Seconds until the lag turns stale if nothing is pushed (None: it is already, or nothing is waiting)."""
    waits = [lag["stale_after_seconds"] - age for age in (lag["unmirrored_oldest_age_seconds"],
                                                          lag["checkpoint_age_seconds"]) if age is not None]
    waits = [w for w in waits if w > 0]
    return min(waits) if waits and not (lag["unmirrored_stale"] or lag["checkpoint_stale"]) else None


def summary(lag: dict) -> str:
    """What is late, for an alert (and the status line)."""
    late = []
    if lag["unmirrored_stale"]:
        late.append(f"{lag['unmirrored_records']} record(s) not mirrored for {lag['unmirrored_oldest_age_seconds']:.0f} s")
    if lag["checkpoint_stale"]:
        late.append(f"newest checkpoint {lag['checkpoint_age_seconds']:.0f} s old" if lag["checkpoint_time"]
                    else "no checkpoint pushed yet")
    what = "; ".join(late) or "caught up"
    return (f"evidence mirror {lag['mirror']}: {what} (bound {lag['stale_after_seconds']:.0f} s = "
            f"{STALE_PERIODS} x checkpoint_period)")


def _age(now: datetime, iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return round(max(0.0, (now - datetime.fromisoformat(iso.replace("Z", "+00:00"))).total_seconds()), 1)
    except ValueError:
        return None

