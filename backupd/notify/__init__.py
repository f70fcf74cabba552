"""Operator alerts: backup failure, RPO breach, storage outage, ... and their resolution, once per change.

`Alerts.update(key, firing, message)` is the one call: when a condition starts firing or clears (never
while it merely persists; dedup state survives restarts in state.sqlite) it queues the message for every
channel in the persistent outbox (outbox.py), in the same transaction. `deliver(now)` sends what is due:
per channel in order, at least once, a failing channel retried with exponential backoff, at most
`rate_limit_per_hour` messages per channel and hour; alerts held back by that limit go out later as one
summary, never dropped. In the daemon a `Sender` thread delivers; without one, `update` delivers at once.
Channels: webhook (JSON POST), e-mail (SMTP, TLS verified), syslog. A failing channel never stops backups.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

from backupd.notify.dedup import AlertState
from backupd.notify.outbox import Outbox


@dataclass
class Message:
    """One alert or resolution. Never holds secrets."""

    kind: str          # backup_failed | rpo_breach | drill | storage_audit | log_silent | storage_outage | summary
    state: str         # firing | resolved
    target: str
    host: str
    summary: str
    detail: dict = field(default_factory=dict)
    time: float = 0.0

    @property
    def subject(self) -> str:
        word = "RESOLVED" if self.state == "resolved" else "ALERT"
        return f"[backupd {word}] {self.host}: {self.summary}"

    def to_dict(self) -> dict:
        return {**asdict(self), "subject": self.subject}

    @classmethod
    def from_dict(cls, data: dict) -> "Message":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def summary_of(messages: list[Message], now: float) -> Message:
    """One message standing for several that the rate limit held back."""
    states = [m.state for m in messages]
    text = (f"{len(messages)} alerts held back by the rate limit ({states.count('firing')} firing, "
            f"{states.count('resolved')} resolved): " + " | ".join(
                f"{'RESOLVED' if m.state == 'resolved' else 'ALERT'} {m.summary}" for m in messages))
    if len(text) > 1500:
        text = text[:1497] + "..."
    return Message("summary", "firing", "*", messages[0].host, text,
                   {"messages": [m.to_dict() for m in messages]}, now)


Channel = Callable[[Message], None]


def channels(settings) -> dict[str, Channel]:
    """The configured channels by name (webhook, smtp, syslog)."""
    from backupd.notify import smtp, syslog, webhook

    out: dict[str, Channel] = {}
    if settings.webhook:
        out["webhook"] = lambda m: webhook.send(settings.webhook, m)
    if settings.smtp:
        out["smtp"] = lambda m: smtp.send(settings.smtp, m)
    if settings.syslog:
        out["syslog"] = syslog.Sender(settings.syslog).send
    return out


class Alerts:
    """Dedup, outbox and delivery to the channels. `log(event, **fields)` receives outcomes."""

    def __init__(self, state_dir: Path, settings, log: Callable[..., None],
                 send_to: dict[str, Channel] | None = None):
        self.state = AlertState(state_dir)
        self.outbox = Outbox(state_dir)
        self.settings = settings
        self.log = log
        self.channels = channels(settings) if send_to is None else send_to
        self.sender: Sender | None = None
        self._deliver_lock = threading.Lock()

    def update(self, key: str, firing: bool, message: Message) -> bool:
        """Record the condition; on a change queue the message for every channel. True when queued."""
        names = sorted(self.channels)
        changed = self.state.transition(
            key, firing, message.time,
            on_change=lambda db: Outbox.enqueue(db, names, key, message.to_dict(), message.time))
        if not changed or not names:
            return False
        self.log("alert_queued", key=key, state=message.state, channels=names)
        if self.sender is not None:
            self.sender.kick()
        else:
            self.deliver(message.time)
        return True

    def deliver(self, now: float) -> float | None:
        """Send every due message; returns when something is due next (None: the outbox is empty)."""
        with self._deliver_lock:
            for name in self.outbox.channels() - set(self.channels):
                self.log("alert_discarded", level="warning", channel=name, messages=self.outbox.drop_channel(name),
                         reason="channel no longer configured")
            wake = [self._deliver_channel(name, send, now) for name, send in self.channels.items()]
        return min((w for w in wake if w is not None), default=None)

    def _deliver_channel(self, name: str, send: Channel, now: float) -> float | None:
        queue = self.outbox.queue(name)
        due = []
        for row in queue:  # in order: a message never overtakes an earlier one of the same channel
            if row.next_try > now:
                break
            due.append(row)
        if not due:
            return queue[0].next_try if queue else None
        recent = self.outbox.recent(name, now)
        slots = self.settings.rate_limit_per_hour - len(recent)
        # Everything queued behind a held message waited for the limit too: it all goes as one summary.
        batches = [due] if due[0].held else [[r] for r in due]
        for n, batch in enumerate(batches):
            if slots <= 0:
                rest = [r for b in batches[n:] for r in b]
                until = (recent[0] if recent else now) + 3600.0
                self.outbox.hold(name, [r.id for r in rest], until)
                self.log("alert_rate_limited", level="warning", channel=name, messages=len(rest),
                         until=round(until, 1))
                return until
            messages = [Message.from_dict(r.message) for r in batch]
            message = messages[0] if len(messages) == 1 else summary_of(messages, now)
            try:
                send(message)
            except Exception as exc:  # a broken channel must never stop backups; the rows stay queued
                error = f"{exc.__class__.__name__}: {str(exc)[:200]}"
                retry = self.outbox.failed(name, [r.id for r in batch], error, now)
                self.log("alert_failed", level="error", channel=name, keys=[r.key for r in batch],
                         attempts=max(r.attempts for r in batch) + 1, retry_at=round(retry, 1), error=error)
                return retry
            self.outbox.delivered(name, [r.id for r in batch], now)
            recent.append(now)
            slots -= 1
            self.log("alert_sent", channel=name, keys=[r.key for r in batch], state=message.state,
                     delayed_seconds=round(now - min(r.created for r in batch), 1))
        left = self.outbox.queue(name)
        return left[0].next_try if left else None

    def depth(self) -> tuple[int, float | None]:
        """(messages waiting in the outbox, creation time of the oldest)."""
        return self.outbox.depth()

    def start(self) -> "Alerts":
        """Deliver from a background thread from now on (the daemon)."""
        self.sender = Sender(self)
        self.sender.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self.sender is not None:
            self.sender.stop(timeout)


class Sender(threading.Thread):
    """Delivers the outbox: asleep until a message is queued or a retry is due (no polling)."""

    def __init__(self, alerts: Alerts):
        super().__init__(name="alert-sender", daemon=True)
        self.alerts = alerts
        self._cond = threading.Condition()
        self._kicked = True   # deliver what a previous run left in the outbox
        self._stopping = False

    def kick(self) -> None:
        with self._cond:
            self._kicked = True
            self._cond.notify()

    def stop(self, timeout: float) -> None:
        """One last delivery round for what was just queued, then exit (bounded by timeout)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self.join(timeout)

    def run(self) -> None:
        wake: float | None = None
        while True:
            with self._cond:
                while not (self._kicked or self._stopping):
                    timeout = None if wake is None else wake - time.time()
                    if timeout is not None and timeout <= 0:
                        break
                    self._cond.wait(timeout)
                self._kicked = False
                stopping = self._stopping
            try:
                wake = self.alerts.deliver(time.time())
            except Exception as exc:  # e.g. the state database is locked for too long: try again later
                self.alerts.log("alert_outbox_error", level="error", error=f"{exc.__class__.__name__}: {exc}"[:300])
                wake = time.time() + 60.0
            if stopping:
                return
