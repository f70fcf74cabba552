"""The `evidence:` section of backupd.yaml.

```yaml
evidence:
  mirror: worm-primary     # policy destination (S3, Object Lock) that receives every record under evidence/<host>/
  audit_period: 1y         # default --since of `evidence export` (a duration back from now)
  credentials_file: s3-evidence.env   # keys that write the mirror (default: the destination's credentials_file);
                                      # a verifier's may only add objects under evidence/<its host>/
  checkpoint_period: 1h    # push a signed checkpoint of the ledger head to the mirror at least this often
  keyring: keyring.yaml    # default --keyring of `evidence export` (relative -> beside backupd.yaml)
  retention: 2y            # every evidence object is locked (COMPLIANCE) this long; `backupd extend-locks`
                           # keeps it so. Default: the longer of audit_period and 1y; never below audit_period
```
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from backupd.config import schema as config_schema
from backupd.errors import ConfigError
from backupd.policy.durations import parse_duration


#: the shortest default lock of an evidence object (an explicit evidence.retention may be shorter, never below
#: audit_period)
MIN_RETENTION = timedelta(days=365)


@dataclass
class EvidenceSettings:
    mirror: str | None = None
    audit_period: timedelta = timedelta(days=365)
    credentials_file: Path | None = None  # relative -> secrets_dir
    checkpoint_period: timedelta = timedelta(hours=1)
    keyring: Path | None = None  # relative -> the config file's directory
    retention: timedelta = MIN_RETENTION  # lock of every evidence object (records, checkpoints, keys, markers, escrow)


def of(cfg) -> EvidenceSettings:
    """Typed settings from cfg.evidence; ConfigError naming the bad field (schema: backupd.config.schema)."""
    raw = config_schema.section("evidence", getattr(cfg, "evidence", None) or {})
    out = EvidenceSettings(mirror=raw.mirror, audit_period=parse_duration(raw.audit_period),
                           checkpoint_period=parse_duration(raw.checkpoint_period))
    out.retention = (parse_duration(raw.retention) if raw.retention is not None
                     else max(out.audit_period, MIN_RETENTION))
    if raw.credentials_file is not None:
        out.credentials_file = Path(getattr(cfg, "secrets_dir", ".")) / raw.credentials_file
    if raw.keyring is not None:
        base = Path(cfg.path).parent if getattr(cfg, "path", None) else Path(".")
        out.keyring = base / raw.keyring
    return out


def retain_until(cfg, now: datetime | None = None) -> datetime:
    """The retain-until date of an evidence object written now: now + evidence.retention (ConfigError as of())."""
    return (now or datetime.now(timezone.utc)) + of(cfg).retention


def mirrored(cfg) -> EvidenceSettings | None:
    """The settings when `evidence.mirror` is set; None without a mirror or when they are wrong (commands that
    only read local state then show nothing instead of failing)."""
    try:
        opts = of(cfg)
    except ConfigError:
        return None
    return opts if opts.mirror else None
