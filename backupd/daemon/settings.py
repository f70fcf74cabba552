"""The daemon's sections of backupd.yaml (`daemon`, `notify`, `metrics`) as typed settings; validation is
backupd.config.schema's.

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
         credentials_file: smtp.env,        # SMTP_USER= / SMTP_PASSWORD= lines (optional)
         ca_file: /etc/backupd/smtp-ca.pem} # STARTTLS verifies against this CA (default: system CAs)
  syslog: true                              # or a socket path / "host:port"
  rate_limit_per_hour: 30                   # messages per hour and channel; more wait and go out as a summary
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

from backupd.config import schema as config_schema
from backupd.config.loader import Config


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
    ca_file: Path | None = None


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


def default_concurrency() -> int:
    """1 on a small (<= 2 CPU) host, where two restic runs would starve the TOS; else 2."""
    return 1 if (os.cpu_count() or 1) <= 2 else 2


def daemon(cfg: Config) -> DaemonSettings:
    """Typed `daemon:` settings; ConfigError names the bad field (the schema is backupd.config.schema)."""
    data = config_schema.section("daemon", cfg.daemon)
    return DaemonSettings(concurrency=data.concurrency or default_concurrency(),
                          jitter_seconds=data.jitter_seconds, retry_seconds=data.retry_seconds,
                          stop_timeout_seconds=data.stop_timeout_seconds, lock_wait_seconds=data.lock_wait_seconds)


def _smtp(cfg: Config, data: config_schema.SmtpSection) -> SmtpSettings:
    return SmtpSettings(
        host=data.host, port=data.port, sender=data.sender or f"backupd@{cfg.host or 'localhost'}", to=list(data.to),
        starttls=data.starttls,
        credentials_file=(cfg.secrets_dir / data.credentials_file) if data.credentials_file else None,
        timeout_seconds=data.timeout_seconds,
        ca_file=(cfg.secrets_dir / data.ca_file) if data.ca_file else None)


def notify(cfg: Config) -> NotifySettings:
    """Typed `notify:` settings; ConfigError names the bad field."""
    data = config_schema.section("notify", cfg.notify)
    return NotifySettings(webhook=data.webhook, smtp=_smtp(cfg, data.smtp) if data.smtp else None,
                          syslog=data.syslog, rate_limit_per_hour=data.rate_limit_per_hour,
                          rpo_grace_seconds=data.rpo_grace_seconds)


def metrics(cfg: Config) -> MetricsSettings:
    """Typed `metrics:` settings; ConfigError names the bad field."""
    data = config_schema.section("metrics", cfg.metrics)
    out = MetricsSettings(textfile=Path(data.textfile) if data.textfile else None)
    if data.listen:
        host, _, port = data.listen.rpartition(":")
        out.listen = (host or "127.0.0.1", int(port))
    return out
