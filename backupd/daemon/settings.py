"""The daemon's sections of backupd.yaml (`daemon`, `notify`, `metrics`), validated with clear errors.

```yaml
daemon:
  concurrency: 1             # backups at once (default 1 on <= 2 CPUs, else 2); never 2 per repository
  jitter_seconds: 60         # runs start up to this much *early* (never late: the RPO holds)
  retry_seconds: 300         # after a failure, try again after min(frequency, this)
  stop_timeout_seconds: 30   # SIGTERM: cancel running backups and exit within this
  lock_wait_seconds: 600     # a repository locked by someone else: wait at most this, then report
notify:
  webhook: https://hooks.example/backupd    # JSON POST
  smtp: {host: 127.0.0.1, port: 25, from: backupd@tos-01, to: [ops@example.jp], starttls: false,
         credentials_file: smtp.env}        # SMTP_USER= / SMTP_PASSWORD= lines (optional)
  syslog: true                              # or a socket path / "host:port"
  rate_limit_per_hour: 30                   # messages per hour over all channels
  rpo_grace_seconds: 0                      # an RPO breach is age > frequency + grace
metrics:
  listen: 127.0.0.1:9187                    # Prometheus text format over HTTP (loopback only)
  textfile: /var/lib/node_exporter/backupd.prom
```
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from backupd.config import Config
from backupd.errors import ConfigError

DAEMON_KEYS = {"concurrency", "jitter_seconds", "retry_seconds", "stop_timeout_seconds", "lock_wait_seconds"}
NOTIFY_KEYS = {"webhook", "smtp", "syslog", "rate_limit_per_hour", "rpo_grace_seconds"}
SMTP_KEYS = {"host", "port", "from", "to", "starttls", "credentials_file", "timeout_seconds"}
METRICS_KEYS = {"listen", "textfile"}


@dataclass
class DaemonSettings:
    concurrency: int = 1
    jitter_seconds: float = 60.0
    retry_seconds: float = 300.0
    stop_timeout_seconds: float = 30.0
    lock_wait_seconds: float = 600.0


@dataclass
class SmtpSettings:
    host: str
    port: int = 25
    sender: str = "backupd@localhost"
    to: list[str] = field(default_factory=list)
    starttls: bool = False
    credentials_file: Path | None = None
    timeout_seconds: float = 20.0


@dataclass
class NotifySettings:
    webhook: str | None = None
    smtp: SmtpSettings | None = None
    syslog: str | bool = False
    rate_limit_per_hour: int = 30
    rpo_grace_seconds: float = 0.0


@dataclass
class MetricsSettings:
    listen: tuple[str, int] | None = None
    textfile: Path | None = None


def _check_keys(where: str, data: dict, allowed: set[str]) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown key(s): {', '.join(sorted(map(str, unknown)))}; "
                          f"known: {', '.join(sorted(allowed))}")


def _number(where: str, data: dict, key: str, kind, default, minimum=0):
    if key not in data:
        return default
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise ConfigError(f"{where}.{key}: must be a number >= {minimum}")
    return kind(value)


def default_concurrency() -> int:
    """1 on a small (<= 2 CPU) host, where two restic runs would starve the TOS; else 2."""
    return 1 if (os.cpu_count() or 1) <= 2 else 2


def daemon(cfg: Config) -> DaemonSettings:
    data = cfg.daemon
    _check_keys("daemon", data, DAEMON_KEYS)
    d = DaemonSettings(concurrency=default_concurrency())
    d.concurrency = _number("daemon", data, "concurrency", int, d.concurrency, 1)
    for key in ("jitter_seconds", "retry_seconds", "stop_timeout_seconds", "lock_wait_seconds"):
        setattr(d, key, _number("daemon", data, key, float, getattr(d, key)))
    return d


def _smtp(cfg: Config, data) -> SmtpSettings:
    if not isinstance(data, dict) or not data.get("host"):
        raise ConfigError("notify.smtp: must be a mapping with at least host and to")
    _check_keys("notify.smtp", data, SMTP_KEYS)
    to = data.get("to")
    to = [to] if isinstance(to, str) else to
    if not to or not all(isinstance(a, str) and "@" in a for a in to):
        raise ConfigError("notify.smtp.to: one or more e-mail addresses")
    creds = data.get("credentials_file")
    return SmtpSettings(
        host=str(data["host"]), port=_number("notify.smtp", data, "port", int, 25, 1),
        sender=str(data.get("from") or f"backupd@{cfg.host or 'localhost'}"), to=list(to),
        starttls=bool(data.get("starttls", False)),
        credentials_file=(cfg.secrets_dir / str(creds)) if creds else None,
        timeout_seconds=_number("notify.smtp", data, "timeout_seconds", float, 20.0, 1))


def notify(cfg: Config) -> NotifySettings:
    data = cfg.notify
    _check_keys("notify", data, NOTIFY_KEYS)
    out = NotifySettings()
    if data.get("webhook"):
        url = str(data["webhook"])
        if not url.startswith(("http://", "https://")):
            raise ConfigError("notify.webhook: must be an http:// or https:// URL")
        out.webhook = url
    if data.get("smtp"):
        out.smtp = _smtp(cfg, data["smtp"])
    syslog = data.get("syslog", False)
    out.syslog = syslog if isinstance(syslog, bool) else str(syslog)
    out.rate_limit_per_hour = _number("notify", data, "rate_limit_per_hour", int, 30, 1)
    out.rpo_grace_seconds = _number("notify", data, "rpo_grace_seconds", float, 0.0)
    return out


def metrics(cfg: Config) -> MetricsSettings:
    data = cfg.metrics
    _check_keys("metrics", data, METRICS_KEYS)
    out = MetricsSettings()
    if data.get("listen"):
        host, sep, port = str(data["listen"]).rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ConfigError("metrics.listen: expected HOST:PORT, e.g. 127.0.0.1:9187")
        out.listen = (host or "127.0.0.1", int(port))
    if data.get("textfile"):
        out.textfile = Path(str(data["textfile"]))
    return out
