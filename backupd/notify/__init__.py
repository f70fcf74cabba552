"""Operator alerts: backup failure, RPO breach, and their resolution, sent once per change.

`Alerts.update(key, firing, message)` is the one call: it sends when a condition starts firing and
when it clears, never while it merely persists (dedup state survives restarts in state.sqlite), and
at most `rate_limit_per_hour` messages per hour in all. Channels: webhook (JSON POST), e-mail
(SMTP), syslog. A failing channel is logged and never stops the daemon.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from backupd.notify.dedup import AlertState


@dataclass
class Message:
    """One alert or resolution. Never holds secrets."""

    kind: str          # backup_failed | rpo_breach | drill | storage_audit | log_silent
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
    """Dedup, rate limit and fan-out to channels. `log(event, **fields)` receives outcomes."""

    def __init__(self, state_dir: Path, settings, log: Callable[..., None],
                 send_to: dict[str, Channel] | None = None):
        self.state = AlertState(state_dir)
        self.settings = settings
        self.log = log
        self.channels = channels(settings) if send_to is None else send_to

    def update(self, key: str, firing: bool, message: Message) -> bool:
        """Record the condition; send on a change. Returns True when a message went out."""
        if not self.state.transition(key, firing, message.time):
            return False
        if not self.channels:
            return False
        if not self.state.take_token(self.settings.rate_limit_per_hour, message.time):
            self.log("alert_rate_limited", level="warning", key=key, state=message.state)
            return False
        for name, send in self.channels.items():
            try:
                send(message)
                self.log("alert_sent", channel=name, key=key, state=message.state)
            except Exception as exc:  # a broken channel must never stop backups
                self.log("alert_failed", level="error", channel=name, key=key,
                         error=f"{exc.__class__.__name__}: {str(exc)[:200]}")
        return True
